"""Binance spot and USDⓈ-M frames as they arrive on the wire (combined streams and REST
bodies). Decoded with ``strict=False`` (:func:`normalizer.venues.wire.decoder`): Binance's
decimal strings ("65000.10") become floats inside msgspec's C decoder.
"""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

import msgspec

from normalizer.venues.wire import PosSize, Price, Size
from normalizer.venues.wire import decoder as decoder  # parse.py: wire.decoder(...)

Level = tuple[Price, Size]
E = TypeVar("E")


class Envelope(msgspec.Struct, Generic[E], gc=False):
    """A combined-stream frame: ``{"stream": "btcusdt@trade", "data": {...}}``."""

    stream: str
    data: E


class Event(msgspec.Struct, gc=False):
    """What every stream event carries: its type, time and symbol."""

    e: str
    event_time: int = msgspec.field(name="E")
    s: str


# Fields in the order Binance writes them: msgspec's decoder checks the next field in
# declaration order before looking a key up (a trade decoded 20-50 ns slower, 4-10%, with
# the id declared last).
class TradeEvent(Event, gc=False):
    t: int  # trade id
    p: Price
    q: PosSize
    trade_time: int = msgspec.field(name="T")
    m: bool  # buyer is the maker -> the taker sold
    # USDⓈ-M only: execution type, "MARKET" for order-book trades; "INSURANCE_FUND", "ADL",
    # "NA" are off-book prints. Declared last so spot frames (no X) decode as before.
    X: str = "MARKET"


class AggTradeEvent(Event, gc=False):
    a: int  # aggregate trade id
    p: Price
    q: PosSize
    trade_time: int = msgspec.field(name="T")
    m: bool


class FuturesAggTradeEvent(msgspec.Struct, gc=False):
    """USDⓈ-M's aggTrade: the same fields, ``a`` written before ``s`` (~30 ns a frame)."""

    e: str
    event_time: int = msgspec.field(name="E")
    a: int
    s: str
    p: Price
    q: PosSize
    trade_time: int = msgspec.field(name="T")
    m: bool


class DepthEvent(Event, gc=False):
    first_id: int = msgspec.field(name="U")
    last_id: int = msgspec.field(name="u")
    b: list[Level]
    a: list[Level]


class DepthSnapshot(msgspec.Struct, gc=False):
    """REST ``GET /api/v3/depth`` body."""

    lastUpdateId: int
    bids: list[Level]
    asks: list[Level]


class SymbolFilter(msgspec.Struct):
    filterType: str
    tickSize: float | None = None
    stepSize: float | None = None


class SymbolInfo(msgspec.Struct):
    symbol: str
    status: str
    baseAsset: str
    quoteAsset: str
    filters: list[SymbolFilter] = []


class ExchangeInfo(msgspec.Struct):
    """REST ``GET /api/v3/exchangeInfo`` body (the parts we use)."""

    serverTime: int
    symbols: list[SymbolInfo]


class FuturesDepthEvent(Event, gc=False):
    first_id: int = msgspec.field(name="U")
    last_id: int = msgspec.field(name="u")
    prev_id: int = msgspec.field(name="pu")  # before the levels, as on the wire
    b: list[Level]
    a: list[Level]


class FuturesDepthSnapshot(DepthSnapshot, gc=False):
    """REST ``GET /fapi/v1/depth`` body."""

    event_time: int = msgspec.field(name="E")


class BookTickerEvent(msgspec.Struct, gc=False):
    """Spot frames carry no event time; futures ones do (``E``)."""

    u: int
    s: str
    b: Price
    B: Size
    a: Price
    A: Size
    event_time: int | None = msgspec.field(name="E", default=None)


# kw_only below: a required field may follow an optional one, as on the wire
class TickerEvent(Event, kw_only=True, gc=False):
    """24hr rolling ticker (``<symbol>@ticker``)."""

    c: Price  # last
    b: Price | None = None  # spot only
    a: Price | None = None
    o: Price
    h: Price
    l: Price  # noqa: E741 - the venue's field name
    v: Size
    q: Size


class Kline(msgspec.Struct, gc=False):
    t: int
    i: str
    o: Price
    c: Price
    h: Price
    l: Price  # noqa: E741
    v: Size
    n: int
    x: bool


class KlineEvent(Event, gc=False):
    k: Kline


class MarkPriceEvent(Event, kw_only=True, gc=False):
    p: Price  # mark
    i: Price | None = None  # index
    r: float | Literal[""]  # funding rate (may be negative); "" or 0 on delivery contracts
    T: int  # next funding time; 0 on delivery contracts (no funding applies)


class ForceOrder(msgspec.Struct, gc=False):
    s: str
    S: str  # side of the liquidation order
    p: Price
    q: PosSize
    T: int
    ap: Price | None = None  # average fill price
    z: Size | None = None  # filled accumulated quantity


class ForceOrderEvent(msgspec.Struct, gc=False):
    e: str
    event_time: int = msgspec.field(name="E")
    o: ForceOrder


class OpenInterest(msgspec.Struct, gc=False):
    """REST ``GET /fapi/v1/openInterest`` body (polled)."""

    symbol: str
    openInterest: Size
    time: int


class FuturesSymbolInfo(SymbolInfo):
    marginAsset: str = ""
    contractType: str = ""
    deliveryDate: int = 0


class FuturesExchangeInfo(msgspec.Struct):
    serverTime: int
    symbols: list[FuturesSymbolInfo]


# -- COIN-M (dapi/dstream): sizes are contract counts; the shapes below differ from USDⓈ-M's
class CoinmKline(Kline, gc=False):
    q: Size  # base-asset volume (``v`` counts contracts)


class CoinmKlineEvent(Event, gc=False):
    k: CoinmKline


class CoinmOpenInterest(msgspec.Struct, gc=False):
    """REST ``GET /dapi/v1/openInterest`` body: ``openInterest`` in contracts."""

    symbol: str
    openInterest: Size
    time: int


class CoinmSymbolInfo(msgspec.Struct):
    symbol: str
    baseAsset: str
    quoteAsset: str
    contractSize: float  # USD per contract (100 for BTC, 10 for the others)
    marginAsset: str = ""
    contractType: str = ""
    deliveryDate: int = 0
    contractStatus: str = ""  # COIN-M's name for ``status``
    filters: list[SymbolFilter] = []


class CoinmExchangeInfo(msgspec.Struct):
    """REST ``GET /dapi/v1/exchangeInfo`` body (the parts we use)."""

    serverTime: int
    symbols: list[CoinmSymbolInfo]


# -- futures/data history (collectors/positioning.py): lists of rows, one per period --------
class LongShortRow(msgspec.Struct, gc=False):
    """A row of ``globalLongShortAccountRatio``, ``topLongShortAccountRatio`` or
    ``topLongShortPositionRatio`` (USDⓈ-M: ``symbol``, shares in ``longAccount`` /
    ``shortAccount``; COIN-M: ``pair``, and ``longPosition``/``shortPosition`` for the
    position ratio). ``timestamp`` is the period's time, ms."""

    longShortRatio: Size
    timestamp: int
    symbol: str = ""
    pair: str = ""
    longAccount: Size | None = None
    shortAccount: Size | None = None
    longPosition: Size | None = None
    shortPosition: Size | None = None


class TakerRow(msgspec.Struct, gc=False):
    """A row of USDⓈ-M ``takerlongshortRatio``: taker buy/sell volume in the base asset."""

    buyVol: Size
    sellVol: Size
    timestamp: int
    buySellRatio: Size | None = None


class OpenInterestHistRow(msgspec.Struct, gc=False):
    """A row of ``openInterestHist``: open interest (base units on USDⓈ-M) and its value."""

    sumOpenInterest: Size
    timestamp: int
    symbol: str = ""
    sumOpenInterestValue: Size | None = None


class CoinmTakerRow(msgspec.Struct, gc=False):
    """A row of COIN-M ``takerBuySellVol``: ``*Vol`` in contracts, ``*VolValue`` in the
    base asset."""

    takerBuyVol: Size
    takerSellVol: Size
    takerBuyVolValue: Size
    takerSellVolValue: Size
    timestamp: int
    pair: str = ""
    contractType: str = ""


class CoinmOpenInterestHistRow(msgspec.Struct, gc=False):
    """A row of COIN-M ``openInterestHist``: contracts, and their value in the base asset."""

    sumOpenInterest: Size
    sumOpenInterestValue: Size
    timestamp: int
    pair: str = ""
    contractType: str = ""
