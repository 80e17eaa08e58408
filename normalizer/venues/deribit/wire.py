"""Deribit JSON-RPC v2 frames as they arrive on the wire (WebSocket notifications and REST
bodies). Deribit sends JSON numbers, so msgspec decodes prices and amounts straight into
floats; optional fields (a ticker's ``last_price`` before any trade, the funding fields
that only perpetuals carry) are ``None`` when absent or null.
"""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

import msgspec

from normalizer.venues.wire import PosSize, Price, Size
from normalizer.venues.wire import strict_decoder as decoder  # noqa: F401 (parse.py: wire.decoder)

# [action, price, amount]: action "new" | "change" | "delete" (amount 0 on delete)
Level = tuple[Literal["new", "change", "delete"], Price, Size]

T = TypeVar("T")


class Params(msgspec.Struct, Generic[T], gc=False):
    channel: str
    data: T


class Notification(msgspec.Struct, Generic[T], gc=False):
    """``{"jsonrpc":"2.0","method":"subscription","params":{"channel":..,"data":..}}``."""

    method: str
    params: Params[T]


class Trade(msgspec.Struct, gc=False):
    trade_id: str
    instrument_name: str
    timestamp: int
    price: Price
    amount: PosSize  # USD on inverse perpetuals/futures, base coin otherwise
    direction: str  # taker side
    trade_seq: int | None = None
    liquidation: str | None = None  # "M", "T" or "MT": whose side was liquidated
    block_trade_id: str | None = None


class Book(msgspec.Struct, gc=False):
    type: str  # "snapshot" | "change"
    instrument_name: str
    timestamp: int
    change_id: int
    bids: list[Level]
    asks: list[Level]
    prev_change_id: int | None = None


class Quote(msgspec.Struct, gc=False):
    instrument_name: str
    timestamp: int
    best_bid_price: float | None = None
    best_bid_amount: float | None = None
    best_ask_price: float | None = None
    best_ask_amount: float | None = None


class Stats(msgspec.Struct, gc=False):
    volume: Size | None = None  # base coin
    volume_usd: Size | None = None
    high: float | None = None
    low: float | None = None
    price_change: float | None = None  # percent


class Greeks(msgspec.Struct, gc=False):
    delta: float | None = None
    gamma: float | None = None
    vega: float | None = None
    theta: float | None = None
    rho: float | None = None


class Ticker(msgspec.Struct, gc=False):
    instrument_name: str
    timestamp: int
    stats: Stats = msgspec.field(default_factory=Stats)
    last_price: float | None = None
    best_bid_price: float | None = None
    best_ask_price: float | None = None
    mark_price: float | None = None
    index_price: float | None = None
    open_interest: Size | None = None  # same units as amounts (USD on inverse)
    current_funding: float | None = None  # perpetuals only
    funding_8h: float | None = None  # perpetuals only
    state: str = "open"
    # options only: implied volatilities in percent, Black-Scholes greeks, the underlying
    # (future or index) the option is priced on
    greeks: Greeks | None = None
    mark_iv: float | None = None
    bid_iv: float | None = None
    ask_iv: float | None = None
    underlying_price: float | None = None


class Candle(msgspec.Struct, gc=False):
    tick: int  # candle open, ms
    open: float
    high: float
    low: float
    close: float
    volume: Size  # base coin
    cost: float | None = None  # quote currency


class Instrument(msgspec.Struct, gc=False):
    """One row of ``public/get_instruments``."""

    instrument_name: str
    kind: str  # future | option | spot | future_combo | option_combo
    tick_size: float
    min_trade_amount: float
    contract_size: float
    base_currency: str
    quote_currency: str
    is_active: bool = True
    settlement_period: str = ""
    settlement_currency: str | None = None
    counter_currency: str | None = None
    expiration_timestamp: int | None = None
    strike: float | None = None
    option_type: str | None = None
    future_type: str | None = None  # "reversed" (inverse) | "linear"


class RpcError(msgspec.Struct, gc=False):
    code: int
    message: str


class Instruments(msgspec.Struct, gc=False):
    result: list[Instrument] | None = None
    error: RpcError | None = None


class VolatilityIndex(msgspec.Struct, gc=False):
    """``deribit_volatility_index.<index_name>`` data: DVOL in vol points."""

    volatility: float
    timestamp: int
    index_name: str


class VolatilityIndexData(msgspec.Struct, gc=False):
    """REST ``public/get_volatility_index_data`` result: [ms, open, high, low, close] rows."""

    data: list[tuple[int, float, float, float, float]]
    continuation: int | None = None


class VolatilityIndexReply(msgspec.Struct, gc=False):
    result: VolatilityIndexData
