"""Coinbase Advanced Trade public collector: one WebSocket, unauthenticated, REST products.

CHANNELS (setting name = subscription channel -> raw subject):
  level2, market_trades, ticker, candles   raw.coinbase.<channel>.<product_id>
      (level2 messages say ``"channel":"l2_data"`` on the wire; filed under level2)
  heartbeats (always subscribed)           raw.coinbase.heartbeats.ALL
  (REST) GET /api/v3/brokerage/market/products?product_type=SPOT&product_ids=..
                                           raw.coinbase.instruments.ALL
  (ours)  connection events                raw.coinbase.conn.ALL
  (venue) subscriptions acks, errors       raw.coinbase.control.ALL
  (venue) anything unroutable              raw.coinbase.unknown.ALL
Frames are published byte for byte and *all* of them go to RAW: ``sequence_num`` counts
every message of the connection, so the normalizer needs heartbeats and acks too to
prove nothing was lost (see orderbook/venues/coinbase.py).

Venue rules honoured: one channel per subscribe message, product ids chunked
(``PRODUCTS_PER_REQUEST``) and requests paced under ``MAX_MSGS_PER_S``; Coinbase closes
channels that send nothing for 60-90 s, so ``heartbeats`` (one message a second) is
always subscribed, which also feeds stale detection. Each subscribed channel has its own
stale timer (``stale_after_s``, or ``options["stale_after_s.<channel>"]`` for a quiet
one such as market_trades on an illiquid product); a silent channel ends the connection
(a ``disconnected`` event with reason ``stale: ...``) and we reconnect with backoff. A
resync (``ctl.snapshot.coinbase.<symbol>``) is an unsubscribe + subscribe of that
product's level2, whose fresh snapshot comes through the stream. REST goes through ccxt
and its rate limiter (one ccxt instance per collector, so one limiter for the venue).
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial

import ccxt.async_support as ccxt
import msgspec
import orjson
import websockets
from nats.aio.msg import Msg
from websockets.asyncio.client import ClientConnection

from collectors import base
from streams.bus.runtime import Worker
from streams.settings import VenueSettings

log = logging.getLogger("collectors.coinbase")

VENUE = "coinbase"
DATA_CHANNELS = ("level2", "market_trades", "ticker", "candles")
WIRE_TO_CHANNEL = {"l2_data": "level2", "market_trades": "market_trades", "ticker": "ticker",
                   "candles": "candles", "heartbeats": "heartbeats",
                   "subscriptions": "control"}  # fmt: skip
PRODUCTS_PER_REQUEST = 100
MAX_MSGS_PER_S = 8.0  # client messages per second we allow ourselves on one connection
INSTRUMENTS_REFRESH_S = 3600.0
_CHANNEL = b'{"channel":"'
_PRODUCT = b'"product_id":"'
_SYMBOL_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


class _Probe(msgspec.Struct):
    channel: str = ""
    type: str = ""


_probe = msgspec.json.Decoder(_Probe)


def route(frame: bytes) -> tuple[str, str]:
    """(channel, product id) of a frame by slicing bytes: Coinbase writes ``channel``
    first and a data message holds one product, whose first ``product_id`` names it (the
    normalizer reads every event's own product). Others get a two-key decode."""
    if frame.startswith(_CHANNEL):
        end = frame.find(b'"', len(_CHANNEL), 64)
        channel = WIRE_TO_CHANNEL.get(frame[len(_CHANNEL) : end].decode("ascii", "replace"))
    else:
        try:
            p = _probe.decode(frame)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return "unknown", "ALL"
        if p.type == "error":
            return "control", "ALL"
        channel = WIRE_TO_CHANNEL.get(p.channel)
    if channel is None:
        return "unknown", "ALL"
    if channel in ("heartbeats", "control"):
        return channel, "ALL"
    start = frame.find(_PRODUCT)
    if start < 0:
        return channel, "ALL"  # no product in it (an empty trades snapshot)
    start += len(_PRODUCT)
    end = frame.find(b'"', start, start + 40)
    product = frame[start:end]
    if end < 0 or not product or not _SYMBOL_CHARS.issuperset(product):
        return "unknown", "ALL"
    return channel, product.decode()


def subscribe_messages(cfg: VenueSettings, kind: str = "subscribe") -> list[str]:
    """Heartbeats first, then one message per channel and chunk of products."""
    out = [orjson.dumps({"type": kind, "channel": "heartbeats"}).decode()]
    for ch in cfg.channels:
        for i in range(0, len(cfg.symbols), PRODUCTS_PER_REQUEST):
            chunk = cfg.symbols[i : i + PRODUCTS_PER_REQUEST]
            out.append(orjson.dumps({"type": kind, "product_ids": chunk, "channel": ch}).decode())
    return out


def stale_limits(cfg: VenueSettings) -> dict[str, float]:
    """Seconds of silence allowed per subscribed channel (heartbeats included)."""
    limits = {ch: cfg.stale_after_s for ch in (*cfg.channels, "heartbeats")}
    for ch in limits:
        override = cfg.options.get(f"stale_after_s.{ch}")
        if override:
            limits[ch] = float(override)
    return limits


class CoinbaseCollector:
    def __init__(self, w: Worker, cfg: VenueSettings, flush_every: int) -> None:
        assert w.nc is not None and w.js is not None
        unknown = set(cfg.channels) - set(DATA_CHANNELS)
        if unknown:
            raise ValueError(f"collector.coinbase.channels: unknown channels {sorted(unknown)}")
        self.w = w
        self.cfg = cfg
        self.pub = base.RawPublisher(w.nc, w.js, VENUE, flush_every, settings=w.settings.collector)
        self._conn_event = base.conn_events(self.pub, symbols=sorted(cfg.symbols))
        self.rest_lock = asyncio.Lock()
        self.exchange = ccxt.coinbase({"enableRateLimit": True})
        # ccxt builds every request from this URL: pointing it at the emulator (or a proxy)
        # keeps ccxt's rate limiter in front of every REST call.
        self.exchange.urls["api"]["rest"] = cfg.rest_url.rstrip("/")
        self.requests = subscribe_messages(cfg)
        self.limits = stale_limits(cfg)
        self.last: dict[str, float] = {}
        self.link = base.Link(url=cfg.ws_url, backoff=base.Backoff(cfg.reconnect))

    # -- REST ----------------------------------------------------------------------------
    async def fetch_instruments(self) -> None:
        params = {"product_type": "SPOT", "product_ids": list(self.cfg.symbols)}
        body, recv = await base.rest_body(
            self.exchange, self.rest_lock, VENUE, "products",
            self.exchange.v3PublicGetBrokerageMarketProducts, params,
        )  # fmt: skip
        await self.pub.publish("instruments", "ALL", body, recv, "rest", durable=True)

    # -- resync --------------------------------------------------------------------------
    async def _on_ctl_snapshot(self, msg: Msg) -> None:
        """``ctl.snapshot.coinbase.<BTC-USD>``: re-subscribe that product's level2."""
        product = msg.subject.split(".")[-1]  # spot symbols are Coinbase's product ids
        if product not in self.cfg.symbols or "level2" not in self.cfg.channels:
            await base.ctl_reply(msg, {"ok": False, "error": f"book not collected: {product}"})
            return
        requests = [
            orjson.dumps({"type": kind, "product_ids": [product], "channel": "level2"}).decode()
            for kind in ("unsubscribe", "subscribe")
        ]
        await base.resubscribe(msg, self.link.ws, requests, {"ok": True, "product_id": product})

    # -- WebSocket -----------------------------------------------------------------------
    async def _session(self, ws: ClientConnection, link: base.Link) -> str:
        """Subscribe, then read frames until the connection ends; returns why it ended."""
        await self._conn_event(link, "connected")
        start = time.monotonic()
        self.last = dict.fromkeys(self.limits, start)
        watchdog = asyncio.create_task(self._watchdog(ws))
        try:
            for i, req in enumerate(self.requests):
                if i:
                    await asyncio.sleep(1.0 / MAX_MSGS_PER_S)
                await ws.send(req)
            link.ws = ws
            log.info(
                "coinbase connected", extra={"conn": link.conn, "requests": len(self.requests)}
            )
            return await self._read(ws, link)
        except websockets.ConnectionClosed as exc:
            return link.ended[0] if link.ended else f"closed by venue: {exc}"
        finally:
            watchdog.cancel()

    async def _read(self, ws: ClientConnection, link: base.Link) -> str:
        publish = self.pub.publish
        nats_epoch = self.pub.nats_epoch
        epoch = nats_epoch()
        conn = link.conn
        last = self.last
        while True:
            try:
                frame = await ws.recv(decode=False)
            except websockets.ConnectionClosed as exc:
                return link.ended[0] if link.ended else f"closed by venue: {exc}"
            recv_ns = time.time_ns()
            now = time.monotonic()
            link.last_frame = now
            if isinstance(frame, str):
                frame = frame.encode()
            channel, target = route(frame)
            last[channel] = now
            await publish(channel, target, frame, recv_ns, conn)
            if channel == "control" and frame.startswith(b'{"type":"error"'):
                log.warning(
                    "coinbase error", extra={"frame": frame[:300].decode("utf-8", "replace")}
                )
            if nats_epoch() != epoch:
                return "nats reconnected: frames sent before it may be lost"

    def stale_channel(self, now: float) -> str | None:
        """The first subscribed channel silent for longer than its limit."""
        for ch, limit in self.limits.items():
            if now - self.last.get(ch, now) > limit:
                return ch
        return None

    async def _watchdog(self, ws: ClientConnection) -> None:
        """Closes the connection when stopping or when a channel went silent."""
        while True:
            if await self.w.sleep(0.25):
                self.link.ended.append("stopping")
                break
            ch = self.stale_channel(time.monotonic())
            if ch is not None:
                self.link.ended.append(f"stale: no {ch} frame for {self.limits[ch]}s")
                break
        await ws.close()

    async def run(self) -> None:
        w = self.w
        # heartbeats come every second
        report = partial(base.report_link, w, self.pub, self.link, 5.0)
        async with base.collector_running(
            w, VENUE, self._on_ctl_snapshot, report, [self.pub], self.exchange
        ):
            await base.instruments_first(
                w, self.cfg.reconnect, "coinbase products", self.fetch_instruments,
                self._connection_loop, INSTRUMENTS_REFRESH_S,
            )  # fmt: skip

    async def _connection_loop(self) -> None:
        # WebSocket pings too: Coinbase answers them, and a dead TCP path is found even on
        # a quiet connection
        await base.keep_connected(
            self.w, VENUE, self.link, self._session, self._conn_event,
            lambda: self.link.reconnects, ping_interval=self.cfg.ping_interval_s,
        )  # fmt: skip


async def run(w: Worker) -> None:
    """The collector body for ``streams.bus.runtime.run`` (or a test's in-process Worker)."""
    settings = w.settings.collector
    await CoinbaseCollector(w, settings.coinbase, settings.flush_every).run()
