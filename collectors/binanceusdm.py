"""Binance USDⓈ-M futures collector: the spot collector's protocol on fstream/fapi.

CHANNELS (setting name -> Binance stream -> raw subject), in addition to spot's:
  markPrice    <sym>@markPrice@1s       raw.binanceusdm.markPrice.<SYM>   (mark + funding)
  forceOrder   <sym>@forceOrder         raw.binanceusdm.forceOrder.<SYM>  (liquidations)
  openInterest (REST) /fapi/v1/openInterest every open_interest_interval_s
                                        raw.binanceusdm.openInterest.<SYM>
               Nats-Msg-Id binanceusdm:openInterest:<SYM>:<time>
  positioning  (REST) /futures/data/<endpoint> per positioning_period (below, POSITIONING)
                                        raw.binanceusdm.<endpoint>-<period>.<SYM>
               cursor in RAW (collectors/positioning.py): no gap, no duplicate on restart
  depth        <sym>@depth@100ms with ``pu`` (the previous event's ``u``) + REST /fapi/v1/depth
Raw subjects use ccxt's id ``binanceusdm``; the normalizer names the venue ``binance`` and
the market by symbol (``BTC-USDT-PERP``), so ``ctl.snapshot.binance.BTC-USDT-PERP`` is ours
and ``ctl.snapshot.binance.BTC-USDT`` the spot collector's. Open interest has no stream on
Binance, so it is polled through the same ccxt limiter as the snapshots (one limiter per
process and market keeps a burst of resyncs from adding up to an IP ban).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Coroutine
from typing import Any

import ccxt.async_support as ccxt
import msgspec
import orjson

from collectors import base
from collectors.binance import CHANNELS as SPOT_CHANNELS
from collectors.binance import BinanceCollector, BinanceSettings, binance_limits
from collectors.config import LimitsSettings, copy_section
from collectors.positioning import poll_history, rows_times
from streams.settings import SettingsError

log = logging.getLogger("collectors.binanceusdm")

CHANNELS = {
    **SPOT_CHANNELS,
    "markPrice": "{s}@markPrice@1s",
    "forceOrder": "{s}@forceOrder",
}
POLLED = ("openInterest", "positioning")
# ``positioning`` (REST, collectors/positioning.py): Binance's futures/data history, one
# raw channel ``<endpoint>-<period>`` per endpoint, cursor in RAW, backfilled 30 days:
#   globalLongShortAccountRatio, topLongShortAccountRatio, topLongShortPositionRatio,
#   takerlongshortRatio (taker buy/sell volume), openInterestHist
# https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api
#   (Long-Short-Ratio, Top-Long-Short-Account-Ratio, ..., Open-Interest-Statistics): period
#   5m..1d, limit <= 500, startTime/endTime, latest 30 days only; IP limit 1000 requests
#   per 5 min for futures/data (our rule ``futuresData``).
BINANCE_PERIODS = ("5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d")
# the long/short ratio endpoints, the same on COIN-M
RATIOS = ("globalLongShortAccountRatio", "topLongShortAccountRatio", "topLongShortPositionRatio")
POSITIONING = (*RATIOS, "takerlongshortRatio", "openInterestHist")

# USDⓈ-M limits (defaults of [collector.binanceusdm.limits]); a separate IP budget from spot.
# https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info
#   REQUEST_WEIGHT 2400 per minute per IP (X-MBX-USED-WEIGHT-1M); ORDERS 1200 per minute
#   and 300 per 10 s per account; 429, then 418 bans with Retry-After.
# https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api
#   depth weight by limit: 5-50 -> 2, 100 -> 5, 500 -> 10, 1000 -> 20; exchangeInfo 1,
#   openInterest 1, klines by limit: <100 -> 1, <500 -> 2, <=1000 -> 5, more -> 10.
# https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams
#   10 incoming messages per s, 1024 streams per connection, 300 connections per 5 min per IP.
LIMITS = binance_limits(
    2400, {"orders10s": (300, 10.0), "ordersmin": (1200, 60.0)}, positioning=POSITIONING,
    weights_by_limit={"depth": [[50, 2], [100, 5], [500, 10], [1000, 20]],
                      "klines": [[99, 1], [499, 2], [1000, 5], [1500, 10]]},
    messages_per_s=10, streams_per_connection=1024,
)  # fmt: skip


class BinanceUsdmSettings(BinanceSettings):
    """``[collector.binanceusdm]``: the spot protocol on other hosts, plus mark price/funding,
    liquidations and open interest (polled over REST)."""

    KNOWN_CHANNELS = frozenset(CHANNELS) | set(POLLED)  # a class constant, not a setting
    ws_url: str = "wss://fstream.binance.com"
    rest_url: str = "https://fapi.binance.com"
    symbols: list[str] = msgspec.field(default_factory=lambda: ["BTCUSDT"])
    channels: list[str] = msgspec.field(
        default_factory=lambda: ["aggTrade", "depth", "markPrice", "forceOrder", "openInterest"]
    )
    open_interest_interval_s: float = 10.0
    # channel ``positioning`` (off by default): the futures/data history at this period
    positioning_period: str = "5m"
    positioning_interval_s: float = 60.0  # poll once caught up
    positioning_backfill_days: float = 30.0  # what Binance keeps
    positioning_limit: int = 500  # rows per request (Binance's maximum)
    # an empty window is stepped over once it ended this many periods ago (a late row is not)
    positioning_settle_periods: int = 2
    limits: LimitsSettings = msgspec.field(default_factory=lambda: copy_section(LIMITS))

    def _check(self, prefix: str) -> None:
        super()._check(prefix)
        if self.open_interest_interval_s <= 0:
            raise SettingsError(f"{prefix}.open_interest_interval_s must be > 0")
        if self.positioning_period not in BINANCE_PERIODS:
            raise SettingsError(f"{prefix}.positioning_period must be one of {BINANCE_PERIODS}")
        if self.positioning_interval_s <= 0 or self.positioning_backfill_days < 0:
            raise SettingsError(f"{prefix}: positioning_interval_s must be > 0, "
                                "positioning_backfill_days >= 0")  # fmt: skip
        if self.positioning_settle_periods < 1:
            raise SettingsError(f"{prefix}.positioning_settle_periods must be >= 1")
        if not 1 <= self.positioning_limit <= 500:
            raise SettingsError(f"{prefix}.positioning_limit must be 1..500")


class BinanceUsdmCollector(BinanceCollector):
    venue = "binanceusdm"
    settings_class = BinanceUsdmSettings
    channels = CHANNELS
    ccxt_class = ccxt.binanceusdm
    api = ("fapiPublic", "/fapi/v1")

    positioning = POSITIONING  # the futures/data endpoints (COIN-M: its own)
    data_api = ("fapiData", "/futures/data")

    def __init__(self, w: Any, cfg: BinanceUsdmSettings, flush_every: int) -> None:
        super().__init__(w, cfg, flush_every)
        self.exchange.urls["api"][self.data_api[0]] = cfg.rest_url.rstrip("/") + self.data_api[1]

    @property
    def pub(self) -> base.RawPublisher:
        """The REST frames' publisher; with only REST channels (``positioning`` alone) there
        is no stream to connect, so no link brought one: made here, once."""
        if not self.pubs:
            self.pubs.append(self.publisher())
        return self.pubs[0]

    def data(self, endpoint: str) -> Any:
        """ccxt's call of a futures/data endpoint (``fapidata_get_openinteresthist``)."""
        return getattr(self.exchange, f"{self.data_api[0].lower()}_get_{endpoint.lower()}")

    def owns(self, symbol: str) -> bool:
        parts = symbol.split("-")  # BTC-USDT-PERP, BTC-USDT-20251226; USD: COIN-M's
        return len(parts) >= 3 and parts[1] != "USD"

    def native_of(self, symbol: str) -> str:
        base, quote, kind = symbol.split("-")[:3]
        return f"{base}{quote}" if kind == "PERP" else f"{base}{quote}_{kind[2:]}"

    def extra_loops(self) -> list[Coroutine[Any, Any, None]]:
        loops = []
        if "openInterest" in self.cfg.channels:
            loops.append(self._open_interest_loop())
        if "positioning" in self.cfg.channels:
            for native in self.cfg.symbols:
                for ep in self.positioning:
                    params = self.positioning_params(native, ep)
                    if params is None:
                        log.warning("no positioning history for this symbol",
                                    extra={"symbol": native, "endpoint": ep})  # fmt: skip
                        continue
                    loops.append(self._positioning_loop(ep, native, params))
        return loops

    def positioning_params(self, native: str, endpoint: str) -> dict[str, str] | None:
        """The symbol's query parameters on futures/data (COIN-M: pair, contractType);
        None: not served for this symbol."""
        return {"symbol": native}

    async def _positioning_loop(self, endpoint: str, native: str, params: dict[str, str]) -> None:
        cfg = self.cfg
        call = self.data(endpoint)

        async def fetch(start: int, end: int) -> tuple[bytes, int]:
            return await self.rest(endpoint, call, {
                **params, "period": cfg.positioning_period, "limit": cfg.positioning_limit,
                "startTime": start, "endTime": end,
            })  # fmt: skip

        await poll_history(
            self.w, self.venue, endpoint, native, cfg.positioning_period, fetch, rows_times,
            limit=cfg.positioning_limit, backfill_days=cfg.positioning_backfill_days,
            interval_s=cfg.positioning_interval_s, reconnect=cfg.reconnect,
            settle_periods=cfg.positioning_settle_periods,
        )  # fmt: skip

    async def poll_open_interest(self, native: str) -> None:
        body, recv = await self.rest(
            "openInterest", self.public("openinterest"), {"symbol": native}
        )
        stamp = orjson.loads(body).get("time", recv // 1_000_000)
        await self.pub.publish(
            "openInterest", native, body, recv, "rest",
            msg_id=f"{self.venue}:openInterest:{native}:{stamp}",
        )  # fmt: skip

    async def _open_interest_loop(self) -> None:
        interval = self.cfg.open_interest_interval_s
        backoff = base.Backoff(self.cfg.reconnect)
        while not self.w.stop.is_set():
            started = time.monotonic()
            wait = interval
            for native in self.cfg.symbols:
                try:
                    await self.poll_open_interest(native)
                    backoff.reset()
                except Exception as exc:
                    wait = max(interval, backoff.next())
                    log.warning(
                        "open interest poll failed",
                        extra={"symbol": native, "error": str(exc)[:300]},
                    )
            if await self.w.sleep(max(0.0, wait - (time.monotonic() - started))):
                return


run = BinanceUsdmCollector.main  # the collector body for streams.bus.runtime.run
