"""Typed messages on the MARKET and EXEC streams: one tagged union, encoded as JSON.

Prices and sizes are float64: the venue's decimal string survives the round trip
because ``repr(float(s))`` is the shortest string that parses back to the same
double, and venue strings carry at most 15 significant digits.
Timestamps are integer nanoseconds since the epoch (UTC).
"""

from __future__ import annotations

from typing import Literal, Union

import msgspec

Level = tuple[float, float]  # (price, size); size 0 deletes the level


class Base(msgspec.Struct, kw_only=True, tag_field="type", gc=False):
    venue: str
    symbol: str
    ts_event: int
    ts_recv: int


class Trade(Base, tag="trade", kw_only=True):
    id: str
    price: float
    size: float
    side: Literal["buy", "sell", "unknown"]  # taker side
    aggregated: bool = False


class Book(Base, tag="book", kw_only=True):
    """One L2 change (or a full snapshot when ``snapshot`` is true)."""

    snapshot: bool
    bids: list[Level]
    asks: list[Level]
    seq: int
    prev_seq: int | None = None
    first_seq: int | None = None
    checksum: int | None = None


class BBO(Base, tag="bbo", kw_only=True):
    bid_price: float
    bid_size: float
    ask_price: float
    ask_size: float
    seq: int | None = None


class Depth(Base, tag="depth", kw_only=True):
    bids: list[Level]
    asks: list[Level]
    seq: int
    levels: int


class Ticker(Base, tag="ticker", kw_only=True):
    last: float | None = None
    bid: float | None = None
    ask: float | None = None
    open_24h: float | None = None
    high_24h: float | None = None
    low_24h: float | None = None
    volume_24h: float | None = None
    quote_volume_24h: float | None = None


class Candle(Base, tag="candle", kw_only=True):
    interval: str
    ts_open: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    closed: bool
    trades: int | None = None


class Funding(Base, tag="funding", kw_only=True):
    rate: float
    next_funding_ts: int | None = None
    predicted_rate: float | None = None


class OpenInterest(Base, tag="open_interest", kw_only=True):
    open_interest: float  # base units
    open_interest_value: float | None = None


class Liquidation(Base, tag="liquidation", kw_only=True):
    side: Literal["buy", "sell", "unknown"]  # side of the liquidation order
    price: float
    size: float
    id: str | None = None


class Mark(Base, tag="mark", kw_only=True):
    mark_price: float | None = None
    index_price: float | None = None


class Instrument(Base, tag="instrument", kw_only=True):
    native_symbol: str
    kind: Literal["spot", "perpetual", "future", "option"]
    base: str
    quote: str
    settle: str | None = None
    tick_size: float
    lot_size: float
    contract_size: float = 1.0
    expiry_ts: int | None = None
    strike: float | None = None
    option_type: Literal["call", "put"] | None = None
    active: bool = True


class Gap(Base, tag="gap", kw_only=True):
    """A data-quality event: sequence gap, checksum failure, reconnect, stale feed."""

    # "lost": frames the collector received and could not store (collectors/base.py)
    reason: Literal[
        "sequence", "checksum", "crossed", "reconnect", "stale", "snapshot", "lost", "other"
    ]
    channel: str = ""
    expected_seq: int | None = None
    got_seq: int | None = None
    detail: str = ""


MarketMessage = Union[
    Trade,
    Book,
    BBO,
    Depth,
    Ticker,
    Candle,
    Funding,
    OpenInterest,
    Liquidation,
    Mark,
    Instrument,
    Gap,
]
MARKET_TYPES: dict[str, type[Base]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in MarketMessage.__args__  # type: ignore[attr-defined]
}

# -- execution (EXEC stream) --------------------------------------------------------------
OrderState = Literal[
    "pending_new", "new", "partially_filled", "filled", "pending_cancel", "canceled",
    "rejected", "expired", "unknown",
]  # fmt: skip
Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit", "stop", "stop_limit", "take_profit"]


class ExecBase(msgspec.Struct, kw_only=True, tag_field="type", gc=False):
    account: str
    venue: str
    symbol: str
    ts_event: int
    ts_recv: int


class OrderCommand(ExecBase, tag="order_command", kw_only=True):
    """An instruction to the executor. Quantities and prices are exact decimal strings:
    the executor rounds them to the instrument's precision the way the venue requires."""

    action: Literal["new", "cancel", "replace", "cancel_all"]
    client_order_id: str
    side: Side | None = None
    order_type: OrderType | None = None
    quantity: str | None = None
    price: str | None = None
    stop_price: str | None = None
    time_in_force: Literal["GTC", "IOC", "FOK", "POST_ONLY"] = "GTC"
    reduce_only: bool = False
    timeout_s: float | None = None


class OrderUpdate(ExecBase, tag="order_update", kw_only=True):
    client_order_id: str
    venue_order_id: str | None = None
    state: OrderState
    side: Side
    order_type: OrderType
    quantity: float
    price: float | None = None
    filled: float = 0.0
    avg_price: float | None = None
    reason: str = ""


class Fill(ExecBase, tag="fill", kw_only=True):
    client_order_id: str
    venue_order_id: str | None = None
    trade_id: str
    side: Side
    price: float
    size: float  # base units
    fee: float
    fee_currency: str
    liquidity: Literal["maker", "taker", "unknown"] = "unknown"


class Position(ExecBase, tag="position", kw_only=True):
    size: float  # signed, base units
    avg_price: float | None = None
    realized_pnl: float = 0.0
    unrealized_pnl: float = 0.0
    fees: float = 0.0
    mark_price: float | None = None


ExecMessage = Union[OrderCommand, OrderUpdate, Fill, Position]
EXEC_TYPES: dict[str, type[ExecBase]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in ExecMessage.__args__  # type: ignore[attr-defined]
}

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(MarketMessage)
_exec_decoder = msgspec.json.Decoder(ExecMessage)


def encode(msg: Base | ExecBase) -> bytes:
    return _encoder.encode(msg)


def decode(data: bytes) -> MarketMessage:
    return _decoder.decode(data)


def decode_exec(data: bytes) -> ExecMessage:
    return _exec_decoder.decode(data)
