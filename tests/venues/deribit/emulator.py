"""A local Deribit v2 exchange: real JSON-RPC WebSocket and REST protocol, generated market.

Speaks what the collector uses on ``/ws/api/v2``: ``public/subscribe`` /
``public/unsubscribe`` (the reply's ``result`` lists the channels accepted; unknown ones are
left out), ``public/set_heartbeat`` (refused below ``min_heartbeat_s``, 10 s at Deribit)
followed by ``heartbeat``/``test_request`` notifications that must be answered with
``public/test`` before the next one or the connection is closed, JSON-RPC errors for bad
JSON (-32700) and unknown methods (-32601). Notifications are ``{"jsonrpc":"2.0","method":
"subscription","params":{"channel":..,"data":..}}`` for ``trades``/``book``/``ticker``
(``.<interval>``), ``quote`` and ``chart.trades`` (``.<resolution>``). REST: ``GET
/api/v2/public/get_instruments?currency=&kind=``.

Behind it is a true book per instrument in integer ticks and lots; prices and amounts go on
the wire as JSON numbers (shortest round-trip floats, like Deribit). ``book`` sends a full
snapshot on subscribe, then changes whose ``prev_change_id`` is the previous ``change_id``
(ids skip values, like Deribit's), each level ``[new|change|delete, price, amount]``.
Inverse contracts (``BTC-PERPETUAL``) count amounts in USD, everything else in base coin.
Time is a simulated clock advanced per event, so candles roll over deterministically.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.venues.emulator_base import EmulatorServer, VenueLimits

START_MS = 1_700_000_000_000


@dataclass
class Spec:
    """An instrument as ``get_instruments`` describes it; prices = ticks * tick_units /
    10**px_dec, amounts = lots * lot_units / 10**amt_dec."""

    name: str
    px_dec: int
    tick_units: int
    amt_dec: int
    lot_units: int
    mid_ticks: int
    contract_size: float = 1.0
    strike: float | None = None

    @property
    def inverse(self) -> bool:
        return "_" not in self.name and self.name.count("-") == 1

    @property
    def currency(self) -> str:
        head = self.name.split("-")[0]
        base, _, quote = head.partition("_")
        return quote if quote and "-" in self.name else base

    @property
    def kind(self) -> str:
        n = self.name.count("-")
        return "spot" if n == 0 else "option" if n == 3 else "future"

    def row(self) -> dict[str, Any]:
        head = self.name.split("-")[0]
        base, _, quote = head.partition("_")
        perpetual = self.name.endswith("PERPETUAL")
        option = self.kind == "option"
        row: dict[str, Any] = {
            "tick_size": self.tick_units / 10**self.px_dec, "tick_size_steps": [],
            "taker_commission": 0.0005, "settlement_period": "perpetual" if perpetual else "month",
            "settlement_currency": quote or base,
            "quote_currency": base if option and not quote else (quote or "USD"),
            "price_index": f"{base.lower()}_{(quote or 'usd').lower()}",
            "min_trade_amount": self.lot_units / 10**self.amt_dec, "maker_commission": 0.0,
            "kind": self.kind, "is_active": True, "instrument_name": self.name,
            "instrument_id": 100_000 + sum(map(ord, self.name)),
            "expiration_timestamp": 32503708800000 if perpetual else 1735286400000,
            "creation_timestamp": 1534242287000, "counter_currency": quote or "USD",
            "contract_size": self.contract_size, "block_trade_commission": 0.00025,
            "base_currency": base,
        }  # fmt: skip
        if self.kind == "future":
            row["future_type"] = "reversed" if self.inverse else "linear"
            row["max_leverage"] = 50
        if option:
            row["strike"] = self.strike
            row["option_type"] = "call" if self.name.endswith("-C") else "put"
        return row


DEFAULT_SPECS = {
    "BTC-PERPETUAL": Spec("BTC-PERPETUAL", 1, 5, 0, 10, 130_000, contract_size=10.0),
    "ETH-PERPETUAL": Spec("ETH-PERPETUAL", 2, 5, 0, 1, 70_000),
    "BTC-27DEC24": Spec("BTC-27DEC24", 1, 5, 0, 10, 132_000, contract_size=10.0),
    "BTC-27DEC24-100000-C": Spec("BTC-27DEC24-100000-C", 4, 5, 1, 1, 100, strike=100000.0),
    "BTC_USDC-PERPETUAL": Spec("BTC_USDC-PERPETUAL", 0, 1, 3, 1, 65_000, contract_size=0.001),
}


class InstrumentSim:
    """One instrument's true book (ticks -> lots), change-id chain, trades and candles."""

    def __init__(self, spec: Spec, rnd: random.Random) -> None:
        self.spec = spec
        self.rnd = rnd
        mid = spec.mid_ticks
        self.bids = {mid - i: rnd.randint(1, 500) for i in range(1, 60)}
        self.asks = {mid + i: rnd.randint(1, 500) for i in range(1, 60)}
        self.change_id = rnd.randint(10_000_000, 90_000_000)
        self.trade_seq = 0
        self.trade_id = 1_000_000
        self.candle: dict[str, Any] | None = None
        self.history: dict[int, tuple[list, list]] | None = None  # change_id -> true book

    def px(self, ticks: int) -> float:
        return ticks * self.spec.tick_units / 10**self.spec.px_dec

    def amt(self, lots: int) -> float:
        return lots * self.spec.lot_units / 10**self.spec.amt_dec

    def _side(self, side: dict[int, int], bids: bool) -> list[tuple[float, float]]:
        return [(self.px(p), self.amt(q)) for p, q in sorted(side.items(), reverse=bids)]

    def true_book(self) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """Every level in the venue's units (USD amounts on inverse), best first."""
        return self._side(self.bids, True), self._side(self.asks, False)

    def snapshot(self, now_ms: int) -> dict[str, Any]:
        bids, asks = self.true_book()
        return {
            "type": "snapshot", "timestamp": now_ms, "instrument_name": self.spec.name,
            "change_id": self.change_id, "bids": [["new", p, a] for p, a in bids],
            "asks": [["new", p, a] for p, a in asks],
        }  # fmt: skip

    def change(self, now_ms: int) -> dict[str, Any]:
        r = self.rnd
        out: dict[str, list[list[Any]]] = {"bids": [], "asks": []}
        touched: set[tuple[bool, int]] = set()
        for _ in range(r.randint(1, 5)):
            bid = r.random() < 0.5
            own, other = (self.bids, self.asks) if bid else (self.asks, self.bids)
            edge = min(other) if bid else max(other)
            price = edge - r.randint(1, 40) if bid else edge + r.randint(1, 40)
            if (bid, price) in touched:
                continue  # Deribit sends one action per level per change
            touched.add((bid, price))
            key = "bids" if bid else "asks"
            if price in own and r.random() < 0.35 and len(own) > 10:
                del own[price]
                out[key].append(["delete", self.px(price), 0.0])
            else:
                action = "change" if price in own else "new"
                own[price] = r.randint(1, 500)
                out[key].append([action, self.px(price), self.amt(own[price])])
        prev = self.change_id
        self.change_id += r.randint(1, 5)
        if self.history is not None:
            self.history[self.change_id] = self.true_book()
        return {
            "type": "change", "timestamp": now_ms, "prev_change_id": prev,
            "instrument_name": self.spec.name, "change_id": self.change_id,
            "bids": out["bids"], "asks": out["asks"],
        }  # fmt: skip

    def trade(self, now_ms: int) -> dict[str, Any]:
        self.trade_id += 1
        self.trade_seq += 1
        sell = self.rnd.random() < 0.5  # the taker sold into the best bid
        ticks = max(self.bids) if sell else min(self.asks)
        t: dict[str, Any] = {
            "trade_seq": self.trade_seq, "trade_id": str(self.trade_id), "timestamp": now_ms,
            "tick_direction": self.rnd.randint(0, 3), "price": self.px(ticks),
            "mark_price": self.px(ticks), "instrument_name": self.spec.name,
            "index_price": self.px(ticks), "direction": "sell" if sell else "buy",
            "amount": self.amt(self.rnd.randint(1, 50)),
        }  # fmt: skip
        if self.trade_seq % 25 == 0:
            t["liquidation"] = ("T", "M", "MT")[self.trade_seq // 25 % 3]
        self._candle(now_ms, t["price"], t["amount"])
        return t

    def _candle(self, now_ms: int, price: float, amount: float) -> None:
        tick = now_ms - now_ms % 60_000
        base = amount / price if self.spec.inverse else amount
        c = self.candle
        if c is None or c["tick"] != tick:
            c = self.candle = {"volume": 0.0, "tick": tick, "open": price, "low": price,
                               "high": price, "cost": 0.0, "close": price}  # fmt: skip
        c["volume"] = round(c["volume"] + base, 8)
        c["cost"] = round(c["cost"] + base * price, 4)
        c["low"], c["high"], c["close"] = min(c["low"], price), max(c["high"], price), price

    def quote(self, now_ms: int) -> dict[str, Any]:
        b, a = max(self.bids), min(self.asks)
        return {
            "timestamp": now_ms, "instrument_name": self.spec.name,
            "best_bid_price": self.px(b), "best_bid_amount": self.amt(self.bids[b]),
            "best_ask_price": self.px(a), "best_ask_amount": self.amt(self.asks[a]),
        }  # fmt: skip

    def ticker(self, now_ms: int) -> dict[str, Any]:
        b, a = max(self.bids), min(self.asks)
        mark = self.px((a + b) // 2)
        t: dict[str, Any] = {
            "timestamp": now_ms,
            "stats": {"volume_usd": 1234560.0, "volume": 19.5, "price_change": 1.25,
                      "low": self.px(b - 100), "high": self.px(a + 100)},
            "state": "open", "settlement_price": mark, "open_interest": self.amt(123_456),
            "min_price": self.px(b - 200), "max_price": self.px(a + 200), "mark_price": mark,
            "last_price": self.px(a), "instrument_name": self.spec.name, "index_price": mark,
            "estimated_delivery_price": mark, "best_bid_price": self.px(b),
            "best_bid_amount": self.amt(self.bids[b]), "best_ask_price": self.px(a),
            "best_ask_amount": self.amt(self.asks[a]),
        }  # fmt: skip
        if self.spec.name.endswith("PERPETUAL"):
            t["funding_8h"] = 0.0000211
            t["current_funding"] = 0.00001
            t["interest_value"] = 1.7362511643080387
        return t


@dataclass
class Client:
    ws: web.WebSocketResponse
    subs: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, inst) -> channel
    heartbeat_s: float | None = None
    answered: bool = True
    tests: int = 0
    test_requests: int = 0


def _kind_inst(channel: str) -> tuple[str, str] | None:
    p = channel.split(".")
    if p[0] == "deribit_volatility_index" and len(p) == 2:  # DVOL: emulator_dvol.py
        return "dvol", p[1]
    if p[0] == "chart" and len(p) == 4 and p[1] == "trades":
        return "chart", p[2]
    if p[0] == "quote" and len(p) == 2:
        return "quote", p[1]
    if p[0] in ("trades", "book", "ticker") and len(p) == 3 and p[2] in ("raw", "100ms", "agg2"):
        return p[0], p[1]
    return None


class DeribitEmulator(EmulatorServer):
    clients: list[Client]
    ws_path = "/ws/api/v2"

    def __init__(
        self,
        instruments: list[str] | tuple[str, ...] = ("BTC-PERPETUAL", "BTC-27DEC24-100000-C"),
        *,
        seed: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        min_heartbeat_s: float = 10.0,
    ) -> None:
        self.rnd = random.Random(seed)
        self.sims = {i: InstrumentSim(DEFAULT_SPECS[i], self.rnd) for i in instruments}
        super().__init__(host, port)
        self.min_heartbeat_s = min_heartbeat_s
        self.sent: list[tuple[str, str, bytes]] = []  # (kind, inst, frame) sent to client 0
        self.rest_calls: dict[str, int] = {}
        self.requests: list[dict[str, Any]] = []
        self.stalled = False  # data frames withheld (heartbeats continue)
        self.clock_ms = START_MS

    # -- routes --------------------------------------------------------------------------
    def venue_limits(self) -> VenueLimits:
        """Credits: 20 non-matching requests per s sustained; error 10028, no ban."""
        return VenueLimits(20, 1.0, ban_status=0, over_body=(
            b'{"jsonrpc":"2.0","error":{"code":10028,"message":"too_many_requests"}}'))  # fmt: skip

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/ws/api/v2", self._ws_handler)
        app.router.add_get("/api/v2/public/get_instruments", self._rest_instruments)

    async def wait_subscribed(self, n: int, timeout: float = 10.0) -> None:
        """Until some client holds at least ``n`` subscriptions."""
        await self.wait_for(lambda: any(len(c.subs) >= n for c in self.clients), timeout)

    def true_book(self, inst: str) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        return self.sims[inst].true_book()

    # -- market generation ---------------------------------------------------------------
    def _now(self) -> int:
        self.clock_ms += self.rnd.randint(50, 900)
        return self.clock_ms

    async def emit(
        self,
        n: int,
        *,
        inst: str | None = None,
        books_every: int = 1,
        tickers_every: int = 10,
        fault: str | None = None,
    ) -> None:
        """``n`` trades across instruments with a book change (and a quote) every
        ``books_every`` trades, a ticker every ``tickers_every``, a candle update per trade.
        ``fault`` alters the middle book change of ``inst`` (or of the first instrument):
        ``drop`` (never sent), ``duplicate`` (sent twice), ``reorder`` (swapped with the
        next change), ``corrupt`` (a level's amount goes out negative: an invalid frame),
        ``cross`` (an extra bid at the best ask: a corrupted level that crosses the book).
        The true book always follows the real changes."""
        sims = [self.sims[inst]] if inst else list(self.sims.values())
        target = sims[0]
        changes = n // books_every
        done = 0
        held: tuple[str, str, bytes] | None = None
        batch: list[tuple[str, str, Any]] = []
        for i in range(n):
            sim = self.rnd.choice(sims)
            name = sim.spec.name
            now = self._now()
            batch.append(("trades", name, [sim.trade(now)]))
            batch.append(("chart", name, dict(sim.candle or {})))
            if (i + 1) % tickers_every == 0:
                batch.append(("ticker", name, sim.ticker(now)))
            if (i + 1) % books_every:
                continue
            change = sim.change(now)
            item: tuple[str, str, Any] = ("book", name, change)
            if sim is target:
                done += 1
            if fault and sim is target and done == max(1, changes // (2 * len(sims))):
                if fault == "drop":
                    item = ("", "", None)
                elif fault == "duplicate":
                    batch.append(item)
                elif fault == "reorder":
                    held = item  # type: ignore[assignment]
                    item = ("", "", None)
                elif fault == "corrupt":
                    side = change["bids"] or change["asks"]
                    side[0] = [side[0][0], side[0][1], -abs(side[0][2]) - 1.0]
                elif fault == "cross":
                    change["bids"] = change["bids"] + [["new", sim.px(min(sim.asks)), sim.amt(7)]]
                else:
                    raise ValueError(f"unknown fault {fault!r}")
                fault = None
            elif held is not None and sim is target:
                batch.append(item)
                item, held = held, None  # type: ignore[assignment]
            if item[0]:
                batch.append(item)
            batch.append(("quote", name, sim.quote(now)))
        if held is not None:
            batch.append(held)  # type: ignore[arg-type]
        await self._broadcast(batch)

    @staticmethod
    def frame(channel: str, data: Any) -> bytes:
        return (
            b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"'
            + channel.encode()
            + b'","data":'
            + orjson.dumps(data)
            + b"}}"
        )

    async def _broadcast(self, batch: list[tuple[str, str, Any]]) -> None:
        if self.stalled:
            return
        for n, c in enumerate(list(self.clients)):
            try:
                for kind, inst, data in batch:
                    channel = c.subs.get((kind, inst))
                    if channel is None:
                        continue
                    f = self.frame(channel, data)
                    await c.ws.send_str(f.decode())
                    if n == 0:
                        self.sent.append((kind, inst, f))
            except (ConnectionError, RuntimeError):
                pass  # the client went away; its handler cleans up
        await asyncio.sleep(0)

    async def send_raw(self, payload: str | bytes) -> None:
        """Deribit writes text frames only, so bytes go out as text too."""
        for c in list(self.clients):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await c.ws.send_str(payload.decode() if isinstance(payload, bytes) else payload)

    # -- WebSocket -----------------------------------------------------------------------
    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=1 << 22)
        await ws.prepare(request)
        client = Client(ws)
        await self.serve(client, self._on_text, self._heartbeats(client))
        return ws

    async def _heartbeats(self, c: Client) -> None:
        """After set_heartbeat: a test_request every interval; Deribit closes a connection
        whose previous test_request went unanswered."""
        with contextlib.suppress(Exception):
            while not c.ws.closed:
                await asyncio.sleep(c.heartbeat_s or 0.05)
                if c.heartbeat_s is None:
                    continue
                if not c.answered:
                    await c.ws.close(code=1000, message=b"heartbeat not answered")
                    return
                c.answered = False
                c.test_requests += 1
                await self._send(c, {"jsonrpc": "2.0", "method": "heartbeat",
                                     "params": {"type": "test_request"}})  # fmt: skip

    @staticmethod
    def _reply(req_id: Any, **body: Any) -> dict[str, Any]:
        us = time.time_ns() // 1000
        return {"jsonrpc": "2.0", "id": req_id, **body, "usIn": us, "usOut": us + 7,
                "usDiff": 7, "testnet": False}  # fmt: skip

    async def _send(self, c: Client, body: dict[str, Any]) -> None:
        await c.ws.send_str(orjson.dumps(body).decode())

    async def _on_text(self, c: Client, text: str) -> None:
        try:
            req = orjson.loads(text)
            method, req_id = req["method"], req.get("id")
            params = req.get("params") or {}
            assert isinstance(params, dict)
        except (orjson.JSONDecodeError, KeyError, TypeError, AssertionError):
            err = {"code": -32700, "message": "Parse error"}
            await self._send(c, self._reply(None, error=err))
            return
        self.requests.append(req)
        if method == "public/test":
            c.answered = True
            c.tests += 1
            await self._send(c, self._reply(req_id, result={"version": "1.2.26"}))
        elif method == "public/set_heartbeat":
            interval = params.get("interval")
            if not isinstance(interval, (int, float)) or interval < self.min_heartbeat_s:
                err = {"code": -32602, "message": "Invalid params",
                       "data": {"reason": "must be >= 10", "param": "interval"}}  # fmt: skip
                await self._send(c, self._reply(req_id, error=err))
            else:
                c.heartbeat_s = float(interval)
                await self._send(c, self._reply(req_id, result="ok"))
        elif method in ("public/subscribe", "public/unsubscribe"):
            await self._subscription(c, req_id, method, params.get("channels") or [])
        else:
            err = {"code": -32601, "message": "Method not found"}
            await self._send(c, self._reply(req_id, error=err))
        await self._notify()

    async def _subscription(self, c: Client, req_id: Any, method: str, channels: list) -> None:
        done: list[str] = []
        snapshots: list[bytes] = []
        for ch in channels:
            key = _kind_inst(ch) if isinstance(ch, str) else None
            if key is None or (key[0] != "dvol" and key[1] not in self.sims):
                continue  # Deribit leaves channels it cannot serve out of the result
            done.append(ch)
            if method == "public/unsubscribe":
                c.subs.pop(key, None)
                continue
            c.subs[key] = ch
            if key[0] == "book":
                snap = self.sims[key[1]].snapshot(self.clock_ms)
                snapshots.append(self.frame(ch, snap))
        await self._send(c, self._reply(req_id, result=done))
        for f in snapshots:
            await c.ws.send_str(f.decode())
            if self.clients and c is self.clients[0]:
                self.sent.append(("book", "", f))

    # -- REST ----------------------------------------------------------------------------
    async def _rest_instruments(self, request: web.Request) -> web.Response:
        cur, kind = request.query.get("currency", ""), request.query.get("kind", "")
        self.rest_calls[f"{cur}:{kind}"] = self.rest_calls.get(f"{cur}:{kind}", 0) + 1
        if not cur:
            err = {"code": -32602, "message": "Invalid params",
                   "data": {"reason": "field is required", "param": "currency"}}  # fmt: skip
            return web.Response(body=orjson.dumps(self._reply(None, error=err)), status=400,
                                content_type="application/json")  # fmt: skip
        rows = [
            s.spec.row()
            for s in self.sims.values()
            if s.spec.currency == cur and (not kind or s.spec.kind == kind)
        ]
        body = self._reply(None, result=rows)
        del body["id"]  # REST answers carry no JSON-RPC id
        return web.Response(body=orjson.dumps(body), content_type="application/json")
