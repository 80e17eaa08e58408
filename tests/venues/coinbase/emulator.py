"""A local Coinbase Advanced Trade exchange: real WebSocket and REST protocol, generated market.

Speaks what the collector uses, at the root path like ``advanced-trade-ws.coinbase.com``:
``{"type":"subscribe"|"unsubscribe","product_ids":[..],"channel":".."}`` (one channel per
request; ``heartbeats`` needs no products), answered by a ``subscriptions`` message listing
everything the connection now holds, or ``{"type":"error","message":..}``. Every message
is an envelope ``{"channel","client_id","timestamp","sequence_num","events"}`` whose
``sequence_num`` counts the connection's messages from 0 across all channels. level2
(``l2_data``) sends a snapshot on subscribe, then updates with the new size per level
(``side`` bid/offer); market_trades (maker side, like Coinbase), ticker (with best
bid/ask) and 5-minute candles come from the same true book; heartbeats every
``heartbeat_s``. Coinbase drops a connection with no subscription after 5 s
(``subscribe_deadline_s``). Advanced Trade level2 has no checksum, so none is sent.
REST: ``GET /api/v3/brokerage/market/products`` (optionally ``product_ids=``).

Faults per client (``fault=`` on ``emit``): ``drop`` (a level2 update's sequence number is
spent but the message never sent), ``duplicate`` (sent twice), ``reorder`` (swapped with
the next message), ``corrupt`` (a level's size is garbage), ``cross`` (an extra bid above
the best ask). The true book always has the real update. ``stall()`` stops all sending
(heartbeats too); ``drop_connections()`` closes every socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from tests.venues.emulator_base import EmulatorServer, VenueLimits

CHANNELS = {"level2", "market_trades", "ticker", "candles", "heartbeats"}
WIRE_NAME = {"level2": "l2_data"}  # channel name on data messages when it differs


def fmt(units: int, decimals: int) -> str:
    """Integer units -> decimal string without trailing zeros (Coinbase's level strings)."""
    whole, frac = divmod(units, 10**decimals)
    if not frac:
        return str(whole)
    return f"{whole}.{frac:0{decimals}d}".rstrip("0")


def rfc3339(ns: int) -> str:
    sec, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


class ProductSim:
    """One product's true book (ticks -> lots), trade tape and current candle."""

    def __init__(self, product_id: str, rnd: random.Random, mid: int, px_dec: int = 2,
                 sz_dec: int = 8) -> None:  # fmt: skip
        self.product_id = product_id
        self.rnd = rnd
        self.px_dec, self.sz_dec = px_dec, sz_dec
        self.max_lots = 300_000_000
        self.bids = {mid - i: rnd.randint(1, self.max_lots) for i in range(1, 80)}
        self.asks = {mid + i: rnd.randint(1, self.max_lots) for i in range(1, 80)}
        self.trade_id = 1000
        self.trades: list[dict[str, str]] = []  # every trade, in order
        self.candle: dict[str, Any] | None = None
        self.last_price = mid
        self.volume_lots = 0

    def px(self, ticks: int) -> str:
        return fmt(ticks, self.px_dec)

    def sz(self, lots: int) -> str:
        return fmt(lots, self.sz_dec)

    def _level(self, side: str, ticks: int, lots: int) -> dict[str, str]:
        return {"side": side, "event_time": "1970-01-01T00:00:00Z",
                "price_level": self.px(ticks), "new_quantity": self.sz(lots)}  # fmt: skip

    def snapshot_event(self) -> dict[str, Any]:
        ups = [self._level("bid", p, q) for p, q in sorted(self.bids.items(), reverse=True)]
        ups += [self._level("offer", p, q) for p, q in sorted(self.asks.items())]
        return {"type": "snapshot", "product_id": self.product_id, "updates": ups}

    def update_event(self, now_iso: str) -> dict[str, Any]:
        """1-6 level changes applied to the true book (new size, or 0 to remove)."""
        r = self.rnd
        ups: dict[tuple[str, int], int] = {}
        for _ in range(r.randint(1, 6)):
            bid = r.random() < 0.5
            own, other = (self.bids, self.asks) if bid else (self.asks, self.bids)
            edge = min(other) if bid else max(other)
            price = edge - r.randint(1, 40) if bid else edge + r.randint(1, 40)
            if price in own and r.random() < 0.4 and len(own) > 20:
                del own[price]
                ups[("bid" if bid else "offer", price)] = 0
            else:
                own[price] = r.randint(1, self.max_lots)
                ups[("bid" if bid else "offer", price)] = own[price]
        updates = [dict(self._level(s, p, q), event_time=now_iso) for (s, p), q in ups.items()]
        return {"type": "update", "product_id": self.product_id, "updates": updates}

    def trade(self, now_iso: str) -> dict[str, str]:
        self.trade_id += 1
        taker_buys = self.rnd.random() < 0.5  # lifts the best ask: the maker sold
        ticks = min(self.asks) if taker_buys else max(self.bids)
        lots = self.rnd.randint(1, self.max_lots // 10)
        self.last_price = ticks
        self.volume_lots += lots
        t = {"trade_id": str(self.trade_id), "product_id": self.product_id,
             "price": self.px(ticks), "size": self.sz(lots),
             "side": "SELL" if taker_buys else "BUY", "time": now_iso}  # fmt: skip
        self.trades.append(t)
        return t

    def ticker(self) -> dict[str, str]:
        bid, ask = max(self.bids), min(self.asks)
        return {"type": "ticker", "product_id": self.product_id,
                "price": self.px(self.last_price), "volume_24_h": self.sz(self.volume_lots),
                "low_24_h": self.px(min(self.bids)), "high_24_h": self.px(max(self.asks)),
                "low_52_w": "1", "high_52_w": "100000", "price_percent_chg_24_h": "1.5",
                "best_bid": self.px(bid), "best_bid_quantity": self.sz(self.bids[bid]),
                "best_ask": self.px(ask), "best_ask_quantity": self.sz(self.asks[ask])}  # fmt: skip

    def candle_row(self, now_s: int) -> dict[str, str]:
        start = now_s - now_s % 300
        p = self.last_price
        c = self.candle
        if c is None or c["start"] != start:
            c = self.candle = {"start": start, "open": p, "high": p, "low": p, "vol": 0}
        c["high"], c["low"] = max(c["high"], p), min(c["low"], p)
        c["vol"] += 1
        return {"start": str(start), "high": self.px(c["high"]), "low": self.px(c["low"]),
                "open": self.px(c["open"]), "close": self.px(p),
                "volume": self.sz(c["vol"] * 1000), "product_id": self.product_id}  # fmt: skip

    def product_row(self) -> dict[str, Any]:
        base, quote = self.product_id.split("-")
        return {"product_id": self.product_id, "price": self.px(self.last_price),
                "price_percentage_change_24h": "1.5", "volume_24h": "100",
                "volume_percentage_change_24h": "0", "base_increment": fmt(1, self.sz_dec),
                "quote_increment": fmt(1, self.px_dec), "quote_min_size": "1",
                "quote_max_size": "150000000", "base_min_size": fmt(1, self.sz_dec),
                "base_max_size": "3400", "base_name": base, "quote_name": quote,
                "watched": False, "is_disabled": False, "new": False, "status": "online",
                "cancel_only": False, "limit_only": False, "post_only": False,
                "trading_disabled": False, "auction_mode": False, "product_type": "SPOT",
                "quote_currency_id": quote, "base_currency_id": base,
                "fcm_trading_session_details": None, "mid_market_price": "",
                "alias": "", "alias_to": [], "base_display_symbol": base,
                "quote_display_symbol": quote, "view_only": False,
                "price_increment": fmt(1, self.px_dec), "display_name": f"{base}-{quote}",
                "product_venue": "CBE"}  # fmt: skip

    def true_book(self) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """Every level best first, as the normalizer must present it."""

        def side(levels: dict[int, int], rev: bool) -> list[tuple[float, float]]:
            return [(float(self.px(p)), float(self.sz(q))) for p, q in
                    sorted(levels.items(), reverse=rev)]  # fmt: skip

        return side(self.bids, True), side(self.asks, False)


class Wire:
    """One connection's envelope writer: ``sequence_num`` counts every message it makes."""

    def __init__(self) -> None:
        self.seq = 0

    def envelope(self, channel: str, events: list[Any], now_ns: int | None = None) -> bytes:
        body = {"channel": WIRE_NAME.get(channel, channel), "client_id": "",
                "timestamp": rfc3339(now_ns or time.time_ns()), "sequence_num": self.seq,
                "events": events}  # fmt: skip
        self.seq += 1
        return orjson.dumps(body)


@dataclass
class Client:
    ws: web.WebSocketResponse
    wire: Wire = field(default_factory=Wire)
    subs: set[tuple[str, str]] = field(default_factory=set)  # (channel, product or "")
    sent: list[bytes] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


DEFAULT_MIDS = {"BTC-USD": 6_500_000, "ETH-USD": 350_000, "SOL-USD": 15_000}


class CoinbaseEmulator(EmulatorServer):
    clients: list[Client]
    ws_path = "/"

    def __init__(
        self,
        product_ids: list[str] | tuple[str, ...] = ("BTC-USD", "ETH-USD"),
        *,
        seed: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        heartbeat_s: float = 1.0,
        subscribe_deadline_s: float = 5.0,
    ) -> None:
        self.rnd = random.Random(seed)
        self.sims = {p: ProductSim(p, self.rnd, DEFAULT_MIDS.get(p, 100_000)) for p in product_ids}
        super().__init__(host, port)
        self.heartbeat_s = heartbeat_s
        self.subscribe_deadline_s = subscribe_deadline_s
        self.requests: list[dict[str, Any]] = []
        self.rest_calls = 0
        self.stalled = False
        self.connections = 0
        self._hb = 0

    # -- routes --------------------------------------------------------------------------
    def venue_limits(self) -> VenueLimits:
        """Public REST: 10 requests per s per IP; 429, no ban."""
        return VenueLimits(10, 1.0, ban_status=0,
                           over_body=b'{"errors":[{"id":"rate_limit_exceeded"}]}')  # fmt: skip

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._ws_handler)
        app.router.add_get("/api/v3/brokerage/market/products", self._rest_products)

    async def wait_subscribed(self, n: int, timeout: float = 10.0) -> None:
        """Until some client holds at least ``n`` (channel, product) subscriptions."""
        await self.wait_for(lambda: any(len(c.subs) >= n for c in self.clients), timeout)

    # -- market generation ---------------------------------------------------------------
    async def emit(
        self,
        n: int,
        *,
        product: str | None = None,
        trades_every: int = 4,
        fault: str | None = None,
    ) -> None:
        """``n`` level2 updates across products; every ``trades_every``-th step also a
        trade, its ticker and a candle update. ``fault`` hits the middle update of
        ``product`` (or of the first product)."""
        sims = [self.sims[product]] if product else list(self.sims.values())
        target = product or next(iter(self.sims))
        faulty = n // 2
        batch: list[tuple[str, str, list[Any], str | None]] = []
        k = 0
        for i in range(n):
            sim = self.rnd.choice(sims)
            now_iso = rfc3339(time.time_ns())
            ev = sim.update_event(now_iso)
            f = None
            if fault and sim.product_id == target:
                if k == faulty:
                    f = fault
                k += 1
            batch.append(("level2", sim.product_id, [ev], f))
            if (i + 1) % trades_every == 0:
                t = sim.trade(now_iso)
                batch.append(("market_trades", sim.product_id,
                              [{"type": "update", "trades": [t]}], None))  # fmt: skip
                batch.append(("ticker", sim.product_id,
                              [{"type": "update", "tickers": [sim.ticker()]}], None))  # fmt: skip
                batch.append(("candles", sim.product_id, [{"type": "update",
                              "candles": [sim.candle_row(int(time.time()))]}], None))  # fmt: skip
        for c in list(self.clients):
            await self._deliver(c, batch)
        await asyncio.sleep(0)

    @staticmethod
    def _faulty(events: list[Any], fault: str, sim: ProductSim) -> list[Any]:
        ev = orjson.loads(orjson.dumps(events[0]))
        if fault == "corrupt":
            ev["updates"][0]["new_quantity"] = "-1.5"
        elif fault == "cross":
            ev["updates"].append({"side": "bid", "event_time": "1970-01-01T00:00:00Z",
                                  "price_level": sim.px(min(sim.asks) + 5),
                                  "new_quantity": "1"})  # fmt: skip
        return [ev]

    async def _deliver(
        self, c: Client, batch: list[tuple[str, str, list[Any], str | None]]
    ) -> None:
        if self.stalled:
            return
        async with c.lock:
            held: bytes | None = None
            try:
                for channel, product, events, fault in batch:
                    if (channel, product) not in c.subs:
                        continue
                    if fault in ("corrupt", "cross"):
                        events = self._faulty(events, fault, self.sims[product])
                    frame = c.wire.envelope(channel, events)
                    if fault == "drop":
                        continue  # the sequence number is spent, the message lost
                    if fault == "reorder":
                        held = frame
                        continue
                    await self._send(c, frame)
                    if fault == "duplicate":
                        await self._send(c, frame)
                    if held is not None:
                        await self._send(c, held)
                        held = None
                if held is not None:
                    await self._send(c, held)
            except (ConnectionError, RuntimeError):
                pass  # the client went away; its handler cleans up

    async def _send(self, c: Client, frame: bytes) -> None:
        c.sent.append(frame)
        await c.ws.send_str(frame.decode())

    def stall(self, on: bool = True) -> None:
        self.stalled = on

    def true_book(
        self, product: str
    ) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        return self.sims[product].true_book()

    # -- WebSocket -----------------------------------------------------------------------
    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=1 << 20)
        await ws.prepare(request)
        self.connections += 1
        client = Client(ws)
        await self.serve(client, self._on_text, self._heartbeats(client))
        return ws

    async def _heartbeats(self, c: Client) -> None:
        """Heartbeats to subscribers; and Coinbase's cut of a client that never subscribes."""
        started = time.monotonic()
        with contextlib.suppress(Exception):
            while not c.ws.closed:
                await asyncio.sleep(self.heartbeat_s)
                if not c.subs and time.monotonic() - started > self.subscribe_deadline_s:
                    await c.ws.close(code=1008, message=b"no subscription within 5s")
                    return
                if ("heartbeats", "") in c.subs and not self.stalled:
                    self._hb += 1
                    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f000 +0000 UTC")
                    ev = [{"current_time": now, "heartbeat_counter": self._hb}]
                    async with c.lock:
                        await self._send(c, c.wire.envelope("heartbeats", ev))

    async def _error(self, c: Client, message: str) -> None:
        await c.ws.send_str(orjson.dumps({"type": "error", "message": message}).decode())

    async def _on_text(self, c: Client, text: str) -> None:
        try:
            req = orjson.loads(text)
            kind, channel = req["type"], req["channel"]
            products = req.get("product_ids", [])
            assert isinstance(products, list) and isinstance(channel, str)
        except (orjson.JSONDecodeError, KeyError, TypeError, AssertionError):
            await self._error(c, f"Failed to parse request: {text[:100]}")
            return
        self.requests.append(req)
        if kind not in ("subscribe", "unsubscribe"):
            await self._error(c, f"unknown message type {kind!r}")
            return
        if channel not in CHANNELS:
            await self._error(c, f"Failed to subscribe: unknown channel {channel!r}")
            return
        if channel == "heartbeats":
            products = [""]
        elif not products or any(p not in self.sims for p in products):
            await self._error(c, f"Failed to subscribe: bad product_ids {products}")
            return
        async with c.lock:
            for p in products:
                (c.subs.add if kind == "subscribe" else c.subs.discard)((channel, p))
            listing: dict[str, list[str]] = {}
            for ch, p in sorted(c.subs):
                listing.setdefault(ch, []).append(p or ch)
            out = [c.wire.envelope("subscriptions", [{"subscriptions": listing}])]
            if kind == "subscribe":
                now_iso = rfc3339(time.time_ns())
                for p in products:
                    sim = self.sims.get(p)
                    if sim is None:
                        continue
                    if channel == "level2":
                        out.append(c.wire.envelope("level2", [sim.snapshot_event()]))
                    elif channel == "market_trades":
                        recent = sim.trades[-10:][::-1]  # newest first, like Coinbase
                        ev = [{"type": "snapshot", "trades": recent}]
                        out.append(c.wire.envelope("market_trades", ev))
                    elif channel == "ticker":
                        ev = [{"type": "snapshot", "tickers": [sim.ticker()]}]
                        out.append(c.wire.envelope("ticker", ev))
                    elif channel == "candles" and sim.candle is not None:
                        row = sim.candle_row(int(time.time()))
                        ev = [{"type": "snapshot", "candles": [row]}]
                        out.append(c.wire.envelope("candles", ev))
                del now_iso
            with contextlib.suppress(ConnectionError, RuntimeError):
                for frame in out:
                    await self._send(c, frame)
        await self._notify()

    # -- REST ----------------------------------------------------------------------------
    async def _rest_products(self, request: web.Request) -> web.Response:
        self.rest_calls += 1
        wanted = request.query.getall("product_ids", [])
        kind = request.query.get("product_type", "")
        rows = [s.product_row() for p, s in self.sims.items() if not wanted or p in wanted]
        if kind and kind != "SPOT":
            rows = []
        body = {"products": rows, "num_products": len(rows)}
        return web.Response(body=orjson.dumps(body), content_type="application/json")
