"""Coinbase Advanced Trade market-data frames as they arrive (WebSocket envelopes, REST).

Every WebSocket message is one envelope ``{"channel", "client_id", "timestamp",
"sequence_num", "events": [...]}``; only ``events`` differs per channel. Decoded with
``strict=False`` so Coinbase's decimal strings become floats inside msgspec's C decoder.
``client_id`` is documented but absent in production frames, so it is optional.
"""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

import msgspec
from msgspec import Meta

from normalizer.venues.wire import PosSize, Price, Size
from normalizer.venues.wire import decoder as decoder  # parse.py: wire.decoder(...)

Seq = Annotated[int, Meta(ge=0)]

E = TypeVar("E")


class Envelope(msgspec.Struct, Generic[E], gc=False):
    channel: str
    timestamp: str
    sequence_num: Seq
    events: list[E]
    client_id: str = ""


class Probe(msgspec.Struct, gc=False):
    """Just the envelope's routing fields (heartbeats, subscriptions, errors)."""

    channel: str = ""
    type: str = ""  # "error" frames carry no channel
    sequence_num: Seq | None = None
    message: str = ""


class L2Update(msgspec.Struct, gc=False):
    side: str  # "bid" | "offer"
    price_level: Price
    new_quantity: Size  # the level's new size, not a change; 0 removes it
    event_time: str = ""


class L2Event(msgspec.Struct, gc=False):
    type: str  # "snapshot" | "update"
    product_id: str
    updates: list[L2Update]


class MarketTrade(msgspec.Struct, gc=False):
    trade_id: str
    product_id: str
    price: Price
    size: PosSize
    side: str  # the MAKER order's side, "BUY" | "SELL"
    time: str


class TradesEvent(msgspec.Struct, gc=False):
    type: str
    trades: list[MarketTrade]


class TickerRow(msgspec.Struct, gc=False):
    """Strings: Coinbase sends "" for fields it has no value for (new listings)."""

    product_id: str
    type: str = "ticker"
    price: str = ""
    volume_24_h: str = ""
    low_24_h: str = ""
    high_24_h: str = ""
    low_52_w: str = ""
    high_52_w: str = ""
    price_percent_chg_24_h: str = ""
    best_bid: str = ""
    best_bid_quantity: str = ""
    best_ask: str = ""
    best_ask_quantity: str = ""


class TickerEvent(msgspec.Struct, gc=False):
    type: str
    tickers: list[TickerRow]


class CandleRow(msgspec.Struct, gc=False):
    start: int  # unix seconds of the five-minute bucket (a string on the wire)
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Size
    product_id: str


class CandlesEvent(msgspec.Struct, gc=False):
    type: str
    candles: list[CandleRow]


class Product(msgspec.Struct, gc=False):
    """One row of ``GET /api/v3/brokerage/market/products`` (decimal strings)."""

    product_id: str
    base_increment: str
    quote_increment: str
    price_increment: str = ""
    base_currency_id: str = ""
    quote_currency_id: str = ""
    status: str = ""
    product_type: str = "SPOT"
    trading_disabled: bool = False
    is_disabled: bool = False


class Products(msgspec.Struct, gc=False):
    products: list[Product]
    num_products: int | None = None
