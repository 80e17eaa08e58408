"""The executor's records: an order as the executor tracks it, and what a venue reports."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from executor import state as sm
from streams.schemas import OrderState, OrderType, OrderUpdate, Side


@dataclass(slots=True)
class VenueFill:
    trade_id: str
    price: float
    size: float  # base units
    fee: float
    fee_currency: str
    liquidity: str = "unknown"
    ts_ns: int = 0


@dataclass(slots=True)
class VenueReport:
    """A venue's view of one order at one moment (submit answer, cancel answer, lookup)."""

    client_order_id: str
    status: OrderState
    venue_order_id: str | None = None
    filled: float = 0.0
    avg_price: float | None = None
    fills: list[VenueFill] = field(default_factory=list)
    reason: str = ""


@dataclass(slots=True)
class VenueOrder:
    """An order as a venue lists it in bulk: the report plus the terms, so an order the
    executor has no record of can be adopted."""

    report: VenueReport
    symbol: str  # ours
    side: Side
    order_type: OrderType
    quantity: float  # base units
    price: float | None = None
    stop_price: float | None = None
    time_in_force: str = "GTC"


@dataclass(slots=True)
class VenueTrade:
    """One of the account's fills as a venue lists it in bulk (by order, not by client id:
    Binance's myTrades, like most venues' fill lists, carries only the venue order id)."""

    symbol: str  # ours
    venue_order_id: str
    fill: VenueFill


class VenueRejected(Exception):
    """The venue (or the paper venue's rules) refused the request; the message says why."""


class VenueUnknown(Exception):
    """The request's outcome is unknown (timeout, disconnect): resolve by lookup."""


class Reply(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The synchronous answer to a command sent as a request."""

    accepted: bool
    client_order_id: str
    state: str = ""
    reason: str = ""
    venue_order_id: str | None = None
    filled: float = 0.0
    duplicate: bool = False
    related: list[str] = msgspec.field(default_factory=list)  # replace: the new order id


@dataclass(slots=True)
class Order:
    account: str
    venue: str
    symbol: str
    client_order_id: str
    side: Side
    order_type: OrderType
    quantity: float  # base units, rounded
    price: float | None = None
    stop_price: float | None = None
    time_in_force: str = "GTC"
    reduce_only: bool = False
    qty_str: str = ""  # the rounded decimal strings sent to the venue
    price_str: str | None = None
    stop_str: str | None = None
    state: OrderState = "pending_new"
    venue_order_id: str | None = None
    filled: float = 0.0
    avg_price: float | None = None
    reason: str = ""
    deadline: float | None = None  # clock seconds after which a live order is cancelled
    timed_out: bool = False
    since: float = 0.0  # clock seconds when the order entered its current state
    checked: float = 0.0  # last lookup of an unknown order
    fill_ids: set[str] = field(default_factory=set)
    ack_ms: float | None = None  # submission to the venue's answer (TCA)

    @property
    def live(self) -> bool:
        return self.state in sm.LIVE

    @property
    def done(self) -> bool:
        return self.state in sm.TERMINAL

    def move(self, new: OrderState, now: float) -> None:
        self.state = sm.check(self.state, new, self.client_order_id)
        self.since = now

    def update(self, ts_ns: int) -> OrderUpdate:
        return OrderUpdate(
            account=self.account, venue=self.venue, symbol=self.symbol, ts_event=ts_ns,
            ts_recv=ts_ns, client_order_id=self.client_order_id,
            venue_order_id=self.venue_order_id, state=self.state, side=self.side,
            order_type=self.order_type, quantity=self.quantity, price=self.price,
            filled=self.filled, avg_price=self.avg_price, reason=self.reason,
        )  # fmt: skip
