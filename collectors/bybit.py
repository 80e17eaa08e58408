"""Bybit v5 public WebSocket collector: one connection per category (spot/linear/inverse).

Settings (``collector.bybit``, a ``VenueSettings``):
- ``ws_url``: one category's endpoint, e.g. ``wss://stream.bybit.com/v5/public/linear``;
  the other categories' endpoints are its siblings (``.../spot``, ``.../inverse``).
- ``symbols``: native names; ``BTCUSDT`` is collected in every configured category,
  ``spot:BTCUSDT`` only in one.
- ``channels``: topic prefixes ``publicTrade``, ``orderbook.50`` (or ``.200``; ``.1`` is the
  BBO), ``tickers``, ``kline.1`` (any interval), ``allLiquidation`` (not on spot).
- ``options``: ``category`` (default ``linear``) or ``categories`` (``"spot,linear"``).

Raw venue tokens are ``bybit_<category>`` because ``BTCUSDT`` names both a spot pair and
a linear perpetual. Books come over the stream (a snapshot on subscribe, then deltas);
``ctl.snapshot.bybit.<symbol>`` re-subscribes the book topic, which makes Bybit push a
fresh snapshot. Keepalive is Bybit's application ping (``{"op":"ping"}``), not WS pings.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import ccxt.async_support as ccxt
import msgspec
import orjson
import websockets
from nats.aio.msg import Msg
from websockets.asyncio.client import ClientConnection

from collectors import base
from streams.bus.runtime import Worker
from streams.settings import VenueSettings

log = logging.getLogger("collectors.bybit")

VENUE = "bybit"
CATEGORIES = ("spot", "linear", "inverse")
CHANNELS = ("publicTrade", "orderbook", "tickers", "kline", "allLiquidation")
NOT_ON = {"spot": {"allLiquidation"}}  # channels a category does not have
# Bybit caps args per subscribe request (spot: 10); one limit for all keeps it simple.
MAX_ARGS_PER_REQUEST = 10
INSTRUMENTS_REFRESH_S = 3600.0
_TOPIC = b'{"topic":"'
_SYMBOL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


class _Probe(msgspec.Struct):
    """Just enough of a frame to route it when ``topic`` is not its first key."""

    topic: str = ""
    op: str = ""


_probe = msgspec.json.Decoder(_Probe)


def _from_topic(topic: str) -> tuple[str, str]:
    channel, _, rest = topic.partition(".")
    sym = rest.rpartition(".")[2]
    if channel in CHANNELS and sym and _SYMBOL_CHARS.issuperset(sym):
        return channel, sym
    return "unknown", "ALL"


def route(frame: bytes) -> tuple[str, str]:
    """(channel, native symbol) of a frame. Bybit writes ``topic`` first in data frames, so
    slicing it out of the bytes avoids a JSON parse per frame; other frames (acks, pongs:
    rare) get a tiny msgspec decode of two keys."""
    if frame.startswith(_TOPIC):
        end = frame.find(b'"', len(_TOPIC), len(_TOPIC) + 120)
        if end > 0:
            return _from_topic(frame[len(_TOPIC) : end].decode("ascii", "replace"))
    try:
        probe = _probe.decode(frame)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return "unknown", "ALL"
    if probe.topic:
        return _from_topic(probe.topic)
    if probe.op:
        return "control", "ALL"
    return "unknown", "ALL"


def _op(op: str, args: list[str] | None, req_id: str) -> str:
    """A request frame, as text (Bybit expects text frames, orjson gives bytes)."""
    body: dict[str, Any] = {"op": op, "req_id": req_id}
    if args is not None:
        body["args"] = args
    return orjson.dumps(body).decode()


def _option_categories(cfg: VenueSettings) -> list[str]:
    raw = cfg.options.get("categories") or cfg.options.get("category", "linear")
    return [c.strip() for c in raw.split(",") if c.strip()]


def categories(cfg: VenueSettings) -> list[str]:
    cats = _option_categories(cfg)
    # a ``spot:BTCUSDT`` entry names its category itself
    cats += sorted({e.split(":", 1)[0] for e in cfg.symbols if ":" in e} - set(cats))
    bad = sorted(set(cats) - set(CATEGORIES))
    if bad:
        raise ValueError(f"collector.bybit.options: unknown categories {bad}")
    return cats


def topics(cfg: VenueSettings, category: str) -> tuple[list[str], list[str]]:
    """(topics, natives) subscribed on one category's connection: ``spot:BTCUSDT`` entries
    only on theirs, plain ``BTCUSDT`` on every category of ``options``."""
    plain = _option_categories(cfg)
    natives = []
    for entry in cfg.symbols:
        cat, _, native = entry.rpartition(":")
        if cat == category or (not cat and category in plain):
            natives.append(native.upper())
    books = [ch for ch in cfg.channels if ch.startswith("orderbook.") and ch != "orderbook.1"]
    if len(books) > 1:  # two depths of one book would interleave two u sequences
        raise ValueError(f"collector.bybit.channels: one book depth only, got {books}")
    out = []
    for ch in cfg.channels:
        prefix = ch.split(".", 1)[0]
        if prefix not in CHANNELS:
            raise ValueError(f"collector.bybit.channels: unknown channel {ch!r}")
        if prefix in NOT_ON.get(category, ()):
            continue
        out += [f"{ch}.{n}" for n in natives]
    return out, natives


def category_url(ws_url: str, category: str) -> str:
    base = ws_url.rstrip("/")
    head, _, last = base.rpartition("/")
    if last in (*CATEGORIES, "option"):
        base = head
    return f"{base}/{category}"


def _symbol(info: dict[str, Any], category: str) -> str:
    """jetmarket symbol of an instruments-info entry (for ``ctl.snapshot`` lookups)."""
    base, quote = info.get("baseCoin", ""), info.get("quoteCoin", "")
    if category == "spot":
        return f"{base}-{quote}"
    if str(info.get("contractType", "")).endswith("Futures"):
        day = datetime.fromtimestamp(int(info["deliveryTime"]) / 1000, UTC).strftime("%Y%m%d")
        return f"{base}-{quote}-{day}"
    return f"{base}-{quote}-PERP"


@dataclass(kw_only=True)
class Connection(base.Link):
    """One category's WebSocket connection."""

    category: str
    topics: list[str]
    natives: list[str]
    pub: base.RawPublisher
    req_id: int = 0

    def next_id(self) -> str:
        self.req_id += 1
        return str(self.req_id)


class BybitCollector:
    def __init__(self, w: Worker, cfg: VenueSettings, flush_every: int) -> None:
        assert w.nc is not None and w.js is not None
        self.w = w
        self.cfg = cfg
        self.rest_lock = asyncio.Lock()
        self.exchange = ccxt.bybit({"enableRateLimit": True})
        # ccxt builds every public request from this URL; pointing it elsewhere swaps the
        # venue (the emulator, a proxy) without touching ccxt's rate limiting.
        self.exchange.urls["api"]["public"] = cfg.rest_url.rstrip("/")
        self.symbol_map: dict[str, tuple[str, str]] = {}  # BTC-USDT-PERP -> (linear, BTCUSDT)
        self.connections: list[Connection] = []
        for cat in categories(cfg):
            tps, natives = topics(cfg, cat)
            if not tps:
                continue
            pub = base.RawPublisher(
                w.nc, w.js, f"{VENUE}_{cat}", flush_every, settings=w.settings.collector
            )
            self.connections.append(
                Connection(category=cat, url=category_url(cfg.ws_url, cat), topics=tps,
                           natives=natives, pub=pub, backoff=base.Backoff(cfg.reconnect))
            )  # fmt: skip
        if not self.connections:
            raise ValueError("collector.bybit: no topic to subscribe")

    # -- REST ----------------------------------------------------------------------------
    async def fetch_instruments(self, c: Connection) -> None:
        """GET /v5/market/instruments-info for a category, every page published untouched."""
        cursor = ""
        while True:
            params: dict[str, Any] = {"category": c.category}
            if c.category != "spot":
                params["limit"] = 1000
            if cursor:
                params["cursor"] = cursor
            body, recv = await base.rest_body(
                self.exchange, self.rest_lock, VENUE, "instruments-info",
                self.exchange.public_get_v5_market_instruments_info, params,
            )  # fmt: skip
            result = orjson.loads(body).get("result") or {}
            for info in result.get("list", []):
                try:
                    self.symbol_map[_symbol(info, c.category)] = (c.category, info["symbol"])
                except (KeyError, ValueError, TypeError):
                    continue
            await c.pub.publish("instruments", "ALL", body, recv, "rest", durable=True)
            cursor = result.get("nextPageCursor") or ""
            if not cursor:
                return

    async def _instruments_once(self, c: Connection, backoff: base.Backoff) -> float:
        try:
            await self.fetch_instruments(c)
            backoff.reset()
            return INSTRUMENTS_REFRESH_S
        except Exception as exc:
            wait = backoff.next()
            log.warning(
                "bybit instruments-info failed, retrying",
                extra={"category": c.category, "error": str(exc)[:300], "retry_in_s": wait},
            )
            return wait

    async def _instruments_loop(self, c: Connection, backoff: base.Backoff, wait: float) -> None:
        while not await self.w.sleep(wait):
            wait = await self._instruments_once(c, backoff)

    async def _on_ctl_snapshot(self, msg: Msg) -> None:
        """``ctl.snapshot.bybit.<symbol>``: re-subscribe the book topic; Bybit answers a
        subscribe with a fresh snapshot, which flows like any other frame."""
        symbol = msg.subject.split(".")[-1]
        category, native = self.symbol_map.get(symbol) or _guess_native(symbol)
        c = next((c for c in self.connections if c.category == category), None)
        book = [t for t in (c.topics if c else []) if t.startswith("orderbook.")]
        book = [t for t in book if not t.startswith("orderbook.1.") and t.endswith("." + native)]
        if c is None or not book:
            await base.ctl_reply(msg, {"ok": False, "error": f"book not collected: {symbol}"})
            return
        requests = [_op(op, book, c.next_id()) for op in ("unsubscribe", "subscribe")]
        await base.resubscribe(
            msg, c.ws if c.connected else None, requests, {"ok": True, "topics": book}
        )

    # -- WebSocket -----------------------------------------------------------------------
    async def _conn_event(self, c: Connection, event: str, reason: str = "") -> None:
        await base.publish_conn_event(
            c.pub, c.conn, event, reason, category=c.category, topics=c.topics, symbols=c.natives
        )

    async def _connection_loop(self, c: Connection) -> None:
        # ping_interval None: Bybit wants its JSON ping; see _pinger
        await base.keep_connected(
            self.w, VENUE, c, self._session, self._conn_event, self._reconnects,
            conn_prefix=f"{VENUE}_{c.category}",
        )  # fmt: skip

    async def _session(self, ws: ClientConnection, c: Connection) -> str:
        """Subscribe, then read frames until the connection ends; returns why it ended."""
        await self._conn_event(c, "connected")
        log.info("bybit connected", extra={"conn": c.conn, "category": c.category})
        for i in range(0, len(c.topics), MAX_ARGS_PER_REQUEST):
            args = c.topics[i : i + MAX_ARGS_PER_REQUEST]
            await ws.send(_op("subscribe", args, c.next_id()))
        c.ws = ws
        publish = c.pub.publish
        nats_epoch = c.pub.nats_epoch
        epoch = nats_epoch()
        conn = c.conn
        c.last_frame = time.monotonic()
        helpers = [
            asyncio.create_task(self._watchdog(ws, c)),
            asyncio.create_task(self._pinger(ws)),
        ]
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
                channel, sym = route(frame)
                await publish(channel, sym, frame, recv_ns, conn)
                if nats_epoch() != epoch:
                    return "nats reconnected: frames sent before it may be lost"
        finally:
            for t in helpers:
                t.cancel()

    async def _pinger(self, ws: ClientConnection) -> None:
        """Bybit closes a connection that sends no ping for a while; its pong arrives as a
        frame (published on ``control``) and keeps the stale watchdog quiet."""
        n = 0
        while not await self.w.sleep(self.cfg.ping_interval_s):
            n += 1
            try:
                await ws.send(_op("ping", None, f"ping{n}"))
            except Exception:  # the session notices the closed connection
                return

    async def _watchdog(self, ws: ClientConnection, c: Connection) -> None:
        """Closes the connection when stopping or when the feed goes stale."""
        while True:
            if await self.w.sleep(0.25):
                c.ended.append("stopping")
                break
            if time.monotonic() - c.last_frame > self.cfg.stale_after_s:
                c.ended.append(f"stale: no frame for {self.cfg.stale_after_s}s")
                break
        await ws.close()

    def _reconnects(self) -> int:
        return sum(c.reconnects for c in self.connections)

    async def _report_loop(self) -> None:
        """Once a second: metrics, backoff reset and health for connections that flow."""
        while not await self.w.sleep(1.0):
            for c in self.connections:
                c.pub.flush_metrics()
            now = time.monotonic()
            flowing = [c for c in self.connections if c.connected and now - c.last_frame < 5.0]
            for c in flowing:
                assert c.backoff is not None
                c.backoff.reset()
            state, fields = base.health_of([c.pub for c in self.connections])
            if len(flowing) == len(self.connections) or state != "ok":
                self.w.health.set(
                    state,
                    frames=sum(c.pub.published for c in self.connections),
                    reconnects=self._reconnects(),
                    connections=len(self.connections),
                    unconfirmed=any(c.pub.unconfirmed for c in self.connections),
                    **fields,
                )

    async def run(self) -> None:
        w = self.w
        pubs = [c.pub for c in self.connections]
        async with base.collector_running(
            w, VENUE, self._on_ctl_snapshot, self._report_loop, pubs, self.exchange
        ):
            tasks = []
            # Instruments first, so the normalizer knows every contract before the first trade.
            for c in self.connections:
                backoff = base.Backoff(self.cfg.reconnect)
                wait = await self._instruments_once(c, backoff)
                tasks.append(asyncio.create_task(self._instruments_loop(c, backoff, wait)))
            tasks += [asyncio.create_task(self._connection_loop(c)) for c in self.connections]
            await asyncio.gather(*tasks)


def _guess_native(symbol: str) -> tuple[str, str]:
    """Before instruments arrived: spot ``BTC-USDT`` and perpetual ``BTC-USDT-PERP`` only."""
    parts = symbol.split("-")
    if len(parts) == 2:
        return "spot", parts[0] + parts[1]
    if len(parts) == 3 and parts[2] == "PERP":
        return ("inverse" if parts[1] == "USD" else "linear"), parts[0] + parts[1]
    return "", ""


async def run(w: Worker) -> None:
    """The collector body for ``streams.bus.runtime.run`` (or a test's in-process Worker)."""
    settings = w.settings.collector
    await BybitCollector(w, settings.bybit, settings.flush_every).run()
