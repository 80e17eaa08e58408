"""A local Bitget v2 public API for ccxt pro's ``bitget`` (spot): the three REST calls of
load_markets and the public WebSocket (``/v2/ws/public``).

REST (``{"code":"00000","msg":"success","requestTime":...,"data":...}``):
``GET /api/v2/spot/public/coins``, ``/api/v2/spot/public/symbols``,
``/api/v2/margin/currencies``.

WebSocket: ``{"op":"subscribe","args":[{"instType":"SPOT","channel":"trade"|"ticker"|
"books","instId":"BTCUSDT"}]}`` -> ``{"event":"subscribe","arg":{...}}``; pushes
``{"action":"snapshot"|"update","arg":{...},"data":[...],"ts":ms}`` with trades
``{"ts","price","size","side","tradeId"}``, tickers ``{"instId","lastPr","bidPr","askPr",
"bidSz","askSz","open24h","high24h","low24h","baseVolume","quoteVolume","ts",...}`` and
books ``{"asks":[[p,s]],"bids":[[p,s]],"checksum","seq","ts"}`` (a snapshot first, then
updates with size "0" deleting a level); ``checksum`` is the CRC32 (signed) of
``bid:size:ask:size`` of the top 25 levels, interleaved, as the strings were sent. The text
``"ping"`` is answered ``"pong"``. Numbers are decimal strings, as Bitget sends them.

Source: bitget.com/api-doc (spot websocket public channels, "Depth channel" checksum) and the
frames quoted in ccxt pro's bitget handlers.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.venues.ccxt_ws.sim import Market
from tests.venues.emulator_base import EmulatorServer


@dataclass
class Conn:
    ws: web.WebSocketResponse
    subs: set[tuple[str, str]] = field(default_factory=set)  # (channel, instId)


class BitgetEmulator(EmulatorServer):
    ws_path = "/v2/ws/public"
    access_log = False

    def __init__(self, seed: int = 7) -> None:
        super().__init__()
        self.markets = {
            "BTCUSDT": Market("BTC/USDT", "BTCUSDT", 6_500_000, tick=0.01, lot=0.0001),
            "ETHUSDT": Market("ETH/USDT", "ETHUSDT", 350_000, tick=0.01, lot=0.001),
        }
        for n, m in enumerate(self.markets.values()):
            m.rnd.seed(seed * 100 + n)
        self.seq = 0
        self.bad_checksum = False  # the next book update carries a wrong checksum

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v2/spot/public/coins", self._coins)
        app.router.add_get("/api/v2/spot/public/symbols", self._symbols)
        app.router.add_get("/api/v2/margin/currencies", self._empty)
        app.router.add_get(self.ws_path, self._ws)

    # -- REST ----------------------------------------------------------------------------
    @staticmethod
    def _ok(data: Any) -> web.Response:
        body = {"code": "00000", "msg": "success", "requestTime": int(time.time() * 1000),
                "data": data}  # fmt: skip
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def _empty(self, request: web.Request) -> web.Response:
        return self._ok([])

    async def _coins(self, request: web.Request) -> web.Response:
        coins = sorted({c for m in self.markets.values() for c in m.unified.split("/")})
        return self._ok([{"coinId": str(i + 1), "coin": c, "transfer": "true", "chains": []}
                         for i, c in enumerate(coins)])  # fmt: skip

    async def _symbols(self, request: web.Request) -> web.Response:
        rows = []
        for sym, m in self.markets.items():
            base, quote = m.unified.split("/")
            rows.append({
                "symbol": sym, "baseCoin": base, "quoteCoin": quote, "minTradeAmount": "0",
                "maxTradeAmount": "10000000000", "takerFeeRate": "0.001",
                "makerFeeRate": "0.001", "pricePrecision": "2",
                "quantityPrecision": str(len(str(m.lot)) - 2), "quotePrecision": "6",
                "status": "online", "minTradeUSDT": "1", "buyLimitPriceRatio": "0.05",
                "sellLimitPriceRatio": "0.05", "areaSymbol": "no", "orderQuantity": "200",
                "openTime": "1532454360000", "offTime": "",
            })  # fmt: skip
        return self._ok(rows)

    # -- WebSocket -----------------------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await self.serve(Conn(ws), self._on_text)
        return ws

    async def _on_text(self, c: Conn, text: str) -> None:
        if text == "ping":
            await c.ws.send_str("pong")
            return
        msg = orjson.loads(text)
        if msg.get("op") != "subscribe":
            return
        for arg in msg.get("args", []):
            channel, inst = arg.get("channel"), arg.get("instId")
            m = self.markets.get(inst or "")
            if m is None or channel not in ("trade", "ticker", "books"):
                err = {"event": "error", "arg": arg, "code": 30001, "msg": "instId doesn't exist"}
                await c.ws.send_str(orjson.dumps(err).decode())
                continue
            await c.ws.send_str(orjson.dumps({"event": "subscribe", "arg": arg}).decode())
            c.subs.add((channel, inst))
            if channel == "books":
                bids = [self._lvl(m, p, q) for p, q in sorted(m.bids.items(), reverse=True)]
                asks = [self._lvl(m, p, q) for p, q in sorted(m.asks.items())]
                await self._push(c, "snapshot", "books", inst, [self._book(bids, asks, m)])
            elif channel == "ticker":
                await self._push(c, "snapshot", "ticker", inst, [self._ticker(inst, m)])
            else:
                rows = [self._trade(t) for t in m.trades[-50:][::-1]]
                await self._push(c, "snapshot", "trade", inst, rows)
        await self._notify()

    @staticmethod
    def _lvl(m: Market, ticks: int, lots: int) -> list[str]:
        digits = len(str(m.lot)) - 2
        return [f"{m.price(ticks):.2f}", f"{m.size(lots):.{digits}f}"]

    def _book(self, bids: list[list[str]], asks: list[list[str]], m: Market) -> dict[str, Any]:
        self.seq += 1
        top_b = [self._lvl(m, p, q) for p, q in sorted(m.bids.items(), reverse=True)[:25]]
        top_a = [self._lvl(m, p, q) for p, q in sorted(m.asks.items())[:25]]
        parts: list[str] = []
        for i in range(25):
            if i < len(top_b):
                parts += top_b[i]
            if i < len(top_a):
                parts += top_a[i]
        v = zlib.crc32(":".join(parts).encode())
        v = v - 2**32 if v >= 2**31 else v
        if self.bad_checksum:
            self.bad_checksum, v = False, v + 1
        return {"asks": asks, "bids": bids, "checksum": v, "seq": self.seq, "ts": str(m.ms)}

    @staticmethod
    def _trade(t: Any) -> dict[str, str]:
        return {"ts": str(t.ms), "price": f"{t.price:.2f}", "size": repr(t.size),
                "side": t.side, "tradeId": str(t.id)}  # fmt: skip

    def _ticker(self, inst: str, m: Market) -> dict[str, str]:
        t = m.ticker()
        return {"instId": inst, "lastPr": repr(t["last"]), "open24h": repr(t["low"]),
                "high24h": repr(t["high"]), "low24h": repr(t["low"]), "change24h": "0.01",
                "bidPr": repr(t["bid"]), "askPr": repr(t["ask"]), "bidSz": repr(t["bid_size"]),
                "askSz": repr(t["ask_size"]), "baseVolume": repr(t["volume"]),
                "quoteVolume": repr(t["quote_volume"]), "openUtc": repr(t["low"]),
                "changeUtc24h": "0.01", "ts": str(m.ms)}  # fmt: skip

    async def _push(self, c: Conn, action: str, channel: str, inst: str, data: list[Any]) -> None:
        arg = {"instType": "SPOT", "channel": channel, "instId": inst}
        body = {"action": action, "arg": arg, "data": data, "ts": int(time.time() * 1000)}
        await c.ws.send_str(orjson.dumps(body).decode())

    # -- what the tests drive ------------------------------------------------------------
    def subscribed(self, channels: tuple[str, ...] = ("trades", "book", "ticker")) -> bool:
        names = {"trades": "trade", "book": "books", "ticker": "ticker"}
        want = {(names[ch], s) for ch in channels for s in self.markets}
        return any(want <= c.subs for c in self.clients)

    async def play(self, steps: int) -> None:
        for i in range(steps):
            for inst, m in self.markets.items():
                t = m.trade()
                for c in list(self.clients):
                    if ("trade", inst) in c.subs:
                        await self._push(c, "update", "trade", inst, [self._trade(t)])
                for _ in range(2):
                    ((side, p, q),) = m.delta()
                    lvl = self._lvl(m, p, q)
                    bids, asks = ([lvl], []) if side == "bids" else ([], [lvl])
                    for c in list(self.clients):
                        if ("books", inst) in c.subs:
                            await self._push(c, "update", "books", inst,
                                             [self._book(bids, asks, m)])  # fmt: skip
                if i % 5 == 0:
                    for c in list(self.clients):
                        if ("ticker", inst) in c.subs:
                            await self._push(c, "snapshot", "ticker", inst,
                                             [self._ticker(inst, m)])  # fmt: skip
