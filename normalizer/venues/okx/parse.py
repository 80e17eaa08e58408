"""OKX v5 public raw frames -> typed jetmarket messages.

Channel map (raw channel = OKX channel name -> market type):

| channel            | market type   | notes                                              |
|--------------------|---------------|----------------------------------------------------|
| trades             | trade         | id = tradeId, side = taker side                    |
| books              | book          | action snapshot/update; seq = seqId, prev = prevSeqId |
| bbo-tbt            | bbo           | seq = seqId                                        |
| tickers            | ticker        | 24 h volume in base units (volCcy24h on derivatives)|
| candle1m (candle*) | candle        | closed = confirm "1"                               |
| funding-rate       | funding       | next_funding_ts = fundingTime, predicted = nextFundingRate |
| open-interest      | open_interest | oiCcy (base units, given by OKX)                   |
| liquidation-orders | liquidation   | subscribed per instType: raw subject ``...SWAP``   |
| mark-price         | mark          | mark_price                                         |
| index-tickers      | mark          | index_price on the index's own name (BTC-USDT)     |
| opt-summary        | option_greeks | per ``instFamily`` (raw symbol BTC-USD); BS greeks |
| instruments        | instrument    | REST body; also fills the contract-size cache      |
| long_short_account_ratio-<period> | long_short_ratio (global_accounts), REST rubik |
| top_account_ratio-<period>        | long_short_ratio (top_accounts), REST rubik    |
| top_position_ratio-<period>       | long_short_ratio (top_positions), REST rubik   |
| taker_volume-<period>             | taker_volume (coin units: unit=0), REST rubik  |
| open_interest_history-<period>    | open_interest_hist (oiCcy, oiUsd), REST rubik  |
| conn               | gap           | reconnect, per symbol                              |
| control            | nothing       | subscribe acks, pong, notices, errors              |

Sizes are base units. Swap/future/option sizes are contracts: linear (``ctValCcy`` = base)
size = sz * ctVal * ctMult; inverse (``ctValCcy`` = quote, e.g. USD) size = sz * ctVal / price.
The contract sizes come only from ``instruments`` frames (published by the collector before
it subscribes), so re-normalizing RAW in order reproduces them; a derivative frame seen
before its instrument is Rejected rather than published with contract counts.

Quirks of the real feed (regression tests in tests/venues/okx/test_real_frames.py):

- ``funding-rate`` pushes may omit ``fundingRate`` and carry only ``fundingTime`` and
  ``nextFundingRate`` (seen live). The current rate has then not changed: the funding
  message carries the last rate pushed for that instrument on this stream (a deterministic
  function of RAW order, so re-normalization agrees), with the new next funding time and
  predicted rate. Only when no rate of that instrument was ever seen is the push rejected,
  with that reason: there is no rate to publish and ``Funding.rate`` is required.
- Derivative frames before their instrument's ``instruments`` body are rejected ("contract
  size ... unknown"): the collector publishes instruments first, a replay must too.
- OKEx v3 frames (``{"table": "spot/trade", ...}``) of a replayed old capture are
  dead-lettered as "an OKEx v3 frame ...: jetmarket speaks OKX v5".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, TypeVar

from normalizer.venues.base import Frame, Out, Parser, Rejected, encode, json_or_none, new_out
from normalizer.venues.okx import wire
from streams import schemas
from streams.symbols import okx as symbols
from streams.symbols import option_terms

VENUE = "okx"
MS = 1_000_000
RUBIK_PERIODS = frozenset({"5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d"})
RATIO_KINDS = {"long_short_account_ratio": "global_accounts", "top_account_ratio": "top_accounts",
               "top_position_ratio": "top_positions"}  # fmt: skip
_rubik = wire.decoder(wire.RubikReply)


def _num(text: str) -> float:
    """A rubik cell: a finite, non-negative decimal string."""
    v = float(text)
    if not 0 <= v < 1e18:  # also NaN
        raise ValueError(f"not a count or ratio: {text[:40]!r}")
    return v


CANDLE_CHANNELS = ("candle1m", "candle3m", "candle5m", "candle15m", "candle1H")

# decoders of the whole-frame shapes, then of the data pushes
_books, _candles, _instruments = map(wire.decoder, (wire.BooksFrame, wire.CandlesFrame,
                                                    wire.Instruments))  # fmt: skip
_trades, _tickers, _funding, _oi, _liq, _mark, _index, _opt = (
    wire.decoder(wire.Push[row]) for row in (
        wire.Trade, wire.Ticker, wire.Funding, wire.OpenInterest, wire.Liquidation,
        wire.MarkPrice, wire.IndexTicker, wire.OptSummary,
    )
)  # fmt: skip
# bound ``decode`` of the hot channels (the Decoders stay module attributes: fuzz/fuzzers.py
# shapes frames from them)
_trades_decode = _trades.decode
_books_decode = _books.decode
_tickers_decode = _tickers.decode
Trade, Book, BBO, Ticker = schemas.Trade, schemas.Book, schemas.BBO, schemas.Ticker
# a frame about one instrument (``arg.instId``)
F = TypeVar("F", wire.Push, wire.BooksFrame, wire.CandlesFrame)  # type: ignore[type-arg]


def _same(frame: Frame, native: str) -> None:
    if native != frame.native_symbol:
        raise Rejected(f"instId {native!r} on a frame for {frame.native_symbol!r}")


def push(decode: Callable[[bytes], F], frame: Frame) -> F:
    """A frame about the raw subject's instrument (``arg.instId``), refused otherwise. A
    function, not a method: one lookup less on every frame."""
    f = decode(frame.data)
    if f.arg.instId != frame.native_symbol:
        _same(frame, f.arg.instId)
    return f


class Contract(NamedTuple):
    size: float  # ctVal * ctMult
    inverse: bool  # contract value in the quote currency (USD): base = sz * size / price


def _f(s: str) -> float | None:
    """OKX's optional decimal strings: "" means no value."""
    return float(s) if s else None


def contract_of(i: wire.Instrument) -> Contract | None:
    """The contract spec of a derivative row; None for spot (sizes already in base)."""
    if i.instType == "SPOT" or not i.ctVal:
        return None
    base, quote = i.instId.split("-")[:2]
    size = float(i.ctVal) * (float(i.ctMult) if i.ctMult else 1.0)
    if i.ctValCcy == base:
        return Contract(size, False)
    if i.ctValCcy == quote:
        return Contract(size, True)
    raise Rejected(f"{i.instId}: contract value currency {i.ctValCcy!r} is neither base nor quote")


class OkxParser(Parser):
    venue = VENUE
    to_symbol = staticmethod(symbols.to_symbol)
    channels = {
        "trades": "trade", "books": "book", "bbo-tbt": "bbo", "tickers": "ticker",
        **{c: "candle" for c in CANDLE_CHANNELS},
        "funding-rate": "funding", "open-interest": "open_interest",
        "liquidation-orders": "liquidation", "mark-price": "mark", "index-tickers": "mark",
        "opt-summary": "option_greeks",
        "instruments": "instrument", "conn": "gap", "control": "",
    }  # fmt: skip

    channels.update({
        "long_short_account_ratio-<period>": "long_short_ratio",
        "top_account_ratio-<period>": "long_short_ratio",
        "top_position_ratio-<period>": "long_short_ratio",
        "taker_volume-<period>": "taker_volume",
        "open_interest_history-<period>": "open_interest_hist",
    })  # fmt: skip
    handler_of = {
        **{c: "_candles" for c in CANDLE_CHANNELS},
        **{c: "_rubik" for c in channels if c.endswith("-<period>")},
    }
    inline_names = ("trade", "book", "bbo", "ticker")

    # -- trading statistics (REST rubik, collectors/positioning.py) ----------------------
    def _unlisted(self, channel: str) -> Callable[[Frame], list[Out]]:
        endpoint, _, period = channel.rpartition("-")
        if f"{endpoint}-<period>" in self.channels and period in RUBIK_PERIODS:
            return self._rubik
        return super()._unlisted(channel)

    def _rubik(self, frame: Frame) -> list[Out]:
        endpoint, _, period = frame.channel.rpartition("-")
        reply = _rubik.decode(frame.data)
        if reply.code != "0":
            raise Rejected(f"OKX error {reply.code}: {reply.msg[:200]}")
        native, out = frame.native_symbol, []
        kind = RATIO_KINDS.get(endpoint)
        for row in reply.data:
            ts = int(row[0])
            if kind is not None:
                _, symbol = self._names("long_short_ratio", native)
                msg: schemas.Base = schemas.LongShortRatio(
                    venue=VENUE, symbol=symbol, ts_event=ts * MS, ts_recv=frame.ts_recv,
                    kind=kind, period=period, ratio=_num(row[1]),  # type: ignore[arg-type]
                )  # fmt: skip
                out.append(self._out("long_short_ratio", native, f"{kind}:{period}:{ts}", msg))
            elif endpoint == "taker_volume":
                out.append(self.history_out(schemas.TakerVolume, frame, period, ts,
                                            buy_volume=_num(row[2]),
                                            sell_volume=_num(row[1])))  # fmt: skip
            else:  # open_interest_history: [ts, contracts, coin, usd]
                out.append(self.history_out(schemas.OpenInterestHist, frame, period, ts,
                                            open_interest=_num(row[2]),
                                            open_interest_value=_num(row[3])))  # fmt: skip
        return out

    def retired(self, data: bytes) -> str | None:
        """OKEx v3 (retired 2022): pushes ``{"table": "spot/trade", "data": [...]}``; v5
        writes ``{"arg": {...}, "data": [...]}``."""
        body = json_or_none(data)
        if not isinstance(body, dict):
            return None
        if isinstance(body.get("table"), str):
            return f"an OKEx v3 frame (table {body['table'][:40]!r}): jetmarket speaks OKX v5"
        arg = body.get("arg")
        if isinstance(arg, dict) and isinstance(arg.get("channel"), str):  # a v5 push
            return (
                f"an OKX v5 push of channel {arg['channel'][:40]!r}, which jetmarket's "
                "collector does not subscribe"
            )
        return None

    def __init__(self) -> None:
        super().__init__()
        self.contracts: dict[str, Contract] = {}
        # instId -> the last fundingRate pushed (a deterministic function of RAW order)
        self.funding_rate: dict[str, float] = {}

    # -- helpers -------------------------------------------------------------------------

    _same = staticmethod(_same)

    def contract(self, inst_id: str) -> Contract | None:
        """None for spot; the cached spec for derivatives; Rejected when unknown."""
        if inst_id.count("-") == 1:
            return None
        c = self.contracts.get(inst_id)
        if c is None:
            raise Rejected(f"contract size of {inst_id} unknown (no instruments frame yet)")
        return c

    @staticmethod
    def base(c: Contract | None, price: float, sz: float) -> float:
        if c is None:
            return sz
        if c.inverse:
            return sz * c.size / price
        return round(sz * c.size, 12)  # 3 * 0.1 -> 0.3, not 0.30000000000000004

    def _levels(self, c: Contract | None, levels: list[wire.Level]) -> list[tuple[float, float]]:
        if c is None:
            return [(lv[0], lv[1]) for lv in levels]
        base = self.base
        return [(lv[0], base(c, lv[0], lv[1])) for lv in levels]

    # -- trades / books ------------------------------------------------------------------
    # The hot channels are written out flat: helper calls per check and per message cost
    # more than the typed decode in a profile (checks still run in the same order).
    def _trades(self, frame: Frame) -> list[Out]:
        f = push(_trades_decode, frame)
        inst = f.arg.instId
        c = None if inst.count("-") == 1 else self.contract(inst)
        ts_recv = frame.ts_recv
        names = None
        out = []
        for t in f.data:
            if t.instId != inst:
                raise Rejected(f"trade for {t.instId!r} on {inst!r}")
            if names is None:
                names = self._trade_names.get(inst) or self.names_miss("trade", inst)
            side = t.side
            px = t.px
            out.append(new_out((names[0], names[2] + t.tradeId, encode(Trade(
                venue=VENUE, symbol=names[1], ts_event=t.ts * MS, ts_recv=ts_recv,
                id=t.tradeId, price=px, size=t.sz if c is None else self.base(c, px, t.sz),
                side=side if side == "buy" or side == "sell" else "unknown",  # type: ignore[arg-type]
            )))))  # fmt: skip
        return out

    def _books(self, frame: Frame) -> list[Out]:
        f = push(_books_decode, frame)
        inst = f.arg.instId
        if f.action not in ("snapshot", "update"):
            raise Rejected(f"unknown books action {f.action!r}")
        c = None if inst.count("-") == 1 else self.contract(inst)
        names = self._book_names.get(inst) or self.names_miss("book", inst)
        snapshot = f.action == "snapshot"
        levels = self._levels
        out = []
        for d in f.data:
            if d.seqId is None:
                # Frames recorded before OKX added seqId: the RAW stream sequence orders them
                # (deterministic on re-normalization); only the checksum guards continuity.
                seq, prev, natural = frame.raw_seq, None, f"r{frame.raw_seq}"
            else:
                seq, prev, natural = d.seqId, d.prevSeqId, d.seqId
                if not snapshot and seq == prev and not d.bids and not d.asks:
                    continue  # OKX's keep-alive: same seqId, no change, nothing to publish
            if c is None:  # spot: _levels' copy inline, no method call per side
                bids = [(lv[0], lv[1]) for lv in d.bids]
                asks = [(lv[0], lv[1]) for lv in d.asks]
            else:
                bids, asks = levels(c, d.bids), levels(c, d.asks)
            out.append(new_out((
                names[0], f"{names[2]}snap{natural}" if snapshot else f"{names[2]}{natural}",
                encode(Book(
                    venue=VENUE, symbol=names[1], ts_event=d.ts * MS, ts_recv=frame.ts_recv,
                    snapshot=snapshot, bids=bids, asks=asks,
                    seq=seq, prev_seq=prev, checksum=d.checksum,
                )),
            )))  # fmt: skip
        return out

    def _bbo_tbt(self, frame: Frame) -> list[Out]:
        f = push(_books_decode, frame)
        inst = f.arg.instId
        c = None if inst.count("-") == 1 else self.contract(inst)
        names = self._bbo_names.get(inst) or self.names_miss("bbo", inst)
        ts_recv = frame.ts_recv
        out = []
        for d in f.data:
            if not d.bids or not d.asks:
                continue  # one side empty: no best bid/offer to publish
            (bp, bs, _, _), (ap, asz, _, _) = d.bids[0], d.asks[0]
            if c is not None:
                bs, asz = self.base(c, bp, bs), self.base(c, ap, asz)
            seq = d.seqId
            natural = str(seq) if seq is not None else f"r{frame.raw_seq}"
            out.append(new_out((names[0], names[2] + natural, encode(BBO(
                venue=VENUE, symbol=names[1], ts_event=d.ts * MS, ts_recv=ts_recv,
                bid_price=bp, bid_size=bs, ask_price=ap, ask_size=asz, seq=seq,
            )))))  # fmt: skip
        return out

    # -- tickers / candles ---------------------------------------------------------------
    def _tickers(self, frame: Frame) -> list[Out]:
        f = push(_tickers_decode, frame)
        ts_recv = frame.ts_recv
        out = []
        for t in f.data:
            inst = t.instId
            names = self._ticker_names.get(inst) or self.names_miss("ticker", inst)
            # _f inline ("" means no value), in the same order: a bad number fails alike
            last, bid, ask, open_, high, low, v24, vccy = (
                t.last, t.bidPx, t.askPx, t.open24h, t.high24h, t.low24h, t.vol24h, t.volCcy24h
            )  # fmt: skip
            last, bid, ask, open_, high, low = (
                float(last) if last else None, float(bid) if bid else None,
                float(ask) if ask else None, float(open_) if open_ else None,
                float(high) if high else None, float(low) if low else None,
            )  # fmt: skip
            if t.instType == "SPOT":
                vol, quote = float(v24) if v24 else None, float(vccy) if vccy else None
            else:
                vol, quote = float(vccy) if vccy else None, None
            out.append(new_out((names[0], names[2] + str(t.ts), encode(Ticker(
                venue=VENUE, symbol=names[1], ts_event=t.ts * MS, ts_recv=ts_recv,
                last=last, bid=bid, ask=ask, open_24h=open_, high_24h=high, low_24h=low,
                volume_24h=vol, quote_volume_24h=quote,
            )))))  # fmt: skip
        return out

    def _candles(self, frame: Frame) -> list[Out]:
        f = push(_candles.decode, frame)
        inst = f.arg.instId
        spot = inst.count("-") == 1
        interval = frame.channel.removeprefix("candle")
        _, symbol = self._names("candle", inst)
        out = []
        for k in f.data:
            if len(k) < 9:
                raise Rejected(f"candle row with {len(k)} fields, expected 9")
            ts_open = int(k[0])
            # vol is contracts on derivatives; volCcy is then the base-currency volume
            volume = float(k[5] if spot else k[6])
            msg = schemas.Candle(
                venue=VENUE, symbol=symbol, ts_event=frame.ts_recv, ts_recv=frame.ts_recv,
                interval=interval, ts_open=ts_open * MS, open=float(k[1]), high=float(k[2]),
                low=float(k[3]), close=float(k[4]), volume=volume, closed=k[8] == "1",
            )  # fmt: skip
            out.append(self._out("candle", inst, f"{interval}:{ts_open}:r{frame.raw_seq}", msg))
        return out

    # -- derivatives data ----------------------------------------------------------------
    def _funding_rate(self, frame: Frame) -> list[Out]:
        f = push(_funding.decode, frame)
        out = []
        for d in f.data:
            ts = int(d.ts) * MS if d.ts else frame.ts_recv
            nxt = int(d.fundingTime) * MS if d.fundingTime else None
            if d.fundingRate:
                rate = self.funding_rate[d.instId] = float(d.fundingRate)
            else:  # a push without the current rate: it has not changed since the last one
                rate = self.funding_rate.get(d.instId)  # type: ignore[assignment]
                if rate is None:
                    raise Rejected(
                        f"funding-rate push for {d.instId} without fundingRate, and no "
                        "earlier rate of it on this stream to carry"
                    )
            out.append(self.emit(
                schemas.Funding, d.instId, f"{d.fundingTime}:{ts}", frame, ts,
                rate=rate, next_funding_ts=nxt, predicted_rate=_f(d.nextFundingRate),
            ))  # fmt: skip
        return out

    def _open_interest(self, frame: Frame) -> list[Out]:
        f = push(_oi.decode, frame)
        return [
            self.emit(schemas.OpenInterest, d.instId, d.ts, frame, d.ts * MS,
                      open_interest=d.oiCcy, open_interest_value=_f(d.oiUsd))
            for d in f.data
        ]  # fmt: skip

    def _liquidation_orders(self, frame: Frame) -> list[Out]:
        f = _liq.decode(frame.data)
        out = []
        for d in f.data:
            c = self.contract(d.instId)
            self._names("liquidation", d.instId)  # refused by name even without details
            for i, x in enumerate(d.details):
                natural = f"{x.ts}:{x.side}:{x.posSide}:r{frame.raw_seq}:{i}"
                out.append(self.emit(
                    schemas.Liquidation, d.instId, natural, frame, x.ts * MS, id=natural,
                    side=x.side if x.side in ("buy", "sell") else "unknown",
                    price=x.bkPx, size=self.base(c, x.bkPx, x.sz),
                ))  # fmt: skip
        return out

    def _mark_price(self, frame: Frame) -> list[Out]:
        f = push(_mark.decode, frame)
        return [self.emit(schemas.Mark, d.instId, d.ts, frame, d.ts * MS, mark_price=d.markPx)
                for d in f.data]  # fmt: skip

    def _opt_summary(self, frame: Frame) -> list[Out]:
        """Option analytics of a whole family (``instFamily`` BTC-USD: raw subject
        ``raw.okx.opt-summary.BTC-USD``). OKX gives two sets of greeks: the price-adjusted
        ones (``delta``.., in the coin) and Black-Scholes ones (``deltaBS``..): we publish the
        Black-Scholes set, the convention of Deribit's and Bybit's greeks. No open interest,
        mark or index price in this channel (None); ``fwdPx`` is the underlying. A volatility
        of "0" (no bid or ask) is None, as Deribit's and Bybit's zeros are."""
        f = _opt.decode(frame.data)
        family = f.arg.instFamily
        self._same(frame, family)
        out = []
        for d in f.data:
            if not d.instId.startswith(family + "-"):
                raise Rejected(f"option {d.instId!r} in an opt-summary of {family!r}")
            try:
                expiry, strike, kind = option_terms(self.to_symbol(d.instId))
            except ValueError:
                raise Rejected(f"opt-summary row {d.instId!r} is not an option") from None
            ts = int(d.ts) * MS if d.ts else frame.ts_recv
            out.append(self.emit(
                schemas.OptionGreeks, d.instId, d.ts, frame, ts, strike=strike,
                expiry_ts=expiry, option_type=kind, mark_iv=_f(d.markVol) or None,
                bid_iv=_f(d.bidVol) or None, ask_iv=_f(d.askVol) or None, delta=_f(d.deltaBS),
                gamma=_f(d.gammaBS), vega=_f(d.vegaBS), theta=_f(d.thetaBS),
                underlying_price=_f(d.fwdPx),
            ))  # fmt: skip
        return out

    def _index_tickers(self, frame: Frame) -> list[Out]:
        """Index prices, published as marks of the index's own name (``BTC-USDT``)."""
        f = push(_index.decode, frame)
        return [
            self.emit(schemas.Mark, d.instId, f"idx{d.ts}", frame, d.ts * MS, index_price=d.idxPx)
            for d in f.data
        ]

    # -- reference data and connection events -----------------------------------------
    def _instruments(self, frame: Frame) -> list[Out]:
        body = _instruments.decode(frame.data)
        if body.code != "0":
            raise Rejected(f"instruments error {body.code}: {body.msg}"[:300])
        out = []
        for i in body.data:
            try:
                symbol = symbols.to_symbol(i.instId)
            except ValueError:
                continue  # a shape outside our naming scheme
            c = contract_of(i)
            if c is not None:
                self.contracts[i.instId] = c
            base, quote = i.instId.split("-")[:2]
            kind = {"SPOT": "spot", "SWAP": "perpetual", "FUTURES": "future"}.get(
                i.instType, "option"
            )
            msg = schemas.Instrument(
                venue=VENUE, symbol=symbol, ts_event=frame.ts_recv, ts_recv=frame.ts_recv,
                native_symbol=i.instId, kind=kind, base=i.baseCcy or base,  # type: ignore[arg-type]
                quote=i.quoteCcy or quote, settle=i.settleCcy or None,
                tick_size=float(i.tickSz), lot_size=float(i.lotSz),
                contract_size=c.size if c else 1.0,
                expiry_ts=int(i.expTime) * MS if i.expTime else None,
                strike=_f(i.stk),
                option_type={"C": "call", "P": "put"}.get(i.optType),  # type: ignore[arg-type]
                active=i.state == "live",
            )  # fmt: skip
            out.append(self.instrument_out(msg, frame))
        return out
