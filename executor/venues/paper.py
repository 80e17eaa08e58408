"""The paper venue: orders fill against MARKET data instead of an exchange.

Market orders (and triggered stops) walk the current book from ``market.depth`` (or the
one level of ``market.bbo``); marketable limit orders take liquidity up to their price;
resting limit orders fill when a trade prints through their price (strictly through: a
print at the price says nothing about queue position), for at most the trade's size,
shared by price priority. The book is not depleted by our own fills between two depth
updates. Time comes from the market messages, so a replay drives it like live data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from executor.model import Order, VenueFill, VenueOrder, VenueRejected, VenueReport, VenueTrade
from executor.precision import Spec
from streams.schemas import BBO, Depth, Instrument, Level, Trade
from streams.settings import AccountSettings, InstrumentSpec

Key = tuple[str, str]  # (venue, symbol)


@dataclass(slots=True)
class _Paper:
    order: Order
    triggered: bool
    filled: float = 0.0
    cost: float = 0.0
    fills: list[VenueFill] = field(default_factory=list)
    status: str = "new"

    @property
    def remaining(self) -> float:
        return self.order.quantity - self.filled

    def report(self, reason: str = "") -> VenueReport:
        return VenueReport(
            client_order_id=self.order.client_order_id, status=self.status,  # type: ignore[arg-type]
            venue_order_id="paper-" + self.order.client_order_id, filled=self.filled,
            avg_price=self.cost / self.filled if self.filled else None,
            fills=list(self.fills), reason=reason,
        )  # fmt: skip


class PaperVenue:
    write_ahead = False

    def __init__(self, cfg: AccountSettings) -> None:
        self.cfg = cfg
        self.books: dict[Key, tuple[list[Level], list[Level]]] = {}
        self.specs: dict[Key, Spec] = {}
        self.orders: dict[str, _Paper] = {}
        self.resting: dict[Key, list[_Paper]] = {}
        self.now_ns = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # -- market data -----------------------------------------------------------------------
    def on_market(self, msg: object) -> list[VenueReport]:
        """Feed one MARKET message; returns reports of orders it filled or triggered."""
        if isinstance(msg, Trade):
            self.now_ns = max(self.now_ns, msg.ts_event)
            book = self.resting.get((msg.venue, msg.symbol))
            return self._on_trade(msg, book) if book else []
        if isinstance(msg, Depth):
            self.books[(msg.venue, msg.symbol)] = (msg.bids, msg.asks)
        elif isinstance(msg, BBO):
            self.books[(msg.venue, msg.symbol)] = (
                [(msg.bid_price, msg.bid_size)],
                [(msg.ask_price, msg.ask_size)],
            )
        elif isinstance(msg, Instrument):
            self.specs[(msg.venue, msg.symbol)] = Spec(
                tick=repr(msg.tick_size), lot=repr(msg.lot_size), contract_size=1.0
            )
        return []

    async def spec(self, venue: str, symbol: str) -> Spec:
        conf: InstrumentSpec | None = self.cfg.instruments.get(symbol)
        if conf is not None:
            return Spec(conf.tick, conf.lot, conf.min_notional, conf.contract_size)
        found = self.specs.get((venue, symbol))
        if found is None:
            raise VenueRejected(
                f"unknown instrument {venue}/{symbol}: no instrument message seen and none "
                "configured in executor.accounts.<account>.instruments"
            )
        return found

    # -- orders ----------------------------------------------------------------------------
    async def submit(self, order: Order) -> VenueReport:
        key = (order.venue, order.symbol)
        p = _Paper(order, triggered=order.order_type in ("market", "limit"))
        bids, asks = self.books.get(key, ([], []))
        if order.order_type == "market" and not (asks if order.side == "buy" else bids):
            raise VenueRejected(f"no book for {order.venue}/{order.symbol} to fill a market order")
        if order.time_in_force == "POST_ONLY" and self._crosses(p, bids, asks):
            raise VenueRejected("post-only order would take liquidity")
        if p.triggered:
            if order.time_in_force == "FOK" and self._available(p, bids, asks) < order.quantity:
                p.status = "expired"
                return p.report("FOK: not fully fillable")
            self._take(p, bids, asks)
            # GTC and post-only limits rest; IOC (and FOK's filled part) never does
            rest = order.order_type == "limit" and order.time_in_force in ("GTC", "POST_ONLY")
            self._settle(p, rest=rest)
        else:
            self._rest(p)
        return p.report()

    async def cancel(self, order: Order) -> VenueReport | None:
        p = self.orders.get(order.client_order_id)
        if p is None or p.status in ("filled", "canceled", "expired"):
            return None
        p.status = "canceled"
        self._unrest(p)
        return p.report()

    async def lookup(self, order: Order) -> VenueReport | None:
        p = self.orders.get(order.client_order_id)
        return p.report() if p is not None else None

    # -- bulk reconciliation: the paper venue's own book of orders -----------------------
    def _listed(self, p: _Paper) -> VenueOrder:
        o = p.order
        return VenueOrder(p.report(), o.symbol, o.side, o.order_type, o.quantity, o.price,
                          o.stop_price, o.time_in_force)  # fmt: skip

    async def open_orders(self, symbols: list[str]) -> list[VenueOrder]:
        return [
            self._listed(p) for p in self.orders.values()
            if p.status in ("new", "partially_filled") and p.order.symbol in symbols
        ]  # fmt: skip

    async def recent_fills(self, symbols: list[str], since_ms: int) -> list[VenueTrade]:
        since_ns = since_ms * 1_000_000
        return [
            VenueTrade(p.order.symbol, "paper-" + p.order.client_order_id, f)
            for p in self.orders.values() if p.order.symbol in symbols
            for f in p.fills if f.ts_ns >= since_ns
        ]  # fmt: skip

    async def order_by_id(self, symbol: str, venue_order_id: str) -> VenueOrder | None:
        p = self.orders.get(venue_order_id.removeprefix("paper-"))
        return self._listed(p) if p is not None and p.order.symbol == symbol else None

    def restore(self, order: Order) -> None:
        """Re-rest a live order after a restart, with what it had already filled."""
        p = _Paper(order, triggered=order.order_type in ("market", "limit"))
        p.filled = order.filled
        p.cost = order.filled * (order.avg_price or 0.0)
        p.status = "partially_filled" if order.filled else "new"
        self._rest(p)

    # -- matching --------------------------------------------------------------------------
    def _rest(self, p: _Paper) -> None:
        self.orders[p.order.client_order_id] = p
        self.resting.setdefault((p.order.venue, p.order.symbol), []).append(p)

    def _unrest(self, p: _Paper) -> None:
        book = self.resting.get((p.order.venue, p.order.symbol))
        if book and p in book:
            book.remove(p)

    def _settle(self, p: _Paper, rest: bool) -> None:
        self.orders[p.order.client_order_id] = p
        if p.remaining <= 1e-12:
            p.status = "filled"
        elif rest:
            p.status = "partially_filled" if p.filled else "new"
            if p not in self.resting.get((p.order.venue, p.order.symbol), []):
                self._rest(p)
        else:  # IOC / market: the rest is cancelled by the venue
            p.status = "canceled"

    def _limit(self, p: _Paper) -> float | None:
        o = p.order
        return o.price if o.order_type in ("limit", "stop_limit") else None

    def _crosses(self, p: _Paper, bids: list[Level], asks: list[Level]) -> bool:
        limit = self._limit(p)
        if limit is None:
            return True
        if p.order.side == "buy":
            return bool(asks) and asks[0][0] <= limit
        return bool(bids) and bids[0][0] >= limit

    def _levels(self, p: _Paper, bids: list[Level], asks: list[Level]) -> list[Level]:
        limit = self._limit(p)
        if p.order.side == "buy":
            return [lv for lv in asks if limit is None or lv[0] <= limit]
        return [lv for lv in bids if limit is None or lv[0] >= limit]

    def _available(self, p: _Paper, bids: list[Level], asks: list[Level]) -> float:
        return sum(size for _, size in self._levels(p, bids, asks))

    def _take(self, p: _Paper, bids: list[Level], asks: list[Level]) -> None:
        for price, size in self._levels(p, bids, asks):
            if p.remaining <= 1e-12:
                break
            self._fill(p, price, min(size, p.remaining), "taker")

    def _fill(self, p: _Paper, price: float, size: float, liquidity: str) -> None:
        rate = self.cfg.taker_fee if liquidity == "taker" else self.cfg.maker_fee
        p.filled += size
        p.cost += price * size
        quote = p.order.symbol.split("-")[1] if "-" in p.order.symbol else ""
        p.fills.append(VenueFill(
            trade_id=f"{p.order.client_order_id}:{len(p.fills) + 1}", price=price, size=size,
            fee=price * size * rate, fee_currency=quote, liquidity=liquidity, ts_ns=self.now_ns,
        ))  # fmt: skip
        p.status = "filled" if p.remaining <= 1e-12 else "partially_filled"

    def _triggers(self, p: _Paper, price: float) -> bool:
        o = p.order
        stop = o.stop_price or 0.0
        above = o.side == "buy" if o.order_type != "take_profit" else o.side == "sell"
        return price >= stop if above else price <= stop

    def _on_trade(self, t: Trade, book: list[_Paper]) -> list[VenueReport]:
        out: list[VenueReport] = []
        bids, asks = self.books.get((t.venue, t.symbol), ([], []))
        left = t.size
        # price priority: best bids (highest) and best asks (lowest) first
        for p in sorted(book, key=lambda x: -(x.order.price or 0) if x.order.side == "buy"
                        else (x.order.price or 0)):  # fmt: skip
            before = (p.filled, p.status)
            if not p.triggered:
                if not self._triggers(p, t.price):
                    continue
                p.triggered = True
                if p.order.order_type in ("stop", "take_profit"):
                    if not (asks if p.order.side == "buy" else bids):
                        bids, asks = [(t.price, t.size)], [(t.price, t.size)]
                    self._take(p, bids, asks)
                    self._unrest(p)
                    self._settle(p, rest=False)
                else:  # stop-limit: now a limit order, marketable part first
                    self._take(p, bids, asks)
                    if p.remaining <= 1e-12:
                        self._unrest(p)
                        p.status = "filled"
            elif left > 1e-12 and p.order.price is not None:
                through = t.price < p.order.price if p.order.side == "buy" else (
                    t.price > p.order.price)  # fmt: skip
                if through:
                    size = min(left, p.remaining)
                    left -= size
                    self._fill(p, p.order.price, size, "maker")
                    if p.remaining <= 1e-12:
                        self._unrest(p)
            if (p.filled, p.status) != before:
                out.append(p.report())
        return out
