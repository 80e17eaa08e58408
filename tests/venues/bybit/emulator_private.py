"""The Bybit emulator with its private WebSocket (``/v5/private``), as ccxt's ``bybit`` pro
class uses it: ``{"op": "auth", "args": [apiKey, expires, signature]}`` with signature =
hex HMAC-SHA256 of ``"GET/realtime" + expires`` answered ``{"success": true, "op":
"auth"}``, then ``subscribe`` to ``order`` / ``execution`` / ``wallet`` / ``position``
(Bybit v5 docs "WebSocket private stream"; real payloads:
../shared/frames/nautilus/bybit/ws_account_*.json).

The tests push what the venue would: ``push_order``, ``push_execution``, ``push_position``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import time
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from tests.venues.bybit.emulator import BybitEmulator

API_KEY, SECRET = "bybit-key", "bybit-secret"


class BybitPrivateEmulator(BybitEmulator):
    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.private: list[tuple[web.WebSocketResponse, set[str]]] = []
        self.auths = 0

    @property
    def private_url(self) -> str:
        return f"ws://{self.host}:{self.port}/v5/private"

    def routes(self, app: web.Application) -> None:
        super().routes(app)
        app.router.add_get("/v5/private", self._private_ws)

    def subscribed(self, topic: str) -> bool:
        return any(topic in subs for _, subs in self.private)

    async def _private_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        subs: set[str] = set()
        authed = False
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            req = orjson.loads(msg.data)
            op, args, rid = req.get("op"), req.get("args") or [], req.get("req_id")
            if op == "ping":
                await ws.send_str(orjson.dumps({"op": "pong", "success": True}).decode())
            elif op == "auth":
                key, expires, sig = [*args, "", "", ""][:3]
                want = hmac.new(SECRET.encode(), f"GET/realtime{expires}".encode(),
                                hashlib.sha256).hexdigest()  # fmt: skip
                authed = key == API_KEY and hmac.compare_digest(str(sig), want)
                if authed:
                    self.auths += 1
                    self.private.append((ws, subs))
                await ws.send_str(orjson.dumps({
                    "success": authed, "ret_msg": "" if authed else "Invalid sign",
                    "op": "auth", "conn_id": "p1", "req_id": rid}).decode())  # fmt: skip
            elif op == "subscribe" and authed:
                subs.update(str(a) for a in args)
                ok = {"success": True, "ret_msg": "", "op": op, "conn_id": "p1", "req_id": rid}
                await ws.send_str(orjson.dumps(ok).decode())
                await self._notify()
            else:
                await ws.send_str(orjson.dumps({"success": False, "ret_msg": "not authed",
                                                "op": op, "req_id": rid}).decode())  # fmt: skip
        self.private = [(w, s) for w, s in self.private if w is not ws]
        return ws

    async def _push(self, topic: str, data: list[dict[str, Any]]) -> None:
        now = int(time.time() * 1000)
        body = orjson.dumps({"id": f"{topic}-{now}", "topic": topic, "creationTime": now,
                             "data": data}).decode()  # fmt: skip
        for ws, subs in list(self.private):
            if topic in subs:
                with contextlib.suppress(Exception):
                    await ws.send_str(body)

    async def push_order(self, cid: str, oid: str, symbol: str, side: str, qty: str,
                         status: str, cum: str, avg: str) -> None:  # fmt: skip
        await self._push("order", [{
            "category": "linear", "symbol": symbol, "orderId": oid, "orderLinkId": cid,
            "side": side, "orderType": "Limit", "qty": qty, "price": avg, "orderStatus": status,
            "cumExecQty": cum, "avgPrice": avg, "timeInForce": "GTC",
            "createdTime": str(int(time.time() * 1000)),
            "updatedTime": str(int(time.time() * 1000)),
        }])  # fmt: skip

    async def push_execution(self, cid: str, oid: str, symbol: str, side: str, exec_id: str,
                             qty: str, price: str, fee: str) -> None:  # fmt: skip
        await self._push("execution", [{
            "category": "linear", "symbol": symbol, "orderId": oid, "orderLinkId": cid,
            "side": side, "execId": exec_id, "execQty": qty, "execPrice": price,
            "execFee": fee, "feeCurrency": "USDT", "isMaker": True, "execType": "Trade",
            "execTime": str(int(time.time() * 1000)),
        }])  # fmt: skip

    async def push_position(self, symbol: str, side: str, size: str) -> None:
        await self._push("position", [{
            "category": "linear", "symbol": symbol, "side": side, "size": size,
            "positionIdx": 0, "updatedTime": str(int(time.time() * 1000)),
        }])  # fmt: skip
