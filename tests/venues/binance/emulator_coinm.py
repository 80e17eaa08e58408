"""Binance COIN-M futures emulator: the USDⓈ-M emulator (tests/venues/binance/emulator_usdm.py,
reused, not edited) on dapi paths with COIN-M's shapes: native symbols ``BTCUSD_PERP``,
exchangeInfo rows with ``contractSize`` and ``contractStatus``, openInterest with ``pair``.
Quantities are contract counts written with the USDⓈ-M simulator's 5 decimals (Binance's are
whole contracts; the conversion contracts * contractSize / price does not depend on it)."""

from __future__ import annotations

import time

import orjson
from aiohttp import web

from tests.venues.binance.emulator_usdm import BinanceUsdmEmulator, FuturesSim

CONTRACT_SIZE = {"BTC": 100.0}  # USD per contract; 10 for every other coin


class CoinmSim(FuturesSim):
    def __init__(self, native: str, rnd: object, mid_ticks: int) -> None:
        # the base emulator's quote list has no USD (not edited here): split BTCUSDT, then
        # say what the contract really is
        super().__init__(native.split("_")[0] + "T", rnd, mid_ticks)
        self.native, self.quote = native, "USD"

    @property
    def symbol(self) -> str:
        return f"{self.base}-USD-PERP"

    @property
    def contract_size(self) -> float:
        return CONTRACT_SIZE.get(self.base, 10.0)


class BinanceCoinmEmulator(BinanceUsdmEmulator):
    def __init__(
        self, symbols: list[str] | tuple[str, ...] = ("BTCUSD_PERP",), **kw: object
    ) -> None:
        super().__init__([s.split("_")[0] + "T" for s in symbols], **kw)  # replaced below
        self.sims = {  # type: ignore[assignment]
            s: CoinmSim(s, self.rnd, 6_500_000 if s.startswith("BTC") else 350_000) for s in symbols
        }

    def add_rest_routes(self, app: web.Application) -> None:
        app.router.add_get("/dapi/v1/depth", self._rest_depth)
        app.router.add_get("/dapi/v1/exchangeInfo", self._rest_coinm_info)
        app.router.add_get("/dapi/v1/openInterest", self._rest_open_interest)
        app.router.add_get("/dapi/v1/ping", self._rest_ping)
        app.router.add_get("/dapi/v1/time", self._rest_time)

    async def _rest_coinm_info(self, request: web.Request) -> web.Response:
        self._count("exchangeInfo")
        symbols = [
            {"symbol": s.native, "pair": s.native.split("_")[0], "contractType": "PERPETUAL",
             "deliveryDate": 4133404800000, "contractStatus": "TRADING",
             "contractSize": int(s.contract_size), "baseAsset": s.base, "quoteAsset": "USD",
             "marginAsset": s.base,
             "filters": [{"filterType": "PRICE_FILTER", "minPrice": "0.10",
                          "maxPrice": "1000000", "tickSize": "0.01"},
                         {"filterType": "LOT_SIZE", "minQty": "1", "maxQty": "1000000",
                          "stepSize": "1"}]}
            for s in self.sims.values()
        ]  # fmt: skip
        body = {"timezone": "UTC", "serverTime": int(time.time() * 1000), "symbols": symbols}
        return web.Response(body=orjson.dumps(body), content_type="application/json")
