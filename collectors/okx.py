"""OKX v5 public collector: one WebSocket, explicit subscribe, REST instruments via ccxt.

CHANNELS (setting name = OKX channel -> subscription arg -> raw subject):
  trades, books, bbo-tbt, tickers, candle1m   {"channel", "instId"}  raw.okx.<channel>.<instId>
  funding-rate (SWAP only), open-interest, mark-price (derivatives only)     same shape
  index-tickers    {"channel", "instId": "<BASE-QUOTE>" index}   raw.okx.index-tickers.BTC-USDT
  liquidation-orders {"channel", "instType": "SWAP"|"FUTURES"}   raw.okx.liquidation-orders.SWAP
  opt-summary (options) {"channel", "instFamily": "BTC-USD"}    raw.okx.opt-summary.BTC-USD
  (REST)   GET /api/v5/public/instruments?instType=...   raw.okx.instruments.ALL (one per type)
  positioning (REST, SWAP/FUTURES; collectors/positioning.py, cursor in RAW, backfilled):
           GET /api/v5/rubik/stat/contracts/long-short-account-ratio-contract[-top-trader],
           .../long-short-position-ratio-contract-top-trader, .../open-interest-history,
           /api/v5/rubik/stat/taker-volume-contract (unit=0: coin)
                                         raw.okx.<endpoint>-<period>.<instId>
           options ``positioning_period`` (5m, 15m, 30m, 1h, 2h, 4h, 6h, 12h, 1d; default 5m),
           ``positioning_interval_s`` (60), ``positioning_backfill_days`` (30)
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

from collections.abc import Coroutine
from typing import Any

import ccxt.async_support as ccxt
import orjson
from websockets.asyncio.client import ClientConnection

from collectors import base, config
from collectors.config import VenueSettings
from collectors.positioning import options_period, options_schedule, poll_history
from streams import subjects
from streams.symbols.okx import inst_type, to_native

VENUE = "okx"
# ``[collector.okx]``: OKX v5 public; ``channels`` are CHANNELS keys (below)
# OKX limits per endpoint (defaults of [collector.okx.limits]):
# https://www.okx.com/docs-v5/en/#overview-rate-limits and each endpoint's "Rate Limit" line:
#   GET /api/v5/public/instruments 20 requests per 2 s (IP + instType); GET
#   /api/v5/market/books 40 per 2 s (IP); POST /api/v5/trade/order 60 per 2 s (user ID +
#   instrument); over it HTTP 429 with code 50011. Counted as sliding (half per second).
# https://www.okx.com/docs-v5/en/#overview-websocket-connect: 3 connection requests per s
#   per IP, 480 subscribe/unsubscribe/login requests per hour per connection.
# positioning: raw endpoint name -> (ccxt method, REST path); OKX pages hold 100 rows and
# each endpoint allows 5 requests per 2 s per IP
# https://www.okx.com/docs-v5/en/#trading-statistics-rest-api
POSITIONING = {
    "long_short_account_ratio": (
        "public_get_rubik_stat_contracts_long_short_account_ratio_contract",
        "rubik/stat/contracts/long-short-account-ratio-contract"),
    "top_account_ratio": (
        "public_get_rubik_stat_contracts_long_short_account_ratio_contract_top_trader",
        "rubik/stat/contracts/long-short-account-ratio-contract-top-trader"),
    "top_position_ratio": (
        "public_get_rubik_stat_contracts_long_short_position_ratio_contract_top_trader",
        "rubik/stat/contracts/long-short-position-ratio-contract-top-trader"),
    "open_interest_history": ("public_get_rubik_stat_contracts_open_interest_history",
                              "rubik/stat/contracts/open-interest-history"),
    "taker_volume": ("public_get_rubik_stat_taker_volume_contract",
                     "rubik/stat/taker-volume-contract"),
}  # fmt: skip
OKX_PERIODS = {"5m": "5m", "15m": "15m", "30m": "30m", "1h": "1H", "2h": "2H", "4h": "4H",
               "6h": "6H", "12h": "12H", "1d": "1D"}  # fmt: skip
POSITIONING_PAGE = 100
LIMITS = config.LimitsSettings(
    rules=[
        config.RateLimit(name="instruments", capacity=20, window_s=2.0, sliding=True,
                         applies=["public/instruments"]),
        config.RateLimit(name="books", capacity=40, window_s=2.0, sliding=True,
                         applies=["market/books"]),
        config.RateLimit(name="order", capacity=60, window_s=2.0, sliding=True,
                         scope="account", applies=["trade/order"]),
        *(config.RateLimit(name=f"rubik:{name}", capacity=5, window_s=2.0, sliding=True,
                           applies=[path]) for name, (_, path) in POSITIONING.items()),
    ],
    ban_statuses=[429],
    ws={"connections_per_s": 3, "subscribes_per_hour": 480},
)  # fmt: skip

PER_INSTRUMENT = ("trades", "books", "bbo-tbt", "tickers", "candle1m")
DERIVATIVE_ONLY = ("open-interest", "mark-price")
CHANNELS = frozenset(
    PER_INSTRUMENT
    + DERIVATIVE_ONLY
    + ("funding-rate", "index-tickers", "liquidation-orders", "opt-summary", "positioning")
)

# ``[collector.okx]``: its defaults; ``channels`` must be some of CHANNELS
OkxSettings = config.venue_section("OkxSettings",
    ws_url="wss://ws.okx.com:8443/ws/v5/public", rest_url="https://www.okx.com",
    symbols=["BTC-USDT", "BTC-USDT-SWAP"], channels=["trades", "books", "tickers"],
    limits=LIMITS, known_channels=CHANNELS)  # fmt: skip

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
            target = arg.get("instId") or arg.get("instFamily") or arg.get("instType")
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
            elif ch == "opt-summary" and kind == "OPTION":  # one per family: BTC-USD
                add(ch, "instFamily", "-".join(inst.split("-")[:2]))
    return args


class OkxCollector(base.Collector):
    venue = VENUE
    settings_class = OkxSettings
    ccxt_class = ccxt.okx
    watch = frozenset({"control"})  # error events are logged
    error_prefix = b'{"event":"error"'
    error_what = "okx error event"

    def check(self) -> None:
        unknown = set(self.cfg.channels) - CHANNELS
        if unknown:
            raise ValueError(f"collector.okx.channels: unknown channels {sorted(unknown)}")
        self.args = subscription_args(self.cfg)

    def describe(self) -> dict[str, Any]:
        return {"subscriptions": len(self.args)}

    def extra_loops(self) -> list[Coroutine[Any, Any, None]]:
        period = options_period(self.cfg, VENUE, OKX_PERIODS)
        if period is None:
            return []
        return [
            self._positioning_loop(ep, inst, period)
            for inst in self.cfg.symbols if inst_type(inst) in ("SWAP", "FUTURES")
            for ep in POSITIONING
        ]  # fmt: skip

    async def _positioning_loop(self, ep: str, inst: str, period: str) -> None:
        method, path = POSITIONING[ep]
        call = getattr(self.exchange, method)
        extra = {"unit": "0"} if ep == "taker_volume" else {}  # volumes in the coin

        async def fetch(start: int, end: int) -> tuple[bytes, int]:
            return await self.rest(path, call, {
                "instId": inst, "period": OKX_PERIODS[period], "begin": str(start),
                "end": str(end), "limit": str(POSITIONING_PAGE), **extra,
            })  # fmt: skip

        def times(body: bytes) -> list[int]:
            reply = orjson.loads(body)
            if reply.get("code") != "0":
                raise RuntimeError(f"code {reply.get('code')}: {reply.get('msg')}")
            return [int(r[0]) for r in reply["data"]]

        await poll_history(
            self.w, self.venue, ep, inst, period, fetch, times, limit=POSITIONING_PAGE,
            **options_schedule(self.cfg),
        )  # fmt: skip

    route = staticmethod(route)

    def ping_text(self, link: base.Link) -> str:
        return "ping"  # OKX closes a connection silent for 30 s

    def fresh_s(self) -> float:
        return 5.0 + self.cfg.ping_interval_s  # a pong at least every ping_interval_s

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
            body, recv = await self.rest(
                "instruments", self.exchange.public_get_public_instruments, params
            )
            await self.link.pub.publish("instruments", "ALL", body, recv, "rest", durable=True)

    # -- WebSocket -----------------------------------------------------------------------
    def resync(self, symbol: str) -> tuple[base.Link, list[str], dict[str, Any]] | str:
        """``ctl.snapshot.okx.<BTC-USDT-PERP>``: re-subscribe that book for a new snapshot."""
        try:
            native = to_native(symbol)
        except ValueError:  # outside the symbol scheme: not a book we collect
            native = ""
        if native not in self.cfg.symbols or "books" not in self.cfg.channels:
            return f"book not collected: {symbol}"
        arg = [{"channel": "books", "instId": native}]
        requests = [
            orjson.dumps({"op": op, "args": arg}).decode() for op in ("unsubscribe", "subscribe")
        ]
        return self.link, requests, {"ok": True, "instId": native}

    async def subscribe(self, ws: ClientConnection, link: base.Link) -> None:
        for i in range(0, len(self.args), ARGS_PER_REQUEST):
            chunk = self.args[i : i + ARGS_PER_REQUEST]
            await ws.send(orjson.dumps({"op": "subscribe", "args": chunk}).decode())


run = OkxCollector.main  # the collector body for streams.bus.runtime.run
