"""A local Crypto.com Exchange v1 API for ccxt pro's ``cryptocom``: the REST call of
load_markets and the market WebSocket (``/exchange/v1/market``).

REST: ``GET /public/get-instruments`` -> ``{"id":1,"method":"public/get-instruments",
"code":0,"result":{"data":[{"symbol","inst_type","base_ccy","quote_ccy",
"price_tick_size","qty_tick_size","contract_size","tradable",...}]}}``.

WebSocket: ``{"id":n,"method":"subscribe","params":{"channels":["trade.BTC_USDT",
"ticker.BTC_USDT","book.BTC_USDT.50"],"bookSubscriptionType":"SNAPSHOT_AND_UPDATE"},
"nonce":n}`` -> ``{"id":n,"method":"subscribe","code":0}``; pushes
``{"id":-1,"method":"subscribe","code":0,"result":{"instrument_name","subscription",
"channel","data":[...]}}`` with trades ``{"d":id,"t":ms,"p","q","s":"BUY"|"SELL","i"}``,
tickers ``{"i","h","l","a","c","b","bs","k","ks","v","vv","t"}``, a book snapshot
(channel ``book``: ``{"asks":[[p,q,n]],"bids":[...],"t","tt","u"}``) and updates (channel
``book.update``: ``{"update":{"asks","bids"},"t","tt","u","pu"}``, ``pu`` = the previous
``u``, quantity "0" deleting a level). A heartbeat ``{"id":n,"method":"public/heartbeat",
"code":0}`` must be answered ``{"id":n,"method":"public/respond-heartbeat"}``.

Source: exchange-docs.crypto.com (Exchange v1, "Websocket Subscriptions": trade, ticker,
book / book.update with SNAPSHOT_AND_UPDATE, heartbeats) and ccxt pro's cryptocom comments.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.venues.ccxt_ws.sim import Market
from tests.venues.emulator_base import EmulatorServer


@dataclass
class Conn:
    ws: web.WebSocketResponse
    subs: set[str] = field(default_factory=set)  # subscription names
    heartbeats: set[int] = field(default_factory=set)  # sent, not answered yet
    answered: int = 0


class CryptocomEmulator(EmulatorServer):
    ws_path = "/exchange/v1/market"
    access_log = False

    def __init__(self, seed: int = 9) -> None:
        super().__init__()
        self.markets = {
            "BTC_USDT": Market("BTC/USDT", "BTC_USDT", 6_500_000, tick=0.01, lot=0.00001),
            "BTCUSD-PERP": Market("BTC/USD:USD", "BTCUSD-PERP", 650_000, tick=0.1, lot=0.0001),
        }
        for n, m in enumerate(self.markets.values()):
            m.rnd.seed(seed * 100 + n)
        self.u = itertools.count(1000)
        self.last_u: dict[str, int] = {}
        self.hb = itertools.count(1)
        self.skip_sequence = False  # the next book update leaves a hole in u/pu

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/public/get-instruments", self._instruments)
        app.router.add_get(self.ws_path, self._ws)

    async def _instruments(self, request: web.Request) -> web.Response:
        rows = []
        for sym, m in self.markets.items():
            base, rest = m.unified.split("/")
            perp = ":" in rest
            rows.append({
                "symbol": sym, "inst_type": "PERPETUAL_SWAP" if perp else "CCY_PAIR",
                "display_name": sym, "base_ccy": base, "quote_ccy": rest.split(":")[0],
                "quote_decimals": 2, "quantity_decimals": 5, "price_tick_size": repr(m.tick),
                "qty_tick_size": repr(m.lot), "max_leverage": "50", "tradable": True,
                "expiry_timestamp_ms": 0, "contract_size": "1" if perp else None,
                "underlying_symbol": base,
            })  # fmt: skip
        body = {"id": 1, "method": "public/get-instruments", "code": 0, "result": {"data": rows}}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    # -- WebSocket -----------------------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await self.serve(Conn(ws), self._on_text)
        return ws

    async def _on_text(self, c: Conn, text: str) -> None:
        msg = orjson.loads(text)
        method = msg.get("method")
        if method == "public/respond-heartbeat":
            if msg.get("id") in c.heartbeats:
                c.heartbeats.discard(msg["id"])
                c.answered += 1
        elif method == "subscribe":
            await self._subscribe(c, msg)
        await self._notify()

    async def _subscribe(self, c: Conn, msg: dict[str, Any]) -> None:
        params = msg.get("params", {})
        await c.ws.send_str(orjson.dumps({"id": msg.get("id", msg.get("nonce")),
                                          "method": "subscribe", "code": 0}).decode())  # fmt: skip
        for name in params.get("channels", []):
            kind, _, rest = name.partition(".")
            inst = rest.split(".")[0]
            m = self.markets.get(inst)
            if m is None or kind not in ("trade", "ticker", "book"):
                err = {"id": msg.get("id"), "method": "subscribe", "code": 10004,
                       "message": f"BAD_REQUEST {name}"}  # fmt: skip
                await c.ws.send_str(orjson.dumps(err).decode())
                continue
            c.subs.add(name)
            if kind == "book":
                u = self.last_u[inst] = next(self.u)
                snap = {"asks": [self._lvl(m, p, q) for p, q in sorted(m.asks.items())],
                        "bids": [self._lvl(m, p, q) for p, q in sorted(m.bids.items(),
                                                                       reverse=True)],
                        "t": m.ms, "tt": m.ms, "u": u}  # fmt: skip
                await self._push(c, name, "book", inst, [snap], depth=int(rest.split(".")[1]))
            elif kind == "ticker":
                await self._push(c, name, "ticker", inst, [self._ticker(inst, m)])
        hb = next(self.hb)
        c.heartbeats.add(hb)
        await c.ws.send_str(orjson.dumps({"id": hb, "method": "public/heartbeat",
                                          "code": 0}).decode())  # fmt: skip

    @staticmethod
    def _lvl(m: Market, ticks: int, lots: int) -> list[str]:
        return [repr(m.price(ticks)), repr(m.size(lots)) if lots else "0",
                str(1 + ticks % 4) if lots else "0"]  # fmt: skip

    @staticmethod
    def _ticker(inst: str, m: Market) -> dict[str, Any]:
        t = m.ticker()
        return {"i": inst, "h": repr(t["high"]), "l": repr(t["low"]), "a": repr(t["last"]),
                "c": "0.0012", "b": repr(t["bid"]), "bs": repr(t["bid_size"]),
                "k": repr(t["ask"]), "ks": repr(t["ask_size"]), "v": repr(t["volume"]),
                "vv": repr(t["quote_volume"]), "t": m.ms}  # fmt: skip

    async def _push(self, c: Conn, name: str, channel: str, inst: str, data: list[Any],
                    **extra: Any) -> None:  # fmt: skip
        result = {"instrument_name": inst, "subscription": name, "channel": channel, **extra,
                  "data": data}  # fmt: skip
        body = {"id": -1, "method": "subscribe", "code": 0, "result": result}
        await c.ws.send_str(orjson.dumps(body).decode())

    # -- what the tests drive ------------------------------------------------------------
    def subscribed(self, channels: tuple[str, ...] = ("trades", "book", "ticker")) -> bool:
        names = {"trades": "trade.{}", "book": "book.{}.50", "ticker": "ticker.{}"}
        want = {names[ch].format(s) for ch in channels for s in self.markets}
        return any(want <= c.subs and c.answered for c in self.clients)

    async def play(self, steps: int) -> None:
        for i in range(steps):
            for inst, m in self.markets.items():
                t = m.trade()
                row = {"d": str(t.id), "t": t.ms, "p": repr(t.price), "q": repr(t.size),
                       "s": t.side.upper(), "i": inst}  # fmt: skip
                for c in list(self.clients):
                    if f"trade.{inst}" in c.subs:
                        await self._push(c, f"trade.{inst}", "trade", inst, [row])
                for _ in range(2):
                    ((side, p, q),) = m.delta()
                    lvl = self._lvl(m, p, q)
                    pu = self.last_u[inst] + (1 if self.skip_sequence else 0)
                    self.skip_sequence = False
                    u = self.last_u[inst] = next(self.u)
                    upd = {"update": {"asks": [lvl] if side == "asks" else [],
                                      "bids": [lvl] if side == "bids" else []},
                           "t": m.ms, "tt": m.ms, "u": u, "pu": pu}  # fmt: skip
                    for c in list(self.clients):
                        if f"book.{inst}.50" in c.subs:
                            await self._push(c, f"book.{inst}.50", "book.update", inst, [upd],
                                             depth=50)  # fmt: skip
                if i % 5 == 0:
                    for c in list(self.clients):
                        if f"ticker.{inst}" in c.subs:
                            await self._push(c, f"ticker.{inst}", "ticker", inst,
                                             [self._ticker(inst, m)])  # fmt: skip
