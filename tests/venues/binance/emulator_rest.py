"""A mock Binance spot exchange for the executor: the signed REST endpoints ccxt's
``binance`` class calls, so the real ccxt code runs against it.

Endpoints (under ``/api/v3``): ``ping``, ``time``, ``exchangeInfo``, ``order`` (POST
create, GET query, DELETE cancel), ``openOrders`` (GET, DELETE), ``myTrades``,
``account``. Private calls must carry ``X-MBX-APIKEY`` and a valid HMAC-SHA256
``signature`` of the query (or form body), as on the venue. Errors use Binance's
``{"code", "msg"}`` bodies (-2013 order does not exist, -2011 unknown order on cancel,
-2010 duplicate client order id), so ccxt raises its usual exception classes.

Orders rest until a test fills them (``fill``) except market orders, which fill at
``prices[symbol]``. Faults on demand: ``delay_s`` before every private answer (after acting),
``drop_creates`` (accept the order, never answer), ``fail_creates`` (HTTP 503 before
accepting: outcome unknown to the client, no order), ``reject_creates`` (a -2010).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import parse_qsl

from aiohttp import web

from tests.venues.emulator_base import EmulatorServer, VenueLimits

API_KEY = "mock-key"
SECRET = "mock-secret"


def _ms() -> int:
    return int(time.time() * 1000)


@dataclass
class MockOrder:
    symbol: str
    order_id: int
    client_id: str
    side: str
    type: str
    qty: Decimal
    price: Decimal
    tif: str
    stop: Decimal
    time: int
    status: str = "NEW"
    executed: Decimal = Decimal(0)
    quote: Decimal = Decimal(0)

    def json(self) -> dict[str, object]:
        return {
            "symbol": self.symbol, "orderId": self.order_id, "orderListId": -1,
            "clientOrderId": self.client_id, "price": f"{self.price:f}",
            "origQty": f"{self.qty:f}", "executedQty": f"{self.executed:f}",
            "cummulativeQuoteQty": f"{self.quote:f}", "status": self.status,
            "timeInForce": self.tif, "type": self.type, "side": self.side,
            "stopPrice": f"{self.stop:f}", "icebergQty": "0.00000000", "time": self.time,
            "updateTime": _ms(), "isWorking": True, "workingTime": self.time,
            "origQuoteOrderQty": "0.00000000", "selfTradePreventionMode": "NONE",
            "transactTime": self.time,
        }  # fmt: skip


@dataclass
class MockBinance(EmulatorServer):
    symbols: dict[str, tuple[str, str]] = field(
        default_factory=lambda: {"BTCUSDT": ("BTC", "USDT"), "ETHUSDT": ("ETH", "USDT")}
    )
    tick: str = "0.01"
    step: str = "0.00001"
    min_notional: str = "5"
    fee_rate: Decimal = Decimal("0.001")
    port: int = 0
    prices: dict[str, Decimal] = field(default_factory=dict)
    orders: dict[int, MockOrder] = field(default_factory=dict)
    trades: list[dict[str, object]] = field(default_factory=list)
    creates: int = 0  # create requests that made an order
    delay_s: float = 0.0
    drop_creates: int = 0
    fail_creates: int = 0
    reject_creates: int = 0
    requests: list[str] = field(default_factory=list)
    klines_served: int = 0

    access_log = False

    def __post_init__(self) -> None:
        super().__init__(port=self.port)
        self._next_id = 1000
        self._next_trade = 5000
        self._hold = asyncio.Event()  # set at stop: releases dropped requests

    def venue_limits(self) -> VenueLimits:
        """Spot REQUEST_WEIGHT 6000 per minute per IP with the trading endpoints' weights
        (GET order 4, openOrders 6, myTrades/account 20, exchangeInfo 20, else 1)."""
        weights = {"/api/v3/exchangeInfo": 20, "/api/v3/openOrders": 6,
                   "/api/v3/myTrades": 20, "/api/v3/account": 20,
                   "/api/v3/klines": 2}  # fmt: skip

        def weight(request: web.Request) -> int:
            if request.path == "/api/v3/order" and request.method == "GET":
                return 4
            return weights.get(request.path, 1)

        return VenueLimits(6000, 60.0, weight, "X-MBX-USED-WEIGHT-1M")

    def ccxt_urls(self) -> dict[str, str]:
        """``urls['api']`` overrides pointing ccxt's binance at this mock."""
        base = f"{self.url}/api"
        return {"public": f"{base}/v3", "private": f"{base}/v3", "v1": f"{base}/v1"}

    # -- routes ----------------------------------------------------------------------------
    def routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/v3/ping", self._ping)
        r.add_get("/api/v3/time", self._time)
        r.add_get("/api/v3/exchangeInfo", self._exchange_info)
        r.add_get("/api/v3/klines", self._klines)
        r.add_post("/api/v3/order", self._private(self._create))
        r.add_get("/api/v3/order", self._private(self._query))
        r.add_delete("/api/v3/order", self._private(self._cancel))
        r.add_get("/api/v3/openOrders", self._private(self._open_orders))
        r.add_delete("/api/v3/openOrders", self._private(self._cancel_all))
        r.add_get("/api/v3/myTrades", self._private(self._my_trades))
        r.add_get("/api/v3/account", self._private(self._account))

    async def stop(self) -> None:
        self._hold.set()
        await super().stop()

    # -- test controls ---------------------------------------------------------------------
    def by_client_id(self, cid: str) -> MockOrder | None:
        for o in self.orders.values():
            if o.client_id == cid:
                return o
        return None

    def fill(self, cid: str, qty: str | None = None, price: str | None = None) -> None:
        """Fill an order (all that is left, or ``qty``) at its price or ``price``."""
        o = self.by_client_id(cid)
        assert o is not None and o.status in ("NEW", "PARTIALLY_FILLED"), cid
        self._execute(o, Decimal(qty) if qty else o.qty - o.executed,
                      Decimal(price) if price else o.price, maker=True)  # fmt: skip

    def _execute(self, o: MockOrder, qty: Decimal, price: Decimal, maker: bool) -> None:
        qty = min(qty, o.qty - o.executed)
        self._next_trade += 1
        o.executed += qty
        o.quote += qty * price
        o.status = "FILLED" if o.executed >= o.qty else "PARTIALLY_FILLED"
        _base, quote = self.symbols[o.symbol]
        self.trades.append({
            "symbol": o.symbol, "id": self._next_trade, "orderId": o.order_id,
            "orderListId": -1, "price": f"{price:f}", "qty": f"{qty:f}",
            "quoteQty": f"{qty * price:f}", "commission": f"{qty * price * self.fee_rate:f}",
            "commissionAsset": quote, "time": _ms(), "isBuyer": o.side == "BUY",
            "isMaker": maker, "isBestMatch": True,
        })  # fmt: skip

    # -- protocol --------------------------------------------------------------------------
    @staticmethod
    def _error(code: int, msg: str, status: int = 400) -> web.Response:
        return web.json_response({"code": code, "msg": msg}, status=status)

    def _private(self, handler):  # type: ignore[no-untyped-def]
        async def wrapped(request: web.Request) -> web.StreamResponse:
            self.requests.append(f"{request.method} {request.path}")
            if request.headers.get("X-MBX-APIKEY") != API_KEY:
                return self._error(-2014, "API-key format invalid.", 401)
            raw = request.query_string if request.method in ("GET", "DELETE") else (
                await request.text())  # fmt: skip
            payload, _, sig = raw.rpartition("&signature=")
            want = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(sig, want):
                return self._error(-1022, "Signature for this request is not valid.", 400)
            answer = await handler(dict(parse_qsl(payload)))
            if self.delay_s:  # the venue has acted; only its answer is late
                await asyncio.sleep(self.delay_s)
            return answer

        return wrapped

    async def _ping(self, _: web.Request) -> web.Response:
        return web.json_response({})

    async def _time(self, _: web.Request) -> web.Response:
        return web.json_response({"serverTime": _ms()})

    async def _klines(self, request: web.Request) -> web.Response:
        """1m candles from startTime (a flat synthetic tape, enough for a backfill to page
        through); ``klines_served`` counts the pages."""
        step = 60_000
        start = int(request.query.get("startTime", "0")) // step * step
        limit = min(int(request.query.get("limit", "500")), 1000)
        end = min(int(request.query.get("endTime", str(_ms()))), _ms() - step)
        self.klines_served += 1
        rows = [[t, "65000.00", "65010.00", "64990.00", "65005.00", "1.50000", t + step - 1,
                 "97507.50", 12, "0.75000", "48753.75", "0"]
                for t in range(start, end + 1, step)][:limit]  # fmt: skip
        return web.json_response(rows)

    async def _exchange_info(self, _: web.Request) -> web.Response:
        syms = [{
            "symbol": s, "status": "TRADING", "baseAsset": b, "baseAssetPrecision": 8,
            "quoteAsset": q, "quotePrecision": 8, "quoteAssetPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT",
                           "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True, "ocoAllowed": True, "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False, "permissions": [], "permissionSets": [["SPOT"]],
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": self.tick, "maxPrice": "1000000.00",
                 "tickSize": self.tick},
                {"filterType": "LOT_SIZE", "minQty": self.step, "maxQty": "9000.00000000",
                 "stepSize": self.step},
                {"filterType": "NOTIONAL", "minNotional": self.min_notional,
                 "applyMinToMarket": True, "maxNotional": "9000000.00",
                 "applyMaxToMarket": False, "avgPriceMins": 5},
            ],
        } for s, (b, q) in self.symbols.items()]  # fmt: skip
        return web.json_response({"timezone": "UTC", "serverTime": _ms(), "rateLimits": [],
                                  "exchangeFilters": [], "symbols": syms})  # fmt: skip

    def _find(self, p: dict[str, str]) -> MockOrder | None:
        if "orderId" in p:
            o = self.orders.get(int(p["orderId"]))
        else:
            o = self.by_client_id(p.get("origClientOrderId", ""))
        return o if o is not None and o.symbol == p.get("symbol") else None

    async def _create(self, p: dict[str, str]) -> web.StreamResponse:
        if self.fail_creates:
            self.fail_creates -= 1
            return web.Response(status=503, text="Service Unavailable")
        if self.reject_creates:
            self.reject_creates -= 1
            return self._error(-2010, "Account has insufficient balance for requested action.")
        if p.get("symbol") not in self.symbols:
            return self._error(-1121, "Invalid symbol.")
        cid = p.get("newClientOrderId") or f"x-{self._next_id}"
        existing = self.by_client_id(cid)
        if existing is not None and existing.status in ("NEW", "PARTIALLY_FILLED"):
            return self._error(-2010, "Duplicate order sent.")
        self._next_id += 1
        self.creates += 1
        o = MockOrder(
            p["symbol"], self._next_id, cid, p["side"], p["type"], Decimal(p["quantity"]),
            Decimal(p.get("price", "0")), p.get("timeInForce", "GTC"),
            Decimal(p.get("stopPrice", "0")), _ms(),
        )  # fmt: skip
        self.orders[o.order_id] = o
        if o.type == "MARKET":
            self._execute(o, o.qty, self.prices.get(o.symbol, Decimal("100")), maker=False)
        if self.drop_creates:
            self.drop_creates -= 1
            await self._hold.wait()  # accepted, but the answer never comes
        return web.json_response(o.json())

    async def _query(self, p: dict[str, str]) -> web.Response:
        o = self._find(p)
        if o is None:
            return self._error(-2013, "Order does not exist.")
        return web.json_response(o.json())

    async def _cancel(self, p: dict[str, str]) -> web.Response:
        o = self._find(p)
        if o is None or o.status not in ("NEW", "PARTIALLY_FILLED"):
            return self._error(-2011, "Unknown order sent.")
        o.status = "CANCELED"
        return web.json_response(o.json())

    async def _open_orders(self, p: dict[str, str]) -> web.Response:
        return web.json_response([
            o.json() for o in self.orders.values()
            if o.status in ("NEW", "PARTIALLY_FILLED") and p.get("symbol") in (None, o.symbol)
        ])  # fmt: skip

    async def _cancel_all(self, p: dict[str, str]) -> web.Response:
        out = []
        for o in self.orders.values():
            if o.status in ("NEW", "PARTIALLY_FILLED") and o.symbol == p.get("symbol"):
                o.status = "CANCELED"
                out.append(o.json())
        return web.json_response(out)

    async def _my_trades(self, p: dict[str, str]) -> web.Response:
        return web.json_response([
            t for t in self.trades if t["symbol"] == p.get("symbol")
            and ("orderId" not in p or str(t["orderId"]) == p["orderId"])
        ])  # fmt: skip

    async def _account(self, _: dict[str, str]) -> web.Response:
        return web.json_response({
            "makerCommission": 10, "takerCommission": 10, "canTrade": True,
            "canWithdraw": False, "canDeposit": False, "updateTime": _ms(),
            "accountType": "SPOT", "permissions": ["SPOT"],
            "balances": [{"asset": "USDT", "free": "1000000.0", "locked": "0.0"},
                         {"asset": "BTC", "free": "10.0", "locked": "0.0"}],
        })  # fmt: skip
