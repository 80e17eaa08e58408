"""A local Bitfinex v2 public REST API: the endpoints ccxt's ``bitfinex`` class calls for
load_markets, fetch_trades, fetch_ticker and fetch_ohlcv, over a seeded, generated history.

| ccxt call     | request                                                         |
|---------------|-----------------------------------------------------------------|
| load_markets  | ``GET /v2/conf/<label>,<label>,...`` (one array per label)      |
| fetch_trades  | ``GET /v2/trades/<tSYM>/hist?start&end&limit&sort``             |
| fetch_ohlcv   | ``GET /v2/candles/trade:<tf>:<tSYM>/hist?start&end&limit&sort`` |
| fetch_ticker  | ``GET /v2/ticker/<tSYM>``                                       |

Shapes follow the venue: trades ``[ID, MTS, AMOUNT, PRICE]`` (negative amount = sell),
candles ``[MTS, OPEN, CLOSE, HIGH, LOW, VOLUME]``, errors ``["error", code, text]`` with
HTTP 500, ``sort=1`` oldest first from ``start`` (inclusive), else newest first.
Candles are aggregated from the trades, so minutes without trades have no candle.

The market has a clock (``now_ms``): only trades at or before it exist, which is how a test
lets new trades "happen". Every request is logged with its monotonic arrival time (for the
rate-limit check), and ``break_next`` makes the next responses malformed.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.venues.emulator_base import EmulatorServer

T0_MS = 1_700_000_000_000 - 1_700_000_000_000 % 60_000  # on the minute grid
# (ccxt unified symbol, venue id, first price in ticks of 0.1)
MARKETS = [("BTC/USD", "tBTCUSD", 650_001), ("ETH/USD", "tETHUSD", 35_002)]
PERP = ("BTC/USDT:USDT", "tBTCF0:USTF0", 650_105)
TF_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000}


@dataclass
class Tape:
    """One symbol's generated trades: ids ascending, times ascending with ties."""

    ids: list[int] = field(default_factory=list)
    ms: list[int] = field(default_factory=list)
    ticks: list[int] = field(default_factory=list)  # price in 0.1
    lots: list[int] = field(default_factory=list)  # signed amount in 1e-8 (negative: sell)

    def row(self, i: int) -> list[Any]:
        return [self.ids[i], self.ms[i], self.lots[i] / 1e8, self.ticks[i] / 10]


def _generate(rnd: random.Random, first_id: int, price: int, n: int) -> Tape:
    tape = Tape()
    ms = T0_MS
    for i in range(n):
        # ~15% of trades share the previous trade's millisecond (cursor tie handling)
        ms += 0 if rnd.random() < 0.15 else rnd.randint(1, 1500)
        price = max(10, price + rnd.randint(-30, 30))
        lots = rnd.randint(1, 200_000_000) * (1 if rnd.random() < 0.5 else -1)
        tape.ids.append(first_id if i == 0 else tape.ids[-1] + rnd.randint(1, 3))
        tape.ms.append(ms)
        tape.ticks.append(price)
        tape.lots.append(lots)
    return tape


class BitfinexEmulator(EmulatorServer):
    access_log = False

    def __init__(self, trades_per_symbol: int = 3000, seed: int = 1, port: int = 0) -> None:
        super().__init__(port=port)
        rnd = random.Random(seed)
        self.tapes: dict[str, Tape] = {}
        for n, (_, vid, price) in enumerate([*MARKETS, PERP]):
            self.tapes[vid] = _generate(rnd, 10_000_000 * (n + 1), price, trades_per_symbol)
        self.now_ms = max(t.ms[-1] for t in self.tapes.values())
        self.requests: list[tuple[float, str, dict[str, str]]] = []
        self.break_next: list[bytes] = []  # bodies served (status 200) instead of the answer

    # -- routes --------------------------------------------------------------------------
    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v2/conf/{config}", self._conf)
        app.router.add_get("/v2/trades/{symbol}/hist", self._trades)
        app.router.add_get(r"/v2/candles/trade:{tf}:{symbol:.+}/hist", self._candles)
        app.router.add_get("/v2/ticker/{symbol}", self._ticker)

    # -- what a test checks against ------------------------------------------------------
    def visible(self, vid: str, start: int = 0, end: int | None = None) -> list[list[Any]]:
        """Trades in [start, end) that exist at the current clock, oldest first."""
        tape = self.tapes[vid]
        stop = self.now_ms + 1 if end is None else min(end, self.now_ms + 1)
        return [tape.row(i) for i in range(len(tape.ms)) if start <= tape.ms[i] < stop]

    def candles(self, vid: str, tf: str = "1m") -> list[list[Any]]:
        """Every candle (open time, o, c, h, l, v) whose period holds a visible trade."""
        step = TF_MS[tf]
        tape = self.tapes[vid]
        out: dict[int, list[Any]] = {}
        vol: dict[int, int] = {}
        for i in range(len(tape.ms)):
            if tape.ms[i] > self.now_ms:
                break
            b = tape.ms[i] - tape.ms[i] % step
            p = tape.ticks[i]
            c = out.get(b)
            if c is None:
                out[b] = [b, p, p, p, p]
            else:
                c[2] = p
                c[3] = max(c[3], p)
                c[4] = min(c[4], p)
            vol[b] = vol.get(b, 0) + abs(tape.lots[i])
        return [[b, o / 10, c / 10, h / 10, lo / 10, vol[b] / 1e8]
                for b, (_, o, c, h, lo) in sorted(out.items())]  # fmt: skip

    def vid(self, unified: str) -> str:
        return {u: v for u, v, _ in [*MARKETS, PERP]}[unified]

    # -- handlers ------------------------------------------------------------------------
    def _log(self, request: web.Request) -> web.Response | None:
        self.requests.append((time.monotonic(), request.path, dict(request.query)))
        if self.break_next:
            return web.Response(body=self.break_next.pop(0), content_type="application/json")
        return None

    @staticmethod
    def _json(data: Any, status: int = 200) -> web.Response:
        return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")

    def _error(self, code: int, text: str) -> web.Response:
        return self._json(["error", code, text], status=500)

    async def _conf(self, request: web.Request) -> web.Response:
        if (broken := self._log(request)) is not None:
            return broken
        answers: list[Any] = []
        for label in request.match_info["config"].split(","):
            if label == "pub:info:pair":
                answers.append([[vid[1:], [None, None, None, "0.00004", "2000.0"]]
                                for _, vid, _ in MARKETS])  # fmt: skip
            elif label == "pub:info:pair:futures":
                answers.append([[PERP[1][1:], [None, None, None, "0.0002", "100.0"]]])
            elif label == "pub:list:pair:margin":
                answers.append([MARKETS[0][1][1:]])
            elif label == "pub:list:currency":
                answers.append(["BTC", "ETH", "USD", "UST", "BTCF0", "USTF0"])
            elif label.startswith("pub:"):
                answers.append([])
            else:
                return self._error(10020, f"unknown config {label}")
        return self._json(answers)

    def _range(self, request: web.Request, max_limit: int, default: int) -> tuple[int, int, int]:
        q = request.query
        start = int(q.get("start", 0))
        end = int(q.get("end", 2**62))
        limit = int(q.get("limit", default))
        if not 0 < limit <= max_limit:
            raise ValueError("limit: invalid")
        return start, end, limit

    async def _trades(self, request: web.Request) -> web.Response:
        if (broken := self._log(request)) is not None:
            return broken
        vid = request.match_info["symbol"]
        if vid not in self.tapes:
            return self._error(10020, "symbol: invalid")
        try:
            start, end, limit = self._range(request, 10_000, 125)
        except ValueError as exc:
            return self._error(10020, str(exc))
        rows = self.visible(vid, start, end + 1)
        rows = rows[:limit] if request.query.get("sort") == "1" else rows[::-1][:limit]
        return self._json(rows)

    async def _candles(self, request: web.Request) -> web.Response:
        if (broken := self._log(request)) is not None:
            return broken
        vid, tf = request.match_info["symbol"], request.match_info["tf"]
        if vid not in self.tapes or tf not in TF_MS:
            return self._error(10020, "key: invalid")
        try:
            start, end, limit = self._range(request, 10_000, 100)
        except ValueError as exc:
            return self._error(10020, str(exc))
        rows = [c for c in self.candles(vid, tf) if start <= c[0] <= end]
        rows = rows[:limit] if request.query.get("sort") == "1" else rows[::-1][:limit]
        return self._json(rows)

    async def _ticker(self, request: web.Request) -> web.Response:
        if (broken := self._log(request)) is not None:
            return broken
        vid = request.match_info["symbol"]
        if vid not in self.tapes:
            return self._error(10020, "symbol: invalid")
        rows = self.visible(vid)
        if not rows:
            return self._json([None] * 10)
        last = rows[-1][3]
        day = [r for r in rows if r[1] > self.now_ms - 86_400_000]
        volume = sum(abs(r[2]) for r in day)
        first = day[0][3]
        return self._json([
            round(last - 0.1, 1), 1.5, round(last + 0.1, 1), 2.25, round(last - first, 1),
            round((last - first) / first, 6), last, round(volume, 8),
            max(r[3] for r in day), min(r[3] for r in day),
        ])  # fmt: skip
