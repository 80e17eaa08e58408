"""A local Bitfinex v2 public WebSocket (``/ws/2``) beside the REST emulator ccxt loads its
markets from (tests/venues/ccxt/emulator.py), speaking what ccxt pro's ``bitfinex`` uses:

- on connect ``{"event":"info","version":2,...}``; ``{"event":"ping","cid":n}`` -> pong;
- ``{"event":"subscribe","channel":"trades"|"book"|"ticker","symbol":"tBTCUSD",...}`` ->
  ``{"event":"subscribed","chanId":N,...}`` then the channel's snapshot ``[N, [...]]``;
- trades ``[N,"te",[ID,MTS,AMOUNT,PRICE]]`` followed by its ``"tu"`` copy (AMOUNT < 0:
  sell); book P0 ``[N,[PRICE,COUNT,AMOUNT]]`` (AMOUNT < 0: ask; COUNT 0: delete with
  AMOUNT 1/-1); ticker ``[N,[BID,BID_SIZE,ASK,ASK_SIZE,CHG,CHG_REL,LAST,VOL,HIGH,LOW]]``;
  heartbeats ``[N,"hb"]``;
- ``{"event":"conf","flags":131072}`` turns on checksums: ``[N,"cs",CRC]`` after every
  book message, CRC32 (signed) of ``price:amount`` of the top 25 bids and asks interleaved.

Sources: docs.bitfinex.com (ws-public-trades, ws-public-books, ws-public-ticker, "WebSocket
checksum") and the frames in ccxt pro's bitfinex handlers' comments.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.venues.ccxt.emulator import BitfinexEmulator
from tests.venues.ccxt_ws.sim import Market

CHECKSUM_FLAG = 131072


def js_number(x: float) -> str:
    """A number as JavaScript's toString writes it (what the venue checksums)."""
    s = repr(float(x))
    return s[:-2] if s.endswith(".0") else s


def crc(m: Market) -> int:
    bids = sorted(m.bids, reverse=True)[:25]
    asks = sorted(m.asks)[:25]
    parts: list[str] = []
    for i in range(25):
        if i < len(bids):
            parts += [js_number(m.price(bids[i])), js_number(m.size(m.bids[bids[i]]))]
        if i < len(asks):
            parts += [js_number(m.price(asks[i])), js_number(-m.size(m.asks[asks[i]]))]
    v = zlib.crc32(":".join(parts).encode())
    return v - 2**32 if v >= 2**31 else v


@dataclass
class Conn:
    ws: web.WebSocketResponse
    checksums: bool = False
    chans: dict[tuple[str, str], int] = field(default_factory=dict)  # (channel, sym) -> id


class BitfinexWsEmulator(BitfinexEmulator):
    ws_path = "/ws/2"
    access_log = False

    def __init__(self, seed: int = 5) -> None:
        super().__init__(trades_per_symbol=10, seed=seed)
        self.markets = {
            "tBTCUSD": Market("BTC/USD", "tBTCUSD", 650_000, tick=0.1, lot=0.0001),
            "tETHUSD": Market("ETH/USD", "tETHUSD", 35_000, tick=0.1, lot=0.0001),
        }
        for n, m in enumerate(self.markets.values()):
            m.rnd.seed(seed * 100 + n)
        self.next_chan = 100

    @staticmethod
    def counts(ticks: int) -> int:
        return 1 + ticks % 5  # orders at a level

    def routes(self, app: web.Application) -> None:
        super().routes(app)
        app.router.add_get(self.ws_path, self._ws)

    # -- the socket ----------------------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        c = Conn(ws)
        await ws.send_str('{"event":"info","version":2,"serverId":"emu","platform":{"status":1}}')
        await self.serve(c, self._on_text)
        return ws

    async def _on_text(self, c: Conn, text: str) -> None:
        msg = orjson.loads(text)
        event = msg.get("event")
        if event == "ping":
            await c.ws.send_str(orjson.dumps({"event": "pong", "ts": 1, "cid": msg.get("cid")})
                                .decode())  # fmt: skip
        elif event == "conf":
            c.checksums = bool(msg.get("flags", 0) & CHECKSUM_FLAG)
            await c.ws.send_str(orjson.dumps({"event": "conf", "status": "OK",
                                              "flags": msg.get("flags", 0)}).decode())  # fmt: skip
        elif event == "subscribe":
            await self._subscribe(c, msg)
        await self._notify()

    async def _subscribe(self, c: Conn, msg: dict[str, Any]) -> None:
        channel, sym = msg.get("channel"), msg.get("symbol")
        m = self.markets.get(sym or "")
        if m is None or channel not in ("trades", "book", "ticker"):
            await c.ws.send_str(orjson.dumps({"event": "error", "msg": "symbol: invalid",
                                              "code": 10300}).decode())  # fmt: skip
            return
        self.next_chan += 1
        chan = c.chans[(channel, sym)] = self.next_chan
        ack: dict[str, Any] = {"event": "subscribed", "channel": channel, "chanId": chan,
                               "symbol": sym, "pair": sym[1:]}  # fmt: skip
        if channel == "book":
            ack.update(prec=msg.get("prec", "P0"), freq=msg.get("freq", "F0"),
                       len=str(msg.get("len", "25")))  # fmt: skip
        await c.ws.send_str(orjson.dumps(ack).decode())
        if channel == "trades":
            rows = [[t.id, t.ms, t.size if t.side == "buy" else -t.size, t.price]
                    for t in m.trades[-30:][::-1]]  # fmt: skip
            await self._send(c, chan, rows)
        elif channel == "book":
            rows = [[m.price(p), self.counts(p), m.size(q)] for p, q in sorted(m.bids.items(),
                    reverse=True)]  # fmt: skip
            rows += [[m.price(p), self.counts(p), -m.size(q)] for p, q in sorted(m.asks.items())]
            await self._send(c, chan, rows)
            await self._checksum(c, chan, m)
        else:
            await self._send(c, chan, self._ticker_row(m))

    # -- market activity -----------------------------------------------------------------
    async def _send(self, c: Conn, chan: int, *body: Any) -> None:
        await c.ws.send_str(orjson.dumps([chan, *body]).decode())

    async def _checksum(self, c: Conn, chan: int, m: Market, bad: bool = False) -> None:
        if c.checksums:
            await self._send(c, chan, "cs", crc(m) + (1 if bad else 0))

    def _ticker_row(self, m: Market) -> list[float]:
        t = m.ticker()
        return [t["bid"], t["bid_size"], t["ask"], t["ask_size"], 1.5, 0.0002, t["last"],
                t["volume"], t["high"], t["low"]]  # fmt: skip

    def subscribed(self, channels: tuple[str, ...] = ("trades", "book", "ticker")) -> bool:
        want = {(ch, s) for ch in channels for s in self.markets}
        return any(want <= set(c.chans) for c in self.clients) and all(
            c.checksums for c in self.clients
        )

    async def play(self, steps: int) -> None:
        """``steps`` rounds of market activity for every symbol: a trade, two book changes,
        now and then a ticker and heartbeats, to every subscribed connection."""
        for i in range(steps):
            for sym, m in self.markets.items():
                t = m.trade()
                row = [t.id, t.ms, t.size if t.side == "buy" else -t.size, t.price]
                for c in list(self.clients):
                    if (ch := c.chans.get(("trades", sym))) is not None:
                        await self._send(c, ch, "te", row)
                        await self._send(c, ch, "tu", row)
                for _ in range(2):
                    ((side, p, q),) = m.delta()
                    sign = 1 if side == "bids" else -1
                    row = [m.price(p), self.counts(p) if q else 0, sign * (m.size(q) if q else 1)]
                    for c in list(self.clients):
                        if (ch := c.chans.get(("book", sym))) is not None:
                            await self._send(c, ch, row)
                            await self._checksum(c, ch, m)
                if i % 5 == 0:
                    for c in list(self.clients):
                        if (ch := c.chans.get(("ticker", sym))) is not None:
                            await self._send(c, ch, self._ticker_row(m))
                            await self._send(c, ch, "hb")
