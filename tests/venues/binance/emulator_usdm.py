"""Binance USDⓈ-M futures emulator: the spot emulator's WebSocket on fstream-style paths,
REST under ``/fapi/v1`` (depth with ``E``/``T``, exchangeInfo with contract types,
openInterest), depth updates carrying ``pu`` (the previous event's ``u``), and the
futures-only streams: aggTrade, markPrice@1s, forceOrder."""

from __future__ import annotations

import time

import orjson
from aiohttp import web

from tests.venues.binance.emulator import (
    PRICE_DECIMALS,
    QTY_DECIMALS,
    BinanceEmulator,
    SymbolSim,
    _fmt,
)

FUNDING_EVERY_MS = 8 * 3600 * 1000


class FuturesSim(SymbolSim):
    def __init__(self, native: str, rnd: object, mid_ticks: int) -> None:
        super().__init__(native, rnd, mid_ticks)  # type: ignore[arg-type]
        self.agg_id = 0
        self.open_interest = 10_000_000  # in qty units (1e-5)
        # markPrice@1s: one event a second per symbol, so the venue's event time is its
        # identity; a simulated clock lets tests send many seconds' worth at once
        self.mark_ms = int(time.time()) * 1000

    @property
    def symbol(self) -> str:
        return f"{self.base}-{self.quote}-PERP"

    def depth(self, now_ms: int) -> dict:
        prev = self.u
        d = super().depth(now_ms)
        return {**d, "T": now_ms, "pu": prev}

    def snapshot(self, limit: int) -> dict:
        now = int(time.time() * 1000)
        return {**super().snapshot(limit), "E": now, "T": now}

    def agg_trade(self, now_ms: int) -> dict:
        data, (p, q, _) = self.trade(now_ms)
        self.agg_id += 1
        return {"e": "aggTrade", "E": now_ms, "s": self.native, "a": self.agg_id, "p": p,
                "q": q, "f": data["t"], "l": data["t"], "T": now_ms,
                "m": data["m"]}  # fmt: skip

    def mark(self) -> dict:
        self.mark_ms += 1000
        now_ms = self.mark_ms
        mid = (max(self.bids) + min(self.asks)) // 2
        rate = self.rnd.randint(-30, 30)
        return {"e": "markPriceUpdate", "E": now_ms, "s": self.native,
                "p": _fmt(mid, PRICE_DECIMALS), "i": _fmt(mid - 3, PRICE_DECIMALS),
                "P": _fmt(mid + 1, PRICE_DECIMALS), "r": f"{rate / 1e6:.8f}",
                "T": (now_ms // FUNDING_EVERY_MS + 1) * FUNDING_EVERY_MS}  # fmt: skip

    def liquidation(self, now_ms: int) -> dict:
        px = max(self.bids)
        q = _fmt(self.rnd.randint(1, 50_000), QTY_DECIMALS)
        return {"e": "forceOrder", "E": now_ms,
                "o": {"s": self.native, "S": "SELL", "o": "LIMIT", "f": "IOC", "q": q,
                      "p": _fmt(px, PRICE_DECIMALS), "ap": _fmt(px, PRICE_DECIMALS),
                      "X": "FILLED", "l": q, "z": q, "T": now_ms}}  # fmt: skip


class BinanceUsdmEmulator(BinanceEmulator):
    # USDⓈ-M: 2400 weight per minute; depth 5-50 -> 2, 100 -> 5, 500 -> 10, 1000 -> 20
    DEPTH_WEIGHTS = ((50, 2), (100, 5), (500, 10), (1000, 20))
    WEIGHT_PER_MIN = 2400
    INFO_WEIGHT = 1

    def __init__(self, symbols: list[str] | tuple[str, ...] = ("BTCUSDT",), **kw: object) -> None:
        super().__init__(symbols, **kw)  # type: ignore[arg-type]
        self.sims = {  # type: ignore[assignment]
            s: FuturesSim(s, self.rnd, 6_500_000 if s.startswith("BTC") else 350_000)
            for s in symbols
        }
        self.sent: dict[str, list[dict]] = {"aggTrade": [], "markPrice": [], "forceOrder": []}
        self.oi_served: list[dict] = []

    def add_rest_routes(self, app: web.Application) -> None:
        app.router.add_get("/fapi/v1/depth", self._rest_depth)
        app.router.add_get("/fapi/v1/exchangeInfo", self._rest_futures_info)
        app.router.add_get("/fapi/v1/openInterest", self._rest_open_interest)
        app.router.add_get("/fapi/v1/ping", self._rest_ping)
        app.router.add_get("/fapi/v1/time", self._rest_time)

    async def emit_futures(self, n: int, *, marks_every: int = 10, liq_every: int = 50) -> None:
        """``n`` aggregated trades across symbols, a depth update every ``depth_every``,
        a mark price every ``marks_every`` and a liquidation every ``liq_every``."""
        sims: list[FuturesSim] = list(self.sims.values())  # type: ignore[arg-type]
        batch = []
        for i in range(1, n + 1):
            sim = self.rnd.choice(sims)
            now = int(time.time() * 1000)
            low = sim.native.lower()
            events = [("aggTrade", f"{low}@aggTrade", sim.agg_trade(now))]
            if i % self.depth_every == 0:
                events.append(("depth", f"{low}@depth@100ms", sim.depth(now)))
            if i % marks_every == 0:
                events.append(("markPrice", f"{low}@markPrice@1s", sim.mark()))
            if i % liq_every == 0:
                events.append(("forceOrder", f"{low}@forceOrder", sim.liquidation(now)))
            for kind, stream, data in events:
                if kind in self.sent:
                    self.sent[kind].append(data)
                batch.append(self._frame(stream, data))
            if len(batch) >= 500:
                await self._broadcast(batch)
                batch = []
        await self._broadcast(batch)

    async def _rest_futures_info(self, request: web.Request) -> web.Response:
        self._count("exchangeInfo")
        symbols = [
            {"symbol": s.native, "pair": s.native, "contractType": "PERPETUAL",
             "deliveryDate": 4133404800000, "status": "TRADING", "baseAsset": s.base,
             "quoteAsset": s.quote, "marginAsset": s.quote,
             "filters": [{"filterType": "PRICE_FILTER", "minPrice": "0.10",
                          "maxPrice": "1000000", "tickSize": "0.01"},
                         {"filterType": "LOT_SIZE", "minQty": "0.00001",
                          "maxQty": "1000", "stepSize": "0.00001"}]}
            for s in self.sims.values()
        ]  # fmt: skip
        body = {"timezone": "UTC", "serverTime": int(time.time() * 1000), "symbols": symbols}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def _rest_open_interest(self, request: web.Request) -> web.Response:
        self._count("openInterest")
        sim = self.sims.get(request.query.get("symbol", ""))
        if not isinstance(sim, FuturesSim):
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        sim.open_interest += self.rnd.randint(-1000, 1000)
        # distinct times per answer: Binance's own resolution is the millisecond
        last = self.oi_served[-1]["time"] if self.oi_served else 0
        body = {"openInterest": _fmt(sim.open_interest, QTY_DECIMALS), "symbol": sim.native,
                "time": max(int(time.time() * 1000), last + 1)}  # fmt: skip
        self.oi_served.append(body)
        return web.Response(body=orjson.dumps(body), content_type="application/json")
