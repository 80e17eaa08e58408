"""OKX v5 public frames as they arrive on the wire (WebSocket pushes and REST bodies).

Decoded with ``strict=False`` so OKX's decimal strings become floats inside msgspec's C
decoder. Fields OKX may send as ``""`` (no value yet: a new listing's funding, an
option's empty ``ctType``) are kept as strings and converted where used.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

from normalizer.venues.wire import PosSize, Price, Size
from normalizer.venues.wire import decoder as decoder  # parse.py: wire.decoder(...)

# [price, size, "0" (deprecated liquidated orders), number of orders]
Level = tuple[Price, Size, Any, Any]


class Arg(msgspec.Struct, gc=False):
    channel: str
    instId: str = ""
    instType: str = ""
    instFamily: str = ""  # opt-summary: the options' family (BTC-USD)


T = TypeVar("T")


class Push(msgspec.Struct, Generic[T], gc=False):
    """A data push: ``{"arg": {"channel": .., "instId": ..}, "data": [...]}``."""

    arg: Arg
    data: list[T]


class Trade(msgspec.Struct, gc=False):
    instId: str
    tradeId: str
    px: Price
    sz: PosSize
    side: str  # taker side
    ts: int


class BookData(msgspec.Struct, gc=False):
    asks: list[Level]
    bids: list[Level]
    ts: int
    checksum: int | None = None
    seqId: int | None = None  # absent in frames recorded before 2022-06
    prevSeqId: int | None = None


class BooksFrame(Push[BookData]):
    action: str = "snapshot"  # books5 / bbo-tbt carry no action: every push is whole


class Ticker(msgspec.Struct, gc=False):
    instType: str
    instId: str
    ts: int
    last: str = ""
    bidPx: str = ""
    askPx: str = ""
    open24h: str = ""
    high24h: str = ""
    low24h: str = ""
    vol24h: str = ""  # base units on spot, contracts on derivatives
    volCcy24h: str = ""  # quote units on spot, base units on derivatives


class CandlesFrame(Push[list[str]]):
    """Rows ``[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]``, strings."""


class Funding(msgspec.Struct, gc=False):
    instId: str
    fundingRate: str = ""  # absent from some pushes (only fundingTime, nextFundingRate)
    fundingTime: str = ""
    nextFundingRate: str = ""
    nextFundingTime: str = ""
    ts: str = ""


class OpenInterest(msgspec.Struct, gc=False):
    instId: str
    oi: Size  # contracts
    oiCcy: Size  # base units
    ts: int
    oiUsd: str = ""


class LiquidationDetail(msgspec.Struct, gc=False):
    side: str
    sz: PosSize  # contracts
    bkPx: Price
    ts: int
    posSide: str = ""


class Liquidation(msgspec.Struct, gc=False):
    instId: str
    details: list[LiquidationDetail]


class MarkPrice(msgspec.Struct, gc=False):
    instId: str
    markPx: Price
    ts: int


class IndexTicker(msgspec.Struct, gc=False):
    instId: str
    idxPx: Price
    ts: int


class Instrument(msgspec.Struct, gc=False):
    """One row of ``GET /api/v5/public/instruments`` (strings: many are "" for spot)."""

    instId: str
    instType: str
    tickSz: str
    lotSz: str
    state: str = "live"
    baseCcy: str = ""
    quoteCcy: str = ""
    settleCcy: str = ""
    ctVal: str = ""
    ctMult: str = ""
    ctValCcy: str = ""
    ctType: str = ""
    expTime: str = ""
    stk: str = ""
    optType: str = ""
    uly: str = ""
    instFamily: str = ""


class Reply(msgspec.Struct, Generic[T], gc=False):
    """A REST answer: ``{"code": "0", "msg": "", "data": [...]}``."""

    code: str
    data: list[T]
    msg: str = ""


class Instruments(Reply[Instrument]):
    """``GET /api/v5/public/instruments``."""


class OptSummary(msgspec.Struct, gc=False):
    """One option of an ``opt-summary`` push (every option of an ``instFamily``). Decimal
    strings; the volatilities are fractions. ``delta``..``vega`` are OKX's price-adjusted
    greeks (in the coin); ``deltaBS``..``vegaBS`` the Black-Scholes ones."""

    instId: str
    ts: str
    markVol: str = ""
    bidVol: str = ""
    askVol: str = ""
    deltaBS: str = ""
    gammaBS: str = ""
    thetaBS: str = ""
    vegaBS: str = ""
    fwdPx: str = ""


class RubikReply(Reply[list[str]]):
    """``/api/v5/rubik/stat/...`` answers: ``{"code":"0","msg":"","data":[[ts, ...], ...]}``,
    each row strings, newest first: ratios ``[ts, ratio]``; open-interest-history ``[ts, oi
    (contracts), oiCcy (coin), oiUsd]``; taker-volume-contract ``[ts, sellVol, buyVol]``."""
