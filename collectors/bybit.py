"""Bybit v5 public WebSocket collector: one connection per category
(spot/linear/inverse/option).

Settings (``collector.bybit``, a ``VenueSettings``):
- ``ws_url``: one category's endpoint, e.g. ``wss://stream.bybit.com/v5/public/linear``;
  the other categories' endpoints are its siblings (``.../spot``, ``.../inverse``).
- ``symbols``: native names; ``BTCUSDT`` is collected in every configured category,
  ``spot:BTCUSDT`` only in one.
- ``channels``: topic prefixes ``publicTrade``, ``orderbook.50`` (or ``.200``; ``.1`` is the
  BBO), ``tickers``, ``kline.1`` (any interval), ``allLiquidation`` (not on spot).
  The ``option`` category (symbols ``option:BTC-27DEC25-100000-C``) takes trades per base
  coin (``publicTrade.BTC``), books at depth 25 or 100 (the nearest to the one asked),
  tickers (with IVs and greeks); no klines, liquidations or ``orderbook.1``.
- ``options``: ``category`` (default ``linear``) or ``categories`` (``"spot,linear"``).
- channel ``positioning`` (REST, collectors/positioning.py; linear and inverse): the global
  long/short account ratio (``/v5/market/account-ratio``, raw ``account_ratio-<period>``) and,
  on linear, open interest history (``/v5/market/open-interest``, raw
  ``open_interest_hist-<period>``), cursor in RAW, backfilled; options
  ``positioning_period`` (5m, 15m, 30m, 1h, 4h, 1d; default 5m), ``positioning_interval_s``
  (default 60), ``positioning_backfill_days`` (default 30). ``positioning`` may be the only
  channel (no WebSocket then); inverse symbols are named from the category's instruments,
  which are fetched for the categories with a WebSocket channel, so give inverse one.

Raw venue tokens are ``bybit_<category>`` because ``BTCUSDT`` names both a spot pair and
a linear perpetual. Books come over the stream (a snapshot on subscribe, then deltas);
``ctl.snapshot.bybit.<symbol>`` re-subscribes the book topic, which makes Bybit push a
fresh snapshot. Keepalive is Bybit's application ping (``{"op":"ping"}``), not WS pings.
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import ccxt.async_support as ccxt
import msgspec
import orjson
from websockets.asyncio.client import ClientConnection

from collectors import base, config
from collectors.config import VenueSettings
from collectors.positioning import options_period, options_schedule, poll_history
from streams.bus.runtime import Worker
from streams.symbols import bybit as bybit_symbols

VENUE = "bybit"
# ``[collector.bybit]``: Bybit v5 public; ``channels`` are CHANNELS keys (below)
# Bybit limits (defaults of [collector.bybit.limits]):
# https://bybit-exchange.github.io/docs/v5/rate-limit : HTTP 600 requests per 5 s per IP;
#   over it "403 access too frequently" and the IP is banned for at least 10 minutes;
#   API-key limits (X-Bapi-Limit-Status headers) per endpoint, e.g. create order 10/s.
#   WebSocket: 500 connections per 5 minutes per IP.
LIMITS = config.LimitsSettings(
    rules=[config.RateLimit(name="ip", capacity=600, window_s=5.0, sliding=True),
           config.RateLimit(name="order", capacity=10, window_s=1.0, scope="account",
                            applies=["v5/order/create"])],
    ban_statuses=[403, 429],
    default_ban_s=600.0,
    ws={"connections_per_5min": 500},
)  # fmt: skip

CATEGORIES = ("spot", "linear", "inverse", "option")
CHANNELS = ("publicTrade", "orderbook", "tickers", "kline", "allLiquidation", "positioning")
# positioning periods (ours -> Bybit's ``period``/``intervalTime``) and page sizes
# https://bybit-exchange.github.io/docs/v5/market/long-short-ratio (limit <= 500) and
# .../v5/market/open-interest (limit <= 200); both take startTime/endTime (ms)
BYBIT_PERIODS = {"5m": "5min", "15m": "15min", "30m": "30min", "1h": "1h", "4h": "4h", "1d": "1d"}
POSITIONING = {  # raw endpoint name -> (ccxt method, Bybit's period parameter, page size)
    "account_ratio": ("public_get_v5_market_account_ratio", "period", 500),
    "open_interest_hist": ("public_get_v5_market_open_interest", "intervalTime", 200),
}

# ``[collector.bybit]``: its defaults; ``channels`` must be some of CHANNELS
BybitSettings = config.venue_section("BybitSettings",
    ws_url="wss://stream.bybit.com/v5/public/linear", rest_url="https://api.bybit.com",
    symbols=["BTCUSDT"], channels=["publicTrade", "orderbook.50", "tickers"],
    limits=LIMITS, known_channels=CHANNELS)  # fmt: skip

# channels a category does not have (options: no klines, no liquidations)
NOT_ON = {"spot": {"allLiquidation"}, "option": {"allLiquidation", "kline"}}
OPTION_DEPTHS = (25, 100)  # option books: orderbook.25 / orderbook.100 only
# Bybit caps args per subscribe request (spot: 10); one limit for all keeps it simple.
MAX_ARGS_PER_REQUEST = 10
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


def _from_probe(probe: _Probe) -> tuple[str, str]:
    if probe.topic:
        return _from_topic(probe.topic)
    if probe.op:
        return "control", "ALL"
    return "unknown", "ALL"


# (channel, native symbol) of a frame. Bybit writes ``topic`` first in data frames, so
# slicing it out of the bytes avoids a JSON parse per frame; other frames (acks, pongs:
# rare) get a tiny msgspec decode of two keys.
route = base.key_router(_TOPIC, _from_topic, _probe, _from_probe)


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
        if prefix == "positioning":
            continue  # REST
        if prefix not in CHANNELS:
            raise ValueError(f"collector.bybit.channels: unknown channel {ch!r}")
        if prefix in NOT_ON.get(category, ()):
            continue
        if category == "option":
            out += _option_topics(ch, prefix, natives)
            continue
        out += [f"{ch}.{n}" for n in natives]
    return out, natives


def _option_topics(ch: str, prefix: str, natives: list[str]) -> list[str]:
    """Option topics: trades per base coin (``publicTrade.BTC``), books at the nearest
    depth options have (no ``orderbook.1``: an option's BBO comes with its ticker)."""
    if prefix == "publicTrade":
        return [f"publicTrade.{c}" for c in dict.fromkeys(n.split("-", 1)[0] for n in natives)]
    if prefix == "orderbook":
        depth = int(ch.split(".")[1]) if ch.count(".") == 1 and ch[10:].isdigit() else 0
        if depth == 1:
            return []
        depth = next((d for d in OPTION_DEPTHS if depth <= d), OPTION_DEPTHS[-1])
        return [f"orderbook.{depth}.{n}" for n in natives]
    return [f"{ch}.{n}" for n in natives]


def category_url(ws_url: str, category: str) -> str:
    base = ws_url.rstrip("/")
    head, _, last = base.rpartition("/")
    if last in (*CATEGORIES, "option"):
        base = head
    return f"{base}/{category}"


def _symbol(info: dict[str, Any], category: str) -> str:
    """jetmarket symbol of an instruments-info entry (for ``ctl.snapshot`` lookups)."""
    base, quote = info.get("baseCoin", ""), info.get("quoteCoin", "")
    if category == "option":
        return bybit_symbols.option(info["symbol"])
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
    req_id: int = 0
    pings: int = 0

    def next_id(self) -> str:
        self.req_id += 1
        return str(self.req_id)


class BybitCollector(base.Collector):
    venue = VENUE
    settings_class = BybitSettings
    ccxt_class = ccxt.bybit
    api = ("public", "")
    instruments = "once"  # each category's first try before connecting, then refreshed
    instruments_what = "instruments-info"
    ping_idle_only = False  # Bybit wants its JSON ping every ping_interval_s

    def __init__(self, w: Worker, cfg: VenueSettings, flush_every: int) -> None:
        self.symbol_map: dict[str, tuple[str, str]] = {}  # BTC-USDT-PERP -> (linear, BTCUSDT)
        super().__init__(w, cfg, flush_every)

    def make_links(self) -> list[base.Link]:
        """One connection per category, each with its own publisher (venue token
        ``bybit_<category>``)."""
        links: list[base.Link] = []
        for cat in categories(self.cfg):
            tps, natives = topics(self.cfg, cat)
            if not tps:
                continue
            links.append(
                Connection(category=cat, url=category_url(self.cfg.ws_url, cat), topics=tps,
                           natives=natives, pub=self.publisher(f"{VENUE}_{cat}"),
                           backoff=base.Backoff(self.cfg.reconnect), prefix=f"{VENUE}_{cat}",
                           events={"category": cat, "topics": tps, "symbols": natives},
                           info={"category": cat})
            )  # fmt: skip
        if not links and "positioning" not in self.cfg.channels:
            raise ValueError("collector.bybit: no topic to subscribe")
        return links  # none: REST positioning only

    route = staticmethod(route)

    def extra_loops(self) -> list[Coroutine[Any, Any, None]]:
        period = options_period(self.cfg, VENUE, BYBIT_PERIODS)
        if period is None:
            return []
        loops = []
        for cat in categories(self.cfg):
            for native in topics(self.cfg, cat)[1] if cat in ("linear", "inverse") else []:
                for ep in POSITIONING:
                    # inverse open interest is in USD: no base units without a price
                    if ep == "open_interest_hist" and cat != "linear":
                        continue
                    loops.append(self._positioning_loop(cat, ep, native, period))
        return loops

    async def _positioning_loop(self, category: str, ep: str, native: str, period: str) -> None:
        method, key, limit = POSITIONING[ep]
        call = getattr(self.exchange, method)
        path = "v5/market/account-ratio" if ep == "account_ratio" else "v5/market/open-interest"

        async def fetch(start: int, end: int) -> tuple[bytes, int]:
            return await self.rest(path, call, {
                "category": category, "symbol": native, key: BYBIT_PERIODS[period],
                "startTime": start, "endTime": end, "limit": limit,
            })  # fmt: skip

        def times(body: bytes) -> list[int]:
            reply = orjson.loads(body)
            if reply.get("retCode") != 0:
                raise RuntimeError(f"retCode {reply.get('retCode')}: {reply.get('retMsg')}")
            return [int(r["timestamp"]) for r in reply["result"]["list"]]

        await poll_history(
            self.w, f"{VENUE}_{category}", ep, native, period, fetch, times, limit=limit,
            **options_schedule(self.cfg),
        )  # fmt: skip

    def ping_text(self, link: base.Link) -> str:
        assert isinstance(link, Connection)
        link.pings += 1
        return _op("ping", None, f"ping{link.pings}")

    # -- REST ----------------------------------------------------------------------------
    async def fetch_instruments(self) -> None:
        """Every category's instruments; one failing does not keep the others back."""
        failed: Exception | None = None
        for c in self.links:
            assert isinstance(c, Connection)
            try:
                await self.fetch_category(c)
            except Exception as exc:
                failed = failed or exc
        if failed is not None:
            raise failed

    async def fetch_category(self, c: Connection) -> None:
        """GET /v5/market/instruments-info for a category, every page published untouched."""
        cursor = ""
        while True:
            params: dict[str, Any] = {"category": c.category}
            if c.category != "spot":
                params["limit"] = 1000
            if cursor:
                params["cursor"] = cursor
            body, recv = await self.rest(
                "instruments-info", self.exchange.public_get_v5_market_instruments_info, params
            )
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

    # -- WebSocket -----------------------------------------------------------------------
    def resync(self, symbol: str) -> tuple[base.Link, list[str], dict[str, Any]] | str:
        """``ctl.snapshot.bybit.<symbol>``: re-subscribe the book topic; Bybit answers a
        subscribe with a fresh snapshot, which flows like any other frame."""
        category, native = self.symbol_map.get(symbol) or _guess_native(symbol)
        c = next((c for c in self.links if c.category == category), None)  # type: ignore[attr-defined]
        assert c is None or isinstance(c, Connection)
        book = [t for t in (c.topics if c else []) if t.startswith("orderbook.")]
        book = [t for t in book if not t.startswith("orderbook.1.") and t.endswith("." + native)]
        if c is None or not book:
            return f"book not collected: {symbol}"
        requests = [_op(op, book, c.next_id()) for op in ("unsubscribe", "subscribe")]
        return c, requests, {"ok": True, "topics": book}

    async def subscribe(self, ws: ClientConnection, link: base.Link) -> None:
        assert isinstance(link, Connection)
        for i in range(0, len(link.topics), MAX_ARGS_PER_REQUEST):
            args = link.topics[i : i + MAX_ARGS_PER_REQUEST]
            await ws.send(_op("subscribe", args, link.next_id()))


def _guess_native(symbol: str) -> tuple[str, str]:
    """Before instruments arrived: spot ``BTC-USDT`` and perpetual ``BTC-USDT-PERP`` only."""
    parts = symbol.split("-")
    if len(parts) == 2:
        return "spot", parts[0] + parts[1]
    if len(parts) == 3 and parts[2] == "PERP":
        return ("inverse" if parts[1] == "USD" else "linear"), parts[0] + parts[1]
    return "", ""


run = BybitCollector.main  # the collector body for streams.bus.runtime.run
