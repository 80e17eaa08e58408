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

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import ccxt.async_support as ccxt
import msgspec
import orjson
from nats.aio.msg import Msg
from websockets.asyncio.client import ClientConnection

from collectors import base
from collectors.config import LimitsSettings, RateLimit, ReconnectSettings, copy_section
from streams.bus import budget
from streams.bus.runtime import Worker
from streams.settings import Section, SettingsError

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


def binance_limits(
    weight_per_min: int,
    orders: dict[str, tuple[int, float]],
    *,
    weights_by_limit: dict[str, list[list[int]]],
    messages_per_s: int,
    streams_per_connection: int,
    weights: dict[str, int] | None = None,
    positioning: Iterable[str] = (),
) -> LimitsSettings:
    """A Binance market's limits: every market has the same kinds, at its own numbers (cited
    where each market calls this): an IP weight budget per minute, which the venue reports in
    X-MBX-USED-WEIGHT-1M; order counts per account (``orders``: rule -> (orders, window s));
    429, then 418 bans; 300 connections per 5 min per IP. ``positioning``: the futures/data
    endpoints, which share 1000 requests per 5 min per IP (rule ``futuresData``)."""
    rules = [RateLimit(name="weight", capacity=weight_per_min, window_s=60.0)]
    rules += [
        RateLimit(name=name, capacity=n, window_s=window_s, scope="account",
                  applies=["POST order"], count="requests")
        for name, (n, window_s) in orders.items()
    ]  # fmt: skip
    if positioning:
        rules.append(RateLimit(name="futuresData", capacity=1000, window_s=300.0,
                               count="requests", applies=list(positioning)))  # fmt: skip
    return LimitsSettings(
        rules=rules, weights=weights or {}, weights_by_limit=weights_by_limit,
        used_headers={"X-MBX-USED-WEIGHT-1M": "weight"}, ban_statuses=[418, 429],
        ws={"connections_per_5min": 300, "messages_per_s": messages_per_s,
            "streams_per_connection": streams_per_connection},
    )  # fmt: skip


# Binance spot's limits (they change: these are defaults of [collector.binance.limits]).
# https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits
#   REQUEST_WEIGHT 6000 per minute per IP (X-MBX-USED-WEIGHT-1M tells the IP's use);
#   ORDERS 50 per 10 s and 160000 per day per account; RAW_REQUESTS 61000 per 5 min (never
#   binding under 6000 weight/min); 429 first, then 418 with Retry-After (2 min to 3 days).
# https://developers.binance.com/docs/binance-spot-api-docs/rest-api/market-data-endpoints
#   depth weight by limit: 1-100 -> 5, 101-500 -> 25, 501-1000 -> 50, 1001-5000 -> 250;
#   exchangeInfo 20, klines 2, aggTrades 4, trades/historicalTrades 25, ticker/24hr 2 (one).
# https://developers.binance.com/docs/binance-spot-api-docs/rest-api/trading-endpoints
#   POST/DELETE order 1, GET order 4, openOrders 6 (one symbol), myTrades 20, account 20.
# https://developers.binance.com/docs/binance-spot-api-docs/websocket-api/rate-limits and
# .../web-socket-streams: 300 connections per 5 min per IP, 5 incoming messages per s,
#   1024 streams per connection.
LIMITS = binance_limits(
    6000, {"orders10s": (50, 10.0), "ordersday": (160_000, 86_400.0)},
    weights={"exchangeInfo": 20, "klines": 2, "aggTrades": 4, "trades": 25,
             "historicalTrades": 25, "ticker/24hr": 2, "GET order": 4, "openOrders": 6,
             "myTrades": 20, "account": 20, "allOrders": 20},
    weights_by_limit={"depth": [[100, 5], [500, 25], [1000, 50], [5000, 250]]},
    messages_per_s=5, streams_per_connection=1024,
)  # fmt: skip


class BinanceSettings(Section):
    """``[collector.binance]``: the spot venue (combined streams; depth via REST snapshot)."""

    ws_url: str = "wss://stream.binance.com:9443"
    rest_url: str = "https://api.binance.com"
    symbols: list[str] = msgspec.field(default_factory=lambda: ["BTCUSDT", "ETHUSDT"])
    channels: list[str] = msgspec.field(default_factory=lambda: ["trade", "depth"])
    depth_interval_ms: Literal[100, 1000] = 100
    snapshot_limit: int = 1000
    ping_interval_s: float = 20.0
    # Binance drops every connection after 24 h; we roll over a little earlier.
    max_connection_s: float = 23.5 * 3600
    stale_after_s: float = 60.0
    reconnect: ReconnectSettings = msgspec.field(default_factory=ReconnectSettings)
    limits: LimitsSettings = msgspec.field(default_factory=lambda: copy_section(LIMITS))

    KNOWN_CHANNELS = frozenset(CHANNELS)  # a class constant, not a setting

    def _check(self, prefix: str) -> None:
        if not self.symbols:
            raise SettingsError(f"{prefix}.symbols must not be empty")
        unknown = set(self.channels) - self.KNOWN_CHANNELS
        if unknown:
            raise SettingsError(f"{prefix}.channels has unknown channels {sorted(unknown)}")


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
    """(channel, SYMBOL) of a combined-stream frame: Binance always writes
    ``{"stream":"...","data":...}`` in that order, so the name is sliced out of the bytes."""
    stream = base.leading_string(frame, _PREFIX, 200)
    if stream is not None:
        sym, _, kind = stream.partition("@")
        first = kind.split("@", 1)[0]
        channel = "kline" if first.startswith("kline_") else first
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
    need_snapshot: set[str] = field(default_factory=set)  # depth seen, no snapshot yet


class BinanceCollector(base.Collector):
    """Spot; ``collectors/binanceusdm.py`` subclasses it for USDⓈ-M futures, which speak
    the same protocol on other hosts, REST paths and a few more channels."""

    venue = VENUE  # the raw subject's venue token (ccxt's exchange id)
    settings_class = BinanceSettings
    ctl_venue = VENUE  # spot and USDⓈ-M share ctl.snapshot.binance.* (see owns())
    channels = CHANNELS
    ccxt_class = ccxt.binance
    api = ("public", "/api/v3")
    instruments = "background"
    instruments_what = "exchangeInfo"
    ws_pings = True
    watch = frozenset({"depth"})  # the first depth event of a symbol asks for its snapshot

    def __init__(self, w: Worker, cfg: BinanceSettings, flush_every: int) -> None:
        self.symbol_map: dict[str, str] = {}  # BTC-USDT -> BTCUSDT, from exchangeInfo
        super().__init__(w, cfg, flush_every)

    def make_links(self) -> list[base.Link]:
        pub = self.publisher()
        depth = "depth" in self.cfg.channels
        return [
            Connection(url=u, streams=s, backoff=base.Backoff(self.cfg.reconnect), pub=pub,
                       events={"streams": s, "symbols": _symbols_of(s)}, info={"streams": len(s)},
                       depth_symbols=set(_symbols_of(s)) if depth else set())
            for u, s in self.urls()
        ]  # fmt: skip

    @property
    def pub(self) -> base.RawPublisher:
        return self.pubs[0]

    def route(self, frame: bytes) -> tuple[str, str]:
        return route(frame, self.channels)

    # -- REST ----------------------------------------------------------------------------
    def _conn_for(self, native: str) -> str:
        for c in self.links:
            if native in c.depth_symbols and c.conn:  # type: ignore[attr-defined]
                return c.conn
        return "rest"

    def public(self, endpoint: str) -> Any:
        """ccxt's call of a public REST endpoint of this market (``depth``, ``exchangeinfo``,
        ``openinterest``): the same path on each market's API, named after ``api``
        (``public_get_depth``, ``fapipublic_get_depth``, ``dapipublic_get_depth``)."""
        return getattr(self.exchange, f"{self.api[0].lower()}_get_{endpoint}")

    def owns(self, symbol: str) -> bool:
        """Whether ``ctl.snapshot.binance.<symbol>`` is this collector's: spot and USDⓈ-M
        books share the venue name ``binance`` and are told apart by the symbol."""
        return symbol.count("-") == 1

    async def fetch_snapshot(self, native: str) -> int:
        """GET <api>/depth, published untouched; returns its lastUpdateId."""
        with budget.priority(budget.RESYNC):  # a book waits on it: before polls/backfill
            body, recv = await self.rest(
                "depth", self.public("depth"), {"symbol": native, "limit": self.cfg.snapshot_limit}
            )
        last = int(orjson.loads(body)["lastUpdateId"])
        await self.pub.publish(
            "snapshot", native, body, recv, self._conn_for(native),
            msg_id=f"{self.venue}:snapshot:{native}:{last}", durable=True,
        )  # fmt: skip
        return last

    async def fetch_instruments(self) -> None:
        """GET <api>/exchangeInfo, published untouched; refreshes the symbol map."""
        params = {}
        if len(self.cfg.symbols) <= MAX_INFO_SYMBOLS:
            params["symbols"] = orjson.dumps(self.cfg.symbols).decode()
        body, recv = await self.rest("exchangeInfo", self.public("exchangeinfo"), params)
        for s in orjson.loads(body).get("symbols", []):
            self.symbol_map[f"{s['baseAsset']}-{s['quoteAsset']}"] = s["symbol"]
        await self.pub.publish("instruments", "ALL", body, recv, "rest", durable=True)

    async def on_ctl_snapshot(self, msg: Msg) -> None:
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

    async def subscribe(self, ws: ClientConnection, link: base.Link) -> None:
        """Nothing to send (the streams are in the URL); every book needs a snapshot."""
        assert isinstance(link, Connection)
        link.need_snapshot = set(link.depth_symbols)
        if not link.need_snapshot:
            link.watch.discard("depth")

    async def on_frame(
        self, ws: ClientConnection, link: base.Link, channel: str, symbol: str, frame: bytes
    ) -> None:
        """Binance's book sync: buffer events first, then take the snapshot."""
        need = link.need_snapshot  # type: ignore[attr-defined]
        if symbol in need:
            need.discard(symbol)
            self.in_background(self._snapshot_quietly(symbol))
            if not need:
                link.watch.discard("depth")

    def stale(self, link: base.Link, now: float, opened: float) -> str | None:
        """Stale, or Binance's 24-hour cut coming: roll over a little before it."""
        why = super().stale(link, now, opened)
        if why is None and now - opened > self.cfg.max_connection_s:
            return "rollover: connection age limit"
        return why

    async def _snapshot_quietly(self, native: str) -> None:
        try:
            await self.fetch_snapshot(native)
        except Exception as exc:
            log.warning(
                f"{self.venue} snapshot failed", extra={"symbol": native, "error": str(exc)}
            )


run = BinanceCollector.main  # the collector body for streams.bus.runtime.run
