"""ccxt's unified structures as the poller and backfill publish them (orjson of what ccxt
returned), as msgspec Structs: only the fields we read; ccxt's ``info`` is ignored here."""

from __future__ import annotations

import msgspec

from normalizer.venues.wire import strict_decoder as decoder  # noqa: F401 (parse.py: wire.decoder)


class Trade(msgspec.Struct, gc=False):
    symbol: str
    timestamp: int
    price: float
    amount: float
    id: str | None = None
    side: str | None = None


class Ticker(msgspec.Struct, gc=False):
    symbol: str
    timestamp: int | None = None
    last: float | None = None
    bid: float | None = None
    ask: float | None = None
    bidVolume: float | None = None
    askVolume: float | None = None
    open: float | None = None
    high: float | None = None
    low: float | None = None
    baseVolume: float | None = None
    quoteVolume: float | None = None


# [open time ms, open, high, low, close, volume]
Ohlcv = tuple[int, float, float, float, float, float | None]


class Precision(msgspec.Struct, gc=False):
    price: float | None = None
    amount: float | None = None


class Market(msgspec.Struct, gc=False):
    id: str
    symbol: str
    base: str
    quote: str
    settle: str | None = None
    type: str | None = None
    contract: bool | None = False
    linear: bool | None = None
    inverse: bool | None = None
    contractSize: float | None = None
    expiry: int | None = None
    strike: float | None = None
    optionType: str | None = None
    active: bool | None = True
    precision: Precision = msgspec.field(default_factory=Precision)
    # added by the poller from the exchange object: how to read ``precision``
    precisionMode: int = 4
