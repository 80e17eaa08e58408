"""Binance spot collector: combined WebSocket streams + REST snapshots and exchangeInfo.

CHANNELS (setting name -> Binance stream -> raw subject):
  trade      <sym>@trade                 raw.binance.trade.<SYM>
  aggTrade   <sym>@aggTrade              raw.binance.aggTrade.<SYM>
  depth      <sym>@depth@100ms           raw.binance.depth.<SYM>     (+ REST snapshot)
             (<sym>@depth when depth_interval_ms = 1000)
  bookTicker <sym>@bookTicker            raw.binance.bookTicker.<SYM>
  ticker     <sym>@ticker                raw.binance.ticker.<SYM>
  kline      <sym>@kline_1m              raw.binance.kline.<SYM>
  (REST)     /api/v3/depth               raw.binance.snapshot.<SYM>
             Nats-Msg-Id binance:snapshot:<SYM>:<lastUpdateId>
  (REST)     /api/v3/exchangeInfo        raw.binance.instruments.ALL
  (ours)     connection events           raw.binance.conn.ALL  ("connected"/"disconnected")
  (venue)    method replies {"result"..} raw.binance.control.ALL
  (venue)    anything unroutable         raw.binance.unknown.ALL
Frames are published byte for byte as received. Venue limits honoured: at most 1024 streams
per connection (more symbols open more connections); streams go in the URL, so we never send
SUBSCRIBE and stay far below the 5 incoming messages/s limit; the venue's pings are answered
(the websockets library pongs) and we ping every ping_interval_s; the 24-hour disconnect is
pre-empted by a rollover at max_connection_s (close and reconnect: the "disconnected" event
marks the short gap honestly, and no frame is published twice); REST goes through ccxt's rate
limiter so a burst of snapshot requests cannot get the IP banned.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import ccxt.async_support as ccxt
import orjson
import websockets
from nats.aio.msg import Msg
from websockets.asyncio.client import ClientConnection

from collectors import base
from streams.bus.runtime import Worker
from streams.settings import BinanceSettings

log = logging.getLogger("collectors.binance")

VENUE = "binance"
CHANNELS = {
    "trade": "{s}@trade",
    "aggTrade": "{s}@aggTrade",
    "depth": "{s}@depth@100ms",
    "bookTicker": "{s}@bookTicker",
    "ticker": "{s}@ticker",
    "kline": "{s}@kline_1m",
}
STREAMS = CHANNELS  # older name
MAX_STREAMS_PER_CONNECTION = 1024
INSTRUMENTS_REFRESH_S = 3600.0
# exchangeInfo?symbols=[...] keeps the body small; past this many the URL gets too long and
# we ask for everything instead.
MAX_INFO_SYMBOLS = 100
_PREFIX = b'{"stream":"'


def stream_names(cfg: BinanceSettings, channels: dict[str, str] = CHANNELS) -> list[str]:
    names = []
    for sym in cfg.symbols:
        for ch in cfg.channels:
            if ch not in channels:
                continue  # a REST-polled channel (USDⓈ-M openInterest)
            pattern = channels[ch]
            if ch == "depth" and cfg.depth_interval_ms == 1000:
                pattern = "{s}@depth"
            names.append(pattern.format(s=sym.lower()))
    return names


def route(frame: bytes, channels: dict[str, str] = CHANNELS) -> tuple[str, str]:
    """(channel, SYMBOL) of a combined-stream frame, by slicing the ``stream`` value out of
    the bytes. Binance always writes ``{"stream":"...","data":...}`` in that order, so the
    name sits at a fixed offset; a full JSON parse of every frame here would cost more CPU
    than everything else the collector does, only to read one string (the normalizer parses
    the frame properly anyway)."""
    if frame.startswith(_PREFIX):
        end = frame.find(b'"', len(_PREFIX), len(_PREFIX) + 200)
        if end > 0:
            sym, _, kind = frame[len(_PREFIX) : end].decode("ascii", "replace").partition("@")
            base = kind.split("@", 1)[0]
            channel = "kline" if base.startswith("kline_") else base
            if channel in channels and sym.replace("_", "").isalnum():  # BTCUSDT_250627
                return channel, sym.upper()
    if frame.startswith((b'{"result"', b'{"error"', b'{"id"')):
        return "control", "ALL"
    return "unknown", "ALL"


def _symbols_of(streams: list[str]) -> list[str]:
    return sorted({s.split("@", 1)[0].upper() for s in streams})


@dataclass(kw_only=True)
class Connection(base.Link):
    """One WebSocket connection (several exist past 1024 streams)."""

    streams: list[str]
    depth_symbols: set[str]


class BinanceCollector:
    """Spot; ``collectors/binanceusdm.py`` subclasses it for USDⓈ-M futures, which speak
    the same protocol on other hosts, REST paths and a few more channels."""

    venue = VENUE  # the raw subject's venue token (ccxt's exchange id)
    channels = CHANNELS
    ccxt_class: type[ccxt.Exchange] = ccxt.binance
    api = ("public", "/api/v3")  # ccxt's urls["api"] entry for public REST, and its path

    def __init__(self, w: Worker, cfg: BinanceSettings, flush_every: int) -> None:
        assert w.nc is not None and w.js is not None
        self.w = w
        self.cfg = cfg
        self.pub = base.RawPublisher(
            w.nc, w.js, self.venue, flush_every, settings=w.settings.collector
        )
        self.rest_lock = asyncio.Lock()
        self.exchange = self.ccxt_class({"enableRateLimit": True})
        # ccxt builds every public request from this URL; pointing it elsewhere swaps the
        # venue (the emulator, a proxy) without touching ccxt's rate limiting.
        self.exchange.urls["api"][self.api[0]] = cfg.rest_url.rstrip("/") + self.api[1]
        self.symbol_map: dict[str, str] = {}  # BTC-USDT -> BTCUSDT, from exchangeInfo
        self.connections = [
            Connection(url=u, streams=s, backoff=base.Backoff(cfg.reconnect),
                       depth_symbols=set(_symbols_of(s)) if "depth" in cfg.channels else set())
            for u, s in self.urls()
        ]  # fmt: skip
        self._background: set[asyncio.Task[None]] = set()

    # -- REST ----------------------------------------------------------------------------
    async def _rest(self, endpoint: str, call: Any, params: dict[str, Any]) -> tuple[bytes, int]:
        """One REST call through ccxt; returns the untouched body and its receive time."""
        return await base.rest_body(
            self.exchange, self.rest_lock, self.venue, endpoint, call, params
        )

    def _conn_for(self, native: str) -> str:
        for c in self.connections:
            if native in c.depth_symbols and c.conn:
                return c.conn
        return "rest"

    def _depth_call(self) -> Any:
        return self.exchange.public_get_depth

    def _info_call(self) -> Any:
        return self.exchange.public_get_exchangeinfo

    def owns(self, symbol: str) -> bool:
        """Whether ``ctl.snapshot.binance.<symbol>`` is this collector's: spot and USDⓈ-M
        books share the venue name ``binance`` and are told apart by the symbol."""
        return symbol.count("-") == 1

    async def fetch_snapshot(self, native: str) -> int:
        """GET <api>/depth, published untouched; returns its lastUpdateId."""
        body, recv = await self._rest(
            "depth", self._depth_call(), {"symbol": native, "limit": self.cfg.snapshot_limit}
        )
        last = int(orjson.loads(body)["lastUpdateId"])
        await self.pub.publish(
            "snapshot", native, body, recv, self._conn_for(native),
            msg_id=f"{self.venue}:snapshot:{native}:{last}", durable=True,
        )  # fmt: skip
        return last

    async def fetch_instruments(self) -> None:
        """GET /api/v3/exchangeInfo, published untouched; refreshes the symbol map."""
        params = {}
        if len(self.cfg.symbols) <= MAX_INFO_SYMBOLS:
            params["symbols"] = orjson.dumps(self.cfg.symbols).decode()
        body, recv = await self._rest("exchangeInfo", self._info_call(), params)
        for s in orjson.loads(body).get("symbols", []):
            self.symbol_map[f"{s['baseAsset']}-{s['quoteAsset']}"] = s["symbol"]
        await self.pub.publish("instruments", "ALL", body, recv, "rest", durable=True)

    async def _instruments_loop(self) -> None:
        backoff = base.Backoff(self.cfg.reconnect)
        while not self.w.stop.is_set():
            try:
                await self.fetch_instruments()
                wait = INSTRUMENTS_REFRESH_S
                backoff.reset()
            except Exception as exc:
                wait = backoff.next()
                log.warning(
                    f"{self.venue} exchangeInfo failed, retrying",
                    extra={"error": str(exc)[:300], "retry_in_s": round(wait, 2)},
                )
            if await self.w.sleep(wait):
                return

    async def _on_ctl_snapshot(self, msg: Msg) -> None:
        """``ctl.snapshot.binance.<BTC-USDT>``: fetch and publish a fresh snapshot."""
        symbol = msg.subject.split(".")[-1]
        if not self.owns(symbol):
            return  # the other Binance market's collector answers it
        native = self.symbol_map.get(symbol) or self.native_of(symbol)
        if native not in self.cfg.symbols:
            await base.ctl_reply(msg, {"ok": False, "error": f"not collected: {symbol}"})
            return
        try:
            last = await self.fetch_snapshot(native)
        except Exception as exc:
            await base.ctl_reply(msg, {"ok": False, "error": str(exc)[:300]})
            return
        await base.ctl_reply(msg, {"ok": True, "lastUpdateId": last})

    def native_of(self, symbol: str) -> str:
        return symbol.replace("-", "").upper()

    # -- WebSocket -----------------------------------------------------------------------
    def urls(self) -> list[tuple[str, list[str]]]:
        names = stream_names(self.cfg, self.channels)
        chunks = [
            names[i : i + MAX_STREAMS_PER_CONNECTION]
            for i in range(0, len(names), MAX_STREAMS_PER_CONNECTION)
        ]
        base = self.cfg.ws_url.rstrip("/")
        return [(f"{base}/stream?streams={'/'.join(c)}", c) for c in chunks]

    async def _conn_event(self, c: Connection, event: str, reason: str = "") -> None:
        await base.publish_conn_event(
            self.pub, c.conn, event, reason, streams=c.streams, symbols=_symbols_of(c.streams)
        )

    def extra_loops(self) -> list[Any]:
        """Coroutines a market adds (USDⓈ-M polls open interest over REST)."""
        return []

    async def _connection_loop(self, c: Connection) -> None:
        await base.keep_connected(
            self.w, self.venue, c, self._session, self._conn_event, self._reconnects,
            ping_interval=self.cfg.ping_interval_s,
        )  # fmt: skip

    async def _session(self, ws: ClientConnection, c: Connection) -> str:
        """Read frames until the connection ends; returns why it ended."""
        await self._conn_event(c, "connected")
        log.info(f"{self.venue} connected", extra={"conn": c.conn, "streams": len(c.streams)})
        need_snapshot = set(c.depth_symbols)
        publish = self.pub.publish
        nats_epoch = self.pub.nats_epoch
        epoch = nats_epoch()
        conn = c.conn
        channels = self.channels
        c.last_frame = time.monotonic()
        watchdog = asyncio.create_task(self._watchdog(ws, c))
        try:
            while True:
                try:
                    frame = await ws.recv(decode=False)
                except websockets.ConnectionClosed as exc:
                    return c.ended[0] if c.ended else f"closed by venue: {exc}"
                recv_ns = time.time_ns()
                c.last_frame = time.monotonic()
                if isinstance(frame, str):
                    frame = frame.encode()
                channel, sym = route(frame, channels)
                await publish(channel, sym, frame, recv_ns, conn)
                if nats_epoch() != epoch:
                    return "nats reconnected: frames sent before it may be lost"
                if need_snapshot and channel == "depth" and sym in need_snapshot:
                    # Binance's book sync: buffer events first, then take the snapshot.
                    need_snapshot.discard(sym)
                    task = asyncio.create_task(self._snapshot_quietly(sym))
                    self._background.add(task)
                    task.add_done_callback(self._background.discard)
        finally:
            watchdog.cancel()

    async def _watchdog(self, ws: ClientConnection, c: Connection) -> None:
        """Closes the connection when stopping, when the feed goes stale, or before
        Binance's 24-hour cut; one task per connection, not per frame."""
        opened = time.monotonic()
        while True:
            if await self.w.sleep(0.25):
                c.ended.append("stopping")
                break
            now = time.monotonic()
            if now - c.last_frame > self.cfg.stale_after_s:
                c.ended.append(f"stale: no frame for {self.cfg.stale_after_s}s")
                break
            if now - opened > self.cfg.max_connection_s:
                c.ended.append("rollover: connection age limit")
                break
        await ws.close()

    async def _snapshot_quietly(self, native: str) -> None:
        try:
            await self.fetch_snapshot(native)
        except Exception as exc:
            log.warning(
                f"{self.venue} snapshot failed", extra={"symbol": native, "error": str(exc)}
            )

    def _reconnects(self) -> int:
        return sum(c.reconnects for c in self.connections)

    async def _report_loop(self) -> None:
        """Once a second: metrics, backoff reset and health for connections that flow."""
        while not await self.w.sleep(1.0):
            self.pub.flush_metrics()
            now = time.monotonic()
            flowing = [c for c in self.connections if c.connected and now - c.last_frame < 5.0]
            for c in flowing:
                assert c.backoff is not None
                c.backoff.reset()
            state, fields = base.health_of([self.pub])
            if len(flowing) == len(self.connections) or state != "ok":
                self.w.health.set(
                    state,
                    frames=self.pub.published,
                    confirmed=self.pub.confirmed,
                    reconnects=self._reconnects(),
                    connections=len(self.connections),
                    unconfirmed=self.pub.unconfirmed,
                    **fields,
                )

    async def run(self) -> None:
        w = self.w
        # ctl.snapshot.binance.*: spot and USDⓈ-M share the venue name (see owns())
        async with base.collector_running(
            w, VENUE, self._on_ctl_snapshot, self._report_loop, [self.pub], self.exchange
        ):
            tasks = [asyncio.create_task(self._instruments_loop())]
            tasks += [asyncio.create_task(t) for t in self.extra_loops()]
            tasks += [asyncio.create_task(self._connection_loop(c)) for c in self.connections]
            try:
                await asyncio.gather(*tasks)
            finally:
                for t in list(self._background):
                    t.cancel()


async def run(w: Worker) -> None:
    """The collector body for ``streams.bus.runtime.run`` (or a test's in-process Worker)."""
    settings = w.settings.collector
    await BinanceCollector(w, settings.binance, settings.flush_every).run()
