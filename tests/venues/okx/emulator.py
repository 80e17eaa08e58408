"""A local OKX v5 public exchange: real WebSocket and REST protocol, generated market.

Speaks what the collector uses: ``/ws/v5/public`` with ``{"op":"subscribe"|"unsubscribe",
"args":[{"channel","instId"}]}`` answered per arg by ``{"event":"subscribe","arg":..,
"connId":..}``, ``{"event":"error","code","msg"}`` for bad requests or unknown channels,
the text ``ping`` -> ``pong``, and OKX's cut of a connection silent for ``idle_timeout_s``
(30 s at OKX). ``books`` sends a 400-level snapshot on subscribe, then updates whose
``prevSeqId`` chains to the previous ``seqId`` (gaps of 1-3 like OKX), each with the CRC32
checksum of the true book's top 25 levels built from the exact strings sent. REST: ``GET
/api/v5/public/instruments?instType=``. Behind it is a true book per instrument in integer
ticks and lots, so every string is exact and written like OKX (no trailing zeros).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import zlib
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from tests.venues.emulator_base import EmulatorServer, VenueLimits

CHANNELS = {"trades", "books", "bbo-tbt", "tickers"}


def _fmt(units: int, decimals: int) -> str:
    """Integer units -> OKX's decimal string (no trailing zeros, no trailing dot)."""
    scale = 10**decimals
    whole, frac = divmod(units, scale)
    if not frac:
        return str(whole)
    return f"{whole}.{frac:0{decimals}d}".rstrip("0")


def checksum(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> int:
    parts: list[str] = []
    for i in range(min(25, max(len(bids), len(asks)))):
        if i < len(bids):
            parts += bids[i]
        if i < len(asks):
            parts += asks[i]
    c = zlib.crc32(":".join(parts).encode())
    return c - (1 << 32) if c >= 1 << 31 else c


@dataclass
class Spec:
    """An instrument as the instruments endpoint describes it."""

    inst_id: str
    px_dec: int = 1  # tickSz 0.1
    sz_dec: int = 8  # lotSz 1e-8 (spot); 0 for whole contracts
    ct_val: str = ""  # contract value; "" for spot
    ct_val_ccy: str = ""

    @property
    def inst_type(self) -> str:
        n = self.inst_id.count("-")
        return "SPOT" if n == 1 else "SWAP" if self.inst_id.endswith("SWAP") else "FUTURES"

    def row(self) -> dict[str, str]:
        base, quote = self.inst_id.split("-")[:2]
        spot = self.inst_type == "SPOT"
        linear = self.ct_val_ccy == base
        return {
            "alias": "", "baseCcy": base if spot else "", "quoteCcy": quote if spot else "",
            "category": "1", "ctMult": "" if spot else "1", "ctVal": self.ct_val,
            "ctValCcy": self.ct_val_ccy,
            "ctType": "" if spot else ("linear" if linear else "inverse"), "expTime": "",
            "instFamily": "" if spot else f"{base}-{quote}", "instId": self.inst_id,
            "instType": self.inst_type, "lever": "10", "listTime": "1611916828000",
            "lotSz": _fmt(1, self.sz_dec), "minSz": _fmt(1, self.sz_dec), "optType": "",
            "settleCcy": "" if spot else (quote if linear else base), "state": "live",
            "stk": "", "tickSz": _fmt(1, self.px_dec), "uly": "" if spot else f"{base}-{quote}",
        }  # fmt: skip


DEFAULT_SPECS = {
    "BTC-USDT": Spec("BTC-USDT"),
    "BTC-USDT-SWAP": Spec("BTC-USDT-SWAP", sz_dec=0, ct_val="0.01", ct_val_ccy="BTC"),
    "BTC-USD-SWAP": Spec("BTC-USD-SWAP", sz_dec=0, ct_val="100", ct_val_ccy="USD"),
    "ETH-USDT": Spec("ETH-USDT", px_dec=2, sz_dec=6),
}


class InstrumentSim:
    """One instrument's true book (ticks -> lots), seqId chain and trade tape."""

    def __init__(self, spec: Spec, rnd: random.Random, mid_ticks: int) -> None:
        self.spec = spec
        self.rnd = rnd
        hi = 50 if spec.sz_dec == 0 else 300_000_000
        self.max_lots = hi
        self.bids = {mid_ticks - i: rnd.randint(1, hi) for i in range(1, 120)}
        self.asks = {mid_ticks + i: rnd.randint(1, hi) for i in range(1, 120)}
        self.seq = rnd.randint(10_000, 1_000_000)
        self.trade_id = 100_000

    def px(self, ticks: int) -> str:
        return _fmt(ticks, self.spec.px_dec)

    def sz(self, lots: int) -> str:
        return _fmt(lots, self.spec.sz_dec)

    def levels(self, side: dict[int, int], bids: bool, n: int) -> list[tuple[str, str]]:
        items = sorted(side.items(), reverse=bids)[:n]
        return [(self.px(p), self.sz(q)) for p, q in items]

    def checksum(self) -> int:
        return checksum(self.levels(self.bids, True, 25), self.levels(self.asks, False, 25))

    @staticmethod
    def _wire(levels: list[tuple[str, str]]) -> list[list[str]]:
        return [[p, s, "0", "1"] for p, s in levels]

    def snapshot(self, now_ms: int) -> dict:
        return {"asks": self._wire(self.levels(self.asks, False, 400)),
                "bids": self._wire(self.levels(self.bids, True, 400)), "ts": str(now_ms),
                "checksum": self.checksum(), "seqId": self.seq, "prevSeqId": -1}  # fmt: skip

    def update(self, now_ms: int) -> dict:
        r = self.rnd
        changes: dict[str, dict[int, int]] = {"bids": {}, "asks": {}}
        for _ in range(r.randint(1, 6)):
            bid = r.random() < 0.5
            own, other, key = (
                (self.bids, self.asks, "bids") if bid else (self.asks, self.bids, "asks")
            )
            edge = min(other) if bid else max(other)
            price = edge - r.randint(1, 60) if bid else edge + r.randint(1, 60)
            if price in own and r.random() < 0.4 and len(own) > 30:
                del own[price]
                changes[key][price] = 0
            else:
                own[price] = r.randint(1, self.max_lots)
                changes[key][price] = own[price]
        prev = self.seq
        self.seq += r.randint(1, 3)
        return {
            "asks": self._wire([(self.px(p), self.sz(q)) for p, q in changes["asks"].items()]),
            "bids": self._wire([(self.px(p), self.sz(q)) for p, q in changes["bids"].items()]),
            "ts": str(now_ms), "checksum": self.checksum(), "seqId": self.seq, "prevSeqId": prev,
        }  # fmt: skip

    def heartbeat(self, now_ms: int) -> dict:
        return {"asks": [], "bids": [], "ts": str(now_ms), "checksum": self.checksum(),
                "seqId": self.seq, "prevSeqId": self.seq}  # fmt: skip

    def trade(self, now_ms: int) -> dict:
        self.trade_id += 1
        sell = self.rnd.random() < 0.5  # the taker sold into the best bid
        ticks = max(self.bids) if sell else min(self.asks)
        lots = self.rnd.randint(1, max(1, self.max_lots // 10))
        return {"instId": self.spec.inst_id, "tradeId": str(self.trade_id),
                "px": self.px(ticks), "sz": self.sz(lots), "side": "sell" if sell else "buy",
                "ts": str(now_ms), "count": "1"}  # fmt: skip

    def true_book(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Every level as OKX's strings, best first (sizes in the venue's units)."""
        return self.levels(self.bids, True, 10**6), self.levels(self.asks, False, 10**6)


@dataclass
class Client:
    ws: web.WebSocketResponse
    conn_id: str
    subs: set[tuple[str, str]] = field(default_factory=set)
    last_in: float = field(default_factory=time.monotonic)
    pings: int = 0


class OkxEmulator(EmulatorServer):
    clients: list[Client]
    ws_path = "/ws/v5/public"

    def __init__(
        self,
        inst_ids: list[str] | tuple[str, ...] = ("BTC-USDT", "BTC-USDT-SWAP"),
        *,
        seed: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        idle_timeout_s: float = 30.0,
    ) -> None:
        self.rnd = random.Random(seed)
        self.sims = {
            i: InstrumentSim(
                DEFAULT_SPECS[i], self.rnd, 650_000 if i.startswith("BTC") else 350_000
            )
            for i in inst_ids
        }
        super().__init__(host, port)
        self.idle_timeout_s = idle_timeout_s
        self.sent: list[bytes] = []  # every data frame broadcast, in order
        self.rest_calls: dict[str, int] = {}
        self.requests: list[dict] = []  # subscribe/unsubscribe requests received
        self.rest_unavailable = 0  # instruments requests to answer 503 before serving again
        self._n = 0

    # -- routes --------------------------------------------------------------------------
    def venue_limits(self) -> VenueLimits:
        """GET public/instruments: 20 requests per 2 s; 429 with code 50011, no ban."""
        body = b'{"code":"50011","msg":"Too Many Requests","data":[]}'
        return VenueLimits(20, 2.0, ban_status=0, paths=("/api/v5/public/instruments",),
                           over_body=body)  # fmt: skip

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/ws/v5/public", self._ws_handler)
        app.router.add_get("/api/v5/public/instruments", self._rest_instruments)

    async def wait_subscribed(self, n: int, timeout: float = 10.0) -> None:
        """Until some client holds at least ``n`` subscriptions."""
        await self.wait_for(lambda: any(len(c.subs) >= n for c in self.clients), timeout)

    # -- market generation ---------------------------------------------------------------
    @staticmethod
    def _frame(channel: str, inst: str, data: list, action: str | None = None) -> bytes:
        body: dict = {"arg": {"channel": channel, "instId": inst}}
        if action:
            body["action"] = action
        body["data"] = data
        return orjson.dumps(body)

    async def emit(
        self, n: int, *, books_every: int = 2, inst: str | None = None, fault: str | None = None
    ) -> None:
        """``n`` trades across instruments, a books update every ``books_every`` trades.
        ``fault`` changes the middle books update of ``inst``: ``drop`` (never sent),
        ``duplicate`` (sent twice), ``reorder`` (sent after the next one), ``corrupt`` (a
        level's size is wrong but the checksum is the true one), ``heartbeat`` (an extra
        no-change keep-alive is sent after it)."""
        sims = [self.sims[inst]] if inst else list(self.sims.values())
        batch: list[tuple[str, str, bytes]] = []
        updates = n // books_every
        held: bytes | None = None  # a reordered update, sent after the next one
        for i in range(n):
            sim = self.rnd.choice(sims)
            now = int(time.time() * 1000)
            iid = sim.spec.inst_id
            batch.append(("trades", iid, self._frame("trades", iid, [sim.trade(now)])))
            if (i + 1) % books_every:
                continue
            u = sim.update(now)
            k = (i + 1) // books_every
            if fault and k == updates // 2:
                if fault == "drop":
                    continue
                if fault == "reorder":
                    held = self._frame("books", iid, [u], "update")
                    continue
                if fault == "duplicate":
                    batch.append(("books", iid, self._frame("books", iid, [u], "update")))
                elif fault == "corrupt":
                    side = u["bids"] or u["asks"]
                    side[0] = [side[0][0], sim.sz(123457), "0", "1"]
                elif fault == "heartbeat":
                    batch.append(("books", iid, self._frame("books", iid, [u], "update")))
                    u = sim.heartbeat(now)
                else:
                    raise ValueError(f"unknown fault {fault!r}")
            batch.append(("books", iid, self._frame("books", iid, [u], "update")))
            if held is not None and k != updates // 2:
                batch.append(("books", iid, held))
                held = None
        await self._broadcast(batch)

    async def _broadcast(self, batch: list[tuple[str, str, bytes]]) -> None:
        for c in list(self.clients):
            try:
                for channel, inst, frame in batch:
                    if (channel, inst) in c.subs:
                        await c.ws.send_str(frame.decode())
            except (ConnectionError, RuntimeError):
                pass  # the client went away; its handler cleans up
        self.sent.extend(f for _, _, f in batch)
        await asyncio.sleep(0)

    def true_book(self, inst: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        return self.sims[inst].true_book()

    # -- WebSocket -----------------------------------------------------------------------
    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=1 << 20)
        await ws.prepare(request)
        self._n += 1
        client = Client(ws, f"emu{self._n:08x}")
        await self.serve(client, self._on_text, self._idle_cut(client))
        return ws

    async def _idle_cut(self, c: Client) -> None:
        """OKX closes a connection that sent nothing for 30 s."""
        with contextlib.suppress(Exception):
            while not c.ws.closed:
                await asyncio.sleep(min(1.0, self.idle_timeout_s / 4))
                if time.monotonic() - c.last_in > self.idle_timeout_s:
                    await c.ws.close(code=4004, message=b"No data received in 30s.")

    async def _send(self, c: Client, body: dict) -> None:
        await c.ws.send_str(orjson.dumps(body).decode())

    async def _error(self, c: Client, code: str, msg: str) -> None:
        await self._send(c, {"event": "error", "code": code, "msg": msg, "connId": c.conn_id})

    async def _on_text(self, c: Client, text: str) -> None:
        c.last_in = time.monotonic()
        if text == "ping":
            c.pings += 1
            await c.ws.send_str("pong")
            await self._notify()
            return
        try:
            req = orjson.loads(text)
            op, args = req["op"], req["args"]
            assert isinstance(args, list)
        except (orjson.JSONDecodeError, KeyError, TypeError, AssertionError):
            await self._error(c, "60012", f"Invalid request: {text[:100]}")
            return
        self.requests.append(req)
        if op not in ("subscribe", "unsubscribe"):
            await self._error(c, "60012", f"Invalid request: {text[:100]}")
            return
        for arg in args:
            channel, inst = arg.get("channel"), arg.get("instId")
            if channel not in CHANNELS or inst not in self.sims:
                msg = f"Wrong URL or channel:{channel},instId:{inst} doesn't exist."
                await self._error(c, "60018", msg)
                continue
            key = (channel, inst)
            await self._send(c, {"event": op, "arg": arg, "connId": c.conn_id})
            if op == "unsubscribe":
                c.subs.discard(key)
                continue
            c.subs.add(key)
            if channel == "books":
                now = int(time.time() * 1000)
                snap = self._frame("books", inst, [self.sims[inst].snapshot(now)], "snapshot")
                await c.ws.send_str(snap.decode())
        await self._notify()

    # -- REST ----------------------------------------------------------------------------
    async def _rest_instruments(self, request: web.Request) -> web.Response:
        kind = request.query.get("instType", "")
        self.rest_calls[kind] = self.rest_calls.get(kind, 0) + 1
        if self.rest_unavailable > 0:
            self.rest_unavailable -= 1
            return web.Response(status=503, text="Service Unavailable")
        if kind not in ("SPOT", "SWAP", "FUTURES", "OPTION"):
            body = {"code": "51000", "msg": "Parameter instType error", "data": []}
            return web.Response(body=orjson.dumps(body), status=400,
                                content_type="application/json")  # fmt: skip
        rows = [s.spec.row() for s in self.sims.values() if s.spec.inst_type == kind]
        body = {"code": "0", "data": rows, "msg": ""}
        return web.Response(body=orjson.dumps(body), content_type="application/json")
