"""Binance COIN-M futures collector: the USDⓈ-M collector's protocol on dstream/dapi.

Same channels as USDⓈ-M (collectors/binanceusdm.py): aggTrade, trade, depth (+ REST
snapshot, ``pu`` chained), bookTicker, ticker, kline, markPrice, forceOrder, openInterest
(REST poll), instruments (exchangeInfo). Raw subjects ``raw.binancecoinm.<channel>.<SYM>``
(ccxt's id) with native symbols ``BTCUSD_PERP`` / ``BTCUSD_251226``; the normalizer names
the venue ``binance`` and the market ``BTC-USD-PERP`` / ``BTC-USD-20251226``, and converts
contract counts to base units with exchangeInfo's ``contractSize`` (which is why the
instruments body is fetched before connecting). ``ctl.snapshot.binance.<BTC-USD-...>`` is
this collector's: COIN-M is the only Binance market quoted in USD.
"""

from __future__ import annotations

import ccxt.async_support as ccxt
import msgspec
import orjson

from collectors.binance import binance_limits
from collectors.binanceusdm import CHANNELS as USDM_CHANNELS
from collectors.binanceusdm import RATIOS, BinanceUsdmCollector, BinanceUsdmSettings
from collectors.config import LimitsSettings, copy_section
from streams.symbols.binance import binance_coinm, binance_coinm_native

CHANNELS = USDM_CHANNELS
# ``positioning`` (collectors/positioning.py): COIN-M's futures/data, per pair (BTCUSD) and,
# for taker volume and open interest, contractType PERPETUAL; so only ``*_PERP`` symbols.
# https://developers.binance.com/docs/derivatives/coin-margined-futures/market-data/rest-api
#   (Long-Short-Ratio, Top-..., Taker-Buy-Sell-Volume, Open-Interest-Statistics): period 5m..1d,
#   limit <= 500, latest 30 days; takerBuySellVol / openInterestHist in contracts and in base.
POSITIONING = (*RATIOS, "takerBuySellVol", "openInterestHist")
PER_CONTRACT = frozenset({"takerBuySellVol", "openInterestHist"})

# COIN-M limits (defaults of [collector.binancecoinm.limits]); a separate IP budget.
# https://developers.binance.com/docs/derivatives/coin-margined-futures/general-info
#   REQUEST_WEIGHT 2400 per minute per IP (X-MBX-USED-WEIGHT-1M); ORDERS 1200 per minute per
#   account; 429, then 418 bans with Retry-After.
# https://developers.binance.com/docs/derivatives/coin-margined-futures/market-data/rest-api
#   depth weight by limit: 5-50 -> 2, 100 -> 5, 500 -> 10, 1000 -> 20; exchangeInfo 1,
#   openInterest 1.
# https://developers.binance.com/docs/derivatives/coin-margined-futures/websocket-market-streams
#   10 incoming messages per s, 200 streams per connection, 300 connections per 5 min per IP.
LIMITS = binance_limits(
    2400, {"ordersmin": (1200, 60.0)}, positioning=POSITIONING,
    weights_by_limit={"depth": [[50, 2], [100, 5], [500, 10], [1000, 20]]},
    messages_per_s=10, streams_per_connection=200,
)  # fmt: skip


class BinanceCoinmSettings(BinanceUsdmSettings):
    """``[collector.binancecoinm]``: COIN-M (inverse) futures, the USDⓈ-M channels on
    dstream/dapi; symbols are native (``BTCUSD_PERP``, ``BTCUSD_251226``)."""

    ws_url: str = "wss://dstream.binance.com"
    rest_url: str = "https://dapi.binance.com"
    symbols: list[str] = msgspec.field(default_factory=lambda: ["BTCUSD_PERP"])
    limits: LimitsSettings = msgspec.field(default_factory=lambda: copy_section(LIMITS))


class BinanceCoinmCollector(BinanceUsdmCollector):
    venue = "binancecoinm"
    settings_class = BinanceCoinmSettings
    ccxt_class = ccxt.binancecoinm
    api = ("dapiPublic", "/dapi/v1")
    instruments = "first"  # contract sizes on RAW before any frame: the normalizer needs them
    positioning = POSITIONING
    data_api = ("dapiData", "/futures/data")

    def positioning_params(self, native: str, endpoint: str) -> dict[str, str] | None:
        pair, _, kind = native.partition("_")
        if kind != "PERP":
            return None  # dated contracts: Binance's CURRENT/NEXT_QUARTER, not by name
        if endpoint in PER_CONTRACT:
            return {"pair": pair, "contractType": "PERPETUAL"}
        return {"pair": pair}

    def owns(self, symbol: str) -> bool:
        parts = symbol.split("-")
        return len(parts) == 3 and parts[1] == "USD"  # BTC-USD-PERP, BTC-USD-20251226

    def native_of(self, symbol: str) -> str:
        return binance_coinm_native(symbol)

    async def fetch_instruments(self) -> None:
        """GET /dapi/v1/exchangeInfo (COIN-M takes no ``symbols`` filter), published
        untouched."""
        body, recv = await self.rest("exchangeInfo", self.public("exchangeinfo"), {})
        for s in orjson.loads(body).get("symbols", []):
            try:
                self.symbol_map[binance_coinm(s["symbol"])] = s["symbol"]
            except (KeyError, ValueError):
                continue
        await self.pub.publish("instruments", "ALL", body, recv, "rest", durable=True)


run = BinanceCoinmCollector.main  # the collector body for streams.bus.runtime.run
