"""Binance spot frames as they arrive on the wire (combined streams and REST bodies).

Decoded with ``strict=False`` so Binance's decimal strings ("65000.10") become floats
inside msgspec's C decoder: no per-field Python ``float()`` calls on the hot path.
Constraints reject zero/negative prices, NaN and infinities at decode time.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

Price = Annotated[float, Meta(gt=0.0, lt=1e15)]
Size = Annotated[float, Meta(ge=0.0, lt=1e15)]
PosSize = Annotated[float, Meta(gt=0.0, lt=1e15)]
Level = tuple[Price, Size]


class TradeEvent(msgspec.Struct, gc=False):
    e: str
    event_time: int = msgspec.field(name="E")
    s: str
    t: int  # trade id
    p: Price
    q: PosSize
    trade_time: int = msgspec.field(name="T")
    m: bool  # buyer is the maker -> the taker sold


class AggTradeEvent(msgspec.Struct, gc=False):
    e: str
    event_time: int = msgspec.field(name="E")
    s: str
    a: int  # aggregate trade id
    p: Price
    q: PosSize
    trade_time: int = msgspec.field(name="T")
    m: bool


class DepthEvent(msgspec.Struct, gc=False):
    e: str
    event_time: int = msgspec.field(name="E")
    s: str
    first_id: int = msgspec.field(name="U")
    last_id: int = msgspec.field(name="u")
    b: list[Level]
    a: list[Level]


class TradeFrame(msgspec.Struct, gc=False):
    stream: str
    data: TradeEvent


class AggTradeFrame(msgspec.Struct, gc=False):
    stream: str
    data: AggTradeEvent


class DepthFrame(msgspec.Struct, gc=False):
    stream: str
    data: DepthEvent


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


class ConnEvent(msgspec.Struct):
    """Written by our own collector to ``raw.binance.conn.ALL``."""

    event: str
    conn: str
    ts: int
    symbols: list[str] = []
    streams: list[str] = []
    reason: str = ""


def decoder(kind: type) -> msgspec.json.Decoder:
    return msgspec.json.Decoder(kind, strict=False)
