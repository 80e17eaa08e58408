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

COIN-M (``BinanceCoinmPositioningEmulator``, the COIN-M docs' shapes): the same paths on the
dapi host, asked by ``pair`` (BTCUSD) and, for ``takerBuySellVol`` and ``openInterestHist``,
``contractType`` (only PERPETUAL simulated); rows carry ``pair``, the top position ratio
``longPosition``/``shortPosition``, taker volume and open interest in contracts and in the
base asset (``*Value``).
"""

from __future__ import annotations

import asyncio
import random
import time

import orjson
from aiohttp import web

from tests.venues.binance.emulator_coinm import BinanceCoinmEmulator
from tests.venues.binance.emulator_usdm import BinanceUsdmEmulator

ENDPOINTS = (
    "globalLongShortAccountRatio", "topLongShortAccountRatio", "topLongShortPositionRatio",
    "takerlongshortRatio", "openInterestHist",
)  # fmt: skip
COINM_ENDPOINTS = (*ENDPOINTS[:3], "takerBuySellVol", "openInterestHist")
PER_CONTRACT = ("takerBuySellVol", "openInterestHist")
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


def coinm_row(endpoint: str, pair: str, ts: int) -> dict:
    """COIN-M's row of ``endpoint`` for ``pair`` (BTCUSD) at ``ts``."""
    rnd = random.Random(f"coinm:{endpoint}:{pair}:{ts}")
    if endpoint in PER_CONTRACT:
        a, b = rnd.randint(1, 900_000), rnd.randint(1, 900_000)  # contracts
        va, vb = a * 100 / 65000.5, b * 100 / 65000.5  # their BTC at some price
        if endpoint == "takerBuySellVol":
            return {"pair": pair, "contractType": "PERPETUAL", "takerBuyVol": str(a),
                    "takerSellVol": str(b), "takerBuyVolValue": f"{va:.8f}",
                    "takerSellVolValue": f"{vb:.8f}", "timestamp": ts}  # fmt: skip
        return {"pair": pair, "contractType": "PERPETUAL", "sumOpenInterest": str(a),
                "sumOpenInterestValue": f"{va:.8f}", "timestamp": ts}  # fmt: skip
    long = rnd.randint(2_500, 7_500)
    side = "Position" if endpoint == "topLongShortPositionRatio" else "Account"
    return {"pair": pair, "longShortRatio": f"{long / (10_000 - long):.4f}",
            f"long{side}": f"{long / 1e4:.4f}", f"short{side}": f"{(10_000 - long) / 1e4:.4f}",
            "timestamp": ts}  # fmt: skip


class _History:
    """The futures/data timeline and its handler (mixed into the venue emulators)."""

    sims: dict
    _count: object
    add_rest_routes: object
    endpoints = ENDPOINTS

    def _init_history(self, period: str, history: int, lag_periods: int) -> None:
        self.period = period
        step = PERIOD_MS[period]
        now = int(time.time() * 1000) // step * step
        # ``history`` periods ending ``lag_periods`` before now: advance() has room to grow
        self.latest = now - lag_periods * step
        self.first = self.latest - (history - 1) * step
        self.delay_s = 0.0  # per answer: lets a test kill the collector mid-backfill
        self.ignore_window = False  # a misbehaving venue: always the newest rows
        self.garbage = 0  # answers to replace with an HTML error page (status 200)
        self.data_calls: list[tuple[str, str, int, int]] = []  # endpoint, symbol, start, end

    def add_history_routes(self, app: web.Application) -> None:
        for ep in self.endpoints:
            app.router.add_get(f"/futures/data/{ep}", self._history)

    def row(self, endpoint: str, native: str, ts: int) -> dict:
        return row(endpoint, native, ts)

    def asked(self, endpoint: str, q: dict) -> str | None:
        """The native symbol a query names, or None when it names none of ours."""
        symbol = q.get("symbol", "")
        return symbol if symbol in self.sims else None

    def advance(self, n: int) -> None:
        """``n`` more periods exist (the venue published them)."""
        self.latest += n * PERIOD_MS[self.period]

    def times(self) -> list[int]:
        step = PERIOD_MS[self.period]
        return list(range(self.first, self.latest + 1, step))

    def rows(self, endpoint: str, symbol: str) -> list[dict]:
        return [self.row(endpoint, symbol, t) for t in self.times()]

    async def _history(self, request: web.Request) -> web.Response:
        ep = request.path.rsplit("/", 1)[1]
        self._count(ep)  # type: ignore[operator]
        q = request.query
        symbol, period = self.asked(ep, dict(q)), q.get("period", "")
        if symbol is None:
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
        if self.ignore_window:
            times = self.times()[-limit:]
        if self.garbage:
            self.garbage -= 1
            return web.Response(body=b"<html>502 Bad Gateway</html>", content_type="text/html")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        body = orjson.dumps([self.row(ep, symbol, t) for t in times])
        return web.Response(body=body, content_type="application/json")


class BinancePositioningEmulator(_History, BinanceUsdmEmulator):
    def __init__(
        self,
        symbols: list[str] | tuple[str, ...] = ("BTCUSDT",),
        *,
        period: str = "5m",
        history: int = 144,
        lag_periods: int = 300,
        **kw: object,
    ) -> None:
        BinanceUsdmEmulator.__init__(self, symbols, **kw)
        self._init_history(period, history, lag_periods)

    def add_rest_routes(self, app: web.Application) -> None:
        BinanceUsdmEmulator.add_rest_routes(self, app)
        self.add_history_routes(app)


class BinanceCoinmPositioningEmulator(_History, BinanceCoinmEmulator):
    endpoints = COINM_ENDPOINTS

    def __init__(
        self,
        symbols: list[str] | tuple[str, ...] = ("BTCUSD_PERP",),
        *,
        period: str = "5m",
        history: int = 144,
        lag_periods: int = 300,
        **kw: object,
    ) -> None:
        BinanceCoinmEmulator.__init__(self, symbols, **kw)
        self._init_history(period, history, lag_periods)

    def add_rest_routes(self, app: web.Application) -> None:
        BinanceCoinmEmulator.add_rest_routes(self, app)
        self.add_history_routes(app)

    def row(self, endpoint: str, native: str, ts: int) -> dict:
        return coinm_row(endpoint, native.split("_")[0], ts)

    def asked(self, endpoint: str, q: dict) -> str | None:
        native = f"{q.get('pair', '')}_PERP"
        if native not in self.sims:
            return None
        if (endpoint in PER_CONTRACT) != ("contractType" in q):
            return None  # Binance: contractType is required there, unknown elsewhere
        if endpoint in PER_CONTRACT and q["contractType"] != "PERPETUAL":
            return None
        return native
