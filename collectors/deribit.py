"""Deribit JSON-RPC v2 public collector: one WebSocket, batched public/subscribe, REST
instruments via ccxt (one shared rate limiter).

CHANNELS (setting name -> Deribit channel -> raw subject):
  trades        trades.<instr>.<interval>          raw.deribit.trades.<instr>
  book          book.<instr>.<interval>            raw.deribit.book.<instr>
  quote         quote.<instr>                      raw.deribit.quote.<instr>
  ticker        ticker.<instr>.<interval>          raw.deribit.ticker.<instr>
  chart.trades  chart.trades.<instr>.<resolution>  raw.deribit.chart_trades.<instr>
  volatility_index  deribit_volatility_index.<index>  raw.deribit.volatility_index.<index>
                (DVOL live, per index of option ``dvol_indexes``, default ``btc_usd``)
  volatility_candles (REST) public/get_volatility_index_data per DVOL currency
                raw.deribit.volatility_index_data-<period>.<CUR> (closed candles only,
                cursor in RAW: collectors/positioning.py; options ``dvol_resolution``
                (Deribit's: 1, 60, 3600, 43200, 1D; default 3600), ``dvol_backfill_days``
                (default 30), ``dvol_interval_s`` (default 60))
  (REST)  GET /api/v2/public/get_instruments?currency=&kind=   raw.deribit.instruments.<CUR>
  (ours)  connection events                                    raw.deribit.conn.ALL
  (venue) JSON-RPC replies, heartbeats, test replies           raw.deribit.control.ALL
  (venue) anything unroutable                                  raw.deribit.unknown.ALL

``options`` (strings): ``interval`` for trades/book/ticker (default ``100ms``: Deribit
serves ``raw`` only to authenticated connections, and this collector is public);
``chart_resolution`` (default ``1``, minutes or ``1D``); ``stale_channels`` (default
``book,ticker``): channels that push continuously, so silence on one of them for
``stale_after_s`` means a dead feed even while heartbeats still arrive; ``heartbeat_s``
(default ``max(10, ping_interval_s)``) for ``public/set_heartbeat``.

Venue rules honoured: after connecting we call ``public/set_heartbeat`` (interval
``ping_interval_s``, Deribit's minimum is 10 s) and answer every ``test_request`` with
``public/test``, or Deribit closes the connection; subscriptions go out in requests of at
most ``CHANNELS_PER_REQUEST`` channels, paced to the ~3 subscribe requests/s Deribit allows
sustained. Books come as a WebSocket snapshot then changes, so a resync
(``ctl.snapshot.deribit.<symbol>``) is an unsubscribe + subscribe of that book.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from typing import Any

import ccxt.async_support as ccxt
import msgspec
import orjson
from websockets.asyncio.client import ClientConnection

from collectors import base, config
from collectors.config import VenueSettings
from collectors.positioning import PERIOD_MS, poll_history
from streams.symbols import deribit as symbols

VENUE = "deribit"
# ``[collector.deribit]``: Deribit v2; ``channels`` are CHANNELS keys (below)
# Deribit limits (defaults of [collector.deribit.limits]):
# https://docs.deribit.com/#rate-limits : credits per sub-account; a non-matching-engine
#   request costs 500 credits, refilled at 10000 credits/s up to 50000: 20 requests/s
#   sustained (a burst of 100); matching-engine (order) requests have their own tier,
#   5 per s by default. Error 10028 "too_many_requests" (ccxt: RateLimitExceeded).
LIMITS = config.LimitsSettings(
    rules=[config.RateLimit(name="credits", capacity=20, window_s=1.0),
           config.RateLimit(name="matching", capacity=5, window_s=1.0, scope="account",
                            applies=["private/buy", "private/sell", "private/cancel",
                                     "private/edit"])],
    ban_statuses=[429],
    default_ban_s=5.0,
    ws={"subscribe_requests_per_s": 3.3},
)  # fmt: skip

CHANNELS = ("trades", "book", "quote", "ticker", "chart.trades", "volatility_index",
            "volatility_candles")  # fmt: skip
# DVOL candle resolutions (Deribit's names) -> our period names
DVOL_RESOLUTIONS = {"1": "1s", "60": "1m", "3600": "1h", "43200": "12h", "1D": "1d"}
DVOL_CANDLES = 500  # candles per request (Deribit answers up to 1000)

# ``[collector.deribit]``: its defaults; ``channels`` must be some of CHANNELS
DeribitSettings = config.venue_section("DeribitSettings",
    ws_url="wss://www.deribit.com/ws/api/v2", rest_url="https://www.deribit.com",
    symbols=["BTC-PERPETUAL"], channels=["trades", "book", "ticker"],
    limits=LIMITS, known_channels=CHANNELS)  # fmt: skip

RAW_CHANNEL = {"chart": "chart_trades", "trades": "trades", "book": "book", "quote": "quote",
               "ticker": "ticker"}  # fmt: skip
CHANNELS_PER_REQUEST = 100
SUBSCRIBE_PACING_S = 0.3  # Deribit's sustained subscribe rate is ~3.3 requests/s
MIN_HEARTBEAT_S = 10  # Deribit refuses shorter set_heartbeat intervals
_NOTIFICATION = b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"'
_TEST_REQUEST = b'"test_request"'
# ``d`` is Deribit's decimal point in a strike (``MATIC_USDC-9MAR24-1d02-C``)
_SYMBOL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_d")


class _Params(msgspec.Struct):
    channel: str = ""


class _Probe(msgspec.Struct):
    """Just enough of a frame to route it when the fast prefix does not match."""

    method: str = ""
    id: int | str | None = None
    params: _Params | None = None


_probe = msgspec.json.Decoder(_Probe)


def _from_channel(channel: str) -> tuple[str, str]:
    p = channel.split(".")
    if p[0] == "deribit_volatility_index" and len(p) == 2:
        index = p[1]  # btc_usd: lowercase, one underscore
        if index.replace("_", "").isalnum() and index.islower():
            return "volatility_index", index
        return "unknown", "ALL"
    if p[0] == "chart" and len(p) == 4 and p[1] == "trades":
        kind, native = "chart", p[2]
    elif p[0] in RAW_CHANNEL and p[0] != "chart" and len(p) >= 2:
        kind, native = p[0], p[1]
    else:
        return "unknown", "ALL"
    if native and _SYMBOL_CHARS.issuperset(native):
        return RAW_CHANNEL[kind], native
    return "unknown", "ALL"


def _from_probe(probe: _Probe) -> tuple[str, str]:
    if probe.method == "subscription" and probe.params is not None:
        return _from_channel(probe.params.channel)
    if probe.id is not None or probe.method == "heartbeat":
        return "control", "ALL"
    return "unknown", "ALL"


# (raw channel, instrument) of a frame. Deribit writes notifications as
# ``{"jsonrpc":"2.0","method":"subscription","params":{"channel":"...`` so the channel is
# sliced out of the bytes; other frames (replies, heartbeats: rare) get a small decode.
route = base.key_router(_NOTIFICATION, _from_channel, _probe, _from_probe)


def channel_names(cfg: VenueSettings) -> list[str]:
    """Every Deribit channel to subscribe, in settings order."""
    interval = cfg.options.get("interval", "100ms")
    resolution = cfg.options.get("chart_resolution", "1")
    out: list[str] = []
    for ch in cfg.channels:
        if ch not in CHANNELS:
            raise ValueError(f"collector.deribit.channels: unknown channel {ch!r}")
        if ch == "volatility_index":
            out += [f"deribit_volatility_index.{i}" for i in dvol_indexes(cfg)]
            continue
        if ch == "volatility_candles":
            continue  # REST
        for inst in cfg.symbols:
            if ch == "quote":
                out.append(f"quote.{inst}")
            elif ch == "chart.trades":
                out.append(f"chart.trades.{inst}.{resolution}")
            else:
                out.append(f"{ch}.{inst}.{interval}")
    return out


def dvol_indexes(cfg: VenueSettings) -> list[str]:
    return [i.strip() for i in cfg.options.get("dvol_indexes", "btc_usd").split(",") if i.strip()]


def instruments_queries(natives: list[str]) -> list[dict[str, str]]:
    """One ``get_instruments`` query per (currency, kind) the symbols need: inverse
    contracts and options under their base coin, linear ones under the quote (USDC)."""
    seen = {(symbols.currency(n), symbols.kind(n)): None for n in natives}
    return [{"currency": c, "kind": k, "expired": "false"} for c, k in seen]


class DeribitCollector(base.Collector):
    venue = VENUE
    settings_class = DeribitSettings
    ccxt_class = ccxt.deribit
    watch = frozenset({"control"})  # test_request must be answered; errors are logged

    def check(self) -> None:
        cfg = self.cfg
        self.channels = channel_names(cfg)
        self.ids = itertools.count(1)
        self.stale_channels = [
            RAW_CHANNEL[c.split(".")[0]]
            for c in cfg.options.get("stale_channels", "book,ticker").split(",")
            if c in cfg.channels
        ]
        # channels that push continuously: silence on one means a dead feed even while
        # heartbeats still arrive
        self.stale_limits = dict.fromkeys(self.stale_channels, cfg.stale_after_s)
        res = cfg.options.get("dvol_resolution", "3600")
        if res not in DVOL_RESOLUTIONS:
            raise ValueError(f"collector.deribit.options.dvol_resolution must be one of "
                             f"{list(DVOL_RESOLUTIONS)}, not {res!r}")  # fmt: skip
        self.dvol_resolution = res

    def extra_loops(self) -> list[Coroutine[Any, Any, None]]:
        if "volatility_candles" not in self.cfg.channels:
            return []
        currencies = {i.split("_")[0].upper(): None for i in dvol_indexes(self.cfg)}
        return [self._dvol_candles(cur) for cur in currencies]

    async def _dvol_candles(self, currency: str) -> None:
        """Closed DVOL candles of ``currency``, backfilled then polled (positioning.py)."""
        cfg, res = self.cfg, self.dvol_resolution
        period = DVOL_RESOLUTIONS[res]
        call = self.exchange.public_get_get_volatility_index_data

        async def fetch(start: int, end: int) -> tuple[bytes, int]:
            return await self.rest("get_volatility_index_data", call, {
                "currency": currency, "resolution": res,
                "start_timestamp": start, "end_timestamp": end,
            })  # fmt: skip

        def times(body: bytes) -> list[int]:
            reply = orjson.loads(body)
            return [int(row[0]) for row in reply["result"]["data"]]

        await poll_history(
            self.w, self.venue, "volatility_index_data", currency, period, fetch, times,
            limit=DVOL_CANDLES, backfill_days=float(cfg.options.get("dvol_backfill_days", "30")),
            interval_s=float(cfg.options.get("dvol_interval_s", "60")), reconnect=cfg.reconnect,
            lag_ms=PERIOD_MS[period],
        )  # fmt: skip

    def describe(self) -> dict[str, Any]:
        return {"channels": len(self.channels)}

    route = staticmethod(route)

    def fresh_s(self) -> float:
        # at least a heartbeat every interval while the connection lives
        return 5.0 + max(MIN_HEARTBEAT_S, self.cfg.ping_interval_s)

    # -- REST ----------------------------------------------------------------------------
    async def fetch_instruments(self) -> None:
        """One instruments body per (currency, kind), published untouched."""
        for params in instruments_queries(self.cfg.symbols):
            body, recv = await self.rest(
                "get_instruments", self.exchange.public_get_get_instruments, params
            )
            await self.link.pub.publish(
                "instruments", params["currency"], body, recv, "rest", durable=True
            )

    # -- JSON-RPC ------------------------------------------------------------------------
    def _rpc(self, method: str, params: dict[str, Any]) -> str:
        body = {"jsonrpc": "2.0", "id": next(self.ids), "method": method, "params": params}
        return orjson.dumps(body).decode()

    async def _call(self, ws: ClientConnection, method: str, params: dict[str, Any]) -> None:
        await ws.send(self._rpc(method, params))

    async def _subscribe(self, ws: ClientConnection, channels: list[str]) -> None:
        for i in range(0, len(channels), CHANNELS_PER_REQUEST):
            if i:
                await asyncio.sleep(SUBSCRIBE_PACING_S)
            chunk = channels[i : i + CHANNELS_PER_REQUEST]
            await self._call(ws, "public/subscribe", {"channels": chunk})

    # -- WebSocket -----------------------------------------------------------------------
    def resync(self, symbol: str) -> tuple[base.Link, list[str], dict[str, Any]] | str:
        """``ctl.snapshot.deribit.<BTC-USD-PERP>``: re-subscribe that book for a snapshot."""
        try:
            native = symbols.to_native(symbol)
        except ValueError:  # outside the symbol scheme: not a book we collect
            native = ""
        if native not in self.cfg.symbols or "book" not in self.cfg.channels:
            return f"book not collected: {native or symbol}"
        channel = [f"book.{native}.{self.cfg.options.get('interval', '100ms')}"]
        requests = [
            self._rpc(f"public/{op}", {"channels": channel}) for op in ("unsubscribe", "subscribe")
        ]
        return self.link, requests, {"ok": True, "instrument": native}

    async def subscribe(self, ws: ClientConnection, link: base.Link) -> None:
        """Heartbeat first (Deribit's keep-alive), then the subscriptions, paced, while the
        frames are read."""
        heartbeat = float(
            self.cfg.options.get("heartbeat_s", max(MIN_HEARTBEAT_S, self.cfg.ping_interval_s))
        )
        interval = int(heartbeat) if heartbeat.is_integer() else heartbeat
        await self._call(ws, "public/set_heartbeat", {"interval": interval})
        link.tasks.append(asyncio.create_task(self._subscribe(ws, self.channels)))

    async def on_frame(
        self, ws: ClientConnection, link: base.Link, channel: str, symbol: str, frame: bytes
    ) -> None:
        if _TEST_REQUEST in frame:
            await self._call(ws, "public/test", {})
        elif b'"error":' in frame:
            self.warn_frame("deribit error reply", frame)


run = DeribitCollector.main  # the collector body for streams.bus.runtime.run
