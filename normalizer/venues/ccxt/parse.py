"""Frames of the ccxt poller and backfill -> typed messages, for any ccxt exchange id.

The raw venue token is the ccxt exchange id and stays the message's venue; the raw symbol
token is the ccxt unified symbol. Channel map (``ccxt-hist-*`` are the backfill's copies of
the same channels, kept apart so the poller's cursor never reads a backfill frame):

| channel         | frame (ccxt unified JSON)              | becomes                            |
|-----------------|----------------------------------------|------------------------------------|
| ccxt-trades     | list of trade structures               | trade                              |
| ccxt-ticker     | one ticker structure                   | ticker, and bbo when bid/ask sizes |
| ccxt-ohlcv-<tf> | list of [ms, o, h, l, c, v]            | candle, closed once its period ended |
| ccxt-market     | one market structure (+ precisionMode) | instrument; contract sizes         |

Sizes: spot amounts are base units. Contract amounts are converted with the market frame's
``contractSize`` (linear: contracts x size; inverse: contracts x size / price); a contract
frame before its market frame is rejected rather than guessed.
A ticker without an exchange time (many REST tickers) takes the fetch time as ``ts_event``.
"""

from __future__ import annotations

import math
from typing import Any

from normalizer.venues.base import Frame, Handler, Out, Parser, Rejected
from normalizer.venues.ccxt import wire
from streams import schemas, subjects
from streams.symbols import ccxt as symbols

PREFIX = "ccxt-"
HIST = "ccxt-hist-"
OHLCV = "ccxt-ohlcv-"
WS = "ccxt-ws"
MS = 1_000_000
UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
TICK_SIZE, DECIMAL_PLACES = 4, 2

_trades, _ticker, _ohlcv, _market = map(wire.decoder, (list[wire.Trade], wire.Ticker,
                                                       list[wire.Ohlcv], wire.Market))  # fmt: skip


def timeframe_ms(tf: str) -> int:
    """``1m`` -> 60000 (calendar months have no fixed length and are not supported)."""
    unit = UNITS.get(tf[-1:])
    if unit is None or not tf[:-1].isdigit() or int(tf[:-1]) < 1:
        raise ValueError(f"unsupported timeframe {tf!r}")
    return int(tf[:-1]) * unit


def is_ccxt_channel(channel: str) -> bool:
    return channel.startswith(PREFIX)


def _finite(v: float, what: str) -> float:
    if not math.isfinite(v):
        raise Rejected(f"{what} is not a finite number")
    return v


class CcxtParser(Parser):
    """One instance per ccxt exchange id (the registry creates them on first use)."""

    to_symbol = staticmethod(symbols.to_symbol)
    channels = {
        "ccxt-trades": "trade", "ccxt-ticker": "ticker+bbo", "ccxt-ohlcv-<tf>": "candle",
        "ccxt-market": "instrument", "ccxt-hist-trades": "trade",
        "ccxt-hist-ohlcv-<tf>": "candle",
    }  # fmt: skip
    handler_of = {
        "ccxt-trades": "_trades", "ccxt-ticker": "_ticker", "ccxt-ohlcv-<tf>": "_ohlcv",
        "ccxt-market": "_market", "ccxt-hist-trades": "_trades", "ccxt-hist-ohlcv-<tf>": "_ohlcv",
    }  # fmt: skip

    def __init__(self, venue: str) -> None:
        self.venue = self.market_venue = venue  # the ccxt id is the message's venue too
        super().__init__()
        # unified symbol -> (contract size, inverse); spot symbols need no entry
        self.contracts: dict[str, tuple[float, bool]] = {}
        self._ws: Any = None  # the venue's ccxt-ws parser, made on its first frame

    def _unlisted(self, channel: str) -> Handler:
        """``ccxt-ohlcv-<timeframe>`` for any timeframe, and the backfill's ``ccxt-hist-*``
        copies of every channel."""
        ch = PREFIX + channel[len(HIST) :] if channel.startswith(HIST) else channel
        if ch.startswith(OHLCV):
            return self._ohlcv
        if channel.startswith(WS):  # the WebSocket long tail (collectors/ccxt_ws.py)
            if self._ws is None:
                from normalizer.venues.ccxt_ws.parse import CcxtWsParser

                self._ws = CcxtWsParser(self.venue)
            return self._ws.parse
        handler = self._dispatch.get(ch)
        if handler is not None:
            return handler
        if not ch.startswith(PREFIX):
            raise Rejected(f"no parser for venue {self.venue!r} ({channel!r} is not ccxt)")
        raise Rejected(f"unknown ccxt channel {channel!r}")

    # -- names and sizes -----------------------------------------------------------------
    @staticmethod
    def _same(frame: Frame, unified: str) -> None:
        if subjects.token(unified) != frame.native_symbol:
            raise Rejected(f"symbol {unified!r} in a frame published for {frame.native_symbol!r}")

    def _to_base(self, unified: str, amount: float, price: float) -> float:
        if ":" not in unified:
            return amount
        known = self.contracts.get(unified)
        if known is None:
            raise Rejected(f"contract size of {unified!r} unknown: no ccxt-market frame for it yet")
        size, inverse = known
        if inverse:
            return amount * size / price if price > 0 else 0.0
        return amount * size

    # -- channels ------------------------------------------------------------------------
    def _trades(self, frame: Frame) -> list[Out]:
        out = []
        for n, t in enumerate(_trades.decode(frame.data)):
            self._same(frame, t.symbol)
            _, symbol = self._names("trade", t.symbol)
            price = _finite(t.price, "trade price")
            side = t.side if t.side in ("buy", "sell") else "unknown"
            msg = schemas.Trade(
                venue=self.venue, symbol=symbol, ts_event=t.timestamp * MS,
                ts_recv=frame.ts_recv, id=t.id or f"{t.timestamp}:{frame.raw_seq}:{n}",
                price=price, size=_finite(self._to_base(t.symbol, t.amount, price), "amount"),
                side=side,  # type: ignore[arg-type]
            )  # fmt: skip
            out.append(self._out("trade", t.symbol, msg.id, msg))
        return out

    def _ticker(self, frame: Frame) -> list[Out]:
        t = _ticker.decode(frame.data)
        self._same(frame, t.symbol)
        _, symbol = self._names("ticker", t.symbol)
        ts = t.timestamp * MS if t.timestamp else frame.ts_recv
        msg = schemas.Ticker(
            venue=self.venue, symbol=symbol, ts_event=ts, ts_recv=frame.ts_recv, last=t.last,
            bid=t.bid, ask=t.ask, open_24h=t.open, high_24h=t.high, low_24h=t.low,
            volume_24h=t.baseVolume, quote_volume_24h=t.quoteVolume,
        )  # fmt: skip
        out = [self._out("ticker", t.symbol, ts, msg)]
        if None not in (t.bid, t.ask, t.bidVolume, t.askVolume):
            bid, ask = float(t.bid), float(t.ask)  # type: ignore[arg-type]
            bbo = schemas.BBO(
                venue=self.venue, symbol=symbol, ts_event=ts, ts_recv=frame.ts_recv,
                bid_price=bid, bid_size=self._to_base(t.symbol, t.bidVolume, bid),  # type: ignore[arg-type]
                ask_price=ask, ask_size=self._to_base(t.symbol, t.askVolume, ask),  # type: ignore[arg-type]
            )  # fmt: skip
            out.append(self._out("bbo", t.symbol, ts, bbo))
        return out

    def _ohlcv(self, frame: Frame) -> list[Out]:
        tf = frame.channel.partition("ohlcv-")[2]  # ccxt-ohlcv-<tf>, ccxt-hist-ohlcv-<tf>
        try:
            step = timeframe_ms(tf)
        except ValueError as exc:
            raise Rejected(str(exc)) from None
        unified = frame.native_symbol
        _, symbol = self._names("candle", unified)
        fetched_ms = frame.ts_recv // MS
        out = []
        for ts, o, h, lo, c, v in _ohlcv.decode(frame.data):
            if v is None:
                raise Rejected(f"candle {ts} has no volume")
            if ts % step:
                raise Rejected(f"candle time {ts} is not on the {tf} grid")
            closed = ts + step <= fetched_ms
            msg = schemas.Candle(
                venue=self.venue, symbol=symbol,
                ts_event=(ts + step) * MS if closed else frame.ts_recv, ts_recv=frame.ts_recv,
                interval=tf, ts_open=ts * MS, open=o, high=h, low=lo, close=c,
                volume=self._to_base(unified, v, c), closed=closed,
            )  # fmt: skip
            # a closed candle has one identity wherever it came from (poller or backfill)
            natural = f"{tf}:{ts}:c" if closed else f"{tf}:{ts}:{frame.ts_recv}"
            out.append(self._out("candle", unified, natural, msg))
        return out

    def _market(self, frame: Frame) -> list[Out]:
        m = _market.decode(frame.data)
        self._same(frame, m.symbol)
        _, symbol = self._names("instrument", m.symbol)
        kind = _kind(m)
        size = m.contractSize or 1.0
        if m.contract:
            self.contracts[m.symbol] = (size, bool(m.inverse))
        msg = schemas.Instrument(
            venue=self.venue, symbol=symbol, ts_event=frame.ts_recv, ts_recv=frame.ts_recv,
            native_symbol=m.id, kind=kind, base=m.base, quote=m.quote, settle=m.settle,
            tick_size=_step(m.precision.price, m.precisionMode),
            lot_size=_step(m.precision.amount, m.precisionMode), contract_size=size,
            expiry_ts=m.expiry * MS if m.expiry else None, strike=m.strike,
            option_type=m.optionType if m.optionType in ("call", "put") else None,  # type: ignore[arg-type]
            active=m.active is not False,
        )  # fmt: skip
        return [self._out("instrument", m.symbol, frame.ts_recv, msg)]


def _kind(m: wire.Market) -> Any:
    if m.type == "option" or m.optionType:
        return "option"
    if m.type == "future" or (m.contract and m.expiry):
        return "future"
    if m.type == "swap" or m.contract:
        return "perpetual"
    return "spot"


def _step(value: float | None, mode: int) -> float:
    """A tick or lot size from ccxt's precision; 0.0 when unknown (significant digits)."""
    if value is None:
        return 0.0
    if mode == TICK_SIZE:
        return value
    if mode == DECIMAL_PLACES:
        return 10.0 ** -int(value)
    return 0.0
