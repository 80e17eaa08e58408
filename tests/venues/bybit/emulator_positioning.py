"""Bybit v5 positioning history on the Bybit emulator, shaped as bybit-exchange.github.io
documents it:

  GET /v5/market/account-ratio?category&symbol&period(5min..1d)&startTime&endTime&limit(<=500)
      {"retCode":0,"retMsg":"OK","result":{"list":[{"symbol","buyRatio","sellRatio",
       "timestamp"}],"nextPageCursor":""},"retExtInfo":{},"time":...}
  GET /v5/market/open-interest?category&symbol&intervalTime&startTime&endTime&limit(<=200)
      {"retCode":0,...,"result":{"symbol","category","list":[{"openInterest","timestamp"}],
       "nextPageCursor":""}}

Lists newest first, as Bybit returns them; timestamps are strings. The history is a fixed
timeline in the past (``first``..``latest``), ``advance(n)`` adds periods; values are a
function of (endpoint, symbol, time): ``rows()`` is the truth a test compares with.
"""

from __future__ import annotations

import random
import time

import orjson
from aiohttp import web

from tests.venues.bybit.emulator import BybitEmulator

PERIODS = {"5min": 300_000, "15min": 900_000, "1h": 3_600_000}
LIMITS = {"account-ratio": 500, "open-interest": 200}


def row(endpoint: str, symbol: str, ts: int) -> dict:
    rnd = random.Random(f"bybit:{endpoint}:{symbol}:{ts}")
    if endpoint == "open-interest":
        return {"openInterest": f"{rnd.randint(10**9, 10**10) / 1e3:.8f}", "timestamp": str(ts)}
    buy = rnd.randint(2_500, 7_500)
    return {"symbol": symbol, "buyRatio": f"{buy / 1e4:.4f}",
            "sellRatio": f"{(10_000 - buy) / 1e4:.4f}", "timestamp": str(ts)}  # fmt: skip


class BybitPositioningEmulator(BybitEmulator):
    def __init__(self, *args: object, period: str = "5min", history: int = 100,
                 lag_periods: int = 300, **kw: object) -> None:  # fmt: skip
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.period = period
        step = PERIODS[period]
        now = int(time.time() * 1000) // step * step
        self.latest = now - lag_periods * step
        self.first = self.latest - (history - 1) * step
        self.history_calls: list[tuple[str, str, int, int]] = []

    def routes(self, app: web.Application) -> None:
        super().routes(app)
        app.router.add_get("/v5/market/account-ratio", self._history)
        app.router.add_get("/v5/market/open-interest", self._history)

    def advance(self, n: int) -> None:
        self.latest += n * PERIODS[self.period]

    def times(self) -> list[int]:
        return list(range(self.first, self.latest + 1, PERIODS[self.period]))

    def rows(self, endpoint: str, symbol: str) -> list[dict]:
        return [row(endpoint, symbol, t) for t in self.times()]

    @staticmethod
    def _error(code: int, msg: str) -> web.Response:
        body = {"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {}, "time": 0}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def _history(self, request: web.Request) -> web.Response:
        ep = request.path.rsplit("/", 1)[1]
        self.rest_calls[ep] = self.rest_calls.get(ep, 0) + 1
        q = request.query
        cat, sym = q.get("category", ""), q.get("symbol", "")
        period = q.get("period" if ep == "account-ratio" else "intervalTime", "")
        if (cat, sym) not in self.sims:
            return self._error(10001, "params error: symbol invalid")
        if period != self.period:
            return self._error(10001, "params error: period invalid")
        limit = int(q.get("limit", "50"))
        if not 1 <= limit <= LIMITS[ep]:
            return self._error(10001, "params error: limit invalid")
        start, end = int(q.get("startTime", "0")), int(q.get("endTime", str(2**62)))
        self.history_calls.append((ep, sym, start, end))
        times = [t for t in self.times() if start <= t <= end][-limit:]
        rows = [row(ep, sym, t) for t in reversed(times)]  # newest first
        result: dict = {"list": rows, "nextPageCursor": ""}
        if ep == "open-interest":
            result = {"symbol": sym, "category": cat, **result}
        body = {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {},
                "time": int(time.time() * 1000)}  # fmt: skip
        return web.Response(body=orjson.dumps(body), content_type="application/json")
