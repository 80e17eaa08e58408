"""OKX trading statistics (rubik) on the OKX emulator, shaped as the OKX v5 docs give them
("Trading Statistics" REST): per contract ``instId``, ``period`` (5m, 15m, 30m, 1H, ...,
1D), ``begin``/``end`` (ms), ``limit`` (<= 100); ``{"code":"0","msg":"","data":[...]}``
with rows of strings, newest first:

  /api/v5/rubik/stat/contracts/long-short-account-ratio-contract[-top-trader]  [ts, ratio]
  /api/v5/rubik/stat/contracts/long-short-position-ratio-contract-top-trader    [ts, ratio]
  /api/v5/rubik/stat/contracts/open-interest-history      [ts, oi, oiCcy, oiUsd]
  /api/v5/rubik/stat/taker-volume-contract (unit 0 coin, 1 contracts, 2 USD) [ts, sell, buy]

The history is a fixed timeline in the past; ``advance(n)`` adds periods; ``rows()`` is the
truth (taker volume in coin units, as the collector asks with unit=0).
"""

from __future__ import annotations

import random
import time

import orjson
from aiohttp import web

from tests.venues.okx.emulator import OkxEmulator

PATHS = {
    "rubik/stat/contracts/long-short-account-ratio-contract": "long_short_account_ratio",
    "rubik/stat/contracts/long-short-account-ratio-contract-top-trader": "top_account_ratio",
    "rubik/stat/contracts/long-short-position-ratio-contract-top-trader": "top_position_ratio",
    "rubik/stat/contracts/open-interest-history": "open_interest_history",
    "rubik/stat/taker-volume-contract": "taker_volume",
}
PERIODS = {"5m": 300_000, "1H": 3_600_000}


def row(endpoint: str, inst: str, ts: int, unit: str = "0") -> list[str]:
    rnd = random.Random(f"okx:{endpoint}:{inst}:{ts}")
    if endpoint == "taker_volume":
        sell, buy = rnd.randint(1, 10**7), rnd.randint(1, 10**7)  # in 0.01 BTC contracts
        if unit == "0":
            return [str(ts), f"{sell / 100:.2f}", f"{buy / 100:.2f}"]
        return [str(ts), str(sell), str(buy)]
    if endpoint == "open_interest_history":
        oi = rnd.randint(10**5, 10**7)
        return [str(ts), str(oi), f"{oi / 100:.2f}", f"{oi / 100 * 65000.5:.1f}"]
    return [str(ts), f"{rnd.randint(3_000, 30_000) / 10_000:.4f}"]


class OkxPositioningEmulator(OkxEmulator):
    def __init__(self, *args: object, period: str = "5m", history: int = 150,
                 lag_periods: int = 300, **kw: object) -> None:  # fmt: skip
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.period = period
        step = PERIODS[period]
        now = int(time.time() * 1000) // step * step
        self.latest = now - lag_periods * step
        self.first = self.latest - (history - 1) * step
        self.rubik_calls: list[tuple[str, str, int, int]] = []

    def routes(self, app: web.Application) -> None:
        super().routes(app)
        for path in PATHS:
            app.router.add_get(f"/api/v5/{path}", self._rubik)

    def advance(self, n: int) -> None:
        self.latest += n * PERIODS[self.period]

    def times(self) -> list[int]:
        return list(range(self.first, self.latest + 1, PERIODS[self.period]))

    def rows(self, endpoint: str, inst: str) -> list[list[str]]:
        return [row(endpoint, inst, t) for t in self.times()]

    @staticmethod
    def _reply(code: str, msg: str, data: list) -> web.Response:
        body = orjson.dumps({"code": code, "msg": msg, "data": data})
        return web.Response(body=body, content_type="application/json")

    async def _rubik(self, request: web.Request) -> web.Response:
        ep = PATHS[request.path.removeprefix("/api/v5/")]
        self.rest_calls[ep] = self.rest_calls.get(ep, 0) + 1
        q = request.query
        inst = q.get("instId", "")
        if inst not in self.sims or not inst.endswith(("-SWAP", "-FUTURES")):
            return self._reply("51001", "Instrument ID does not exist", [])
        if q.get("period", "5m") != self.period:
            return self._reply("51000", "Parameter period error", [])
        limit = int(q.get("limit", "100"))
        if not 1 <= limit <= 100:
            return self._reply("51000", "Parameter limit error", [])
        begin, end = int(q.get("begin", "0")), int(q.get("end", str(2**62)))
        self.rubik_calls.append((ep, inst, begin, end))
        times = [t for t in self.times() if begin <= t <= end][-limit:]
        data = [row(ep, inst, t, q.get("unit", "1")) for t in reversed(times)]
        return self._reply("0", "", data)
