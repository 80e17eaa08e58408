"""Binance futures/data history (positioning) on the USDⓈ-M emulator: the five endpoints
collectors/positioning.py polls, shaped as Binance documents them
(developers.binance.com, USDⓈ-M "Long/Short Ratio", "Top Trader Long/Short Ratio
(Accounts)", "(Positions)", "Taker Buy/Sell Volume", "Open Interest Statistics"):

  GET /futures/data/globalLongShortAccountRatio?symbol&period&limit&startTime&endTime
      [{"symbol","longShortRatio","longAccount","shortAccount","timestamp"}]
  ... topLongShortAccountRatio, topLongShortPositionRatio: the same row
  GET /futures/data/takerlongshortRatio   [{"buySellRatio","buyVol","sellVol","timestamp"}]
  GET /futures/data/openInterestHist
      [{"symbol","sumOpenInterest","sumOpenInterestValue","timestamp"}]  (timestamp a string,
      as older docs show it: the parser must take both)

Rows are ascending; with startTime/endTime the rows inside them (the most recent ``limit``
of those), with neither the most recent ``limit``. History is a fixed timeline of periods
``[first, latest]`` (in the past); ``advance(n)`` publishes ``n`` more periods. Values are a
function of (endpoint, symbol, time), so a test computes the truth with ``rows()``.
"""

from __future__ import annotations

import asyncio
import random
import time

import orjson
from aiohttp import web

from tests.venues.binance.emulator_usdm import BinanceUsdmEmulator

ENDPOINTS = (
    "globalLongShortAccountRatio", "topLongShortAccountRatio", "topLongShortPositionRatio",
    "takerlongshortRatio", "openInterestHist",
)  # fmt: skip
PERIOD_MS = {"5m": 300_000, "15m": 900_000, "1h": 3_600_000}


def row(endpoint: str, symbol: str, ts: int) -> dict:
    """The venue's row of ``endpoint`` for ``symbol`` at period time ``ts`` (ms)."""
    rnd = random.Random(f"{endpoint}:{symbol}:{ts}")
    if endpoint == "takerlongshortRatio":
        buy, sell = rnd.randint(1_000, 9_000_000), rnd.randint(1_000, 9_000_000)
        return {"buySellRatio": f"{buy / sell:.4f}", "buyVol": f"{buy / 1e4:.4f}",
                "sellVol": f"{sell / 1e4:.4f}", "timestamp": ts}  # fmt: skip
    if endpoint == "openInterestHist":
        oi = rnd.randint(10**11, 10**12)  # 1e-8 units
        return {"symbol": symbol, "sumOpenInterest": f"{oi / 1e8:.8f}",
                "sumOpenInterestValue": f"{oi / 1e8 * 65000.25:.2f}",
                "timestamp": str(ts)}  # fmt: skip
    long = rnd.randint(2_500, 7_500)  # 1e-4 units
    return {"symbol": symbol, "longShortRatio": f"{long / (10_000 - long):.4f}",
            "longAccount": f"{long / 1e4:.4f}", "shortAccount": f"{(10_000 - long) / 1e4:.4f}",
            "timestamp": ts}  # fmt: skip


class BinancePositioningEmulator(BinanceUsdmEmulator):
    def __init__(
        self,
        symbols: list[str] | tuple[str, ...] = ("BTCUSDT",),
        *,
        period: str = "5m",
        history: int = 144,
        lag_periods: int = 300,
        **kw: object,
    ) -> None:
        super().__init__(symbols, **kw)
        self.period = period
        step = PERIOD_MS[period]
        now = int(time.time() * 1000) // step * step
        # ``history`` periods ending ``lag_periods`` before now: advance() has room to grow
        self.latest = now - lag_periods * step
        self.first = self.latest - (history - 1) * step
        self.delay_s = 0.0  # per answer: lets a test kill the collector mid-backfill
        self.data_calls: list[tuple[str, str, int, int]] = []  # endpoint, symbol, start, end

    def add_rest_routes(self, app: web.Application) -> None:
        super().add_rest_routes(app)
        for ep in ENDPOINTS:
            app.router.add_get(f"/futures/data/{ep}", self._history)

    def advance(self, n: int) -> None:
        """``n`` more periods exist (the venue published them)."""
        self.latest += n * PERIOD_MS[self.period]

    def times(self) -> list[int]:
        step = PERIOD_MS[self.period]
        return list(range(self.first, self.latest + 1, step))

    def rows(self, endpoint: str, symbol: str) -> list[dict]:
        return [row(endpoint, symbol, t) for t in self.times()]

    async def _history(self, request: web.Request) -> web.Response:
        ep = request.path.rsplit("/", 1)[1]
        self._count(ep)
        q = request.query
        symbol, period = q.get("symbol", ""), q.get("period", "")
        if symbol not in self.sims:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        if period != self.period:  # only one period is simulated
            return web.json_response({"code": -1120, "msg": "Invalid period."}, status=400)
        limit = int(q.get("limit", "30"))
        if not 1 <= limit <= 500:
            return web.json_response({"code": -1130, "msg": "limit"}, status=400)
        start = int(q.get("startTime", "0"))
        end = int(q.get("endTime", str(2**62)))
        self.data_calls.append((ep, symbol, start, end))
        times = [t for t in self.times() if start <= t <= end][-limit:]
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        body = orjson.dumps([row(ep, symbol, t) for t in times])
        return web.Response(body=body, content_type="application/json")
