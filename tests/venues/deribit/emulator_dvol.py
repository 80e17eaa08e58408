"""Deribit DVOL on the Deribit emulator, shaped as docs.deribit.com documents it:

- WebSocket ``deribit_volatility_index.<index_name>`` notifications,
  ``{"volatility": 129.36, "timestamp": 1619777946007, "index_name": "btc_usd"}``
  (``emit_dvol``);
- REST ``GET /api/v2/public/get_volatility_index_data?currency&start_timestamp&end_timestamp
  &resolution`` -> ``{"jsonrpc":"2.0","result":{"data":[[ms, open, high, low, close], ...],
  "continuation": null}, ...}``, ascending, at most 1000 candles (then ``continuation``).

Candles run on the real clock at 1-minute resolution: every minute up to now has one, and
the newest (the minute in progress) changes with time, as Deribit's does; ``final(ts)`` is
a closed candle's value, so a test can tell a stored in-progress candle from a closed one.
"""

from __future__ import annotations

import random
import time

import orjson
from aiohttp import web

from tests.venues.deribit.emulator import DeribitEmulator

RES_MS = {"60": 60_000, "3600": 3_600_000}
MAX_CANDLES = 1000


def final(currency: str, res: str, ts: int) -> list[float]:
    """The closed candle ``[open, high, low, close]`` of ``currency`` at ``ts``."""
    rnd = random.Random(f"{currency}:{res}:{ts}")
    o = round(rnd.uniform(40, 90), 2)
    c = round(o + rnd.uniform(-2, 2), 2)
    return [o, round(max(o, c) + rnd.uniform(0, 1), 2), round(min(o, c) - rnd.uniform(0, 1), 2), c]


class DeribitDvolEmulator(DeribitEmulator):
    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.dvol_sent: list[dict] = []
        self.dvol_calls: list[dict[str, str]] = []

    def routes(self, app: web.Application) -> None:
        super().routes(app)
        app.router.add_get("/api/v2/public/get_volatility_index_data", self._rest_dvol)

    def candles(self, currency: str, res: str, start: int, end: int, now_ms: int) -> list[list]:
        step = RES_MS[res]
        out = []
        for ts in range(-(-start // step) * step, min(end, now_ms) + 1, step):
            o, h, lo, c = final(currency, res, ts)
            if ts + step > now_ms:  # in progress: its close still moves
                c = round(c + (now_ms - ts) / 1e4, 2)
            out.append([ts, o, max(h, c), min(lo, c), c])
        return out

    async def emit_dvol(self, index: str, values: list[float]) -> None:
        batch = []
        for v in values:
            now = int(time.time() * 1000) + len(batch)
            data = {"volatility": v, "timestamp": now, "index_name": index}
            self.dvol_sent.append(data)
            batch.append(("dvol", index, data))
        await self._broadcast(batch)

    async def _rest_dvol(self, request: web.Request) -> web.Response:
        q = dict(request.query)
        self.dvol_calls.append(q)
        try:
            cur, res = q["currency"], q["resolution"]
            start, end = int(q["start_timestamp"]), int(q["end_timestamp"])
            if res not in RES_MS:
                raise ValueError(res)
        except (KeyError, ValueError):
            err = {"code": -32602, "message": "Invalid params"}
            body = orjson.dumps({"jsonrpc": "2.0", "error": err})
            return web.Response(body=body, status=400, content_type="application/json")
        rows = self.candles(cur, res, start, end, int(time.time() * 1000))
        cont = None
        if len(rows) > MAX_CANDLES:  # Deribit keeps the newest and says where to go on
            rows = rows[-MAX_CANDLES:]
            cont = rows[0][0] - 1
        body = {"jsonrpc": "2.0", "result": {"data": rows, "continuation": cont},
                "usIn": 0, "usOut": 0, "usDiff": 0, "testnet": False}  # fmt: skip
        return web.Response(body=orjson.dumps(body), content_type="application/json")
