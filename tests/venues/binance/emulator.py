"""A local Binance spot exchange: real WebSocket and REST protocol, generated market.

Speaks what the collector uses: combined streams (``/stream?streams=a/b``) and raw
streams (``/ws``), the ``SUBSCRIBE``/``UNSUBSCRIBE``/``LIST_SUBSCRIPTIONS`` methods,
server pings, ``GET /api/v3/depth`` and ``GET /api/v3/exchangeInfo``. Behind it is a
true L2 book per symbol kept in integer ticks (so every price/size string is exact),
random-walking trades with consecutive ids, and depth events whose ``U``/``u`` chain
like the venue's. Tests drive it directly; ``python -m tests.venues binance`` runs it
standalone with an HTTP control API under ``/_emu/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from tests.venues.emulator_base import EmulatorServer, VenueLimits

PRICE_DECIMALS = 2
QTY_DECIMALS = 5
QUOTES = ("USDT", "USDC", "BTC", "ETH")


def _fmt(units: int, decimals: int) -> str:
    sign = "-" if units < 0 else ""
    units = abs(units)
    scale = 10**decimals
    return f"{sign}{units // scale}.{units % scale:0{decimals}d}"


def _levels(levels: object) -> list[list[str]]:
    return [[_fmt(p, PRICE_DECIMALS), _fmt(q, QTY_DECIMALS)] for p, q in levels]  # type: ignore[attr-defined]


def split_symbol(native: str) -> tuple[str, str]:
    for q in QUOTES:
        if native.endswith(q):
            return native[: -len(q)], q
    raise ValueError(native)


class SymbolSim:
    """One symbol's true book and trade tape, in integer ticks and lots."""

    def __init__(self, native: str, rnd: random.Random, mid_ticks: int) -> None:
        self.native = native
        self.base, self.quote = split_symbol(native)
        self.rnd = rnd
        self.bids: dict[int, int] = {mid_ticks - i: rnd.randint(1, 500_000) for i in range(1, 60)}
        self.asks: dict[int, int] = {mid_ticks + i: rnd.randint(1, 500_000) for i in range(1, 60)}
        self.u = 1_000_000
        self.trade_id = 0
        self.history: dict[int, tuple[list, list]] | None = None  # u -> top 20, when wanted

    @property
    def symbol(self) -> str:
        return f"{self.base}-{self.quote}"

    def trade(self, now_ms: int) -> tuple[dict, tuple[str, str, str]]:
        r = self.rnd
        self.trade_id += 1
        buyer_maker = r.random() < 0.5  # taker sold into the best bid
        px = max(self.bids) if buyer_maker else min(self.asks)
        qty = r.randint(1, 300_000)
        p, q = _fmt(px, PRICE_DECIMALS), _fmt(qty, QTY_DECIMALS)
        data = {"e": "trade", "E": now_ms, "s": self.native, "t": self.trade_id, "p": p,
                "q": q, "T": now_ms, "m": buyer_maker, "M": True}  # fmt: skip
        return data, (p, q, "sell" if buyer_maker else "buy")

    def depth(self, now_ms: int) -> dict:
        r = self.rnd
        changes: dict[str, dict[int, int]] = {"b": {}, "a": {}}
        for _ in range(r.randint(1, 6)):
            bid = r.random() < 0.5
            own, other, key = (self.bids, self.asks, "b") if bid else (self.asks, self.bids, "a")
            edge = min(other) if bid else max(other)
            offset = r.randint(1, 40)
            price = edge - offset if bid else edge + offset
            if price <= 0:
                continue
            if price in own and r.random() < 0.4 and len(own) > 5:
                del own[price]
                changes[key][price] = 0
            else:
                own[price] = r.randint(1, 900_000)
                changes[key][price] = own[price]
        first = self.u + 1
        self.u += r.randint(1, 4)
        if self.history is not None:
            bids, asks = self.true_book()
            self.history[self.u] = (bids[:20], asks[:20])
        return {
            "e": "depthUpdate", "E": now_ms, "s": self.native, "U": first, "u": self.u,
            "b": _levels(changes["b"].items()), "a": _levels(changes["a"].items()),
        }  # fmt: skip

    def snapshot(self, limit: int) -> dict:
        bids = sorted(self.bids.items(), reverse=True)[:limit]
        asks = sorted(self.asks.items())[:limit]
        return {"lastUpdateId": self.u, "bids": _levels(bids), "asks": _levels(asks)}

    def true_book(self) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """The book as floats, best first (what a correct consumer must hold)."""

        def conv(levels: list[tuple[int, int]]) -> list[tuple[float, float]]:
            return [(float(_fmt(p, PRICE_DECIMALS)), float(_fmt(q, QTY_DECIMALS)))
                    for p, q in levels]  # fmt: skip

        return conv(sorted(self.bids.items(), reverse=True)), conv(sorted(self.asks.items()))


@dataclass
class Client:
    ws: web.WebSocketResponse
    combined: bool
    streams: set[str] = field(default_factory=set)


class BinanceEmulator(EmulatorServer):
    clients: list[Client]
    ws_path = ""

    def __init__(
        self,
        symbols: list[str] | tuple[str, ...] = ("BTCUSDT", "ETHUSDT"),
        *,
        seed: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        depth_every: int = 3,
        ping_interval_s: float = 20.0,
    ) -> None:
        self.rnd = random.Random(seed)
        self.sims = {
            s: SymbolSim(s, self.rnd, 6_500_000 if s.startswith("BTC") else 350_000)
            for s in symbols
        }
        super().__init__(host, port)
        self.depth_every = depth_every
        self.ping_interval_s = ping_interval_s
        self.emitted_trades: dict[tuple[str, str], tuple[str, str, str, str]] = {}
        self.frames_sent = 0
        self.rest_calls: dict[str, int] = {}
        self._events = 0

    # -- routes --------------------------------------------------------------------------
    def routes(self, app: web.Application) -> None:
        app.router.add_get("/stream", self._ws_handler)
        app.router.add_get("/ws", self._ws_handler)
        app.router.add_get("/ws/{streams}", self._ws_handler)
        self.add_rest_routes(app)
        app.router.add_post("/_emu/emit", self._ctl_emit)
        app.router.add_post("/_emu/drop", self._ctl_drop)
        app.router.add_post("/_emu/raw", self._ctl_raw)
        app.router.add_get("/_emu/stats", self._ctl_stats)

    def add_rest_routes(self, app: web.Application) -> None:
        """The venue's REST paths (the USDⓈ-M emulator serves /fapi/v1 instead)."""
        app.router.add_get("/api/v3/depth", self._rest_depth)
        app.router.add_get("/api/v3/exchangeInfo", self._rest_info)
        app.router.add_get("/api/v3/ping", self._rest_ping)
        app.router.add_get("/api/v3/time", self._rest_time)

    # (limit upper bound, weight) of GET depth, and the IP's weight per minute
    DEPTH_WEIGHTS: tuple[tuple[int, int], ...] = ((100, 5), (500, 25), (1000, 50), (5000, 250))
    WEIGHT_PER_MIN = 6000
    INFO_WEIGHT = 20

    def venue_limits(self) -> VenueLimits:
        """Binance's REQUEST_WEIGHT per minute per IP with its weights, the used-weight
        header, 429 then a 418 ban for a client that keeps calling."""

        def weight(request: web.Request) -> int:
            if request.path.endswith("/depth"):
                limit = int(request.query.get("limit", "100"))
                return next((w for upto, w in self.DEPTH_WEIGHTS if limit <= upto),
                            self.DEPTH_WEIGHTS[-1][1])  # fmt: skip
            return self.INFO_WEIGHT if request.path.endswith("/exchangeInfo") else 1

        return VenueLimits(self.WEIGHT_PER_MIN, 60.0, weight, "X-MBX-USED-WEIGHT-1M")

    @property
    def connections(self) -> int:
        return len(self.clients)

    async def wait_connected(self, n: int = 1, timeout: float = 10.0) -> None:
        await self.wait_for(lambda: self._subscribed() >= n, timeout)

    def _subscribed(self) -> int:
        return sum(1 for c in self.clients if c.streams)

    def true_book(self, native: str) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        return self.sims[native].true_book()

    # -- market generation ---------------------------------------------------------------
    async def emit_trades(self, n: int, rate: float | None = None, chunk: int = 200) -> None:
        """Emit ``n`` trades across the symbols, a depth update every ``depth_every`` events,
        at about ``rate`` trades per second (as fast as possible when None)."""
        sims = list(self.sims.values())
        t0 = time.monotonic()
        done = 0
        while done < n:
            batch: list[tuple[str, bytes, bytes]] = []
            now_ms = int(time.time() * 1000)
            for _ in range(min(chunk, n - done)):
                sim = self.rnd.choice(sims)
                data, (p, q, side) = sim.trade(now_ms)
                self.emitted_trades[(sim.symbol, str(data["t"]))] = (sim.symbol, p, q, side)
                batch.append(self._frame(f"{sim.native.lower()}@trade", data))
                self._events += 1
                if self._events % self.depth_every == 0:
                    d = sim.depth(now_ms)
                    batch.append(self._frame(f"{sim.native.lower()}@depth@100ms", d))
                done += 1
            await self._broadcast(batch)
            if rate:
                ahead = done / rate - (time.monotonic() - t0)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            else:
                await asyncio.sleep(0)

    async def emit_depth(
        self,
        n: int,
        native: str | None = None,
        *,
        fault: str | None = None,
        rate: float | None = None,
    ) -> None:
        """Emit ``n`` depth updates. ``fault`` injects one wire fault halfway through, for
        the symbol ``native``: ``drop`` (an update never sent), ``duplicate`` (sent twice),
        ``reorder`` (two updates swapped), ``cross`` (a level that crosses the book is sent
        in place of the real update)."""
        sims = [self.sims[native]] if native else list(self.sims.values())
        t0 = time.monotonic()
        batch: list[tuple[str, bytes, bytes]] = []
        held: tuple[str, bytes, bytes] | None = None
        for i in range(n):
            sim = self.rnd.choice(sims)
            stream = f"{sim.native.lower()}@depth@100ms"
            data = sim.depth(int(time.time() * 1000))
            frame = self._frame(stream, data)
            if fault and i == n // 2:
                sim = self.sims[native] if native else sim
                if fault == "drop":
                    frame = None
                elif fault == "duplicate":
                    batch.append(frame)
                elif fault == "reorder":
                    held, frame = frame, None
                elif fault == "cross":
                    bad = dict(data, b=[[_fmt(min(sim.asks) + 5, PRICE_DECIMALS), "1.00000"]], a=[])
                    frame = self._frame(stream, bad)
                else:
                    raise ValueError(f"unknown fault {fault!r}")
            if frame is not None:
                batch.append(frame)
            if held is not None and frame is not None:
                batch.append(held)
                held = None
            if len(batch) >= 500:
                await self._broadcast(batch)
                batch = []
                if rate:
                    ahead = (i + 1) / rate - (time.monotonic() - t0)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
        await self._broadcast(batch)

    @staticmethod
    def _frame(stream: str, data: dict) -> tuple[str, bytes, bytes]:
        return stream, orjson.dumps({"stream": stream, "data": data}), orjson.dumps(data)

    async def _broadcast(self, batch: list[tuple[str, bytes, bytes]]) -> None:
        for c in list(self.clients):
            try:
                for stream, combined, raw in batch:
                    if stream in c.streams:
                        await c.ws.send_str((combined if c.combined else raw).decode())
                        self.frames_sent += 1
            except (ConnectionError, RuntimeError):
                pass  # the client went away; its handler cleans up

    # -- WebSocket -----------------------------------------------------------------------
    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=1 << 20)
        await ws.prepare(request)
        combined = request.path == "/stream"
        streams = request.query.get("streams", "") or request.match_info.get("streams", "")
        client = Client(ws, combined, {s for s in streams.split("/") if s})
        await self.serve(client, self._on_method, self._pinger(ws))
        return ws

    async def _pinger(self, ws: web.WebSocketResponse) -> None:
        with contextlib.suppress(Exception):
            while not ws.closed:
                await asyncio.sleep(self.ping_interval_s)
                await ws.ping(b"emulator")

    async def _on_method(self, c: Client, text: str) -> None:
        try:
            req = orjson.loads(text)
            method, rid = req["method"], req.get("id")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            await c.ws.send_str('{"error":{"code":2,"msg":"Invalid request"}}')
            return
        params = req.get("params") or []
        if method == "SUBSCRIBE":
            c.streams.update(params)
            await c.ws.send_str(orjson.dumps({"result": None, "id": rid}).decode())
            await self._notify()
        elif method == "UNSUBSCRIBE":
            c.streams.difference_update(params)
            await c.ws.send_str(orjson.dumps({"result": None, "id": rid}).decode())
        elif method == "LIST_SUBSCRIPTIONS":
            await c.ws.send_str(orjson.dumps({"result": sorted(c.streams), "id": rid}).decode())
        else:
            msg = {"error": {"code": 1, "msg": f"Unknown method {method}"}, "id": rid}
            await c.ws.send_str(orjson.dumps(msg).decode())

    # -- REST ----------------------------------------------------------------------------
    def _count(self, name: str) -> None:
        self.rest_calls[name] = self.rest_calls.get(name, 0) + 1

    async def _rest_depth(self, request: web.Request) -> web.Response:
        self._count("depth")
        sim = self.sims.get(request.query.get("symbol", ""))
        if sim is None:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        limit = int(request.query.get("limit", "100"))
        return web.Response(body=orjson.dumps(sim.snapshot(limit)), content_type="application/json")

    async def _rest_info(self, request: web.Request) -> web.Response:
        self._count("exchangeInfo")
        symbols = [
            {"symbol": s.native, "status": "TRADING", "baseAsset": s.base, "quoteAsset": s.quote,
             "filters": [{"filterType": "PRICE_FILTER", "minPrice": "0.01000000",
                          "maxPrice": "1000000.00000000", "tickSize": "0.01000000"},
                         {"filterType": "LOT_SIZE", "minQty": "0.00001000",
                          "maxQty": "9000.00000000", "stepSize": "0.00001000"}]}
            for s in self.sims.values()
        ]  # fmt: skip
        body = {"timezone": "UTC", "serverTime": int(time.time() * 1000), "symbols": symbols}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def _rest_ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _rest_time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": int(time.time() * 1000)})

    # -- control (standalone mode) -------------------------------------------------------
    async def _ctl_emit(self, request: web.Request) -> web.Response:
        n = int(request.query.get("n", "1000"))
        rate = float(request.query.get("rate", "0")) or None
        await self.emit_trades(n, rate)
        return web.json_response({"emitted": len(self.emitted_trades)})

    async def _ctl_drop(self, request: web.Request) -> web.Response:
        await self.drop_connections()
        return web.json_response({"dropped": True})

    async def _ctl_raw(self, request: web.Request) -> web.Response:
        body = await request.read()
        binary = request.query.get("binary") == "1"
        await self.send_raw(body if binary else body.decode("utf-8", "replace"))
        return web.json_response({"sent": len(body)})

    async def _ctl_stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"connections": self.connections, "trades": len(self.emitted_trades),
             "frames_sent": self.frames_sent, "rest_calls": self.rest_calls}
        )  # fmt: skip
