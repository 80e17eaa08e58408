"""The OKX emulator with its private WebSocket (``/ws/v5/private``), as ccxt's ``okx`` pro
class uses it: ``login`` (``apiKey``, ``passphrase``, ``timestamp``, ``sign`` = base64
HMAC-SHA256 of ``timestamp + "GET" + "/users/self/verify"``) answered ``{"event": "login",
"code": "0"}``, then ``subscribe`` to ``orders`` / ``account`` / ``positions`` (OKX v5 docs
"WebSocket private channel"; real payloads: ../shared/frames/nautilus/okx/ws_*.json).

The tests push what the venue would: ``push_order`` (an ``orders`` frame with its last fill),
``push_positions``; ``drop_private()`` closes every private connection.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import time
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from tests.venues.okx.emulator import OkxEmulator

API_KEY, SECRET, PASSPHRASE = "okx-key", "okx-secret", "okx-pass"


class OkxPrivateEmulator(OkxEmulator):
    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.private: list[tuple[web.WebSocketResponse, set[str]]] = []
        self.logins = 0
        self.private_requests: list[dict[str, Any]] = []

    @property
    def ws_base(self) -> str:
        return f"ws://{self.host}:{self.port}/ws/v5"

    def routes(self, app: web.Application) -> None:
        super().routes(app)
        app.router.add_get("/ws/v5/private", self._private_ws)

    async def drop_private(self) -> None:
        conns, self.private = self.private, []
        for ws, _ in conns:
            await ws.close()

    def subscribed(self, channel: str) -> bool:
        return any(channel in subs for _, subs in self.private)

    async def _private_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        subs: set[str] = set()
        authed = False
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            if msg.data == "ping":
                await ws.send_str("pong")
                continue
            req = orjson.loads(msg.data)
            self.private_requests.append(req)
            op, args = req.get("op"), req.get("args") or []
            if op == "login":
                a = args[0]
                want = base64.b64encode(hmac.new(
                    SECRET.encode(), f"{a.get('timestamp')}GET/users/self/verify".encode(),
                    hashlib.sha256).digest()).decode()  # fmt: skip
                ok = (a.get("apiKey") == API_KEY and a.get("passphrase") == PASSPHRASE
                      and hmac.compare_digest(str(a.get("sign")), want))  # fmt: skip
                if not ok:
                    await ws.send_str(orjson.dumps({"event": "error", "code": "60009",
                                                    "msg": "Login failed."}).decode())  # fmt: skip
                    continue
                authed = True
                self.logins += 1
                self.private.append((ws, subs))
                await ws.send_str(orjson.dumps({"event": "login", "code": "0", "msg": "",
                                                "connId": "p1"}).decode())  # fmt: skip
            elif op == "subscribe" and authed:
                for arg in args:
                    subs.add(arg.get("channel"))
                    await ws.send_str(orjson.dumps({"event": "subscribe", "arg": arg,
                                                    "connId": "p1"}).decode())  # fmt: skip
                await self._notify()
            else:
                await ws.send_str(orjson.dumps({"event": "error", "code": "60011",
                                                "msg": "Please log in"}).decode())  # fmt: skip
        self.private = [(w, s) for w, s in self.private if w is not ws]
        return ws

    async def _push(self, channel: str, arg: dict[str, Any], data: list[dict[str, Any]]) -> None:
        body = orjson.dumps({"arg": {"channel": channel, **arg}, "data": data}).decode()
        for ws, subs in list(self.private):
            if channel in subs:
                with contextlib.suppress(Exception):
                    await ws.send_str(body)

    async def push_order(self, cid: str, oid: str, inst: str, side: str, sz: str, state: str,
                         acc: str, avg: str, fill: tuple[str, str, str, str] | None = None,
                         ) -> None:  # fmt: skip
        """``fill``: (tradeId, fillSz, fillPx, fillFee as OKX signs it: negative = charged)."""
        now = str(int(time.time() * 1000))
        t = fill or ("", "0", "", "0")
        await self._push("orders", {"instType": "ANY", "uid": "1"}, [{
            "instType": "SWAP", "instId": inst, "ordId": oid, "clOrdId": cid, "side": side,
            "ordType": "limit", "sz": sz, "px": avg, "state": state, "accFillSz": acc,
            "avgPx": avg, "tradeId": t[0], "fillSz": t[1], "fillPx": t[2], "fillFee": t[3],
            "fillFeeCcy": "USDT", "fee": t[3], "feeCcy": "USDT", "execType": "M",
            "fillTime": now, "cTime": now, "uTime": now, "tdMode": "cross", "posSide": "net",
        }])  # fmt: skip

    async def push_positions(self, inst: str, pos: str) -> None:
        await self._push("positions", {"instType": "ANY", "uid": "1"}, [{
            "instType": "SWAP", "instId": inst, "pos": pos, "posSide": "net", "mgnMode": "cross",
            "uTime": str(int(time.time() * 1000)),
        }])  # fmt: skip
