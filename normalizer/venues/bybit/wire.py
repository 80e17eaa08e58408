"""Bybit v5 public frames as they arrive on the wire, and the instruments REST body.

Decoded with ``strict=False`` so Bybit's decimal strings become floats inside msgspec's
C decoder. Tickers are the exception: their deltas carry only changed fields and some
fields can be ``""``, so they stay strings and the (100 ms, low-rate) parser converts.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

from normalizer.venues.wire import PosSize, Price, Size
from normalizer.venues.wire import decoder as decoder  # parse.py: wire.decoder(...)

Level = tuple[Price, Size]


T = TypeVar("T")
R = TypeVar("R")


class Push(msgspec.Struct, Generic[T], gc=False):
    """Trades, klines and liquidations: ``{"topic", "ts", "data": [...]}``."""

    topic: str
    ts: int
    data: list[T]


class One(msgspec.Struct, Generic[T], gc=False):
    """Order books and tickers: ``{"topic", "type", "ts", "data": {...}}``, one object."""

    topic: str
    type: str  # snapshot | delta
    ts: int
    data: T


class Trade(msgspec.Struct, gc=False):
    T: int  # trade time, ms
    s: str
    S: str  # taker side: Buy / Sell
    v: PosSize
    p: Price
    i: str  # trade id
    BT: bool = False  # block trade
    L: str = ""  # tick direction


class BookData(msgspec.Struct, gc=False):
    s: str
    b: list[Level]
    a: list[Level]
    u: int  # update id: +1 per message of a topic; 1 after a venue restart
    seq: int = 0  # cross sequence


class BookFrame(One[BookData]):
    cts: int | None = None  # matching-engine time (not on every category)


class TickerData(msgspec.Struct, gc=False):
    """Every field optional: a delta holds only what changed."""

    symbol: str
    lastPrice: str | None = None
    bid1Price: str | None = None
    ask1Price: str | None = None
    highPrice24h: str | None = None
    lowPrice24h: str | None = None
    prevPrice24h: str | None = None
    volume24h: str | None = None
    turnover24h: str | None = None
    markPrice: str | None = None
    indexPrice: str | None = None
    fundingRate: str | None = None
    nextFundingTime: str | None = None
    openInterest: str | None = None
    openInterestValue: str | None = None


class TickerFrame(One[TickerData]):
    cs: int | None = None


class OptionTickerData(msgspec.Struct, gc=False):
    """An option's ticker (always a full snapshot). Decimal strings; IVs are fractions;
    greeks are Black-Scholes, in USD(C)."""

    symbol: str
    bidPrice: Size = 0.0  # 0: no bid
    bidSize: Size = 0.0
    bidIv: float = 0.0
    askPrice: Size = 0.0
    askSize: Size = 0.0
    askIv: float = 0.0
    lastPrice: Size | None = None  # 0: no trade yet
    highPrice24h: Size | None = None
    lowPrice24h: Size | None = None
    markPrice: Price | None = None
    indexPrice: Price | None = None
    markPriceIv: float | None = None
    underlyingPrice: Price | None = None
    openInterest: Size | None = None
    turnover24h: Size | None = None
    volume24h: Size | None = None
    delta: float | None = None
    gamma: float | None = None
    vega: float | None = None
    theta: float | None = None


class OptionTickerFrame(One[OptionTickerData], kw_only=True):
    type: str = "snapshot"  # an option's ticker is always whole


class Kline(msgspec.Struct, gc=False):
    start: int
    end: int
    interval: str
    open: Price
    close: Price
    high: Price
    low: Price
    volume: Size
    turnover: Size
    confirm: bool
    timestamp: int


class Liquidation(msgspec.Struct, gc=False):
    T: int
    s: str
    S: str  # side of the liquidated *position*
    v: PosSize
    p: Price


class PriceFilter(msgspec.Struct):
    tickSize: float


class LotSizeFilter(msgspec.Struct):
    qtyStep: float | None = None  # derivatives
    basePrecision: float | None = None  # spot


class InstrumentInfo(msgspec.Struct):
    symbol: str
    baseCoin: str
    quoteCoin: str
    status: str = ""
    contractType: str = ""  # LinearPerpetual / LinearFutures / InversePerpetual / ...
    settleCoin: str = ""
    deliveryTime: int = 0  # ms, "0" for perpetuals
    optionsType: str = ""  # option: Call / Put
    priceFilter: PriceFilter | None = None
    lotSizeFilter: LotSizeFilter | None = None


class InstrumentsResult(msgspec.Struct):
    items: list[InstrumentInfo] = msgspec.field(name="list")
    # documented as always present; real bodies have omitted it (the subject's category
    # then decides) and written the cursor as null on the last page
    category: str = ""
    nextPageCursor: str | None = ""


class Answer(msgspec.Struct, Generic[R], gc=False):
    """A REST answer: ``{"retCode": 0, "retMsg": "OK", "result": {...}}``."""

    retCode: int
    result: R
    retMsg: str = ""


class Instruments(Answer[InstrumentsResult]):
    """REST ``GET /v5/market/instruments-info`` body (the parts we use)."""

    time: int = 0


# -- REST history (collectors/positioning.py): ``{"retCode":0,"result":{"list":[...]}}`` --
class AccountRatioRow(msgspec.Struct, gc=False):
    """``/v5/market/account-ratio`` row: shares of accounts long (buy) and short (sell)."""

    symbol: str
    buyRatio: Size
    sellRatio: Size
    timestamp: int


class OpenInterestRow(msgspec.Struct, gc=False):
    """``/v5/market/open-interest`` row: linear open interest in the base coin."""

    openInterest: Size
    timestamp: int


class RowList(msgspec.Struct, Generic[T], gc=False):
    rows: list[T] = msgspec.field(name="list")
    symbol: str = ""


class Reply(Answer[RowList[T]], Generic[T]):
    """A history answer: ``result`` is ``{"list": [...]}``."""
