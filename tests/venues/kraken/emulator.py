"""A local Kraken spot exchange: the WebSocket v2 and REST protocol, a generated market.

WebSocket ``/v2``: on connect a ``status`` push; ``{"method":"subscribe","params":{"channel",
"symbol":[..], "depth"|"interval"|"snapshot"}, "req_id"}`` answered per pair by
``{"method":"subscribe","result":{..},"success":true,"time_in","time_out","req_id"}`` (or
``success: false`` with ``error`` for an unknown pair, channel or depth); ``unsubscribe``
likewise; ``{"method":"ping"}`` -> ``{"method":"pong"}``; a ``{"channel":"heartbeat"}`` every
``heartbeat_s`` while a client holds subscriptions. Channels ``trade`` (snapshot = the last
50 trades), ``book`` (depth 10/25/100/500/1000: snapshot on subscribe, then updates, each
with the CRC32 of the top 10 written with the pair's precisions), ``ticker``, ``ohlc``
(1-minute candles from the trade tape) and ``instrument`` (all pairs). REST: ``GET
/0/public/AssetPairs`` with v1 names (``XBT/USD``) like Kraken's.

Behind it is a TRUE book per pair in integer ticks and lots, deeper than any view. A
subscriber at depth ``d`` gets exactly what Kraken sends: levels of its top-``d`` view that
appeared or changed, ``qty 0`` for levels deleted from the book, and nothing for levels
pushed out of view (clients truncate). Faults on demand: ``drop``, ``duplicate``,
``reorder`` or ``corrupt`` a book update; drop or stall (go silent on) connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import zlib
from dataclasses import dataclass, field
from operator import neg
from typing import Any

import orjson
from aiohttp import web
from sortedcontainers import SortedDict

from tests.venues.emulator_base import EmulatorServer, VenueLimits

CHANNELS = {"trade", "book", "ticker", "ohlc", "instrument"}
DEPTHS = (10, 25, 100, 500, 1000)
INTERVALS = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)
TOP = 10


def fixed(units: int, decimals: int) -> str:
    """Integer units -> a decimal string with exactly ``decimals`` digits after the point."""
    if not decimals:
        return str(units)
    whole, frac = divmod(units, 10**decimals)
    return f"{whole}.{frac:0{decimals}d}"


def wire(units: int, decimals: int) -> orjson.Fragment:
    """As Kraken v2 writes a number: the shortest form (``0.1``, ``45281.0``)."""
    s = fixed(units, decimals)
    if "." in s:
        s = s.rstrip("0")
        if s.endswith("."):
            s += "0"
    return orjson.Fragment(s.encode())


def crc(asks: list[tuple[str, str]], bids: list[tuple[str, str]]) -> int:
    text = "".join(
        (p.replace(".", "").lstrip("0") + q.replace(".", "").lstrip("0"))
        for p, q in asks[:TOP] + bids[:TOP]
    )
    return zlib.crc32(text.encode())


def rfc3339(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac // 1000:06d}Z"


@dataclass
class Spec:
    symbol: str  # v2 name, BTC/USD
    rest_key: str  # AssetPairs key, XXBTZUSD
    wsname: str  # v1 name, XBT/USD
    px_dec: int = 1
    qty_dec: int = 8
    mid: int = 650_000  # ticks

    def rest_row(self) -> dict[str, Any]:
        base, quote = self.wsname.split("/")
        return {
            "altname": self.wsname.replace("/", ""), "wsname": self.wsname,
            "aclass_base": "currency", "base": base, "aclass_quote": "currency", "quote": quote,
            "lot": "unit", "cost_decimals": 5, "pair_decimals": self.px_dec,
            "lot_decimals": self.qty_dec, "lot_multiplier": 1, "leverage_buy": [],
            "leverage_sell": [], "fees": [[0, 0.26]], "fees_maker": [[0, 0.16]],
            "fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40,
            "ordermin": "0.0001", "costmin": "0.5", "tick_size": fixed(1, self.px_dec),
            "status": "online",
        }  # fmt: skip

    def pair(self) -> dict[str, Any]:
        base, quote = self.symbol.split("/")
        return {
            "symbol": self.symbol, "base": base, "quote": quote, "status": "online",
            "qty_precision": self.qty_dec, "qty_increment": wire(1, self.qty_dec),
            "price_precision": self.px_dec, "cost_precision": 5, "marginable": False,
            "has_index": True, "cost_min": 0.5, "tick_size": wire(1, self.px_dec),
            "price_increment": wire(1, self.px_dec), "qty_min": wire(1, self.qty_dec),
        }  # fmt: skip


DEFAULT_SPECS = {
    "BTC/USD": Spec("BTC/USD", "XXBTZUSD", "XBT/USD"),
    "ETH/USD": Spec("ETH/USD", "XETHZUSD", "ETH/USD", px_dec=2, qty_dec=8, mid=350_000),
    "DOGE/USD": Spec("DOGE/USD", "XDGUSD", "XDG/USD", px_dec=7, qty_dec=8, mid=1_500_000),
}

Side = dict[int, int]


class PairSim:
    """One pair's true book (ticks -> lots, deeper than any view), trade tape and candle."""

    def __init__(self, spec: Spec, rnd: random.Random, levels: int = 80) -> None:
        self.spec = spec
        self.rnd = rnd
        self.max_lots = 300_000_000
        self.bids: SortedDict = SortedDict(neg)
        self.asks: SortedDict = SortedDict()
        for i in range(1, levels + 1):
            self.bids[spec.mid - i * rnd.randint(1, 3)] = rnd.randint(1, self.max_lots)
            self.asks[spec.mid + i * rnd.randint(1, 3)] = rnd.randint(1, self.max_lots)
        self.levels = levels
        self.trade_id = 0
        self.tape: list[dict[str, Any]] = []  # the last 50 trades, for trade snapshots
        self.candle: dict[str, Any] | None = None
        self._digits: dict[int, str] = {}  # ticks as -ticks-1, lots as lots -> digits

    # -- strings -------------------------------------------------------------------------
    def px(self, ticks: int) -> str:
        return fixed(ticks, self.spec.px_dec)

    def qty(self, lots: int) -> str:
        return fixed(lots, self.spec.qty_dec)

    def view(self, depth: int) -> tuple[dict[int, int], dict[int, int]]:
        """What a subscriber at ``depth`` holds: the top ``depth`` of each side."""
        # SortedDict.islice walks the sorted keys directly (items() goes through slow ABCs)
        b, a = self.bids, self.asks
        return {p: b[p] for p in b.islice(stop=depth)}, {p: a[p] for p in a.islice(stop=depth)}

    def checksum(self) -> int:
        # the strings of unchanged levels repeat from update to update: cache their digits
        cache = self._digits
        if len(cache) > 200_000:
            cache.clear()
        parts = []
        for side in (self.asks, self.bids):
            for p in side.islice(stop=TOP):
                q = side[p]
                for key, units, dec in ((-p - 1, p, self.spec.px_dec), (q, q, self.spec.qty_dec)):
                    d = cache.get(key)
                    if d is None:
                        d = cache[key] = fixed(units, dec).replace(".", "").lstrip("0")
                    parts.append(d)
        return zlib.crc32("".join(parts).encode())

    def true_book(self, depth: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """The view at ``depth`` as floats, best first (what a rebuilt book must equal)."""
        b, a = self.view(depth)
        return (
            [(float(self.px(p)), float(self.qty(q))) for p, q in b.items()],
            [(float(self.px(p)), float(self.qty(q))) for p, q in a.items()],
        )

    def _levels(self, side: dict[int, int]) -> list[dict[str, orjson.Fragment]]:
        px, qd = self.spec.px_dec, self.spec.qty_dec
        return [{"price": wire(p, px), "qty": wire(q, qd)} for p, q in side.items()]

    def snapshot(self, depth: int) -> dict[str, Any]:
        b, a = self.view(depth)
        return {"symbol": self.spec.symbol, "bids": self._levels(b), "asks": self._levels(a),
                "checksum": self.checksum()}  # fmt: skip

    # -- market moves --------------------------------------------------------------------
    def mutate(self) -> None:
        """A few random changes near the top of the true book, never crossing it."""
        r = self.rnd
        for _ in range(r.randint(1, 4)):
            bid = r.random() < 0.5
            own = self.bids if bid else self.asks
            near = list(own.islice(stop=30))
            roll = r.random()
            if roll < 0.3 and len(own) > self.levels // 2:
                del own[r.choice(near)]
            elif roll < 0.6:
                own[r.choice(near)] = r.randint(1, self.max_lots)
            else:
                if bid:
                    price = self.asks.peekitem(0)[0] - r.randint(1, 40)
                else:
                    price = self.bids.peekitem(0)[0] + r.randint(1, 40)
                own[price] = r.randint(1, self.max_lots)
            while len(own) > self.levels * 2:
                own.popitem(-1)

    def update(self, depth: int, before: tuple[dict[int, int], dict[int, int]]) -> dict | None:
        """The update a depth-``depth`` subscriber gets for the change since ``before``
        (its view then), or None when its view did not change (Kraken sends nothing)."""
        after = self.view(depth)
        sides = []
        for old, new, full in zip(before, after, (self.bids, self.asks), strict=True):
            changes = {p: q for p, q in new.items() if old.get(p) != q}
            # deleted from the book: qty 0; merely pushed out of view: nothing
            changes.update({p: 0 for p in old if p not in new and p not in full})
            sides.append(changes)
        if not sides[0] and not sides[1]:
            return None
        return {"symbol": self.spec.symbol, "bids": self._levels(sides[0]),
                "asks": self._levels(sides[1]), "checksum": self.checksum(),
                "timestamp": rfc3339(time.time_ns())}  # fmt: skip

    def trade(self) -> dict[str, Any]:
        self.trade_id += 1
        sell = self.rnd.random() < 0.5  # the taker sold into the best bid
        ticks = self.bids.peekitem(0)[0] if sell else self.asks.peekitem(0)[0]
        lots = self.rnd.randint(1, self.max_lots // 10)
        now = time.time_ns()
        t = {"symbol": self.spec.symbol, "side": "sell" if sell else "buy",
             "price": wire(ticks, self.spec.px_dec), "qty": wire(lots, self.spec.qty_dec),
             "ord_type": "market" if self.rnd.random() < 0.5 else "limit",
             "trade_id": self.trade_id, "timestamp": rfc3339(now)}  # fmt: skip
        self.tape = [*self.tape, t][-50:]
        self._candle(now, ticks, lots)
        return t

    def _candle(self, now: int, ticks: int, lots: int) -> None:
        begin = now // 60_000_000_000 * 60_000_000_000
        c = self.candle
        if c is None or c["begin"] != begin:
            c = self.candle = {"begin": begin, "o": ticks, "h": ticks, "l": ticks, "c": ticks,
                               "v": 0, "n": 0}  # fmt: skip
        c["h"], c["l"], c["c"] = max(c["h"], ticks), min(c["l"], ticks), ticks
        c["v"] += lots
        c["n"] += 1

    def ohlc(self) -> dict[str, Any]:
        c = self.candle
        assert c is not None
        px = self.spec.px_dec
        return {"symbol": self.spec.symbol, "open": wire(c["o"], px), "high": wire(c["h"], px),
                "low": wire(c["l"], px), "close": wire(c["c"], px), "trades": c["n"],
                "volume": wire(c["v"], self.spec.qty_dec), "vwap": wire(c["c"], px),
                "interval_begin": rfc3339(c["begin"]), "interval": 1,
                "timestamp": rfc3339(c["begin"] + 60_000_000_000)}  # fmt: skip

    def ticker(self) -> dict[str, Any]:
        (bp, bq), (ap, aq) = self.bids.peekitem(0), self.asks.peekitem(0)
        px, qd = self.spec.px_dec, self.spec.qty_dec
        last = self.tape[-1]["price"] if self.tape else wire(bp, px)
        return {"symbol": self.spec.symbol, "bid": wire(bp, px), "bid_qty": wire(bq, qd),
                "ask": wire(ap, px), "ask_qty": wire(aq, qd), "last": last,
                "volume": wire(1234_5678_9012, qd), "vwap": wire(bp, px),
                "low": wire(bp - 500, px), "high": wire(ap + 500, px), "change": wire(100, px),
                "change_pct": 0.15, "timestamp": rfc3339(time.time_ns())}  # fmt: skip


@dataclass
class Client:
    ws: web.WebSocketResponse
    conn_id: int
    subs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # -> params
    pings: int = 0
    stalled: bool = False


def push(channel: str, kind: str, data: Any, **top: Any) -> bytes:
    return orjson.dumps({"channel": channel, "type": kind, **top, "data": data})


class KrakenEmulator(EmulatorServer):
    clients: list[Client]
    ws_path = "/v2"

    def __init__(
        self,
        symbols: list[str] | tuple[str, ...] = ("BTC/USD",),
        *,
        seed: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        heartbeat_s: float = 1.0,
    ) -> None:
        self.rnd = random.Random(seed)
        self.sims = {s: PairSim(DEFAULT_SPECS[s], self.rnd) for s in symbols}
        super().__init__(host, port)
        self.heartbeat_s = heartbeat_s
        self.sent: list[tuple[str, str, bytes]] = []  # (channel, pair, frame) data broadcast
        self.rest_calls = 0
        self.requests: list[dict] = []  # every request frame received (pings included)
        self._n = 0

    # -- routes --------------------------------------------------------------------------
    def venue_limits(self) -> VenueLimits:
        """Public REST about 1 request per s; over it HTTP 200 with the error in the body
        (EAPI:Rate limit exceeded), no status to read; no ban."""
        body = b'{"error":["EAPI:Rate limit exceeded"],"result":{}}'
        return VenueLimits(1, 1.0, ban_status=0, over_status=200, over_body=body)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v2", self._ws_handler)
        app.router.add_get("/0/public/AssetPairs", self._rest_asset_pairs)

    async def wait_subscribed(self, n: int, timeout: float = 10.0) -> None:
        """Until some client holds at least ``n`` subscriptions."""
        await self.wait_for(lambda: any(len(c.subs) >= n for c in self.clients), timeout)

    # -- market generation ---------------------------------------------------------------
    def _depths(self, pair: str) -> set[int]:
        return {p["depth"] for c in self.clients for (ch, s), p in c.subs.items()
                if ch == "book" and s == pair}  # fmt: skip

    def book_updates(
        self, sim: PairSim, n: int, depth: int, fault: str | None = None
    ) -> list[bytes]:
        """``n`` book update frames for a depth-``depth`` view (offline: no clients needed).
        ``fault`` changes the middle one: ``drop`` (never sent), ``duplicate`` (sent twice),
        ``reorder`` (swapped with the next), ``corrupt`` (a level's qty is wrong, the
        checksum the true one)."""
        frames: list[bytes] = []
        middle = n // 2
        held: bytes | None = None
        for k in range(n):
            u = None
            while u is None:
                before = sim.view(depth)
                sim.mutate()
                u = sim.update(depth, before)
            if k == middle and fault == "corrupt":
                side = u["bids"] or u["asks"]
                side[0] = {"price": side[0]["price"], "qty": orjson.Fragment(b"123.4567")}
            frame = push("book", "update", [u])
            if k == middle and fault == "drop":
                continue
            if k == middle and fault == "reorder":
                held = frame
                continue
            frames.append(frame)
            if k == middle and fault == "duplicate":
                frames.append(frame)
            if held is not None and k == middle + 1:
                frames.append(held)
                held = None
        return frames

    async def emit(
        self,
        n: int,
        *,
        books_every: int = 2,
        pair: str | None = None,
        trades: bool = True,
        fault: str | None = None,
    ) -> None:
        """``n`` steps across pairs: a trade (+ its ohlc update) each step, a book move
        (+ ticker) every ``books_every`` steps; ``fault`` (see ``book_updates``) hits the
        middle book update of ``pair`` for every depth subscribed."""
        sims = [self.sims[pair]] if pair else list(self.sims.values())
        batch: list[tuple[str, str, dict[str, Any], bytes]] = []
        moves = n // books_every
        held: list[tuple[str, str, dict[str, Any], bytes]] = []
        for i in range(n):
            sim = self.rnd.choice(sims)
            s = sim.spec.symbol
            if trades:
                batch.append(("trade", s, {}, push("trade", "update", [sim.trade()])))
                batch.append(("ohlc", s, {}, push("ohlc", "update", [sim.ohlc()],
                                                  timestamp=rfc3339(time.time_ns()))))  # fmt: skip
            if (i + 1) % books_every:
                continue
            k = (i + 1) // books_every
            depths = self._depths(s) or {10}
            views = {d: sim.view(d) for d in depths}
            updates: dict[int, dict | None] = {}
            while not any(updates.values()):  # a move nobody sees would hide a fault
                sim.mutate()
                updates = {d: sim.update(d, before) for d, before in views.items()}
            for d, u in updates.items():
                if u is None:
                    continue
                item = ("book", s, {"depth": d}, b"")
                if fault and k == moves // 2:
                    if fault == "drop":
                        continue
                    if fault == "corrupt":
                        side = u["bids"] or u["asks"]
                        side[0] = {"price": side[0]["price"],
                                   "qty": orjson.Fragment(b"123.4567")}  # fmt: skip
                item = (item[0], item[1], item[2], push("book", "update", [u]))
                if fault and k == moves // 2 and fault == "reorder":
                    held.append(item)
                    continue
                batch.append(item)
                if fault and k == moves // 2 and fault == "duplicate":
                    batch.append(item)
            if held and k == moves // 2 + 1:
                batch.extend(held)
                held.clear()
            batch.append(("ticker", s, {}, push("ticker", "update", [sim.ticker()])))
        batch.extend(held)
        await self._broadcast(batch)

    async def _broadcast(self, batch: list[tuple[str, str, dict[str, Any], bytes]]) -> None:
        for c in list(self.clients):
            if c.stalled:
                continue
            try:
                for channel, pair, only, frame in batch:
                    params = c.subs.get((channel, pair))
                    if params is None or any(params.get(k) != v for k, v in only.items()):
                        continue
                    await c.ws.send_str(frame.decode())
            except (ConnectionError, RuntimeError):
                pass  # the client went away; its handler cleans up
        self.sent.extend((ch, pair, f) for ch, pair, _, f in batch)
        await asyncio.sleep(0)

    def stall(self, on: bool = True) -> None:
        """Connected clients get nothing more (no data, heartbeats or pongs) until undone."""
        for c in self.clients:
            c.stalled = on

    # -- WebSocket -----------------------------------------------------------------------
    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=1 << 20)
        await ws.prepare(request)
        self._n += 1
        client = Client(ws, 10_000_000_000_000_000 + self._n)
        await self._send(client, {"channel": "status", "type": "update", "data": [
            {"version": "2.0.9", "system": "online", "api_version": "v2",
             "connection_id": client.conn_id}]})  # fmt: skip
        await self.serve(client, self._on_text, self._heartbeat(client))
        return ws

    async def _heartbeat(self, c: Client) -> None:
        with contextlib.suppress(Exception):
            while not c.ws.closed:
                await asyncio.sleep(self.heartbeat_s)
                if c.subs and not c.stalled:
                    await c.ws.send_str('{"channel":"heartbeat"}')

    async def _send(self, c: Client, body: dict) -> None:
        if not c.stalled:
            await c.ws.send_str(orjson.dumps(body).decode())

    async def _on_text(self, c: Client, text: str) -> None:
        now = rfc3339(time.time_ns())
        try:
            req = orjson.loads(text)
            method = req["method"]
            assert isinstance(req, dict) and isinstance(method, str)
        except (orjson.JSONDecodeError, KeyError, TypeError, AssertionError):
            await self._send(c, {"error": "Malformed request", "method": "", "success": False,
                                 "time_in": now, "time_out": now})  # fmt: skip
            return
        self.requests.append(req)
        rid = {"req_id": req["req_id"]} if "req_id" in req else {}
        if method == "ping":
            c.pings += 1
            await self._send(c, {"method": "pong", **rid, "time_in": now, "time_out": now})
            await self._notify()
            return
        if method not in ("subscribe", "unsubscribe"):
            await self._send(c, {"error": f"Method not found {method}", "method": method,
                                 "success": False, "time_in": now, "time_out": now,
                                 **rid})  # fmt: skip
            return
        params = req.get("params") or {}
        channel = params.get("channel")
        if channel not in CHANNELS:
            await self._send(c, {"error": f"Channel {channel} not found", "method": method,
                                 "success": False, "time_in": now, "time_out": now,
                                 **rid})  # fmt: skip
            return
        pairs = ["ALL"] if channel == "instrument" else params.get("symbol") or []
        for pair in pairs:
            await self._one(c, method, channel, pair, params, rid, now)
        await self._notify()

    async def _one(
        self, c: Client, method: str, channel: str, pair: str, params: dict, rid: dict, now: str
    ) -> None:
        def fail(error: str) -> dict:
            return {"error": error, "method": method, "success": False, "symbol": pair,
                    "time_in": now, "time_out": now, **rid}  # fmt: skip

        if pair != "ALL" and pair not in self.sims:
            await self._send(c, fail(f"Currency pair not supported {pair}"))
            return
        depth = int(params.get("depth", 10))
        interval = int(params.get("interval", 1))
        if channel == "book" and depth not in DEPTHS:
            await self._send(c, fail(f"Invalid depth {depth}"))
            return
        if channel == "ohlc" and interval != 1:
            await self._send(c, fail(f"interval {interval} not emulated (1 only)"))
            return
        snapshot = bool(params.get("snapshot", True))
        result: dict[str, Any] = {"channel": channel, "snapshot": snapshot}
        if pair != "ALL":
            result["symbol"] = pair
        if channel == "book":
            result["depth"] = depth
        if channel == "ohlc":
            result["interval"] = interval
        key = (channel, pair)
        if method == "unsubscribe":
            if key not in c.subs:
                await self._send(c, fail("Subscription Not Found"))
                return
            del c.subs[key]
            await self._send(c, {"method": method, "result": result, "success": True,
                                 "time_in": now, "time_out": now, **rid})  # fmt: skip
            return
        if key in c.subs:
            await self._send(c, fail("Already subscribed"))
            return
        c.subs[key] = {"depth": depth} if channel == "book" else {}
        await self._send(c, {"method": method, "result": result, "success": True,
                             "time_in": now, "time_out": now, **rid})  # fmt: skip
        if channel == "book":  # books always start with a snapshot
            sim = self.sims[pair]
            await self._frame(c, push("book", "snapshot", [sim.snapshot(depth)]))
        elif channel == "instrument" and snapshot:
            data = {"assets": [], "pairs": [s.spec.pair() for s in self.sims.values()]}
            await self._frame(c, push("instrument", "snapshot", data))
        elif channel == "trade" and snapshot and self.sims[pair].tape:
            await self._frame(c, push("trade", "snapshot", self.sims[pair].tape))
        elif channel == "ticker" and snapshot:
            await self._frame(c, push("ticker", "snapshot", [self.sims[pair].ticker()]))
        elif channel == "ohlc" and snapshot and self.sims[pair].candle is not None:
            await self._frame(c, push("ohlc", "snapshot", [self.sims[pair].ohlc()],
                                      timestamp=now))  # fmt: skip

    async def _frame(self, c: Client, frame: bytes) -> None:
        if not c.stalled:
            await c.ws.send_str(frame.decode())

    # -- REST ----------------------------------------------------------------------------
    async def _rest_asset_pairs(self, request: web.Request) -> web.Response:
        self.rest_calls += 1
        result = {s.spec.rest_key: s.spec.rest_row() for s in self.sims.values()}
        body = {"error": [], "result": result}
        return web.Response(body=orjson.dumps(body), content_type="application/json")
