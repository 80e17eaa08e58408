"""Binance raw frames -> typed jetmarket messages, spot and USDⓈ-M futures.

Raw venue tokens: ``binance`` (spot), ``binanceusdm`` (USDⓈ-M) and ``binancecoinm``
(COIN-M, inverse: :class:`BinanceCoinmParser`, sizes converted from contracts), ccxt's ids;
all normalize to venue ``binance``, the symbol tells the market (``BTC-USDT`` vs
``BTC-USDT-PERP`` vs ``BTC-USD-PERP``). Channel map, raw channel -> market type:

| channel     | spot                     | usdm                                   |
|-------------|--------------------------|----------------------------------------|
| trade       | trade (``t``)            | trade (``t``)                          |
| aggTrade    | trade, aggregated (``a``)| trade, aggregated (``a``)              |
| depth       | book delta (U/u)         | book delta (U/u/pu)                    |
| snapshot    | book snapshot (REST)     | book snapshot (REST)                   |
| bookTicker  | bbo                      | bbo                                    |
| ticker      | ticker (24 h)            | ticker (24 h)                          |
| kline       | candle                   | candle                                 |
| markPrice   | -                        | mark + funding                         |
| forceOrder  | -                        | liquidation                            |
| openInterest| -                        | open_interest (REST poll)              |
| instruments | instrument (exchangeInfo)| instrument (exchangeInfo)              |
| globalLongShortAccountRatio-<period> | - | long_short_ratio (global_accounts)  |
| topLongShortAccountRatio-<period>    | - | long_short_ratio (top_accounts)     |
| topLongShortPositionRatio-<period>   | - | long_short_ratio (top_positions)    |
| takerlongshortRatio-<period>         | - | taker_volume                        |
| openInterestHist-<period>            | - | open_interest_hist                  |
| conn        | gap(reconnect) per symbol on disconnect                           |
| control     | nothing (subscription acknowledgements)                          |

Quirks of the real feeds (each has a regression test in tests/venues/binance/test_real_frames.py):

- USDⓈ-M ``trade`` carries ``X``, the execution type: ``MARKET`` is an order-book trade;
  ``INSURANCE_FUND``, ``ADL`` and ``NA`` are off-book prints (the insurance fund or an
  auto-deleverage taking over a liquidated position). They are **dropped and counted** in
  ``jetmarket_normalizer_skipped_total{venue,reason}``, not published: they must not enter
  ``trades``, VWAP or candles, and they are not a second liquidation either: the liquidation
  order itself already comes as ``forceOrder`` -> liquidation, so publishing these fills as
  liquidations would count one event twice, and their ``m`` flag gives no liquidation side.
  ``aggTrade`` aggregates only market trades (Binance's documentation), so it needs no check.
- ``markPrice`` of a dated (delivery) contract carries ``"r":"0.00000000","T":0`` (or
  ``"r":""``): no funding applies, so only the mark comes out, never a funding rate of 0.
- Frames of other venues' retired APIs are not Binance's concern; an unroutable frame is
  dead-lettered as ``unknown channel 'unknown'``.

Speed (issue 24): the plain frames of aggTrade, trade, bookTicker, kline and depth (spot,
USDⓈ-M) are read and written in C (``_speedups.c``, built by ``pip install -e .`` when the machine
has a C compiler): ~2.5x fewer ns per frame. Every other frame, and every frame when it is
not built, runs the Python handlers below, which stay the definition: the C path's output is
theirs byte for byte (tests/venues/binance/test_golden.py, test_speedups.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import msgspec

from normalizer.venues.base import SKIPPED, Frame, Out, Parser, Rejected, encode, new_out
from normalizer.venues.binance import wire

try:  # the hot handlers' common case in C, built by `pip install -e .` when a compiler is there
    from normalizer.venues.binance import _speedups
except ImportError:  # not built: the Python handlers do everything, the same bytes slower
    _speedups = None  # type: ignore[assignment]
from streams import schemas
from streams.symbols import binance as symbols

VENUE = "binance"
MS = 1_000_000

# decoders of the combined-stream channels, then of the REST bodies
_trade, _agg, _book_ticker, _ticker, _kline, _mark, _force = (
    wire.decoder(wire.Envelope[event]) for event in (
        wire.TradeEvent, wire.AggTradeEvent, wire.BookTickerEvent, wire.TickerEvent,
        wire.KlineEvent, wire.MarkPriceEvent, wire.ForceOrderEvent,
    )
)  # fmt: skip
_agg_usdm = wire.decoder(wire.Envelope[wire.FuturesAggTradeEvent])
_oi, _info, _finfo = map(wire.decoder, (wire.OpenInterest, wire.ExchangeInfo,
                                        wire.FuturesExchangeInfo))  # fmt: skip
# bound ``decode`` of the hot channels' decoders (the Decoders stay module attributes:
# fuzz/fuzzers.py shapes frames from them)
_trade_decode = _trade.decode
_agg_decode = _agg.decode
_book_ticker_decode = _book_ticker.decode
_mark_decode = _mark.decode
_force_decode = _force.decode
_kline_decode = _kline.decode
_ticker_decode = _ticker.decode
Trade, Book, BBO, Ticker, Candle = (
    schemas.Trade, schemas.Book, schemas.BBO, schemas.Ticker, schemas.Candle
)  # fmt: skip
Mark, Funding, Liquidation = schemas.Mark, schemas.Funding, schemas.Liquidation


def positional(kind: type[schemas.Base]) -> type[msgspec.Struct]:
    """``kind`` built from positional arguments: the same fields in the same order, the same
    defaults, tag and names, so it encodes to the very same bytes (tests/venues/binance/
    test_golden.py), without the keyword arguments the schemas require (kw_only): ~40 ns a
    message on the hot channels."""
    cfg = kind.__struct_config__
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    rename = {}
    for f in msgspec.structs.fields(kind):
        if f.default_factory is not msgspec.NODEFAULT:
            raise TypeError(f"{kind.__name__}.{f.name}: a default factory is not positional")
        fields.append((f.name, f.type) if f.required else (f.name, f.type, f.default))
        if f.encode_name != f.name:
            rename[f.name] = f.encode_name
    return msgspec.defstruct(
        f"Positional{kind.__name__}", fields, tag_field=cfg.tag_field, tag=cfg.tag,
        rename=rename or None, omit_defaults=cfg.omit_defaults, gc=False,
    )  # fmt: skip


_TradeP, _BookP, _BBOP, _TickerP, _CandleP, _MarkP, _FundingP = map(
    positional, (Trade, Book, BBO, Ticker, Candle, Mark, Funding)
)
# ``Out((subject, msg_id, data))`` the cheapest way Python has (new_out is a partial of it:
# the direct call is ~20 ns less)
_tnew = tuple.__new__
LIQUIDATION_SIDE = {"BUY": "buy", "SELL": "sell"}
# futures/data history (collectors/positioning.py): raw channel ``<endpoint>-<period>``
PERIODS = frozenset({"5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d"})
_coinm_taker_rows = wire.decoder(list[wire.CoinmTakerRow])
_coinm_oih_rows = wire.decoder(list[wire.CoinmOpenInterestHistRow])
_ls_rows, _taker_rows, _oih_rows = (
    wire.decoder(list[row]) for row in (wire.LongShortRow, wire.TakerRow,
                                        wire.OpenInterestHistRow)
)  # fmt: skip
OFF_BOOK = frozenset({"INSURANCE_FUND", "ADL", "NA"})  # USDⓈ-M trade X values besides MARKET


def _agg_trade_handler(decode: Callable[[bytes], Any]) -> Callable[[Any, Frame], list[Out]]:
    """The aggTrade handler of a market whose frames ``decode`` reads (spot and USDⓈ-M write
    the fields in different orders). Built per market, so ``decode`` is a closure cell, not
    a class attribute looked up per frame."""

    def _aggTrade(self: _Binance, frame: Frame) -> list[Out]:
        d = decode(frame.data).data
        s = d.s
        if d.e != "aggTrade":
            self._event(d.e, "aggTrade", "aggTrade")
        if s != frame.native_symbol:
            self._same(frame, s)
        names = self._trade_names.get(s) or self.names_miss("trade", s)
        tid = f"a{d.a}"
        return [_tnew(Out, (names[0], names[2] + tid, encode(_TradeP(
            VENUE, names[1], d.trade_time * MS, frame.ts_recv, tid, d.p, d.q,
            "sell" if d.m else "buy", True,
        ))))]  # fmt: skip

    return _aggTrade


def _depth_handler(
    decode: Callable[[bytes], Any], *, futures: bool
) -> Callable[[Any, Frame], list[Out]]:
    """The depth handler of a market: USDⓈ-M's updates carry ``pu`` (the previous update's
    ``u``), spot's do not."""

    def _depth(self: _Binance, frame: Frame) -> list[Out]:
        d = decode(frame.data).data
        s = d.s
        if d.e != "depthUpdate":
            self._event(d.e, "depthUpdate", "depth")
        if s != frame.native_symbol:
            self._same(frame, s)
        first, last = d.first_id, d.last_id
        if first > last:
            raise Rejected(f"depth update with U {first} > u {last}")
        names = self._book_names.get(s) or self.names_miss("book", s)
        return [_tnew(Out, (names[0], names[2] + str(last), encode(_BookP(
            VENUE, names[1], d.event_time * MS, frame.ts_recv, False, d.b, d.a, last,
            d.prev_id if futures else None, first,
        ))))]  # fmt: skip

    return _depth


class _Binance(Parser):
    market_venue = VENUE
    venue = "binance"
    to_symbol: Callable[[str], str] = staticmethod(symbols.binance_spot)
    depth_decoder: msgspec.json.Decoder = wire.decoder(wire.Envelope[wire.DepthEvent])
    snapshot_decoder: msgspec.json.Decoder = wire.decoder(wire.DepthSnapshot)

    inline_names = (
        "trade", "book", "bbo", "mark", "funding", "ticker", "candle", "liquidation",
    )  # fmt: skip
    # channels whose plain frames run in C (_speedups.c) when it is built; the Python handler
    # takes every frame the C path refuses
    compiled_channels: ClassVar[tuple[str, ...]] = (
        "aggTrade", "trade", "bookTicker", "kline", "depth",
    )  # fmt: skip
    depth_kind: ClassVar[int] = 4  # the C Handler's kind: spot's depth (5: USDⓈ-M's, with pu)

    def __init__(self, *, compiled: bool | None = None) -> None:
        """``compiled``: run the C handlers (default: when built); False runs only Python
        (tests compare the two byte for byte)."""
        super().__init__()
        if compiled is None:
            compiled = _speedups is not None
        elif compiled and _speedups is None:
            raise RuntimeError("normalizer/venues/binance/_speedups.c is not built")
        self.compiled = compiled and bool(self.compiled_channels)
        if not self.compiled:
            return
        kinds = {"aggTrade": (0, self._trade_names), "trade": (1, self._trade_names),
                 "bookTicker": (2, self._bbo_names), "kline": (3, self._candle_names),
                 "depth": (self.depth_kind, self._book_names)}  # fmt: skip
        for channel in self.compiled_channels:
            kind, names = kinds[channel]
            self._dispatch[channel] = _speedups.Handler(
                kind, VENUE, Out, names, self._dispatch[channel]
            )

    @staticmethod
    def _event(got: str, want: str, channel: str) -> None:
        if got != want:
            raise Rejected(f"unexpected event {got!r} on the {channel} channel")

    def _checked(
        self, frame: Frame, decode: Callable[[bytes], Any], event: str, channel: str
    ) -> Any:
        """``frame``'s event, decoded, its type and symbol checked: the preamble of the
        handlers of the quieter channels. The hot ones (trade, aggTrade, depth, bookTicker,
        kline) write it out inline: through this call a pure-Python USDⓈ-M aggTrade frame
        took 136-163 ns (9-10%) longer (A/B, best of 60 passes, 3 rounds)."""
        d = decode(frame.data).data
        if d.e != event:
            self._event(d.e, event, channel)
        if d.s != frame.native_symbol:
            self._same(frame, d.s)
        return d

    # -- trades ------------------------------------------------------------------------
    # The hottest channels are written out flat: a helper call per check cost more than the
    # typed decode in a profile (checks still run; only their failure path is a call). Each
    # message is built positionally (:func:`positional`) and wrapped in ``Out`` by ``_tnew``.
    def _trade(self, frame: Frame) -> list[Out]:
        d = _trade_decode(frame.data).data
        s = d.s
        if d.e != "trade":
            self._event(d.e, "trade", "trade")
        if s != frame.native_symbol:
            self._same(frame, s)
        if d.X != "MARKET":
            return self._off_book(d.X)
        names = self._trade_names.get(s) or self.names_miss("trade", s)
        tid = str(d.t)
        return [_tnew(Out, (names[0], names[2] + tid, encode(_TradeP(
            VENUE, names[1], d.trade_time * MS, frame.ts_recv, tid, d.p, d.q,
            "sell" if d.m else "buy",  # m: the maker bought
        ))))]  # fmt: skip

    # handler names follow the channel names; USDⓈ-M's aggTrade has its own field order
    _aggTrade = _agg_trade_handler(_agg_decode)

    # -- book ----------------------------------------------------------------------------
    _depth = _depth_handler(depth_decoder.decode, futures=False)

    def _snapshot(self, frame: Frame) -> list[Out]:
        d = self.snapshot_decoder.decode(frame.data)
        _, symbol = self._names("book", frame.native_symbol)
        # spot REST depth carries no exchange time: the receive time is the best we have
        event_ms = getattr(d, "event_time", None)
        msg = schemas.Book(
            venue=VENUE, symbol=symbol,
            ts_event=event_ms * MS if event_ms else frame.ts_recv, ts_recv=frame.ts_recv,
            snapshot=True, bids=d.bids, asks=d.asks, seq=d.lastUpdateId,
        )  # fmt: skip
        return [self._out("book", frame.native_symbol, f"snap{d.lastUpdateId}", msg)]

    def _bookTicker(self, frame: Frame) -> list[Out]:
        d = _book_ticker_decode(frame.data).data
        s = d.s
        if s != frame.native_symbol:
            self._same(frame, s)
        names = self._bbo_names.get(s) or self.names_miss("bbo", s)
        ts_recv = frame.ts_recv
        u = d.u
        event_ms = d.event_time  # futures only
        return [_tnew(Out, (names[0], names[2] + str(u), encode(_BBOP(
            VENUE, names[1], event_ms * MS if event_ms else ts_recv, ts_recv,
            d.b, d.B, d.a, d.A, u,
        ))))]  # fmt: skip

    # -- ticker / candles ----------------------------------------------------------------
    def _ticker(self, frame: Frame) -> list[Out]:
        d = self._checked(frame, _ticker_decode, "24hrTicker", "ticker")
        s = d.s
        names = self._ticker_names.get(s) or self.names_miss("ticker", s)
        event_ms = d.event_time
        return [_tnew(Out, (names[0], names[2] + str(event_ms), encode(_TickerP(
            VENUE, names[1], event_ms * MS, frame.ts_recv,
            d.c, d.b, d.a, d.o, d.h, d.l, d.v, d.q,
        ))))]  # fmt: skip

    def _kline(self, frame: Frame) -> list[Out]:
        d = _kline_decode(frame.data).data
        s = d.s
        if d.e != "kline":
            self._event(d.e, "kline", "kline")
        if s != frame.native_symbol:
            self._same(frame, s)
        k = d.k
        names = self._candle_names.get(s) or self.names_miss("candle", s)
        event_ms, interval, open_ms = d.event_time, k.i, k.t
        return [_tnew(Out, (names[0], f"{names[2]}{interval}:{open_ms}:{event_ms}", encode(
            _CandleP(VENUE, names[1], event_ms * MS, frame.ts_recv, interval, open_ms * MS,
                     k.o, k.h, k.l, k.c, k.v, k.x, k.n),
        )))]  # fmt: skip

    # -- reference data and connection events -----------------------------------------
    def _instruments(self, frame: Frame) -> list[Out]:
        info = _info.decode(frame.data)
        out = []
        for s in info.symbols:
            tick, lot = _tick_lot(s.filters)
            if not tick or not lot:
                continue  # not tradable as described; nothing sensible to publish
            msg = schemas.Instrument(
                venue=VENUE, symbol=f"{s.baseAsset}-{s.quoteAsset}",
                ts_event=info.serverTime * MS, ts_recv=frame.ts_recv, native_symbol=s.symbol,
                kind="spot", base=s.baseAsset, quote=s.quoteAsset, tick_size=tick,
                lot_size=lot, active=s.status == "TRADING",
            )  # fmt: skip
            out.append(self.instrument_out(msg, frame))
        return out


def _tick_lot(filters: list[wire.SymbolFilter]) -> tuple[float | None, float | None]:
    tick = next((f.tickSize for f in filters if f.filterType == "PRICE_FILTER"), None)
    lot = next((f.stepSize for f in filters if f.filterType == "LOT_SIZE"), None)
    return tick, lot


class BinanceSpotParser(_Binance):
    venue = "binance"
    channels = {
        "trade": "trade", "aggTrade": "trade", "depth": "book", "snapshot": "book",
        "bookTicker": "bbo", "ticker": "ticker", "kline": "candle",
        "instruments": "instrument", "conn": "gap", "control": "",
    }  # fmt: skip


class BinanceUsdmParser(_Binance):
    venue = "binanceusdm"
    to_symbol = staticmethod(symbols.binance_usdm)
    depth_decoder = wire.decoder(wire.Envelope[wire.FuturesDepthEvent])  # requires pu
    snapshot_decoder = wire.decoder(wire.FuturesDepthSnapshot)
    depth_kind = 5
    _aggTrade = _agg_trade_handler(_agg_usdm.decode)
    _depth = _depth_handler(depth_decoder.decode, futures=True)
    channels = {
        **BinanceSpotParser.channels,
        "markPrice": "mark+funding", "forceOrder": "liquidation", "openInterest": "open_interest",
        "globalLongShortAccountRatio-<period>": "long_short_ratio",
        "topLongShortAccountRatio-<period>": "long_short_ratio",
        "topLongShortPositionRatio-<period>": "long_short_ratio",
        "takerlongshortRatio-<period>": "taker_volume",
        "openInterestHist-<period>": "open_interest_hist",
    }  # fmt: skip
    handler_of = {
        "globalLongShortAccountRatio-<period>": "_ls_global",
        "topLongShortAccountRatio-<period>": "_ls_top_accounts",
        "topLongShortPositionRatio-<period>": "_ls_top_positions",
        "takerlongshortRatio-<period>": "_taker",
        "openInterestHist-<period>": "_oi_hist",
    }

    # -- futures/data history: one frame = one page of period rows -----------------------
    def _unlisted(self, channel: str) -> Callable[[Frame], list[Out]]:
        """``<endpoint>-<period>``: the history channels for any of Binance's periods."""
        endpoint, _, period = channel.rpartition("-")
        handler = self._dispatch.get(f"{endpoint}-<period>")
        if handler is None or period not in PERIODS:
            return super()._unlisted(channel)
        return handler

    @staticmethod
    def _period(frame: Frame) -> str:
        return frame.channel.rpartition("-")[2]

    def _ls(self, frame: Frame, kind: str) -> list[Out]:
        period = self._period(frame)
        native = frame.native_symbol
        _, symbol = self._names("long_short_ratio", native)
        out = []
        for r in _ls_rows.decode(frame.data):
            self._row_symbol(frame, r.symbol or r.pair)
            long = r.longAccount if r.longAccount is not None else r.longPosition
            short = r.shortAccount if r.shortAccount is not None else r.shortPosition
            msg = schemas.LongShortRatio(
                venue=VENUE, symbol=symbol, ts_event=r.timestamp * MS, ts_recv=frame.ts_recv,
                kind=kind, period=period, ratio=r.longShortRatio,  # type: ignore[arg-type]
                long_share=long, short_share=short,
            )  # fmt: skip
            out.append(self._out("long_short_ratio", native, f"{kind}:{period}:{r.timestamp}", msg))
        return out

    def _row_symbol(self, frame: Frame, native: str) -> None:
        if native and native != frame.native_symbol:
            raise Rejected(f"symbol {native!r} in a frame published for {frame.native_symbol!r}")

    def _ls_global(self, frame: Frame) -> list[Out]:
        return self._ls(frame, "global_accounts")

    def _ls_top_accounts(self, frame: Frame) -> list[Out]:
        return self._ls(frame, "top_accounts")

    def _ls_top_positions(self, frame: Frame) -> list[Out]:
        return self._ls(frame, "top_positions")

    def _history(
        self, frame: Frame, rows: msgspec.json.Decoder, kind: type[schemas.Base],
        symbol_of: Callable[[Any], str], fields_of: Callable[[Any], dict[str, Any]],
    ) -> list[Out]:  # fmt: skip
        """One message of ``kind`` per period row of a futures/data page: each row's symbol
        (``symbol_of``, "" when rows carry none) checked, its fields from ``fields_of``."""
        period = self._period(frame)
        out = []
        for r in rows.decode(frame.data):
            self._row_symbol(frame, symbol_of(r))
            out.append(self.emit(
                kind, frame.native_symbol, f"{period}:{r.timestamp}", frame, r.timestamp * MS,
                period=period, **fields_of(r),
            ))  # fmt: skip
        return out

    def _taker(self, frame: Frame) -> list[Out]:
        return self._history(
            frame, _taker_rows, schemas.TakerVolume, lambda r: "",
            lambda r: {"buy_volume": r.buyVol, "sell_volume": r.sellVol},
        )  # fmt: skip

    def _oi_hist(self, frame: Frame) -> list[Out]:
        return self._history(
            frame, _oih_rows, schemas.OpenInterestHist, lambda r: r.symbol,
            lambda r: {"open_interest": r.sumOpenInterest,
                       "open_interest_value": r.sumOpenInterestValue},
        )  # fmt: skip

    def _markPrice(self, frame: Frame) -> list[Out]:
        d = self._checked(frame, _mark_decode, "markPriceUpdate", "markPrice")
        s = d.s
        names = self._mark_names.get(s) or self.names_miss("mark", s)
        ts, ts_recv, natural = d.event_time * MS, frame.ts_recv, str(d.event_time)
        mark = _tnew(Out, (names[0], names[2] + natural, encode(_MarkP(
            VENUE, names[1], ts, ts_recv, d.p, d.i,
        ))))  # fmt: skip
        # A dated contract: a mark price but no funding. Binance writes it either way:
        # "r":"" (documented) or "r":"0.00000000","T":0 (seen live): no next funding time
        # means no funding applies, so a rate of 0 there is not a funding rate.
        if d.r == "" or not d.T:
            return [mark]
        names = self._funding_names.get(s) or self.names_miss("funding", s)
        return [mark, _tnew(Out, (names[0], names[2] + natural, encode(_FundingP(
            VENUE, names[1], ts, ts_recv, d.r, d.T * MS,
        ))))]  # fmt: skip

    def _off_book(self, kind: str) -> list[Out]:
        """A USDⓈ-M ``trade`` whose execution type ``X`` is not MARKET: dropped, counted
        (see the module docstring for why)."""
        known = kind if kind in OFF_BOOK else "other"  # a bounded label set
        SKIPPED.labels(self.venue, f"off-book trade X={known}").inc()
        return []

    def _liquidation_order(self, frame: Frame) -> wire.ForceOrder:
        """A forceOrder frame's order, decoded, the event type and its symbol checked."""
        d = _force_decode(frame.data).data
        if d.e != "forceOrder":
            self._event(d.e, "forceOrder", "forceOrder")
        self._same(frame, d.o.s)
        return d.o  # type: ignore[no-any-return]

    def _forceOrder(self, frame: Frame) -> list[Out]:
        o = self._liquidation_order(frame)
        s = o.s
        names = self._liquidation_names.get(s) or self.names_miss("liquidation", s)
        natural = f"{o.T}:{o.S}:{frame.raw_seq}"
        return [new_out((names[0], names[2] + natural, encode(Liquidation(
            venue=VENUE, symbol=names[1], ts_event=o.T * MS, ts_recv=frame.ts_recv,
            side=LIQUIDATION_SIDE.get(o.S, "unknown"),  # type: ignore[arg-type]
            price=o.ap or o.p, size=o.z or o.q, id=natural,
        ))))]  # fmt: skip

    def _openInterest(self, frame: Frame) -> list[Out]:
        d = _oi.decode(frame.data)
        self._same(frame, d.symbol)
        _, symbol = self._names("open_interest", d.symbol)
        msg = schemas.OpenInterest(
            venue=VENUE, symbol=symbol, ts_event=d.time * MS, ts_recv=frame.ts_recv,
            open_interest=d.openInterest,
        )  # fmt: skip
        return [self._out("open_interest", d.symbol, d.time, msg)]

    def _instruments(self, frame: Frame) -> list[Out]:
        info = _finfo.decode(frame.data)
        out = []
        for s in info.symbols:
            tick, lot = _tick_lot(s.filters)
            if not tick or not lot or not s.contractType:
                continue
            try:
                symbol = symbols.binance_usdm(s.symbol)
            except ValueError:
                continue  # an index or settlement symbol outside our naming scheme
            perp = s.contractType == "PERPETUAL"
            msg = schemas.Instrument(
                venue=VENUE, symbol=symbol, ts_event=info.serverTime * MS,
                ts_recv=frame.ts_recv, native_symbol=s.symbol,
                kind="perpetual" if perp else "future", base=s.baseAsset, quote=s.quoteAsset,
                settle=s.marginAsset or s.quoteAsset, tick_size=tick, lot_size=lot,
                expiry_ts=None if perp else s.deliveryDate * MS,
                active=s.status == "TRADING",
            )  # fmt: skip
            out.append(self.instrument_out(msg, frame))
        return out


_ckline, _coi, _cinfo = (wire.decoder(wire.Envelope[wire.CoinmKlineEvent]),
                         wire.decoder(wire.CoinmOpenInterest),
                         wire.decoder(wire.CoinmExchangeInfo))  # fmt: skip


class BinanceCoinmParser(BinanceUsdmParser):
    """COIN-M futures (raw venue token ``binancecoinm``, ccxt's id): the USDⓈ-M protocol on
    dstream/dapi with inverse contracts. Symbols ``BTCUSD_PERP`` -> ``BTC-USD-PERP``,
    ``BTCUSD_251226`` -> ``BTC-USD-20251226`` (venue ``binance``; USDⓈ-M never quotes USD).

    Sizes are base units, as for every inverse venue here (Bybit inverse, Deribit, OKX
    inverse): Binance counts contracts of ``contractSize`` USD (100 for BTC, 10 for the
    others), so base = contracts * contractSize / price, at the trade's, level's or order's
    own price. ``contractSize`` comes only from the ``instruments`` frame (exchangeInfo,
    published by the collector before it connects), so re-normalizing RAW in order gives the
    same sizes; a frame of a symbol not yet described is Rejected, never published in
    contracts. Where Binance gives the base volume itself (kline and ticker ``q``) we take it
    (``v`` counts contracts); open interest (contracts) is converted at the last mark price
    seen on ``markPrice`` (Rejected before any)."""

    venue = "binancecoinm"
    to_symbol = staticmethod(symbols.binance_coinm)
    compiled_channels = ()  # its handlers convert contracts: Python only

    channels = {
        **{k: v for k, v in BinanceUsdmParser.channels.items()
           if k != "takerlongshortRatio-<period>"},
        "takerBuySellVol-<period>": "taker_volume",
    }  # fmt: skip
    handler_of = {
        **{k: v for k, v in BinanceUsdmParser.handler_of.items()
           if k != "takerlongshortRatio-<period>"},
        "takerBuySellVol-<period>": "_taker_coinm",
    }  # fmt: skip

    def __init__(self, *, compiled: bool | None = None) -> None:
        super().__init__(compiled=compiled)
        self.contract_size: dict[str, float] = {}  # native -> USD per contract
        self.mark_price: dict[str, float] = {}  # native -> last mark (open interest)

    def _cs(self, native: str) -> float:
        cs = self.contract_size.get(native)
        if cs is None:
            raise Rejected(
                f"contract size of COIN-M {native!r} unknown: no instruments frame for it yet"
            )
        return cs

    def _levels(self, native: str, levels: list[tuple[float, float]]) -> list[tuple[float, float]]:
        cs = self._cs(native)
        return [(p, q * cs / p) for p, q in levels]

    def _trade(self, frame: Frame) -> list[Out]:
        d = self._checked(frame, _trade_decode, "trade", "trade")
        if d.X != "MARKET":
            return self._off_book(d.X)
        tid = str(d.t)
        return [
            self.emit(
                Trade,
                d.s,
                tid,
                frame,
                d.trade_time * MS,
                id=tid,
                price=d.p,
                size=d.q * self._cs(d.s) / d.p,
                side="sell" if d.m else "buy",
            )
        ]

    def _aggTrade(self, frame: Frame) -> list[Out]:
        d = self._checked(frame, _agg_decode, "aggTrade", "aggTrade")
        tid = f"a{d.a}"
        return [self.emit(Trade, d.s, tid, frame, d.trade_time * MS, id=tid, price=d.p,
                          size=d.q * self._cs(d.s) / d.p, side="sell" if d.m else "buy",
                          aggregated=True)]  # fmt: skip

    def _depth(self, frame: Frame) -> list[Out]:
        d = self._checked(frame, self.depth_decoder.decode, "depthUpdate", "depth")
        if d.first_id > d.last_id:
            raise Rejected(f"depth update with U {d.first_id} > u {d.last_id}")
        return [
            self.emit(
                Book,
                d.s,
                d.last_id,
                frame,
                d.event_time * MS,
                snapshot=False,
                bids=self._levels(d.s, d.b),
                asks=self._levels(d.s, d.a),
                seq=d.last_id,
                first_seq=d.first_id,
                prev_seq=d.prev_id,
            )
        ]

    def _snapshot(self, frame: Frame) -> list[Out]:
        d = self.snapshot_decoder.decode(frame.data)
        native = frame.native_symbol
        return [
            self.emit(
                Book,
                native,
                f"snap{d.lastUpdateId}",
                frame,
                d.event_time * MS,
                snapshot=True,
                bids=self._levels(native, d.bids),
                asks=self._levels(native, d.asks),
                seq=d.lastUpdateId,
            )
        ]

    def _bookTicker(self, frame: Frame) -> list[Out]:
        d = _book_ticker_decode(frame.data).data
        self._same(frame, d.s)
        cs = self._cs(d.s)
        ts = d.event_time * MS if d.event_time else frame.ts_recv
        return [
            self.emit(
                BBO,
                d.s,
                d.u,
                frame,
                ts,
                bid_price=d.b,
                bid_size=d.B * cs / d.b,
                ask_price=d.a,
                ask_size=d.A * cs / d.a,
                seq=d.u,
            )
        ]

    def _ticker(self, frame: Frame) -> list[Out]:
        d = self._checked(frame, _ticker_decode, "24hrTicker", "ticker")
        # v counts contracts (USD notional = v * contractSize); q is the base volume
        return [self.emit(Ticker, d.s, d.event_time, frame, d.event_time * MS, last=d.c,
                          open_24h=d.o, high_24h=d.h, low_24h=d.l, volume_24h=d.q,
                          quote_volume_24h=d.v * self._cs(d.s))]  # fmt: skip

    def _kline(self, frame: Frame) -> list[Out]:
        d = self._checked(frame, _ckline.decode, "kline", "kline")
        k = d.k
        return [self.emit(Candle, d.s, f"{k.i}:{k.t}:{d.event_time}", frame, d.event_time * MS,
                          interval=k.i, ts_open=k.t * MS, open=k.o, high=k.h, low=k.l,
                          close=k.c, volume=k.q, closed=k.x, trades=k.n)]  # fmt: skip

    def _markPrice(self, frame: Frame) -> list[Out]:
        out = super()._markPrice(frame)
        d = _mark_decode(frame.data).data
        self.mark_price[d.s] = d.p  # open interest converts at it
        return out

    def _forceOrder(self, frame: Frame) -> list[Out]:
        o = self._liquidation_order(frame)
        price = o.ap or o.p
        natural = f"{o.T}:{o.S}:{frame.raw_seq}"
        return [self.emit(Liquidation, o.s, natural, frame, o.T * MS,
                          side=LIQUIDATION_SIDE.get(o.S, "unknown"), price=price,
                          size=(o.z or o.q) * self._cs(o.s) / price, id=natural)]  # fmt: skip

    def _openInterest(self, frame: Frame) -> list[Out]:
        d = _coi.decode(frame.data)
        self._same(frame, d.symbol)
        cs, mark = self._cs(d.symbol), self.mark_price.get(d.symbol)
        if not mark:
            raise Rejected(f"COIN-M open interest of {d.symbol} before any mark price")
        usd = d.openInterest * cs
        return [
            self.emit(
                schemas.OpenInterest,
                d.symbol,
                d.time,
                frame,
                d.time * MS,
                open_interest=usd / mark,
                open_interest_value=usd,
            )
        ]

    def _instruments(self, frame: Frame) -> list[Out]:
        info = _cinfo.decode(frame.data)
        out = []
        for s in info.symbols:
            tick, lot = _tick_lot(s.filters)
            if not tick or not lot or not s.contractType or s.contractSize <= 0:
                continue
            try:
                symbol = symbols.binance_coinm(s.symbol)
            except ValueError:
                continue  # outside our naming scheme
            self.contract_size[s.symbol] = s.contractSize
            perp = s.contractType == "PERPETUAL"
            msg = schemas.Instrument(
                venue=VENUE, symbol=symbol, ts_event=info.serverTime * MS,
                ts_recv=frame.ts_recv, native_symbol=s.symbol,
                kind="perpetual" if perp else "future", base=s.baseAsset, quote=s.quoteAsset,
                settle=s.marginAsset or s.baseAsset, tick_size=tick, lot_size=lot,
                contract_size=s.contractSize, expiry_ts=None if perp else s.deliveryDate * MS,
                active=s.contractStatus == "TRADING",
            )  # fmt: skip
            out.append(self.instrument_out(msg, frame))
        return out

    # -- futures/data history: per pair (BTCUSD), perpetual contracts (collectors) ---------
    def _row_symbol(self, frame: Frame, native: str) -> None:
        pair = frame.native_symbol.partition("_")[0]
        if native and native != pair:
            raise Rejected(f"pair {native!r} in a frame published for {frame.native_symbol!r}")

    def _taker_coinm(self, frame: Frame) -> list[Out]:
        """Base volume is Binance's ``*VolValue``; the USD value is contracts x size."""
        cs = self._cs(frame.native_symbol)
        return self._history(
            frame, _coinm_taker_rows, schemas.TakerVolume, lambda r: r.pair,
            lambda r: {"buy_volume": r.takerBuyVolValue, "sell_volume": r.takerSellVolValue,
                       "buy_value": r.takerBuyVol * cs, "sell_value": r.takerSellVol * cs},
        )  # fmt: skip

    def _oi_hist(self, frame: Frame) -> list[Out]:
        """Base units are Binance's ``sumOpenInterestValue``; USD is contracts x size."""
        cs = self._cs(frame.native_symbol)
        return self._history(
            frame, _coinm_oih_rows, schemas.OpenInterestHist, lambda r: r.pair,
            lambda r: {"open_interest": r.sumOpenInterestValue,
                       "open_interest_value": r.sumOpenInterest * cs},
        )  # fmt: skip
