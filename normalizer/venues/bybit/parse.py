"""Bybit v5 raw frames -> typed jetmarket messages, one parser per category.

Raw venue tokens ``bybit_spot``, ``bybit_linear``, ``bybit_inverse``, ``bybit_option``
(spot ``BTCUSDT`` and linear ``BTCUSDT`` are different instruments, so the category must be
in the subject);
all normalize to venue ``bybit`` and the symbol tells the market. Channel map, raw channel
(the topic's first token) -> market type:

| channel        | becomes                                                          |
|----------------|------------------------------------------------------------------|
| publicTrade    | trade (``i``), side = taker side ``S``                            |
| orderbook      | ``orderbook.50/200``: book (seq = ``u``; snapshot, or ``u == 1``) |
|                | ``orderbook.1``: bbo                                              |
| tickers        | ticker, mark, funding, open_interest (deltas merged per symbol)   |
| kline          | candle                                                           |
| allLiquidation | liquidation (side of the liquidation order: opposite the position)|
| instruments    | instrument (REST instruments-info)                               |
| conn           | gap(reconnect) per symbol on disconnect                           |
| control        | nothing (subscribe acks, pongs)                                  |

Options (``bybit_option``, :class:`BybitOptionParser`): ``tickers`` -> ticker, mark,
open_interest and option_greeks (IVs are fractions already, greeks Black-Scholes in
USD(C)); ``orderbook.25``/``.100`` -> book; ``publicTrade.<BASE>`` -> trade (one topic per
base coin); instruments -> instrument (kind option, strike, call/put). Sizes in the coin.

Sizes: spot, linear and option quantities are already base units. Inverse quantities are USD
contracts (1 USD each): base = contracts / price. An inverse frame is only converted once
the instruments frame has described that symbol (else Rejected: we would be guessing).

Quirks of the real feed (regression tests in tests/venues/bybit/test_real_frames.py):

- ``orderbook.1`` (the BBO, made here, not in orderbook/): a delta lists its changes in
  order, and one whose side starts with a removal, ``"b":[["27994.60","0"],["27991.70",
  "0.777"]]``, means "old best gone, new best 27991.70". Rows are applied in order to the
  held side, so the BBO tracks the depth-1 book; a one-sided delta keeps the other side.
- Bybit v2 frames (``realtime``/``realtime_public``: topics ``trade.X``,
  ``orderBookL2_25.X``) of a replayed old capture are dead-lettered as "a Bybit v2 frame
  ...: jetmarket speaks v5", not as an unknown channel.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from msgspec.structs import astuple

from normalizer.venues.base import Frame, Out, Parser, Rejected, encode, json_or_none, new_out
from normalizer.venues.bybit import wire
from streams import schemas
from streams.symbols import bybit as symbols
from streams.symbols import option_terms

VENUE = "bybit"
MS = 1_000_000
INTERVALS = {
    "1": "1m", "3": "3m", "5": "5m", "15": "15m", "30": "30m", "60": "1h", "120": "2h",
    "240": "4h", "360": "6h", "720": "12h", "D": "1d", "W": "1w", "M": "1M",
}  # fmt: skip

_trade, _kline, _liq = (wire.decoder(wire.Push[row]) for row in (wire.Trade, wire.Kline,
                                                                   wire.Liquidation))  # fmt: skip
_book, _ticker, _instruments = map(wire.decoder, (wire.BookFrame, wire.TickerFrame,
                                                  wire.Instruments))  # fmt: skip
_option_ticker = wire.decoder(wire.OptionTickerFrame)
_account_ratio = wire.decoder(wire.Reply[wire.AccountRatioRow])
_oi_hist = wire.decoder(wire.Reply[wire.OpenInterestRow])
# REST history channels ``<endpoint>-<period>`` (collectors/bybit.py, positioning.py)
PERIODS = frozenset({"5m", "15m", "30m", "1h", "4h", "1d"})
POSITIONING = {"account_ratio-<period>": "long_short_ratio"}
LINEAR_POSITIONING = {**POSITIONING, "open_interest_hist-<period>": "open_interest_hist"}
# bound ``decode`` of the hot channels' decoders (the Decoders stay module attributes:
# fuzz/fuzzers.py shapes frames from them)
_ticker_decode = _ticker.decode
_trade_decode = _trade.decode
_book_decode = _book.decode
Trade, Book, Ticker, Mark, Funding, OpenInterest = (
    schemas.Trade, schemas.Book, schemas.Ticker, schemas.Mark, schemas.Funding,
    schemas.OpenInterest,
)  # fmt: skip
TAKER = {"Buy": "buy", "Sell": "sell"}
# topics of the retired v2 API (v5 names them publicTrade, orderbook, tickers, kline)
V2_TOPICS = frozenset({
    "trade", "orderBookL2_25", "orderBookL2_200", "orderBook_200", "orderBook25_v2",
    "instrument_info", "klineV2", "candle", "insurance", "kline_v2",
})  # fmt: skip

# The ticker state is a list in FIELDS order (wire.TickerData's, after ``symbol``) of
# floats or None (unknown): unpacked into locals by one C-level step per frame.
FIELDS = (
    "lastPrice", "bid1Price", "ask1Price", "highPrice24h", "lowPrice24h", "prevPrice24h",
    "volume24h", "turnover24h", "markPrice", "indexPrice", "fundingRate", "nextFundingTime",
    "openInterest", "openInterestValue",
)  # fmt: skip
if wire.TickerData.__struct_fields__ != ("symbol", *FIELDS):
    raise ImportError("bybit: FIELDS must follow wire.TickerData's field order")
_IX = {k: i for i, k in enumerate(FIELDS)}
TICKER_IX = frozenset(_IX[k] for k in FIELDS[:8])  # last .. turnover24h
MARK_IX = frozenset((_IX["markPrice"], _IX["indexPrice"]))
FUNDING_IX = frozenset((_IX["fundingRate"], _IX["nextFundingTime"]))
OI = _IX["openInterest"]


def _f(text: str | None) -> float | None:
    """A ticker field: ``None``/``""`` mean unknown; anything else must be a finite number."""
    if not text:
        return None
    try:
        v = float(text)
    except ValueError:
        raise Rejected(f"not a number: {text[:40]!r}") from None
    if not math.isfinite(v):
        raise Rejected(f"not a finite number: {text[:40]!r}")
    return v


class _Bybit(Parser):
    market_venue = VENUE
    venue = "bybit_linear"
    category = "linear"
    inverse = False
    channels = {
        "publicTrade": "trade", "orderbook": "book|bbo",
        "tickers": "ticker+mark+funding+open_interest",
        "kline": "candle", "allLiquidation": "liquidation", "instruments": "instrument",
        "conn": "gap", "control": "",
    }  # fmt: skip

    inline_names = ("trade", "book", "ticker", "mark", "funding", "open_interest")

    def __init__(self) -> None:
        super().__init__()
        # Per-symbol state, a deterministic function of the raw frames in stream order:
        self.tickers: dict[str, list[float | None]] = {}  # last known FIELDS
        self.bbo: dict[str, list[tuple[float, float] | None]] = {}  # orderbook.1 sides
        self.known: dict[str, int] = {}  # inverse: native -> delivery ms (0 = perpetual)

    handler_of = {
        "account_ratio-<period>": "_account_ratio",
        "open_interest_hist-<period>": "_open_interest_hist",
    }

    # -- REST history: account ratio and open interest, one page of periods a frame -------
    def _unlisted(self, channel: str) -> Callable[[Frame], list[Out]]:
        endpoint, _, period = channel.rpartition("-")
        if f"{endpoint}-<period>" in self.channels and period in PERIODS:
            return getattr(self, f"_{endpoint}")  # type: ignore[no-any-return]
        return super()._unlisted(channel)

    @staticmethod
    def _reply(reply: wire.Reply, frame: Frame) -> None:  # type: ignore[type-arg]
        if reply.retCode != 0:
            raise Rejected(f"Bybit error {reply.retCode}: {reply.retMsg[:200]}")

    def _account_ratio(self, frame: Frame) -> list[Out]:
        """``buyRatio``/``sellRatio``: shares of accounts long/short; ratio = their quotient."""
        period = frame.channel.rpartition("-")[2]
        reply = _account_ratio.decode(frame.data)
        self._reply(reply, frame)
        _, symbol = self._names("long_short_ratio", frame.native_symbol)
        out = []
        for r in reply.result.rows:
            self._same(frame, r.symbol)
            if not r.sellRatio:
                raise Rejected(f"sellRatio 0 at {r.timestamp}: no long/short ratio")
            msg = schemas.LongShortRatio(
                venue=VENUE, symbol=symbol, ts_event=r.timestamp * MS, ts_recv=frame.ts_recv,
                kind="global_accounts", period=period, ratio=r.buyRatio / r.sellRatio,
                long_share=r.buyRatio, short_share=r.sellRatio,
            )  # fmt: skip
            natural = f"global_accounts:{period}:{r.timestamp}"
            out.append(self._out("long_short_ratio", frame.native_symbol, natural, msg))
        return out

    def _open_interest_hist(self, frame: Frame) -> list[Out]:
        period = frame.channel.rpartition("-")[2]
        reply = _oi_hist.decode(frame.data)
        self._reply(reply, frame)
        if reply.result.symbol:
            self._same(frame, reply.result.symbol)
        return [
            self.history_out(schemas.OpenInterestHist, frame, period, r.timestamp,
                             open_interest=r.openInterest)
            for r in reply.result.rows
        ]  # fmt: skip

    def retired(self, data: bytes) -> str | None:
        """Bybit v2 (``realtime``/``realtime_public``, retired 2023): topics ``trade.X``,
        ``orderBookL2_25.X``, ``klineV2...``, and subscribe replies that echo ``request``."""
        body = json_or_none(data)
        if not isinstance(body, dict):
            return None
        topic = body.get("topic")
        if isinstance(topic, str):
            head, parts = topic.partition(".")[0], topic.count(".") + 1
            # v2 trades are trade.<symbol>; other v2 topics are named unlike any v5 one
            if head in V2_TOPICS and (head != "trade" or parts == 2):
                return f"a Bybit v2 frame (topic {topic[:60]!r}): jetmarket speaks v5"
            return (
                f"a Bybit topic {topic[:60]!r} that jetmarket's collector does not subscribe "
                "(v5 names: publicTrade, orderbook, tickers, kline, allLiquidation)"
            )
        if "request" in body and "ret_msg" in body:
            return "a Bybit v2 subscribe reply: jetmarket speaks v5"
        return None

    # -- names and sizes -----------------------------------------------------------------
    def to_symbol(self, native: str) -> str:
        if not self.inverse:
            return symbols.TO_SYMBOL[self.category](native)
        expiry = self.known.get(native)
        if expiry is None:
            raise ValueError(
                f"contract size of inverse {native!r} unknown: no instruments frame for it yet"
            )
        return symbols.inverse(native, expiry or None)

    def _symbol(self, frame: Frame, native: str) -> str:
        """``native``, the one symbol a whole-frame channel (book, ticker) is about, after
        :meth:`_same`'s check."""
        if native != frame.native_symbol:
            self._same(frame, native)
        return native

    def _size(self, qty: float, price: float) -> float:
        return qty / price if self.inverse else qty

    def _levels(self, levels: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if not self.inverse:
            return levels
        return [(p, q / p) for p, q in levels]

    # -- trades --------------------------------------------------------------------------
    # The hot channels are written out flat: helper calls per check and per message cost
    # more than the typed decode in a profile (checks still run in the same order).
    def _publicTrade(self, frame: Frame) -> list[Out]:  # handler names follow the channels
        f = _trade_decode(frame.data)
        native, ts_recv, inverse = frame.native_symbol, frame.ts_recv, self.inverse
        names = None
        out = []
        for t in f.data:
            s = t.s
            if s != native:
                self._same(frame, s)
            if names is None:
                names = self._trade_names.get(s) or self.names_miss("trade", s)
            p = t.p
            out.append(new_out((names[0], names[2] + t.i, encode(Trade(
                venue=VENUE, symbol=names[1], ts_event=t.T * MS, ts_recv=ts_recv,
                id=t.i, price=p, size=t.v / p if inverse else t.v,
                side=TAKER.get(t.S, "unknown"),  # type: ignore[arg-type]
            )))))  # fmt: skip
        return out

    # -- book / bbo ----------------------------------------------------------------------
    def _orderbook(self, frame: Frame) -> list[Out]:
        f = _book_decode(frame.data)
        d = f.data
        s = self._symbol(frame, d.s)
        kind = f.type
        if kind != "delta" and kind != "snapshot":
            raise Rejected(f"unknown orderbook type {kind!r}")
        if f.topic.startswith("orderbook.1."):
            return self._bbo(frame, f)
        names = self._book_names.get(s) or self.names_miss("book", s)
        u = d.u
        # u == 1 on a delta: the venue restarted its book service; the message is a full book.
        snapshot = kind == "snapshot" or u == 1
        if self.inverse:
            bids, asks = self._levels(d.b), self._levels(d.a)
        else:
            bids, asks = d.b, d.a
        # A resubscribe can repeat a snapshot's u; its push time tells the two apart.
        natural = f"snap{u}-{f.ts}" if snapshot else str(u)
        return [new_out((names[0], names[2] + natural, encode(Book(
            venue=VENUE, symbol=names[1], ts_event=f.ts * MS, ts_recv=frame.ts_recv,
            snapshot=snapshot, bids=bids, asks=asks, seq=u, first_seq=u,
        ))))]  # fmt: skip

    def _bbo(self, frame: Frame, f: wire.BookFrame) -> list[Out]:
        d = f.data
        sides = self.bbo.setdefault(d.s, [None, None])
        if f.type == "snapshot" or d.u == 1:
            # a snapshot's rows are sorted best first (Bybit's documentation)
            sides[0] = d.b[0] if d.b and d.b[0][1] > 0 else None
            sides[1] = d.a[0] if d.a and d.a[0][1] > 0 else None
        else:
            # A depth-1 delta lists changes in order, e.g. "b":[["27994.60","0"],
            # ["27991.70","0.777"]]: the old best level removed, then the new one. Applied
            # row by row, the side ends on the new best; a removal of another price than
            # the one held (a late or repeated delete) leaves the side alone.
            for i, levels in ((0, d.b), (1, d.a)):
                for p, q in levels:
                    if q > 0:
                        sides[i] = (p, q)
                    elif sides[i] is not None and sides[i][0] == p:  # type: ignore[index]
                        sides[i] = None
        bid, ask = sides
        if bid is None or ask is None:
            return []  # one side empty: nothing meaningful to publish
        _, symbol = self._names("bbo", d.s)
        msg = schemas.BBO(
            venue=VENUE, symbol=symbol, ts_event=f.ts * MS, ts_recv=frame.ts_recv,
            bid_price=bid[0], bid_size=self._size(bid[1], bid[0]),
            ask_price=ask[0], ask_size=self._size(ask[1], ask[0]), seq=d.u,
        )  # fmt: skip
        return [self._out("bbo", d.s, f"{d.u}-{f.ts}", msg)]

    # -- tickers -------------------------------------------------------------------------
    def _tickers(self, frame: Frame) -> list[Out]:
        f = _ticker_decode(frame.data)
        d = f.data
        s = self._symbol(frame, d.symbol)
        raw = astuple(d)[1:]
        if None not in raw:
            # Every field present (Bybit's full snapshot): one C-level map(float). "", junk
            # or a non-finite number falls through to the per-field path, which rejects
            # with the field's reason.
            try:
                nums: list[float | None] = list(map(float, raw))  # type: ignore[arg-type]
            except ValueError:
                pass
            else:
                if math.isfinite(sum(nums)):  # type: ignore[arg-type]
                    self.tickers[s] = nums
                    return self._ticker_outs(frame, f.ts, s, nums, True, True, True, True)
        # numbers parsed once, as they change (a bad one rejects the frame before it can
        # enter the state); every output below reads floats (None: unknown). Bad input
        # (junk, non-finite or overflowing) is parsed again by _f for its reason.
        try:
            changed = {i: float(v) if v else None for i, v in enumerate(raw) if v is not None}
            if not math.isfinite(sum(filter(None, changed.values()))):  # type: ignore[arg-type]
                raise ValueError
        except ValueError:
            changed = {i: _f(v) for i, v in enumerate(raw) if v is not None}
        state = self.tickers.get(s)
        if state is None or f.type == "snapshot":
            state = self.tickers[s] = [None] * len(FIELDS)
        for i, v in changed.items():
            state[i] = v
        return self._ticker_outs(
            frame, f.ts, s, state, not TICKER_IX.isdisjoint(changed),
            not MARK_IX.isdisjoint(changed), not FUNDING_IX.isdisjoint(changed), OI in changed,
        )  # fmt: skip

    def _ticker_outs(
        self, frame: Frame, ts_ms: int, s: str, state: list[float | None],
        ticker: bool, mark: bool, funding: bool, oi_changed: bool,
    ) -> list[Out]:  # fmt: skip
        """Ticker, mark, funding and open interest from the merged state, each when one of
        its fields changed in this frame."""
        (last, bid, ask, high, low, prev, vol, turnover,
         mark_px, index_px, rate, nxt, oi, value) = state  # fmt: skip
        ts, ts_recv, natural = ts_ms * MS, frame.ts_recv, str(ts_ms)
        out = []
        if ticker:
            names = self._ticker_names.get(s) or self.names_miss("ticker", s)
            if self.inverse:  # volume24h counts USD contracts, turnover24h is in the base coin
                vol, turnover = turnover, vol
            out.append(new_out((names[0], names[2] + natural, encode(Ticker(
                venue=VENUE, symbol=names[1], ts_event=ts, ts_recv=ts_recv,
                last=last, bid=bid, ask=ask, open_24h=prev, high_24h=high, low_24h=low,
                volume_24h=vol, quote_volume_24h=turnover,
            )))))  # fmt: skip
        if mark:
            names = self._mark_names.get(s) or self.names_miss("mark", s)
            out.append(new_out((names[0], names[2] + natural, encode(Mark(
                venue=VENUE, symbol=names[1], ts_event=ts, ts_recv=ts_recv,
                mark_price=mark_px, index_price=index_px,
            )))))  # fmt: skip
        if funding and rate is not None:
            names = self._funding_names.get(s) or self.names_miss("funding", s)
            out.append(new_out((names[0], names[2] + natural, encode(Funding(
                venue=VENUE, symbol=names[1], ts_event=ts, ts_recv=ts_recv, rate=rate,
                next_funding_ts=int(nxt) * MS if nxt else None,
            )))))  # fmt: skip
        if oi_changed and oi is not None:
            # linear: openInterestValue is in the quote currency (USDT/USDC)
            if self.inverse:  # USD contracts -> base at the mark price
                if not mark_px:
                    raise Rejected("inverse open interest before any mark price")
                # openInterestValue is in the coin here; the USD value is the contract count
                oi, value = oi / mark_px, oi
            names = self._open_interest_names.get(s) or self.names_miss("open_interest", s)
            out.append(new_out((names[0], names[2] + natural, encode(OpenInterest(
                venue=VENUE, symbol=names[1], ts_event=ts, ts_recv=ts_recv,
                open_interest=oi, open_interest_value=value,
            )))))  # fmt: skip
        return out

    # -- candles / liquidations ----------------------------------------------------------
    def _kline(self, frame: Frame) -> list[Out]:
        f = _kline.decode(frame.data)
        native = f.topic.rsplit(".", 1)[-1]
        self._same(frame, native)
        _, symbol = self._names("candle", native)
        out = []
        for k in f.data:
            interval = INTERVALS.get(k.interval, k.interval)
            msg = schemas.Candle(
                venue=VENUE, symbol=symbol, ts_event=k.timestamp * MS, ts_recv=frame.ts_recv,
                interval=interval, ts_open=k.start * MS, open=k.open, high=k.high, low=k.low,
                close=k.close, closed=k.confirm,
                # inverse: volume counts USD contracts; turnover is the base-coin volume
                volume=k.turnover if self.inverse else k.volume,
            )  # fmt: skip
            out.append(self._out("candle", native, f"{interval}:{k.start}:{k.timestamp}", msg))
        return out

    def _allLiquidation(self, frame: Frame) -> list[Out]:
        f = _liq.decode(frame.data)
        out = []
        for n, q in enumerate(f.data):
            self._same(frame, q.s)
            _, symbol = self._names("liquidation", q.s)
            # S is the liquidated position's side: a long (Buy) is closed by a sell order.
            side = {"Buy": "sell", "Sell": "buy"}.get(q.S, "unknown")
            natural = f"{q.T}:{frame.raw_seq}:{n}"
            msg = schemas.Liquidation(
                venue=VENUE, symbol=symbol, ts_event=q.T * MS, ts_recv=frame.ts_recv,
                side=side, price=q.p, size=self._size(q.v, q.p), id=natural,  # type: ignore[arg-type]
            )  # fmt: skip
            out.append(self._out("liquidation", q.s, natural, msg))
        return out

    # -- reference data and connection events -----------------------------------------
    def _instruments(self, frame: Frame) -> list[Out]:
        info = _instruments.decode(frame.data)
        if info.retCode != 0:
            raise Rejected(f"instruments error {info.retCode}: {info.retMsg[:200]}")
        if info.result.category not in ("", self.category):
            raise Rejected(f"{info.result.category} instruments on the {self.category} subject")
        out = []
        for s in info.result.items:
            tick = s.priceFilter.tickSize if s.priceFilter else None
            lots = s.lotSizeFilter
            lot = (lots.qtyStep or lots.basePrecision) if lots else None
            if not tick or not lot:
                continue  # not tradable as described; nothing sensible to publish
            if self.inverse:
                self.known[s.symbol] = s.deliveryTime
            try:
                symbol = self.to_symbol(s.symbol)
            except ValueError:
                continue  # a naming scheme we do not map (e.g. pre-listing oddities)
            future = s.contractType.endswith("Futures") or self.category == "option"
            kind = "spot" if self.category == "spot" else "future" if future else "perpetual"
            strike = option_type = None
            if self.category == "option":
                kind = "option"
                strike = option_terms(symbol)[1]
                option_type = {"Call": "call", "Put": "put"}.get(s.optionsType)
            msg = schemas.Instrument(
                venue=VENUE, symbol=symbol, ts_event=(info.time or 0) * MS or frame.ts_recv,
                ts_recv=frame.ts_recv, native_symbol=s.symbol, kind=kind,  # type: ignore[arg-type]
                base=s.baseCoin, settle=s.settleCoin or None,
                # options: instruments-info says quoteCoin "USD" for USDC-settled options
                # whose premiums are USDC; the symbol's quote (USDC/USDT) is the truth
                quote=symbol.split("-")[1] if kind == "option" else s.quoteCoin,
                tick_size=tick, lot_size=lot,
                # contract_size 1: linear/spot sizes are base units; inverse ones are 1 USD
                expiry_ts=s.deliveryTime * MS if future and s.deliveryTime else None,
                strike=strike, option_type=option_type,  # type: ignore[arg-type]
                active=s.status == "Trading",
            )  # fmt: skip
            out.append(self.instrument_out(msg, frame))
        return out

    def _conn(self, frame: Frame) -> list[Out]:
        return self.reconnect_gaps(frame, skip_unknown=True)  # never-described inverse


class BybitSpotParser(_Bybit):
    venue = "bybit_spot"
    category = "spot"


class BybitLinearParser(_Bybit):
    venue = "bybit_linear"
    category = "linear"
    channels = {**_Bybit.channels, **LINEAR_POSITIONING}


class BybitOptionParser(_Bybit):
    """The ``option`` category (USDC- or USDT-settled options; sizes in the base coin).
    ``tickers`` of an option is always a full snapshot with IVs and greeks: ticker, mark,
    open interest and ``option_greeks``. Option trades are published per base coin
    (topic ``publicTrade.BTC``: raw symbol ``BTC``), each row naming its option."""

    venue = "bybit_option"
    category = "option"
    channels = {
        "publicTrade": "trade", "orderbook": "book",
        "tickers": "ticker+mark+open_interest+option_greeks",
        "instruments": "instrument", "conn": "gap", "control": "",
    }  # fmt: skip

    @staticmethod
    def _same(frame: Frame, native: str) -> None:
        """A trade push of base coin ``BTC`` carries rows of ``BTC-...`` options."""
        sub = frame.native_symbol
        if native != sub and not ("-" not in sub and native.startswith(sub + "-")):
            raise Rejected(f"symbol {native!r} in a frame published for {sub!r}")

    def _publicTrade(self, frame: Frame) -> list[Out]:
        f = _trade_decode(frame.data)
        out = []
        for t in f.data:
            s = t.s
            if s != frame.native_symbol:
                self._same(frame, s)
            names = self._trade_names.get(s) or self.names_miss("trade", s)
            out.append(new_out((names[0], names[2] + t.i, encode(Trade(
                venue=VENUE, symbol=names[1], ts_event=t.T * MS, ts_recv=frame.ts_recv,
                id=t.i, price=t.p, size=t.v, side=TAKER.get(t.S, "unknown"),  # type: ignore[arg-type]
            )))))  # fmt: skip
        return out

    def _tickers(self, frame: Frame) -> list[Out]:
        f = _option_ticker.decode(frame.data)
        d = f.data
        s = d.symbol
        self._same(frame, s)
        names = self._ticker_names.get(s) or self.names_miss("ticker", s)
        try:
            expiry, strike, kind = option_terms(names[1])
        except ValueError:
            raise Rejected(f"an option ticker of {s!r}, which is not an option") from None
        ts, natural = f.ts * MS, str(f.ts)
        bid, ask = d.bidPrice or None, d.askPrice or None
        return [
            self.emit(Ticker, s, natural, frame, ts, last=d.lastPrice or None, bid=bid,
                      ask=ask, high_24h=d.highPrice24h, low_24h=d.lowPrice24h,
                      volume_24h=d.volume24h, quote_volume_24h=d.turnover24h),
            self.emit(Mark, s, natural, frame, ts, mark_price=d.markPrice,
                      index_price=d.indexPrice),
            *([self.emit(OpenInterest, s, natural, frame, ts, open_interest=d.openInterest)]
              if d.openInterest is not None else []),
            self.emit(schemas.OptionGreeks, s, natural, frame, ts, strike=strike,
                      expiry_ts=expiry, option_type=kind, mark_price=d.markPrice,
                      bid_price=bid, ask_price=ask, mark_iv=d.markPriceIv or None,
                      bid_iv=d.bidIv or None, ask_iv=d.askIv or None, delta=d.delta,
                      gamma=d.gamma, vega=d.vega, theta=d.theta,
                      underlying_price=d.underlyingPrice, index_price=d.indexPrice,
                      open_interest=d.openInterest),
        ]  # fmt: skip


class BybitInverseParser(_Bybit):
    venue = "bybit_inverse"
    category = "inverse"
    inverse = True
    channels = {**_Bybit.channels, **POSITIONING}  # open interest in USD: not in base units
