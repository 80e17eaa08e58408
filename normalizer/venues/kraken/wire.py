"""Kraken WebSocket v2 public frames and the REST AssetPairs body, as msgspec Structs.

v2 frames are JSON objects ``{"channel", "type", "data"}``; prices and quantities are JSON
numbers (decoded straight to float in msgspec's C decoder), times are RFC 3339 strings.
The legacy v1 feed sends arrays (``[channelID, {...}, "book-10", "XBT/USD"]``) and
``{"event": ...}`` objects: neither decodes into these types, so v1 frames are rejected.
"""

from __future__ import annotations

from typing import Annotated, Generic, Literal, TypeVar

import msgspec
from msgspec import Meta

from normalizer.venues.wire import PosSize, Price, Size
from normalizer.venues.wire import strict_decoder as decoder  # noqa: F401 (parse.py: wire.decoder)

T = TypeVar("T")


class Push(msgspec.Struct, Generic[T], gc=False):
    """A data push: ``{"channel": .., "type": "snapshot"|"update", "data": [...]}``."""

    channel: str
    type: Literal["snapshot", "update"]
    data: list[T]
    timestamp: str = ""  # ohlc frames carry one at the top level


class Trade(msgspec.Struct, gc=False):
    symbol: str
    side: str  # taker side
    price: Price
    qty: PosSize
    trade_id: int
    timestamp: str
    ord_type: str = ""


class Level(msgspec.Struct, gc=False):
    price: Price
    qty: Size  # 0 deletes the level


class Book(msgspec.Struct, gc=False):
    symbol: str
    bids: list[Level]
    asks: list[Level]
    checksum: Annotated[int, Meta(ge=0, lt=1 << 32)]
    timestamp: str = ""  # on updates; absent from snapshots


class Ticker(msgspec.Struct, gc=False):
    symbol: str
    # 0 when that side of the book is empty (a new or halted pair): valid, no quote
    bid: Size
    bid_qty: Size
    ask: Size
    ask_qty: Size
    last: float | None = None
    volume: float | None = None  # 24 h, base currency
    vwap: float | None = None
    low: float | None = None
    high: float | None = None
    change: float | None = None
    change_pct: float | None = None
    timestamp: str = ""


class Ohlc(msgspec.Struct, gc=False):
    symbol: str
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Size
    interval_begin: str
    interval: int  # minutes
    trades: int | None = None
    vwap: float | None = None
    timestamp: str = ""


class Pair(msgspec.Struct, gc=False):
    """One row of the ``instrument`` channel's ``pairs``."""

    symbol: str
    base: str
    quote: str
    status: str
    qty_precision: int
    qty_increment: float
    price_precision: int
    price_increment: float = 0.0
    tick_size: float = 0.0
    qty_min: float | None = None
    cost_min: float | None = None
    marginable: bool = False


class InstrumentData(msgspec.Struct, gc=False):
    pairs: list[Pair]
    assets: list[msgspec.Raw] = []


class InstrumentFrame(msgspec.Struct, gc=False):
    channel: Literal["instrument"]
    type: Literal["snapshot", "update"]
    data: InstrumentData


class AssetPair(msgspec.Struct, gc=False):
    """One value of REST ``/0/public/AssetPairs`` ``result`` (v1 asset names: XBT, XDG)."""

    altname: str = ""
    wsname: str = ""
    pair_decimals: int = -1
    lot_decimals: int = -1
    tick_size: str = ""
    status: str = "online"
    ordermin: str = ""


class AssetPairs(msgspec.Struct, gc=False):
    error: list[str]
    result: dict[str, AssetPair] = {}


class Control(msgspec.Struct, gc=False):
    """Acks, pongs, errors (``method``), ``heartbeat`` and ``status`` pushes (``channel``)."""

    method: str = ""
    channel: str = ""
    success: bool | None = None
    error: str = ""
    symbol: str = ""
