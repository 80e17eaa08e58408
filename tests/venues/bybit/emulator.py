"""A local Bybit v5 exchange: real public WebSocket and REST protocol, generated market.

Speaks what the collector uses: ``/v5/public/{spot,linear,inverse}`` with the
``subscribe``/``unsubscribe``/``ping`` ops and their acks (spot's pong is an ack with
``ret_msg":"pong"``, derivatives answer ``op":"pong"``), spot's 10-args-per-request limit,
a connection closed when the client stops pinging, and ``GET /v5/market/instruments-info``.
Behind it is a true book per symbol in integer ticks/lots; ``orderbook.<N>`` subscribers
get the top-N view: a snapshot on subscribe, then deltas (the diff of the top-N view)
whose ``u`` increments by one, like the venue.
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
QTY_DECIMALS = {"spot": 6, "linear": 3, "inverse": 0}  # inverse: whole USD contracts
SPOT_MAX_ARGS = 10


def _fmt(units: int, decimals: int) -> str:
    if decimals == 0:
        return str(units)
    scale = 10**decimals
    return f"{units // scale}.{units % scale:0{decimals}d}"


class SymbolSim:
    """One symbol's true book and trade tape, in integer ticks and lots."""

    def __init__(self, category: str, native: str, rnd: random.Random, mid: int) -> None:
        self.category, self.native, self.rnd = category, native, rnd
        self.qd = QTY_DECIMALS[category]
        big = 10 ** (self.qd + 1)
        self.bids = {mid - i: rnd.randint(1, big) for i in range(1, 80)}
        self.asks = {mid + i: rnd.randint(1, big) for i in range(1, 80)}
        self.u = 1_000_000  # u == 1 would mean "venue restarted": start well past it
        self.seq = 5_000_000
        self.trade_id = 0
        self.views: dict[int, tuple[dict[int, int], dict[int, int]]] = {}  # depth -> last sent

    def view(self, depth: int) -> tuple[dict[int, int], dict[int, int]]:
        bids = dict(sorted(self.bids.items(), reverse=True)[:depth])
        return bids, dict(sorted(self.asks.items())[:depth])

    def _levels(self, side: dict[int, int], reverse: bool) -> list[list[str]]:
        return [[_fmt(p, PRICE_DECIMALS), _fmt(q, self.qd)]
                for p, q in sorted(side.items(), reverse=reverse)]  # fmt: skip

    def book_frame(self, depth: int, kind: str, b: dict, a: dict, now_ms: int) -> dict:
        return {
            "topic": f"orderbook.{depth}.{self.native}", "type": kind, "ts": now_ms,
            "data": {"s": self.native, "b": self._levels(b, True), "a": self._levels(a, False),
                     "u": self.u, "seq": self.seq},
            "cts": now_ms - 1,
        }  # fmt: skip

    def snapshot(self, depth: int, now_ms: int) -> dict:
        b, a = self.views[depth] = self.view(depth)
        return self.book_frame(depth, "snapshot", b, a, now_ms)

    def mutate(self) -> None:
        r = self.rnd
        for _ in range(r.randint(1, 4)):
            bid = r.random() < 0.5
            own, other = (self.bids, self.asks) if bid else (self.asks, self.bids)
            edge = min(other) if bid else max(other)
            price = edge - r.randint(1, 60) if bid else edge + r.randint(1, 60)
            if price in own and r.random() < 0.4 and len(own) > 10:
                del own[price]
            else:
                own[price] = r.randint(1, 10 ** (self.qd + 2))
        self.u += 1
        self.seq += r.randint(1, 5)

    def deltas(self, now_ms: int) -> dict[int, dict]:
        """Move the book one step; a delta frame per subscribed depth (the view's diff)."""
        self.mutate()
        out = {}
        for depth, (ob, oa) in self.views.items():
            nb, na = self.views[depth] = self.view(depth)
            db = {p: nb.get(p, 0) for p in ob.keys() | nb.keys() if ob.get(p) != nb.get(p)}
            da = {p: na.get(p, 0) for p in oa.keys() | na.keys() if oa.get(p) != na.get(p)}
            out[depth] = self.book_frame(depth, "delta", db, da, now_ms)
        return out

    def trade(self, now_ms: int) -> dict:
        r = self.rnd
        self.trade_id += 1
        buy = r.random() < 0.5
        px = min(self.asks) if buy else max(self.bids)
        return {"T": now_ms, "s": self.native, "S": "Buy" if buy else "Sell",
                "v": _fmt(r.randint(1, 10 ** (self.qd + 1)), self.qd),
                "p": _fmt(px, PRICE_DECIMALS), "L": "PlusTick",
                "i": f"{self.native}-{self.trade_id:08d}", "BT": False}  # fmt: skip

    def true_book(self, depth: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """The top-``depth`` book as floats, best first (what a correct consumer holds)."""
        b, a = self.view(depth)
        conv = lambda side, rev: [  # noqa: E731
            (float(_fmt(p, PRICE_DECIMALS)), float(_fmt(q, self.qd)))
            for p, q in sorted(side.items(), reverse=rev)
        ]
        return conv(b, True), conv(a, False)


@dataclass
class Client:
    ws: web.WebSocketResponse
    category: str
    conn_id: str
    topics: set[str] = field(default_factory=set)
    last_ping: float = field(default_factory=time.monotonic)


class BybitEmulator(EmulatorServer):
    clients: list[Client]
    ws_path = "/v5/public/linear"

    def __init__(
        self,
        symbols: dict[str, list[str]] | None = None,
        *,
        seed: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        depth_every: int = 2,
        require_ping_s: float | None = None,
    ) -> None:
        self.rnd = random.Random(seed)
        symbols = symbols or {"linear": ["BTCUSDT"]}
        self.sims = {
            (cat, s): SymbolSim(cat, s, self.rnd, 6_500_000 if s.startswith("BTC") else 350_000)
            for cat, natives in symbols.items()
            for s in natives
        }
        super().__init__(host, port)
        self.depth_every = depth_every
        self.require_ping_s = require_ping_s
        self.requests: list[dict] = []  # every op received, in order
        self.sent: list[tuple[str, str, bytes]] = []  # data frames sent: (category, topic, bytes)
        self.rest_calls: dict[str, int] = {}
        self.pings = 0
        self._conns = 0

    # -- routes --------------------------------------------------------------------------
    def venue_limits(self) -> VenueLimits:
        """600 requests per 5 s per IP; over it 403 "access too frequent" and a 10 minute
        ban at once (https://bybit-exchange.github.io/docs/v5/rate-limit)."""
        return VenueLimits(600, 5.0, over_status=403, ban_status=403, ban_s=600.0,
                           over_body=b'{"retCode":10006,"retMsg":"Too many visits!"}')  # fmt: skip

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v5/public/{category}", self._ws_handler)
        app.router.add_get("/v5/market/instruments-info", self._rest_instruments)

    def sim(self, native: str, category: str = "linear") -> SymbolSim:
        return self.sims[(category, native)]

    async def wait_subscribed(self, topic: str, n: int = 1, timeout: float = 10.0) -> None:
        def ready() -> bool:
            return sum(topic in c.topics for c in self.clients) >= n

        await self.wait_for(ready, timeout)

    # -- market generation ---------------------------------------------------------------
    async def emit(self, n: int, native: str | None = None, *, category: str = "linear",
                   trades: bool = True, fault: str | None = None) -> None:  # fmt: skip
        """``n`` events on one symbol (or all): a trade each (when ``trades``) and a book
        step every ``depth_every``. ``fault`` spoils one book delta halfway: ``drop`` (never
        sent), ``duplicate`` (sent twice), ``reorder`` (sent after the next one), ``cross``
        (a corrupted level: an extra bid at the best ask, which the true book never had)."""
        sims = [self.sims[(category, native)]] if native else list(self.sims.values())
        done = False
        held: list[tuple[str, dict]] = []
        for i in range(n):
            sim = self.rnd.choice(sims)
            now = int(time.time() * 1000)
            if trades:
                topic = f"publicTrade.{sim.native}"
                frame = {"topic": topic, "type": "snapshot", "ts": now, "data": [sim.trade(now)]}
                await self._send(sim, topic, frame)
            if not trades or i % self.depth_every == 0:
                out = [(f"orderbook.{d}.{sim.native}", f) for d, f in sim.deltas(now).items()]
                if fault and not done and i >= n // 2:
                    done = True
                    if fault == "drop":  # the venue moved on; this update reaches no one
                        continue
                    if fault == "reorder":
                        held = out
                        continue
                    if fault == "duplicate":
                        out = out + out
                    elif fault == "cross":
                        for _, f in out:
                            f["data"]["b"].append([_fmt(min(sim.asks), PRICE_DECIMALS), "1"])
                    else:
                        raise ValueError(f"unknown fault {fault!r}")
                elif held:
                    out, held = out + held, []
                for topic, frame in out:
                    await self._send(sim, topic, frame)
            if i % 100 == 99:
                await asyncio.sleep(0)

    async def _send(self, sim: SymbolSim, topic: str, frame: dict) -> None:
        data = orjson.dumps(frame)
        text = data.decode()
        for c in list(self.clients):
            if c.category == sim.category and topic in c.topics:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await c.ws.send_str(text)
                    self.sent.append((c.category, topic, data))

    # -- WebSocket -----------------------------------------------------------------------
    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        category = request.match_info["category"]
        if category not in QTY_DECIMALS:
            raise web.HTTPNotFound()
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=1 << 20)
        await ws.prepare(request)
        self._conns += 1
        client = Client(ws, category, f"emu-{self._conns}")
        guard = [self._ping_guard(client)] if self.require_ping_s else []
        await self.serve(client, self._on_op, *guard)
        return ws

    async def _ping_guard(self, c: Client) -> None:
        """Bybit drops a connection that stops pinging; so do we (scaled down for tests)."""
        assert self.require_ping_s is not None
        while not c.ws.closed:
            await asyncio.sleep(self.require_ping_s / 4)
            if time.monotonic() - c.last_ping > self.require_ping_s:
                await c.ws.close(code=1000, message=b"no ping")
                return

    def _ack(self, c: Client, op: str, rid: object, ok: bool = True, msg: str = "") -> str:
        return orjson.dumps({"success": ok, "ret_msg": msg, "conn_id": c.conn_id,
                             "req_id": rid or "", "op": op}).decode()  # fmt: skip

    async def _on_op(self, c: Client, text: str) -> None:
        try:
            req = orjson.loads(text)
            op, rid, args = req["op"], req.get("req_id"), req.get("args") or []
        except (orjson.JSONDecodeError, KeyError, TypeError):
            await c.ws.send_str(self._ack(c, "", None, False, "error:invalid request"))
            return
        self.requests.append(req)
        if op == "ping":
            self.pings += 1
            c.last_ping = time.monotonic()
            if c.category == "spot":
                await c.ws.send_str(self._ack(c, "ping", rid, True, "pong"))
            else:
                pong = {"req_id": rid or "", "op": "pong",
                        "args": [str(int(time.time() * 1000))], "conn_id": c.conn_id}  # fmt: skip
                await c.ws.send_str(orjson.dumps(pong).decode())
        elif op == "subscribe":
            if c.category == "spot" and len(args) > SPOT_MAX_ARGS:
                await c.ws.send_str(self._ack(c, op, rid, False, "args size >10"))
                return
            bad = [a for a in args if not self._known(c.category, a) or a in c.topics]
            if bad:
                await c.ws.send_str(self._ack(c, op, rid, False, f"error:handler not found:{bad}"))
                return
            c.topics.update(args)
            await c.ws.send_str(self._ack(c, op, rid))
            for a in args:  # a book subscription starts with a snapshot
                if a.startswith("orderbook."):
                    _, depth, native = a.split(".")
                    sim = self.sims[(c.category, native)]
                    snap = sim.snapshot(int(depth), int(time.time() * 1000))
                    await c.ws.send_str(orjson.dumps(snap).decode())
                    self.sent.append((c.category, a, orjson.dumps(snap)))
            await self._notify()
        elif op == "unsubscribe":
            c.topics.difference_update(args)
            await c.ws.send_str(self._ack(c, op, rid))
        else:
            await c.ws.send_str(self._ack(c, op, rid, False, f"error:unknown op {op}"))

    def _known(self, category: str, topic: str) -> bool:
        parts = topic.split(".")
        if (category, parts[-1]) not in self.sims:
            return False
        return parts[0] == "publicTrade" or (parts[0] == "orderbook" and parts[1].isdigit())

    # -- REST ----------------------------------------------------------------------------
    async def _rest_instruments(self, request: web.Request) -> web.Response:
        self.rest_calls["instruments-info"] = self.rest_calls.get("instruments-info", 0) + 1
        category = request.query.get("category", "")
        items = []
        for cat, native in self.sims:
            if cat != category:
                continue
            quote = "USD" if cat == "inverse" else "USDT"
            base = native[: -len(quote)]
            item = {"symbol": native, "status": "Trading", "baseCoin": base, "quoteCoin": quote,
                    "priceFilter": {"tickSize": "0.01"},
                    "lotSizeFilter": {"basePrecision": "0.000001"} if cat == "spot"
                    else {"qtyStep": "0.001" if cat == "linear" else "1"}}  # fmt: skip
            if cat != "spot":
                item.update(contractType="LinearPerpetual" if cat == "linear"
                            else "InversePerpetual", deliveryTime="0",
                            settleCoin="USDT" if cat == "linear" else base)  # fmt: skip
            items.append(item)
        body = {"retCode": 0, "retMsg": "OK",
                "result": {"category": category, "list": items, "nextPageCursor": ""},
                "retExtInfo": {}, "time": int(time.time() * 1000)}  # fmt: skip
        return web.Response(body=orjson.dumps(body), content_type="application/json")
