"""Any ccxt exchange as a venue, through ccxt.async_support and the venue's shared REST budget.

Client order ids go to the exchange (``clientOrderId``), so every lookup, cancel and
reconciliation finds orders by the id the executor chose. Keys come from environment
variables or a JSON secrets file readable by the owner only; they are handed to ccxt and
never logged or put into messages. A timeout or dropped connection during a request
raises VenueUnknown: the caller must look the order up before doing anything else.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt_async
from ccxt.base import errors as cx
from ccxt.base.decimal_to_precision import TICK_SIZE
from nats.aio.client import Client

from executor.model import (
    Order,
    VenueFill,
    VenueOrder,
    VenueRejected,
    VenueReport,
    VenueTrade,
    VenueUnknown,
)
from executor.precision import Spec
from streams.bus import logs, secrets
from streams.bus.budget import ORDERS, POLL, BudgetError, VenueBudget, open_budget, priority
from streams.settings import AccountSettings

_STATUS = {"open": "new", "closed": "filled", "canceled": "canceled", "expired": "expired",
           "rejected": "rejected", "canceling": "pending_cancel"}  # fmt: skip
# ccxt's unified order types (lower-cased venue names) -> ours, for adopted orders
_TYPES = {"market": "market", "limit": "limit", "limit_maker": "limit", "stop": "stop",
          "stop_market": "stop", "stop_loss": "stop", "stop_limit": "stop_limit",
          "stop_loss_limit": "stop_limit", "take_profit": "take_profit",
          "take_profit_market": "take_profit", "take_profit_limit": "take_profit"}  # fmt: skip
TRADES_PAGE = 1000  # Binance's maximum myTrades page; others cap lower and return fewer
MAX_PAGES = 20  # one reconciliation round never loops on a venue that ignores `since`


def load_keys(cfg: AccountSettings, env: dict[str, str] | None = None) -> dict[str, str]:
    """apiKey/secret (and password when the exchange needs one) from env or the file."""
    env = dict(os.environ) if env is None else env
    keys: dict[str, str] = {}
    if cfg.secrets_file:
        data = json.loads(secrets.read_file(cfg.secrets_file))  # refused unless mode 0600
        for value in data.values():  # every value in a secrets file is one, used or not
            logs.register_secret(str(value))
        keys.update({k: str(data[k]) for k in ("apiKey", "secret", "password") if k in data})
    if cfg.api_key_env and env.get(cfg.api_key_env):
        keys["apiKey"] = env[cfg.api_key_env]
    if cfg.secret_env and env.get(cfg.secret_env):
        keys["secret"] = env[cfg.secret_env]
    for value in keys.values():  # whatever ccxt or we print later, these show as ***
        logs.register_secret(value)
    return keys


def our_symbol(m: dict[str, Any]) -> str | None:
    base, quote = m.get("base"), m.get("quote")
    if m.get("spot"):
        return f"{base}-{quote}"
    if m.get("swap"):
        return f"{base}-{quote}-PERP"
    if m.get("future") and m.get("expiry"):
        day = dt.datetime.fromtimestamp(m["expiry"] / 1000, tz=dt.UTC).strftime("%Y%m%d")
        return f"{base}-{quote}-{day}"
    return None


class CcxtVenue:
    write_ahead = True

    def __init__(self, cfg: AccountSettings, nc: Client | None = None) -> None:
        self.cfg = cfg
        self.nc = nc  # for the venue's shared REST budget (streams/bus/budget.py)
        self.budget: VenueBudget | None = None
        self.ex: Any = None
        self.symbols: dict[str, str] = {}  # ours -> ccxt unified
        self.ours: dict[str, str] = {}  # ccxt unified -> ours

    async def start(self) -> None:
        klass = getattr(ccxt_async, self.cfg.exchange, None)
        if klass is None:
            raise ValueError(f"ccxt has no exchange {self.cfg.exchange!r}")
        keys = load_keys(self.cfg)
        self.ex = klass({
            **keys, "enableRateLimit": True,
            "timeout": int(self.cfg.request_timeout_s * 1000),
            "options": dict(self.cfg.options),
        })  # fmt: skip
        if self.cfg.urls:
            api = self.ex.urls.get("api")
            self.ex.urls["api"] = {**api, **self.cfg.urls} if isinstance(api, dict) else dict(
                self.cfg.urls)  # fmt: skip
        # every call through the budget the collectors of this venue share: submit, cancel
        # and lookup first (ORDERS), reconciliation polls and markets as polls; the account
        # rules (order counts) are keyed by a digest of the API key, never the key
        account = hashlib.sha256(keys.get("apiKey", "").encode()).hexdigest()[:12]
        self.budget = await open_budget(self.nc, self.cfg.exchange, None, self.ex,
                                        account=account, default_priority=POLL)  # fmt: skip
        try:
            await self.ex.load_markets()
        except BaseException:
            await self.ex.close()
            raise
        for m in self.ex.markets.values():
            ours = our_symbol(m)
            if ours and m.get("active", True) is not False:
                self.symbols.setdefault(ours, m["symbol"])
                self.ours.setdefault(m["symbol"], ours)

    async def close(self) -> None:
        if self.budget is not None:
            await self.budget.close()
        if self.ex is not None:
            await self.ex.close()

    def _sym(self, symbol: str) -> str:
        try:
            return self.symbols[symbol]
        except KeyError:
            raise VenueRejected(f"{self.cfg.exchange} has no market {symbol}") from None

    async def spec(self, venue: str, symbol: str) -> Spec:
        m = self.ex.market(self._sym(symbol))
        limits = m.get("limits") or {}
        cost_min = (limits.get("cost") or {}).get("min") or 0.0
        prec = m["precision"]

        def tick(v: Any) -> str:
            # TICK_SIZE mode stores increments; the digit-count modes store decimals
            if self.ex.precisionMode == TICK_SIZE:
                return str(self.ex.number_to_string(v))
            return f"{Decimal(10) ** -int(v):f}"

        return Spec(tick(prec["price"]), tick(prec["amount"]), float(cost_min),
                    float(m.get("contractSize") or 1.0))  # fmt: skip

    def check(self, order: Order) -> str | None:
        """Why this exchange cannot take ``order`` as it is (ccxt's ``features`` of the
        market's kind: trigger and take-profit prices, time in force), else None. What ccxt
        does not state is left to the exchange to refuse."""
        m = self.ex.market(self._sym(order.symbol))
        kind = next((k for k in ("spot", "swap", "future", "option") if m.get(k)), None)
        name = f"{self.cfg.exchange} {kind or 'market'} {order.symbol}"
        if order.reduce_only and kind == "spot":
            return f"reduce-only applies to derivatives: {name} has no position to reduce"
        feats: Any = (getattr(self.ex, "features", None) or {}).get(kind) or {}
        if kind != "spot" and isinstance(feats, dict) and "createOrder" not in feats:
            feats = feats.get("linear" if m.get("linear") else "inverse") or {}
        co = feats.get("createOrder") if isinstance(feats, dict) else None
        if not isinstance(co, dict):
            return None
        if order.order_type in ("stop", "stop_limit") and not co.get("triggerPrice"):
            return f"{name} takes no stop (trigger price) orders"
        if order.order_type == "take_profit" and not co.get("takeProfitPrice"):
            return f"{name} takes no take-profit orders"
        tif = "PO" if order.time_in_force == "POST_ONLY" else order.time_in_force
        if (co.get("timeInForce") or {}).get(tif) is False:
            return f"{name} does not take time in force {order.time_in_force}"
        return None

    def _report(self, o: dict[str, Any], cid: str, fills: list[VenueFill] | None = None,
                contract: float = 1.0) -> VenueReport:  # fmt: skip
        status = _STATUS.get(o.get("status") or "", "new")
        filled = float(o.get("filled") or 0.0) * contract
        if status == "new" and filled > 0:
            status = "partially_filled"
        avg = o.get("average")
        return VenueReport(
            client_order_id=cid, status=status, venue_order_id=str(o.get("id")),  # type: ignore[arg-type]
            filled=filled, avg_price=float(avg) if avg else None, fills=fills or [],
        )  # fmt: skip

    async def submit(self, order: Order) -> VenueReport:
        with priority(ORDERS):
            return await self._submit(order)

    async def _submit(self, order: Order) -> VenueReport:
        sym = self._sym(order.symbol)
        params: dict[str, Any] = {"clientOrderId": order.client_order_id}
        kind = "market" if order.order_type in ("market", "stop", "take_profit") else "limit"
        if order.order_type in ("stop", "stop_limit"):
            params["triggerPrice"] = order.stop_str
        elif order.order_type == "take_profit":
            params["takeProfitPrice"] = order.stop_str
        if order.time_in_force == "POST_ONLY":
            params["postOnly"] = True
        elif kind == "limit":
            params["timeInForce"] = order.time_in_force
        if order.reduce_only:
            params["reduceOnly"] = True
        try:
            o = await self.ex.create_order(
                sym,
                kind,
                order.side,
                order.qty_str,
                order.price_str if kind == "limit" else None,
                params,
            )
        except (cx.RequestTimeout, cx.NetworkError) as exc:
            # NetworkError covers disconnects and ExchangeNotAvailable (5xx): the venue may
            # have accepted the order, so only a lookup can say
            raise VenueUnknown(f"{type(exc).__name__}") from None
        except cx.BaseError as exc:
            raise VenueRejected(_reason(exc)) from None
        except BudgetError as exc:  # banned or breaker open: the order was never sent
            raise VenueRejected(str(exc)[:300]) from None
        return await self._with_fills(o, order)

    async def cancel(self, order: Order) -> VenueReport | None:
        sym = self._sym(order.symbol)
        try:
            with priority(ORDERS):
                o = await self.ex.cancel_order(
                    None, sym, {"origClientOrderId": order.client_order_id}
                )
        except cx.OrderNotFound:
            return None
        except BudgetError as exc:  # not sent
            raise VenueRejected(str(exc)[:300]) from None
        except (cx.RequestTimeout, cx.NetworkError) as exc:
            raise VenueUnknown(type(exc).__name__) from None
        except cx.BaseError as exc:
            raise VenueRejected(_reason(exc)) from None
        return self._report(o, order.client_order_id)

    async def lookup(self, order: Order) -> VenueReport | None:
        sym = self._sym(order.symbol)
        try:
            with priority(ORDERS):  # an order's fate is unknown until this answers
                o = await self.ex.fetch_order(
                    None, sym, {"origClientOrderId": order.client_order_id}
                )
        except cx.OrderNotFound:
            return None
        except (cx.BaseError, BudgetError) as exc:  # the order's fate is still unknown
            raise VenueUnknown(type(exc).__name__) from None
        return await self._with_fills(o, order)

    def _contract(self, symbol: str) -> float:
        return float(self.ex.market(self._sym(symbol)).get("contractSize") or 1.0)

    async def _with_fills(self, o: dict[str, Any], order: Order) -> VenueReport:
        return await self._filled_report(o, order.symbol, order.client_order_id)

    async def _filled_report(self, o: dict[str, Any], symbol: str, cid: str) -> VenueReport:
        contract = self._contract(symbol)
        fills: list[VenueFill] = []
        if float(o.get("filled") or 0) > 0 and o.get("id"):
            try:
                trades = await self.ex.fetch_my_trades(
                    self._sym(symbol), params={"orderId": o["id"]})  # fmt: skip
            except cx.BaseError as exc:
                raise VenueUnknown(type(exc).__name__) from None
            fills = [_fill(t, contract) for t in trades if str(t.get("order")) == str(o["id"])]
        return self._report(o, cid, fills, contract)

    # -- bulk reconciliation ---------------------------------------------------------------
    def _listed(self, o: dict[str, Any], symbol: str, fills: list[VenueFill]) -> VenueOrder:
        contract = self._contract(symbol)
        kind = str(o.get("type") or "limit").lower()
        tif = "POST_ONLY" if o.get("postOnly") else str(o.get("timeInForce") or "GTC")
        price, stop = o.get("price"), o.get("triggerPrice") or o.get("stopPrice")
        return VenueOrder(
            report=self._report(o, str(o.get("clientOrderId") or ""), fills, contract),
            symbol=symbol, side="sell" if o.get("side") == "sell" else "buy",
            order_type=_TYPES.get(kind, "limit"),  # type: ignore[arg-type]
            quantity=float(o.get("amount") or 0.0) * contract,
            price=float(price) if price else None, stop_price=float(stop) if stop else None,
            time_in_force=tif if tif in ("GTC", "IOC", "FOK", "POST_ONLY") else "GTC",
        )  # fmt: skip

    async def open_orders(self, symbols: list[str]) -> list[VenueOrder]:
        out: list[VenueOrder] = []
        for symbol in symbols:
            if symbol not in self.symbols:
                continue  # not traded on this exchange: nothing can be open there
            try:
                listed = await self.ex.fetch_open_orders(self.symbols[symbol])
            except cx.BaseError as exc:
                raise VenueUnknown(type(exc).__name__) from None
            # fills of open orders come from recent_fills in the same round
            out.extend(self._listed(o, symbol, []) for o in listed)
        return out

    async def recent_fills(self, symbols: list[str], since_ms: int) -> list[VenueTrade]:
        out: list[VenueTrade] = []
        for symbol in symbols:
            if symbol not in self.symbols:
                continue
            contract, since, seen = self._contract(symbol), since_ms, set()
            for _ in range(MAX_PAGES):
                try:
                    page = await self.ex.fetch_my_trades(self.symbols[symbol], since,
                                                         TRADES_PAGE)  # fmt: skip
                except cx.BaseError as exc:
                    raise VenueUnknown(type(exc).__name__) from None
                for t in page:
                    if str(t["id"]) not in seen and t.get("order") is not None:
                        seen.add(str(t["id"]))
                        out.append(VenueTrade(symbol, str(t["order"]), _fill(t, contract)))
                last = max((int(t.get("timestamp") or 0) for t in page), default=since)
                if len(page) < TRADES_PAGE or last <= since:
                    break
                since = last  # the overlap at `last` is removed by trade id
        return out

    async def order_by_id(self, symbol: str, venue_order_id: str) -> VenueOrder | None:
        try:
            o = await self.ex.fetch_order(venue_order_id, self._sym(symbol))
        except cx.OrderNotFound:
            return None
        except cx.BaseError as exc:
            raise VenueUnknown(type(exc).__name__) from None
        report = await self._filled_report(o, symbol, str(o.get("clientOrderId") or ""))
        return self._listed(o, symbol, report.fills)

    def restore(self, order: Order) -> None:
        return None  # the exchange holds its own orders


def _fill(t: dict[str, Any], contract: float) -> VenueFill:
    fee = t.get("fee") or {}
    return VenueFill(
        trade_id=str(t["id"]), price=float(t["price"]), size=float(t["amount"]) * contract,
        fee=float(fee.get("cost") or 0.0), fee_currency=str(fee.get("currency") or ""),
        liquidity=t.get("takerOrMaker") or "unknown",
        ts_ns=int(t.get("timestamp") or 0) * 1_000_000,
    )  # fmt: skip


def _reason(exc: BaseException) -> str:
    # ccxt messages are "<exchange> <body>": the venue's own words, no credentials
    return f"{type(exc).__name__}: {str(exc)[:300]}"
