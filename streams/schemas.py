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


class OptionGreeks(Base, tag="option_greeks", kw_only=True):
    """Option analytics of one option (Deribit ``ticker``, OKX ``opt-summary``, Bybit option
    ``tickers``). Implied volatilities are fractions (0.55 = 55 % a year), whatever the
    venue writes (Deribit: percent); greeks are Black-Scholes as the venue states them
    (delta per unit of underlying, gamma per unit squared, vega per 1 vol point, theta per
    day); prices in the option's quote currency. ``strike``/``expiry_ts``/``option_type``
    restate the symbol for SQL. Fields a venue does not give are None."""

    strike: float
    expiry_ts: int
    option_type: Literal["call", "put"]
    mark_price: float | None = None
    bid_price: float | None = None
    ask_price: float | None = None
    mark_iv: float | None = None
    bid_iv: float | None = None
    ask_iv: float | None = None
    delta: float | None = None
    gamma: float | None = None
    vega: float | None = None
    theta: float | None = None
    underlying_price: float | None = None  # the underlying (future/forward) the option uses
    index_price: float | None = None
    open_interest: float | None = None  # base units


class LongShortRatio(Base, tag="long_short_ratio", kw_only=True):
    """Crowd positioning over one venue period (``ts_event`` = the period's time as the venue
    stamps it). ``kind``: ``global_accounts`` (share of all accounts net long/short),
    ``top_accounts`` (top traders by account count), ``top_positions`` (top traders by
    position size). ``long_share``/``short_share`` are fractions (0.61 = 61 %); ``ratio`` is
    long/short as the venue states it."""

    kind: Literal["global_accounts", "top_accounts", "top_positions"]
    period: str  # the venue's period: 5m, 15m, 30m, 1h, 2h, 4h, 6h, 12h, 1d
    ratio: float
    long_share: float | None = None
    short_share: float | None = None


class TakerVolume(Base, tag="taker_volume", kw_only=True):
    """Taker buy and sell volume over one venue period, base units (``*_value``: quote)."""

    period: str
    buy_volume: float
    sell_volume: float
    buy_value: float | None = None
    sell_value: float | None = None


class OpenInterestHist(Base, tag="open_interest_hist", kw_only=True):
    """Open interest at the end of one venue period, as the venue keeps its history
    (``open_interest``: the live polls)."""

    period: str
    open_interest: float  # base units
    open_interest_value: float | None = None  # quote currency


class VolatilityIndex(Base, tag="volatility_index", kw_only=True):
    """A volatility index (Deribit DVOL, in vol points: 55.2 = 55.2 %). ``interval`` is
    empty for a live value (``value`` only), else a candle's resolution (1m, 1h, 12h, 1d)
    with open/high/low and ``value`` = close; ``symbol`` is the index's currency pair."""

    index_name: str  # "dvol"
    interval: str = ""
    value: float
    open: float | None = None
    high: float | None = None
    low: float | None = None


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
    OptionGreeks,
    Instrument,
    Gap,
    LongShortRatio,
    TakerVolume,
    OpenInterestHist,
    VolatilityIndex,
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


# -- execution algorithms and TCA (executor/algo) -----------------------------------------
AlgoKind = Literal["twap", "vwap", "pov", "iceberg", "peg"]
ParentState = Literal["working", "paused", "filled", "canceled", "expired", "rejected"]


class AlgoCommand(ExecBase, tag="algo_command", kw_only=True):
    """An instruction about a parent order (an algorithm working a quantity through child
    orders). ``new`` names the algorithm and its terms; ``amend`` changes the terms given
    (quantity, limit_price, end_ts, participation, display); pause/resume/cancel take only
    the parent id. Quantities and prices are exact decimal strings, times ns since epoch."""

    action: Literal["new", "pause", "resume", "amend", "cancel"]
    parent_id: str
    algo: AlgoKind | None = None
    side: Side | None = None
    quantity: str | None = None
    limit_price: str | None = None  # never buy above / sell below
    start_ts: int | None = None  # default: when accepted
    end_ts: int | None = None  # TWAP/VWAP horizon, POV end, peg deadline (then it crosses)
    slices: int | None = None  # TWAP/VWAP child count
    participation: float | None = None  # POV target share; cap of the others when given
    display: str | None = None  # iceberg: the visible quantity
    offset_ticks: int = 0  # peg: ticks inside the touch (0 joins the best bid/ask)
    venues: list[str] = msgspec.field(default_factory=list)  # smart routing: candidates


class ParentUpdate(ExecBase, tag="parent_update", kw_only=True):
    """A parent order's state and terms as the executor holds them (its restart record)."""

    parent_id: str
    algo: AlgoKind
    state: ParentState
    side: Side
    quantity: float
    filled: float = 0.0
    avg_price: float | None = None
    children: int = 0  # child orders sent so far
    limit_price: float | None = None
    start_ts: int
    end_ts: int | None = None
    slices: int = 0
    participation: float | None = None
    display: float | None = None
    offset_ticks: int = 0
    profile: list[float] = msgspec.field(default_factory=list)  # VWAP slice weights
    arrival_mid: float | None = None
    market_volume: float = 0.0  # traded on the venue since start_ts (seen by us)
    market_notional: float = 0.0
    version: int = 0  # bumped on every record: a distinct message id per record
    cmd_ts: int = 0  # ts_event of the last command applied: an older or equal one is stale
    venues: list[str] = msgspec.field(default_factory=list)  # smart routing: candidates
    reason: str = ""


class Tca(ExecBase, tag="tca", kw_only=True):
    """Transaction-cost analysis of one finished order or parent (docs/execution.md)."""

    scope: Literal["order", "parent"]
    id: str  # client order id or parent id
    parent_id: str = ""
    algo: str = ""
    side: Side
    quantity: float
    filled: float
    avg_price: float | None = None
    arrival_mid: float | None = None
    interval_vwap: float | None = None
    end_mid: float | None = None
    slippage_bps: float | None = None  # vs arrival mid; positive = cost
    vwap_slippage_bps: float | None = None
    shortfall: float | None = None  # implementation shortfall, quote currency
    shortfall_bps: float | None = None  # of the arrival notional of the whole quantity
    fill_ratio: float = 0.0
    fees: float = 0.0  # quote currency
    children: int = 0
    ts_start: int
    ts_end: int
    time_to_fill_s: float | None = None
    ack_latency_ms: float | None = None  # mean over the children (scope parent)


ExecMessage = Union[OrderCommand, OrderUpdate, Fill, Position, AlgoCommand, ParentUpdate, Tca]
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
