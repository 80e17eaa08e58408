"""Binance USDⓈ-M futures collector: the spot collector's protocol on fstream/fapi.

CHANNELS (setting name -> Binance stream -> raw subject), in addition to spot's:
  markPrice    <sym>@markPrice@1s       raw.binanceusdm.markPrice.<SYM>   (mark + funding)
  forceOrder   <sym>@forceOrder         raw.binanceusdm.forceOrder.<SYM>  (liquidations)
  openInterest (REST) /fapi/v1/openInterest every open_interest_interval_s
                                        raw.binanceusdm.openInterest.<SYM>
               Nats-Msg-Id binanceusdm:openInterest:<SYM>:<time>
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
from collectors.binance import BinanceCollector, BinanceSettings
from streams.settings import SettingsError

log = logging.getLogger("collectors.binanceusdm")

CHANNELS = {
    **SPOT_CHANNELS,
    "markPrice": "{s}@markPrice@1s",
    "forceOrder": "{s}@forceOrder",
}
POLLED = ("openInterest",)


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

    def _check(self, prefix: str) -> None:
        super()._check(prefix)
        if self.open_interest_interval_s <= 0:
            raise SettingsError(f"{prefix}.open_interest_interval_s must be > 0")


class BinanceUsdmCollector(BinanceCollector):
    venue = "binanceusdm"
    settings_class = BinanceUsdmSettings
    channels = CHANNELS
    ccxt_class = ccxt.binanceusdm
    api = ("fapiPublic", "/fapi/v1")

    def _depth_call(self) -> Any:
        return self.exchange.fapipublic_get_depth

    def _info_call(self) -> Any:
        return self.exchange.fapipublic_get_exchangeinfo

    def owns(self, symbol: str) -> bool:
        return symbol.count("-") >= 2  # BTC-USDT-PERP, BTC-USDT-20251226

    def native_of(self, symbol: str) -> str:
        base, quote, kind = symbol.split("-")[:3]
        return f"{base}{quote}" if kind == "PERP" else f"{base}{quote}_{kind[2:]}"

    def extra_loops(self) -> list[Coroutine[Any, Any, None]]:
        if "openInterest" in self.cfg.channels:
            return [self._open_interest_loop()]
        return []

    async def poll_open_interest(self, native: str) -> None:
        body, recv = await self.rest(
            "openInterest", self.exchange.fapipublic_get_openinterest, {"symbol": native}
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
