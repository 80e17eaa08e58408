"""The mock Binance spot exchange with its user data stream (the executor's live account
stream), as ccxt 4.5's ``binance`` pro class uses it: the signed WebSocket API at
``/ws-api/v3``, ``userDataStream.subscribe.signature`` (``apiKey``, ``timestamp``,
``signature`` = HMAC-SHA256 of the key-sorted query) answered ``{"id", "status": 200,
"result": {"subscriptionId"}}``, then every event wrapped ``{"subscriptionId", "event"}``
(Binance's WebSocket API user data docs; real payloads under
../shared/frames/nautilus/binance/spot/user_data_json/).

Events: ``executionReport`` on every new order (``x = NEW``), trade (``x = TRADE`` with the
trade's ``t``/``l``/``L``/``n``/``N``/``m``, the same trade ids as ``myTrades``) and cancel
(``C`` the order's client id), then ``outboundAccountPosition`` with the balances a trade
moved. ``balances`` are the account's (``/api/v3/account`` answers them too).

Test controls: ``drop_private()`` closes every user data connection; while ``mute`` is set
events are not sent (lost, as on a dead connection); ``pushed_ns[trade_id]`` is when each
trade's report was handed to the socket (the private-fill latency benchmark).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import WSMsgType, web

from tests.venues.binance.emulator_rest import API_KEY, SECRET, MockBinance, MockOrder, _ms


@dataclass
class _Sub:
    ws: web.WebSocketResponse
    sub_id: int


@dataclass
class MockBinancePrivate(MockBinance):
    balances: dict[str, Decimal] = field(
        default_factory=lambda: {"USDT": Decimal("1000000"), "BTC": Decimal("10")}
    )
    mute: bool = False
    pushed_ns: dict[str, int] = field(default_factory=dict)
    subscribes: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.subs: list[_Sub] = []
        self._out: asyncio.Queue[bytes] | None = None
        self._sender: asyncio.Task[None] | None = None

    @property
    def ws_api_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws-api/v3"

    def routes(self, app: web.Application) -> None:
        super().routes(app)
        app.router.add_get("/ws-api/v3", self._ws_api)

    async def start(self) -> MockBinancePrivate:
        await super().start()
        self._out = asyncio.Queue()
        self._sender = asyncio.create_task(self._send_loop())
        return self

    async def stop(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(BaseException):
                await self._sender
        await self.drop_private()
        await super().stop()

    async def drop_private(self) -> None:
        subs, self.subs = self.subs, []
        for s in subs:
            await s.ws.close()

    # -- the WebSocket API ---------------------------------------------------------------
    async def _ws_api(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            req = orjson.loads(msg.data)
            if req.get("method") == "userDataStream.subscribe.signature":
                p = dict(req.get("params") or {})
                sig = p.pop("signature", "")
                want = hmac.new(SECRET.encode(), urlencode(sorted(p.items())).encode(),
                                hashlib.sha256).hexdigest()  # fmt: skip
                if p.get("apiKey") != API_KEY or not hmac.compare_digest(sig, want):
                    bad = {"code": -1022, "msg": "Signature for this request is not valid."}
                    await ws.send_str(orjson.dumps({"id": req.get("id"), "status": 401,
                                                    "error": bad}).decode())  # fmt: skip
                    continue
                self.subscribes += 1
                sub = _Sub(ws, len(self.subs))
                self.subs.append(sub)
                await self._notify()  # wait_for(...) checks again
                await ws.send_str(orjson.dumps({"id": req.get("id"), "status": 200,
                    "result": {"subscriptionId": sub.sub_id}}).decode())  # fmt: skip
            else:
                await ws.send_str(orjson.dumps({"id": req.get("id"), "status": 400,
                    "error": {"code": -1100, "msg": "unknown method"}}).decode())  # fmt: skip
        self.subs = [s for s in self.subs if s.ws is not ws]
        return ws

    async def _send_loop(self) -> None:
        assert self._out is not None
        while True:
            data = await self._out.get()
            event = orjson.loads(data)
            if event.get("x") == "TRADE":  # the fill leaves the venue now
                self.pushed_ns[str(event["t"])] = time.time_ns()
            for s in list(self.subs):
                with contextlib.suppress(Exception):
                    await s.ws.send_str(orjson.dumps({"subscriptionId": s.sub_id,
                                                      "event": event}).decode())  # fmt: skip

    def _push(self, event: dict[str, Any]) -> None:
        if not self.mute and self._out is not None:
            self._out.put_nowait(orjson.dumps(event))

    def _report(self, o: MockOrder, x: str, trade: dict[str, Any] | None = None) -> None:
        t = trade or {}
        self._push({
            "e": "executionReport", "E": _ms(), "s": o.symbol, "c": o.client_id,
            "S": o.side, "o": o.type, "f": o.tif, "q": f"{o.qty:f}", "p": f"{o.price:f}",
            "P": f"{o.stop:f}", "F": "0.00000000", "g": -1,
            "C": o.client_id if x == "CANCELED" else "", "x": x, "X": o.status, "r": "NONE",
            "i": o.order_id, "l": t.get("qty", "0"), "z": f"{o.executed:f}",
            "L": t.get("price", "0"), "n": t.get("commission", "0"),
            "N": t.get("commissionAsset"), "T": t.get("time", _ms()), "t": t.get("id", -1),
            "w": o.status in ("NEW", "PARTIALLY_FILLED"), "m": bool(t.get("isMaker")),
            "M": False, "O": o.time, "Z": f"{o.quote:f}", "Y": "0", "Q": "0", "W": o.time,
            "V": "NONE",
        })  # fmt: skip

    # -- venue actions, reported on the stream -----------------------------------------------
    async def _create(self, p: dict[str, str]) -> web.StreamResponse:
        self._creating = True
        self._held: list[tuple[MockOrder, dict[str, Any]]] = []
        try:
            resp = await super()._create(p)
        finally:
            self._creating = False
        o = self.by_client_id(p.get("newClientOrderId", ""))
        if o is not None and resp.status == 200:
            self._report_new(o)
        for o2, t in self._held:  # a market order's trades follow its NEW report
            self._report(o2, "TRADE", t)
            self._balance(o2, t)
        return resp

    def _report_new(self, o: MockOrder) -> None:
        status, executed, quote = o.status, o.executed, o.quote
        o.status, o.executed, o.quote = "NEW", Decimal(0), Decimal(0)
        self._report(o, "NEW")
        o.status, o.executed, o.quote = status, executed, quote

    def _execute(self, o: MockOrder, qty: Decimal, price: Decimal, maker: bool) -> None:
        super()._execute(o, qty, price, maker)
        t = self.trades[-1]
        if getattr(self, "_creating", False):
            self._held.append((o, t))
            return
        self._report(o, "TRADE", t)
        self._balance(o, t)

    def _balance(self, o: MockOrder, t: dict[str, Any]) -> None:
        base, quote = self.symbols[o.symbol]
        s = 1 if o.side == "BUY" else -1
        qty, notional = Decimal(str(t["qty"])), Decimal(str(t["quoteQty"]))
        b = self.balances
        b[base] = b.get(base, Decimal(0)) + s * qty
        b[quote] = b.get(quote, Decimal(0)) - s * notional - Decimal(str(t["commission"]))
        self._push({"e": "outboundAccountPosition", "E": _ms(), "u": _ms(), "B": [
            {"a": a, "f": f"{b[a]:f}", "l": "0.00000000"} for a in (base, quote)]})  # fmt: skip

    async def _cancel(self, p: dict[str, str]) -> web.Response:
        resp = await super()._cancel(p)
        o = self._find(p)
        if o is not None and resp.status == 200:
            self._report(o, "CANCELED")
        return resp

    async def _account(self, _: dict[str, str]) -> web.Response:
        return web.json_response({
            "makerCommission": 10, "takerCommission": 10, "canTrade": True,
            "canWithdraw": False, "canDeposit": False, "updateTime": _ms(),
            "accountType": "SPOT", "permissions": ["SPOT"],
            "balances": [{"asset": a, "free": f"{v:f}", "locked": "0.00000000"}
                         for a, v in self.balances.items()],
        })  # fmt: skip
