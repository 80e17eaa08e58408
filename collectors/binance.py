"""Binance spot collector: combined WebSocket streams + REST snapshots and exchangeInfo.

Channel map (setting name -> Binance stream -> raw subject):
  trade      <sym>@trade                 raw.binance.trade.<SYM>
  aggTrade   <sym>@aggTrade              raw.binance.aggTrade.<SYM>
  depth      <sym>@depth@100ms           raw.binance.depth.<SYM>     (+ REST snapshot)
  bookTicker <sym>@bookTicker            raw.binance.bookTicker.<SYM>
  ticker     <sym>@ticker                raw.binance.ticker.<SYM>
  kline      <sym>@kline_1m              raw.binance.kline.<SYM>
  (REST)     /api/v3/depth               raw.binance.snapshot.<SYM>
  (REST)     /api/v3/exchangeInfo        raw.binance.instruments.ALL
  (ours)     connection events           raw.binance.conn.ALL
Frames are published byte for byte as received. Venue limits honoured: at most 1024
streams per connection, the 24-hour disconnect (we roll over before it), pings answered
(the websockets library pongs; we also ping), REST through ccxt's rate limiter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import ccxt.async_support as ccxt
import orjson
import websockets
from nats.aio.msg import Msg
from websockets.asyncio.client import ClientConnection

from collectors.base import RECONNECTS, REST, Backoff, RawPublisher, new_conn_id
from streams import subjects
from streams.runtime import Worker
from streams.settings import BinanceSettings

log = logging.getLogger("collectors.binance")

VENUE = "binance"
STREAMS = {
    "trade": "{s}@trade",
    "aggTrade": "{s}@aggTrade",
    "depth": "{s}@depth@100ms",
    "bookTicker": "{s}@bookTicker",
    "ticker": "{s}@ticker",
    "kline": "{s}@kline_1m",
}
MAX_STREAMS_PER_CONNECTION = 1024
_PREFIX = b'{"stream":"'
INSTRUMENTS_REFRESH_S = 3600.0


def stream_names(cfg: BinanceSettings) -> list[str]:
    names = []
    for sym in cfg.symbols:
        for ch in cfg.channels:
            pattern = STREAMS[ch]
            if ch == "depth" and cfg.depth_interval_ms == 1000:
                pattern = "{s}@depth"
            names.append(pattern.format(s=sym.lower()))
    return names


def route(frame: bytes) -> tuple[str, str]:
    """(channel, SYMBOL) from a combined-stream frame by slicing the ``stream`` value: a full
    JSON parse per frame here would double the collector's CPU for one string."""
    if frame.startswith(_PREFIX):
        end = frame.find(b'"', len(_PREFIX))
        if end > 0:
            sym, _, kind = frame[len(_PREFIX) : end].decode("ascii", "replace").partition("@")
            base = kind.split("@", 1)[0]
            channel = "kline" if base.startswith("kline_") else base
            if channel in STREAMS and sym:
                return channel, sym.upper()
    if frame.startswith(b'{"result"') or frame.startswith(b'{"error"'):
        return "control", "ALL"
    return "unknown", "ALL"


class BinanceCollector:
    def __init__(self, w: Worker, cfg: BinanceSettings, flush_every: int) -> None:
        assert w.nc is not None and w.js is not None
        self.w = w
        self.cfg = cfg
        self.pub = RawPublisher(w.nc, w.js, VENUE, flush_every)
        self.backoff = Backoff(cfg.reconnect)
        self.rest_lock = asyncio.Lock()
        self.exchange = ccxt.binance({"enableRateLimit": True})
        # ccxt builds every request from these; pointing them elsewhere swaps the venue
        # for the emulator without touching ccxt's signing or rate limiting.
        self.exchange.urls["api"]["public"] = cfg.rest_url.rstrip("/") + "/api/v3"
        self.symbol_map: dict[str, str] = {}  # BTC-USDT -> BTCUSDT, from exchangeInfo
        self.reconnects = 0
        self.conn = ""
        self.connected = False
        self.last_frame = 0.0
        self._background: set[asyncio.Task[None]] = set()

    # -- REST ----------------------------------------------------------------------------
    async def _rest(self, endpoint: str, call: Any, params: dict[str, Any]) -> tuple[bytes, int]:
        """One REST call through ccxt; returns the untouched body and its receive time."""
        async with self.rest_lock:  # last_http_response belongs to the last request
            try:
                await call(params)
            except Exception as exc:
                REST.labels(VENUE, endpoint, "error").inc()
                raise RuntimeError(f"{endpoint}: {type(exc).__name__}: {exc}") from None
            body = self.exchange.last_http_response
        REST.labels(VENUE, endpoint, "ok").inc()
        return (body.encode() if isinstance(body, str) else body), time.time_ns()

    async def fetch_snapshot(self, native: str) -> int:
        body, recv = await self._rest(
            "depth",
            self.exchange.public_get_depth,
            {"symbol": native, "limit": self.cfg.snapshot_limit},
        )
        last = int(orjson.loads(body)["lastUpdateId"])
        await self.pub.publish(
            "snapshot", native, body, recv, self.conn or "rest",
            msg_id=f"binance:snapshot:{native}:{last}", durable=True,
        )  # fmt: skip
        return last

    async def fetch_instruments(self) -> None:
        params = {"symbols": orjson.dumps(self.cfg.symbols).decode()}
        body, recv = await self._rest("exchangeInfo", self.exchange.public_get_exchangeinfo, params)
        for s in orjson.loads(body).get("symbols", []):
            self.symbol_map[f"{s['baseAsset']}-{s['quoteAsset']}"] = s["symbol"]
        await self.pub.publish("instruments", "ALL", body, recv, "rest", durable=True)

    async def _instruments_loop(self) -> None:
        backoff = Backoff(self.cfg.reconnect)
        while not self.w.stop.is_set():
            try:
                await self.fetch_instruments()
                wait = INSTRUMENTS_REFRESH_S
                backoff.reset()
            except Exception as exc:
                wait = backoff.next()
                log.warning(
                    "binance exchangeInfo failed, retrying",
                    extra={"error": str(exc)[:300], "retry_in_s": round(wait, 2)},
                )
            if await self.w.sleep(wait):
                return

    async def _on_ctl_snapshot(self, msg: Msg) -> None:
        symbol = msg.subject.split(".")[-1]
        native = self.symbol_map.get(symbol) or symbol.replace("-", "")
        if native not in self.cfg.symbols:
            await msg.respond(orjson.dumps({"ok": False, "error": f"not collected: {symbol}"}))
            return
        try:
            last = await self.fetch_snapshot(native)
        except Exception as exc:
            await msg.respond(orjson.dumps({"ok": False, "error": str(exc)[:300]}))
            return
        if msg.reply:
            await msg.respond(orjson.dumps({"ok": True, "lastUpdateId": last}))

    # -- WebSocket -----------------------------------------------------------------------
    def urls(self) -> list[tuple[str, list[str]]]:
        names = stream_names(self.cfg)
        chunks = [
            names[i : i + MAX_STREAMS_PER_CONNECTION]
            for i in range(0, len(names), MAX_STREAMS_PER_CONNECTION)
        ]
        base = self.cfg.ws_url.rstrip("/")
        return [(f"{base}/stream?streams={'/'.join(c)}", c) for c in chunks]

    async def _conn_event(self, event: str, streams: list[str], reason: str = "") -> None:
        symbols = sorted({s.split("@", 1)[0].upper() for s in streams})
        body = orjson.dumps(
            {"event": event, "conn": self.conn, "streams": streams, "symbols": symbols,
             "reason": reason, "ts": time.time_ns()}
        )  # fmt: skip
        await self.pub.publish("conn", "ALL", body, time.time_ns(), self.conn, durable=True)

    async def _connection_loop(self, url: str, streams: list[str]) -> None:
        w = self.w
        while not w.stop.is_set():
            self.conn = new_conn_id(VENUE)
            try:
                async with websockets.connect(
                    url,
                    ping_interval=self.cfg.ping_interval_s,
                    ping_timeout=self.cfg.ping_interval_s,
                    max_size=2**24,
                    max_queue=4096,
                    compression=None,
                    proxy=None,
                    open_timeout=10,
                ) as ws:
                    reason = await self._session(ws, streams)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"[:300]
                if not self.connected:
                    delay = self.backoff.next()
                    log.warning(
                        "binance connect failed, retrying",
                        extra={"url": url, "error": reason, "retry_in_s": round(delay, 2)},
                    )
                    w.health.set("retrying", error=reason, reconnects=self.reconnects)
                    if await w.sleep(delay):
                        return
                    continue
            if self.connected:
                self.connected = False
                self.reconnects += 1
                RECONNECTS.labels(VENUE, reason.split(":")[0][:40]).inc()
                try:
                    await self._conn_event("disconnected", streams, reason)
                except Exception as exc:
                    log.warning("cannot record disconnect", extra={"error": repr(exc)})
                if w.stop.is_set():
                    return
                delay = self.backoff.next()
                log.warning(
                    "binance connection lost, reconnecting",
                    extra={"reason": reason, "retry_in_s": round(delay, 2)},
                )
                w.health.set("reconnecting", reason=reason, reconnects=self.reconnects)
                if await w.sleep(delay):
                    return

    async def _session(self, ws: ClientConnection, streams: list[str]) -> str:
        """Read frames until the connection ends; returns why it ended."""
        self.connected = True
        await self._conn_event("connected", streams)
        log.info("binance connected", extra={"conn": self.conn, "streams": len(streams)})
        opened = time.monotonic()
        need_snapshot = (
            {s.split("@", 1)[0].upper() for s in streams if "@depth" in s}
            if "depth" in self.cfg.channels
            else set()
        )
        publish = self.pub.publish
        conn = self.conn
        self.last_frame = time.monotonic()
        ended: list[str] = []
        watchdog = asyncio.create_task(self._watchdog(ws, opened, ended))
        try:
            while True:
                try:
                    frame = await ws.recv(decode=False)
                except websockets.ConnectionClosed as exc:
                    return ended[0] if ended else f"closed by venue: {exc}"
                recv_ns = time.time_ns()
                self.last_frame = time.monotonic()
                if isinstance(frame, str):
                    frame = frame.encode()
                channel, sym = route(frame)
                await publish(channel, sym, frame, recv_ns, conn)
                if need_snapshot and channel == "depth" and sym in need_snapshot:
                    # Binance's sync procedure: snapshot after the first buffered event.
                    need_snapshot.discard(sym)
                    task = asyncio.create_task(self._snapshot_quietly(sym))
                    self._background.add(task)
                    task.add_done_callback(self._background.discard)
        finally:
            watchdog.cancel()

    async def _watchdog(self, ws: ClientConnection, opened: float, ended: list[str]) -> None:
        """Closes the connection when stopping, when the feed goes stale, or before
        Binance's 24-hour cut; one task per connection, not per frame."""
        while True:
            if await self.w.sleep(0.5):
                ended.append("stopping")
                break
            now = time.monotonic()
            if now - self.last_frame > self.cfg.stale_after_s:
                ended.append(f"stale: no frame for {self.cfg.stale_after_s}s")
                break
            if now - opened > self.cfg.max_connection_s:
                ended.append("rollover: 24-hour connection limit")
                break
        await ws.close()

    async def _snapshot_quietly(self, native: str) -> None:
        try:
            await self.fetch_snapshot(native)
        except Exception as exc:
            log.warning("binance snapshot failed", extra={"symbol": native, "error": str(exc)})

    def _report(self) -> None:
        self.backoff.reset()
        self.pub.flush_metrics()
        self.w.health.set(
            "ok", frames=self.pub.published, reconnects=self.reconnects, conn=self.conn
        )

    async def run(self) -> None:
        w = self.w
        assert w.nc is not None
        sub = await w.nc.subscribe(subjects.ctl_snapshot_filter(VENUE), cb=self._on_ctl_snapshot)
        tasks = [asyncio.create_task(self._instruments_loop())]
        tasks += [asyncio.create_task(self._connection_loop(u, s)) for u, s in self.urls()]
        reporter = asyncio.create_task(self._report_loop())  # health, metrics, backoff reset
        try:
            await asyncio.gather(*tasks)
        finally:
            reporter.cancel()
            await sub.unsubscribe()
            self.pub.flush_metrics()
            await self.exchange.close()

    async def _report_loop(self) -> None:
        while not await self.w.sleep(1.0):
            self.pub.flush_metrics()
            if self.connected and time.monotonic() - self.last_frame < 5.0:
                self._report()


async def run(w: Worker) -> None:
    settings = w.settings.collector
    await BinanceCollector(w, settings.binance, settings.flush_every).run()
