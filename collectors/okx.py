"""OKX v5 public collector: one WebSocket, explicit subscribe, REST instruments via ccxt.

CHANNELS (setting name = OKX channel -> subscription arg -> raw subject):
  trades, books, bbo-tbt, tickers, candle1m   {"channel", "instId"}  raw.okx.<channel>.<instId>
  funding-rate (SWAP only), open-interest, mark-price (derivatives only)     same shape
  index-tickers    {"channel", "instId": "<BASE-QUOTE>" index}   raw.okx.index-tickers.BTC-USDT
  liquidation-orders {"channel", "instType": "SWAP"|"FUTURES"}   raw.okx.liquidation-orders.SWAP
  (REST)   GET /api/v5/public/instruments?instType=...   raw.okx.instruments.ALL (one per type)
  (ours)   connection events                             raw.okx.conn.ALL
  (venue)  {"event":...} acks/errors/notices, "pong"     raw.okx.control.ALL
  (venue)  anything unroutable                           raw.okx.unknown.ALL
Frames are published byte for byte. Venue rules honoured: OKX closes a connection that is
silent for 30 s, so we send the text ``ping`` after ping_interval_s (< 30) without a frame
and expect ``pong``; subscribe requests are chunked (OKX caps one request at 64 KB); books
come as a WebSocket snapshot then updates, so a resync (``ctl.snapshot.okx.<symbol>``) is an
unsubscribe + subscribe of that book, whose fresh snapshot arrives through the stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial

import ccxt.async_support as ccxt
import orjson
import websockets
from nats.aio.msg import Msg
from websockets.asyncio.client import ClientConnection

from collectors import base
from streams import subjects
from streams.bus.runtime import Worker
from streams.settings import VenueSettings
from streams.symbols.okx import inst_type, to_native

log = logging.getLogger("collectors.okx")

VENUE = "okx"
PER_INSTRUMENT = ("trades", "books", "bbo-tbt", "tickers", "candle1m")
DERIVATIVE_ONLY = ("open-interest", "mark-price")
CHANNELS = frozenset(
    PER_INSTRUMENT + DERIVATIVE_ONLY + ("funding-rate", "index-tickers", "liquidation-orders")
)
INSTRUMENTS_REFRESH_S = 3600.0
ARGS_PER_REQUEST = 100  # well under OKX's 64 KB request limit
_ARG = b'{"arg":{'


def route(frame: bytes) -> tuple[str, str]:
    """(channel, instId or instType) of a push, from a small decode of just its leading
    ``arg`` object: OKX writes ``{"arg":{...},...`` first, and a full parse here would
    cost more than everything else the collector does (the normalizer parses properly)."""
    if frame.startswith(_ARG):
        end = frame.find(b"}", len(_ARG), 400)
        if end > 0:
            try:
                arg = orjson.loads(frame[7 : end + 1])
            except orjson.JSONDecodeError:
                return "unknown", "ALL"
            channel = arg.get("channel")
            target = arg.get("instId") or arg.get("instType")
            if (
                channel in CHANNELS
                and isinstance(target, str)
                and target == subjects.token(target) != ""
            ):
                return channel, target
        return "unknown", "ALL"
    if frame == b"pong" or frame.startswith(b'{"event":'):
        return "control", "ALL"
    return "unknown", "ALL"


def subscription_args(cfg: VenueSettings) -> list[dict[str, str]]:
    args: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()

    def add(channel: str, key: str, value: str) -> None:
        if (channel, value) not in seen:
            seen.add((channel, value))
            args.append({"channel": channel, key: value})

    for ch in cfg.channels:
        for inst in cfg.symbols:
            kind = inst_type(inst)
            derivative = ch in DERIVATIVE_ONLY and kind != "SPOT"
            if ch in PER_INSTRUMENT or derivative or (ch == "funding-rate" and kind == "SWAP"):
                add(ch, "instId", inst)
            elif ch == "index-tickers":
                add(ch, "instId", "-".join(inst.split("-")[:2]))
            elif ch == "liquidation-orders" and kind in ("SWAP", "FUTURES"):
                add(ch, "instType", kind)
    return args


class OkxCollector:
    def __init__(self, w: Worker, cfg: VenueSettings, flush_every: int) -> None:
        assert w.nc is not None and w.js is not None
        unknown = set(cfg.channels) - CHANNELS
        if unknown:
            raise ValueError(f"collector.okx.channels: unknown channels {sorted(unknown)}")
        self.w = w
        self.cfg = cfg
        self.pub = base.RawPublisher(w.nc, w.js, VENUE, flush_every, settings=w.settings.collector)
        self._conn_event = base.conn_events(self.pub, symbols=sorted(cfg.symbols))
        self.rest_lock = asyncio.Lock()
        self.exchange = ccxt.okx({"enableRateLimit": True})
        # ccxt builds every request from this URL: pointing it elsewhere (the emulator, a
        # proxy) keeps ccxt's rate limiting.
        self.exchange.urls["api"]["rest"] = cfg.rest_url.rstrip("/")
        self.args = subscription_args(cfg)
        self.link = base.Link(url=cfg.ws_url, backoff=base.Backoff(cfg.reconnect))

    # -- REST ----------------------------------------------------------------------------
    async def fetch_instruments(self) -> None:
        """One instruments body per instType (options per family), published untouched."""
        queries: dict[str, dict[str, str]] = {}
        for inst in self.cfg.symbols:
            kind = inst_type(inst)
            params = {"instType": kind}
            if kind == "OPTION":
                params["instFamily"] = "-".join(inst.split("-")[:2])
            queries[orjson.dumps(params).decode()] = params
        for params in queries.values():
            body, recv = await base.rest_body(
                self.exchange, self.rest_lock, VENUE, "instruments",
                self.exchange.public_get_public_instruments, params,
            )  # fmt: skip
            await self.pub.publish("instruments", "ALL", body, recv, "rest", durable=True)

    # -- resync --------------------------------------------------------------------------
    async def _on_ctl_snapshot(self, msg: Msg) -> None:
        """``ctl.snapshot.okx.<BTC-USDT-PERP>``: re-subscribe that book for a new snapshot."""
        symbol = msg.subject.split(".")[-1]
        try:
            native = to_native(symbol)
        except ValueError:  # outside the symbol scheme: not a book we collect
            native = ""
        if native not in self.cfg.symbols or "books" not in self.cfg.channels:
            await base.ctl_reply(msg, {"ok": False, "error": f"book not collected: {symbol}"})
            return
        arg = [{"channel": "books", "instId": native}]
        requests = [
            orjson.dumps({"op": op, "args": arg}).decode() for op in ("unsubscribe", "subscribe")
        ]
        await base.resubscribe(msg, self.link.ws, requests, {"ok": True, "instId": native})

    # -- WebSocket -----------------------------------------------------------------------
    async def _connection_loop(self) -> None:
        # ping_interval None: OKX wants its text "ping" (sent by the watchdog)
        await base.keep_connected(
            self.w, VENUE, self.link, self._session, self._conn_event,
            lambda: self.link.reconnects,
        )  # fmt: skip

    async def _session(self, ws: ClientConnection, link: base.Link) -> str:
        """Subscribe, then read frames until the connection ends; returns why it ended."""
        await self._conn_event(link, "connected")
        for i in range(0, len(self.args), ARGS_PER_REQUEST):
            chunk = self.args[i : i + ARGS_PER_REQUEST]
            await ws.send(orjson.dumps({"op": "subscribe", "args": chunk}).decode())
        self.link.ws = ws
        log.info("okx connected", extra={"conn": self.link.conn, "subscriptions": len(self.args)})
        publish = self.pub.publish
        nats_epoch = self.pub.nats_epoch
        epoch = nats_epoch()
        conn = self.link.conn
        self.link.last_frame = time.monotonic()
        watchdog = asyncio.create_task(self._watchdog(ws))
        try:
            while True:
                try:
                    frame = await ws.recv(decode=False)
                except websockets.ConnectionClosed as exc:
                    return self.link.ended[0] if self.link.ended else f"closed by venue: {exc}"
                recv_ns = time.time_ns()
                self.link.last_frame = time.monotonic()
                if isinstance(frame, str):
                    frame = frame.encode()
                channel, target = route(frame)
                await publish(channel, target, frame, recv_ns, conn)
                if channel == "control" and frame.startswith(b'{"event":"error"'):
                    log.warning(
                        "okx error event", extra={"frame": frame[:300].decode("utf-8", "replace")}
                    )
                if nats_epoch() != epoch:
                    return "nats reconnected: frames sent before it may be lost"
        finally:
            watchdog.cancel()

    async def _watchdog(self, ws: ClientConnection) -> None:
        """Sends ``ping`` after ping_interval_s of silence; closes the connection when
        stopping or when nothing (not even ``pong``) came for stale_after_s."""
        pinged = 0.0
        while True:
            if await self.w.sleep(0.25):
                self.link.ended.append("stopping")
                break
            now = time.monotonic()
            idle = now - self.link.last_frame
            if idle > self.cfg.stale_after_s:
                self.link.ended.append(f"stale: no frame for {self.cfg.stale_after_s}s")
                break
            if idle > self.cfg.ping_interval_s and now - pinged > self.cfg.ping_interval_s:
                pinged = now
                try:
                    await ws.send("ping")
                except Exception:  # closing: the reader reports why
                    break
        await ws.close()

    async def run(self) -> None:
        w = self.w
        # a pong at least every ping_interval_s while the connection lives
        fresh_s = 5.0 + self.cfg.ping_interval_s
        report = partial(base.report_link, w, self.pub, self.link, fresh_s)
        async with base.collector_running(
            w, VENUE, self._on_ctl_snapshot, report, [self.pub], self.exchange
        ):
            await base.instruments_first(
                w, self.cfg.reconnect, "okx instruments", self.fetch_instruments,
                self._connection_loop, INSTRUMENTS_REFRESH_S,
            )  # fmt: skip


async def run(w: Worker) -> None:
    """The collector body for ``streams.bus.runtime.run`` (or a test's in-process Worker)."""
    settings = w.settings.collector
    await OkxCollector(w, settings.okx, settings.flush_every).run()
