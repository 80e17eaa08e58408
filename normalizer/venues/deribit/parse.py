"""Deribit JSON-RPC v2 raw frames -> typed jetmarket messages.

Channel map (raw channel, as the collector names it -> market type):

| channel      | Deribit subscription              | market type                        |
|--------------|-----------------------------------|------------------------------------|
| trades       | trades.<instr>.<interval>         | trade (+ liquidation when flagged) |
| book         | book.<instr>.<interval>           | book (seq = change_id, prev_seq)   |
| quote        | quote.<instr>                     | bbo                                |
| ticker       | ticker.<instr>.<interval>         | ticker, mark, open_interest, funding |
|              |                                   | (+ option_greeks for options)        |
| chart_trades | chart.trades.<instr>.<resolution> | candle                             |
| instruments  | REST public/get_instruments       | instrument                         |
| volatility_index | deribit_volatility_index.<index> | volatility_index (DVOL, live)     |
| volatility_index_data-<period> | REST get_volatility_index_data | volatility_index (candles) |
| conn         | (ours) connection events          | gap (reconnect), per symbol        |
| control      | JSON-RPC replies, heartbeats      | nothing                            |

Sizes. Deribit's ``amount`` is in USD for inverse perpetuals and dated futures
(``BTC-PERPETUAL``, ``ETH-27DEC24``: 10 USD / 1 USD contracts) and in the base coin for
options, linear ``_USDC``/``_USDT`` contracts and spot. We publish base units, so inverse
amounts are divided by the level's or trade's own price (the BTC that many USD buy there);
open interest, stated in the same units, is divided by the mark price. Which rule applies is
a function of the name alone (``symbols.inverse``), so no instrument frame is needed first.

Funding. Deribit funds perpetuals continuously; a ticker carries ``funding_8h`` (the rate
realised over the last 8 hours) and ``current_funding`` (the rate accruing now). We publish
``rate = funding_8h`` (8-hour rates compare with other venues) and ``predicted_rate =
current_funding`` (the next 8 hours' rate if nothing changes); ``next_funding_ts`` is None:
there is no settlement instant.

Options. An option's ticker carries ``greeks`` and implied volatilities: an
``option_greeks`` message besides ticker/mark/open_interest, IVs as fractions (Deribit
writes percent), strike/expiry/call-put from the name.

Candles. Deribit re-sends the current candle as it changes and never marks one final: the
candle is published open on every push, and once a push for a later candle arrives the
previous one is published again, closed, with its last values (state is kept per instrument
and resolution, so re-normalizing RAW in order gives the same messages).

Quirks of the real feed (regression tests in tests/venues/deribit/test_real_frames.py):

- A fractional strike is written with a lowercase ``d`` for the decimal point
  (``MATIC_USDC-9MAR24-1d02-C``: strike 1.02). The collector routes such names like any
  other (collectors/deribit.py accepts ``d``; a ``.`` would split a subject token) and the
  symbol keeps the ``d`` (``MATIC-USDC-20240309-1d02-C``, streams/symbols/deribit.py).
- Combos (``BTC-CS-19MAY26-70000_75000``, ``BTC-FS-...``) trade on ``trades`` like any
  instrument but are not single instruments: rejected as "a Deribit combo".
- Grouped books (``book.BTC-PERPETUAL.none.10.100ms``: ``[price, amount]`` rows, no
  action) are not what the collector subscribes; one routed to ``book`` is rejected as such.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

import msgspec

from normalizer.venues.base import Frame, Out, Parser, Rejected, encode, new_out
from normalizer.venues.deribit import wire
from streams import schemas, subjects
from streams.symbols import deribit as symbols
from streams.symbols import option_terms

VENUE = "deribit"
MS = 1_000_000
PERPETUAL_EXPIRY_MS = 32503708800000  # 3000-01-01: Deribit's "no expiry" for perpetuals
# chart.trades resolutions -> our interval names
INTERVALS = {
    "1": "1m", "3": "3m", "5": "5m", "10": "10m", "15": "15m", "30": "30m", "60": "1h",
    "120": "2h", "180": "3h", "360": "6h", "720": "12h", "1D": "1d",
}  # fmt: skip

_trades, _book, _quote, _ticker, _candle = (
    wire.decoder(wire.Notification[data])
    for data in (list[wire.Trade], wire.Book, wire.Quote, wire.Ticker, wire.Candle)
)  # fmt: skip
_instruments = wire.decoder(wire.Instruments)
_dvol = wire.decoder(wire.Notification[wire.VolatilityIndex])
_dvol_data = wire.decoder(wire.VolatilityIndexReply)
# DVOL candle channels (collectors/positioning.py names them <endpoint>-<period>)
DVOL_PERIODS = frozenset({"1s", "1m", "1h", "12h", "1d"})
DVOL_DATA = "volatility_index_data-"

# (symbol, market subject, "deribit:<type>:<symbol>:", inverse) of one instrument
Names = tuple[str, str, str, bool]
# a validated chart.trades channel: (instrument, interval, the candle Names)
Chart = tuple[str, str, Names]
# (symbol, inverse, linear, then subject and msg-id prefix of ticker, mark, open_interest,
# funding): everything a ticker frame's four messages need, looked up once per frame
TickerNames = tuple[str, bool, bool, str, str, str, str, str, str, str, str]
OPTION_TYPES = {"call": "call", "put": "put"}
# the data of a channel about one instrument (``instrument_name``)
Instr = TypeVar("Instr", wire.Book, wire.Quote, wire.Ticker)


def _pct(v: float | None) -> float | None:
    """Deribit's implied volatility in percent -> a fraction; 0 (no quote) -> None."""
    return round(v / 100.0, 10) if v else None  # 115.62 -> 1.1562, not 1.1562000000000001


# a grouped book's channel: book.<instr>.<group>.<depth>.<interval> (bids [price, amount])
_GROUPED = re.compile(rb'"channel":"book\.[^".]+\.[^".]+\.\d+\.')


class DeribitParser(Parser):
    venue = VENUE

    @staticmethod
    def to_symbol(native: str) -> str:
        """``symbols.to_symbol``, with a combo's refusal said as such (cold: once per name)."""
        try:
            return symbols.to_symbol(native)
        except ValueError:
            p = native.split("-")
            if len(p) >= 3 and p[1].isalpha() and p[1] != "PERPETUAL":  # BTC-CS-19MAY26-...
                raise ValueError(
                    f"a Deribit combo ({native[:60]!r}): combos are not single instruments, "
                    "jetmarket does not normalize them"
                ) from None
            raise

    channels = {
        "trades": "trade+liquidation", "book": "book", "quote": "bbo",
        "ticker": "ticker+mark+open_interest+funding+option_greeks", "chart_trades": "candle",
        "instruments": "instrument", "conn": "gap", "control": "",
        "volatility_index": "volatility_index",
        "volatility_index_data-<period>": "volatility_index",
    }  # fmt: skip
    handler_of = {"volatility_index_data-<period>": "_dvol_candles"}

    # -- volatility index (DVOL): its own names, ``btc_usd`` / ``BTC`` -> ``BTC-USD`` --------
    def _unlisted(self, channel: str) -> Callable[[Frame], list[Out]]:
        if channel.startswith(DVOL_DATA) and channel[len(DVOL_DATA) :] in DVOL_PERIODS:
            return self._dvol_candles
        return super()._unlisted(channel)

    @staticmethod
    def _index_symbol(native: str) -> str:
        """``btc_usd`` (an index name) or ``BTC`` (a DVOL currency: quoted in USD)."""
        base, _, quote = native.partition("_")
        if not base.isalnum() or (quote and not quote.isalnum()):
            raise Rejected(f"not a Deribit index name: {native[:60]!r}")
        return f"{base.upper()}-{(quote or 'usd').upper()}"

    def _index_out(self, native: str, natural: str, msg: schemas.VolatilityIndex) -> Out:
        subject = subjects.market("volatility_index", VENUE, msg.symbol)
        return new_out((subject, f"{VENUE}:volatility_index:{msg.symbol}:{natural}", encode(msg)))

    def _volatility_index(self, frame: Frame) -> list[Out]:
        d = _dvol.decode(frame.data).params.data
        if d.index_name != frame.native_symbol:
            self._same(frame, d.index_name)
        symbol = self._index_symbol(d.index_name)
        msg = schemas.VolatilityIndex(
            venue=VENUE, symbol=symbol, ts_event=d.timestamp * MS, ts_recv=frame.ts_recv,
            index_name="dvol", value=d.volatility,
        )  # fmt: skip
        return [self._index_out(d.index_name, f"live:{d.timestamp}", msg)]

    def _dvol_candles(self, frame: Frame) -> list[Out]:
        """One page of closed DVOL candles (the collector asks only for closed ones)."""
        period = frame.channel.rpartition("-")[2]
        symbol = self._index_symbol(frame.native_symbol)
        out = []
        for ts, o, h, lo, c in _dvol_data.decode(frame.data).result.data:
            msg = schemas.VolatilityIndex(
                venue=VENUE, symbol=symbol, ts_event=ts * MS, ts_recv=frame.ts_recv,
                index_name="dvol", interval=period, value=c, open=o, high=h, low=lo,
            )  # fmt: skip
            out.append(self._index_out(frame.native_symbol, f"{period}:{ts}", msg))
        return out

    def __init__(self) -> None:
        super().__init__()
        self._inverse: dict[str, bool] = {}
        # per message type: instrument -> Names, filled by _instr on a miss
        self._pre: dict[str, dict[str, Names]] = {
            t: {} for t in ("trade", "book", "bbo", "ticker", "mark", "open_interest", "funding",
                            "candle", "liquidation")
        }  # fmt: skip
        # chart.trades channel -> Chart, once its shape, instrument and resolution passed
        self._charts: dict[str, Chart] = {}
        self._tickers: dict[str, TickerNames] = {}
        # chart.trades channel (instrument + resolution) -> (ts_recv, the last candle seen),
        # to close it when the next opens
        self._candles: dict[str, tuple[int, wire.Candle]] = {}

    # -- helpers -------------------------------------------------------------------------

    def _is_inverse(self, native: str) -> bool:
        hit = self._inverse.get(native)
        if hit is None:
            hit = self._inverse[native] = symbols.inverse(native)
        return hit

    def _instr(self, msg_type: str, native: str) -> Names:
        """The cached names of ``native`` (Rejected for a name we do not know): hot paths look
        the cache up inline, so the subject and msg-id prefix are built once per instrument."""
        _, symbol = self._names(msg_type, native)
        names = (
            symbol, subjects.market(msg_type, VENUE, symbol), f"{VENUE}:{msg_type}:{symbol}:",
            self._is_inverse(native),
        )  # fmt: skip
        self._pre[msg_type][native] = names
        return names

    @staticmethod
    def _same(frame: Frame, native: str) -> None:
        if native != frame.native_symbol:
            raise Rejected(f"instrument {native!r} on a frame for {frame.native_symbol!r}")

    @staticmethod
    def _notification(method: str) -> None:
        if method != "subscription":
            raise Rejected(f"not a subscription notification: method {method!r}")

    def _data(self, f: wire.Notification[Instr], frame: Frame) -> Instr:
        """The data of a subscription notification about one instrument, the raw subject's
        (Rejected otherwise): what every single-instrument channel checks first."""
        if f.method != "subscription":
            self._notification(f.method)
        d = f.params.data
        if d.instrument_name != frame.native_symbol:
            self._same(frame, d.instrument_name)
        return d

    # -- trades (and liquidations) -------------------------------------------------------
    def _trades(self, frame: Frame) -> list[Out]:
        f = _trades.decode(frame.data)
        if f.method != "subscription":
            self._notification(f.method)
        cache = self._pre["trade"]
        out = []
        for t in f.params.data:
            native = t.instrument_name
            if native != frame.native_symbol:
                self._same(frame, native)
            names = cache.get(native) or self._instr("trade", native)
            size = t.amount / t.price if names[3] else t.amount
            side = t.direction if t.direction in ("buy", "sell") else "unknown"
            msg = schemas.Trade(
                venue=VENUE, symbol=names[0], ts_event=t.timestamp * MS, ts_recv=frame.ts_recv,
                id=t.trade_id, price=t.price, size=size, side=side,  # type: ignore[arg-type]
            )  # fmt: skip
            out.append(new_out((names[1], names[2] + t.trade_id, encode(msg))))
            if t.liquidation:
                out += self._liquidations(frame, t, names[0], size, side)
        return out

    def _liquidations(
        self, frame: Frame, t: wire.Trade, symbol: str, size: float, side: str
    ) -> list[Out]:
        """One liquidation per liquidated party: ``T`` the taker (its order had the trade's
        direction), ``M`` the maker (the opposite side); ``MT`` both."""
        if not set(t.liquidation or "") <= {"M", "T"}:
            raise Rejected(f"unknown liquidation flag {t.liquidation!r}")
        other = {"buy": "sell", "sell": "buy"}.get(side, "unknown")
        out = []
        for who in ("T", "M"):
            if who not in t.liquidation:  # type: ignore[operator]
                continue
            natural = f"{t.trade_id}:{who}"
            msg = schemas.Liquidation(
                venue=VENUE, symbol=symbol, ts_event=t.timestamp * MS, ts_recv=frame.ts_recv,
                side=side if who == "T" else other, price=t.price, size=size, id=natural,  # type: ignore[arg-type]
            )  # fmt: skip
            out.append(self._out("liquidation", t.instrument_name, natural, msg))
        return out

    # -- book / quote --------------------------------------------------------------------
    def _book(self, frame: Frame) -> list[Out]:
        try:
            f = _book.decode(frame.data)
        except msgspec.ValidationError:
            if _GROUPED.search(frame.data, 0, 200):
                raise Rejected(
                    "a grouped book notification (book.<instr>.<group>.<depth>.<interval>): "
                    "jetmarket subscribes the raw change stream book.<instr>.<interval>"
                ) from None
            raise
        d = self._data(f, frame)
        native = d.instrument_name
        if d.type == "change":
            snapshot = False
            if d.prev_change_id is None:
                raise Rejected("book change without prev_change_id")
        elif d.type == "snapshot":
            snapshot = True
        else:
            raise Rejected(f"unknown book type {d.type!r}")
        names = self._pre["book"].get(native) or self._instr("book", native)
        if names[3]:  # inverse: USD amounts
            bids = [(lv[1], lv[2] / lv[1]) for lv in d.bids]
            asks = [(lv[1], lv[2] / lv[1]) for lv in d.asks]
        else:
            bids = [(lv[1], lv[2]) for lv in d.bids]
            asks = [(lv[1], lv[2]) for lv in d.asks]
        msg = schemas.Book(
            venue=VENUE, symbol=names[0], ts_event=d.timestamp * MS, ts_recv=frame.ts_recv,
            snapshot=snapshot, bids=bids, asks=asks, seq=d.change_id,
            prev_seq=None if snapshot else d.prev_change_id,
        )  # fmt: skip
        # a re-subscription can repeat a snapshot's change_id in a quiet book: the RAW
        # sequence keeps the second one from being dropped as a duplicate
        pre = names[2]
        msg_id = f"{pre}snap{d.change_id}:r{frame.raw_seq}" if snapshot else f"{pre}{d.change_id}"
        return [new_out((names[1], msg_id, encode(msg)))]

    def _quote(self, frame: Frame) -> list[Out]:
        q = self._data(_quote.decode(frame.data), frame)
        native = q.instrument_name
        bp, bs, ap, asz = q.best_bid_price, q.best_bid_amount, q.best_ask_price, q.best_ask_amount
        if not (bp and ap) or bs is None or asz is None:
            return []  # one side empty: no best bid/offer to publish
        names = self._pre["bbo"].get(native) or self._instr("bbo", native)
        if names[3]:  # inverse: USD amounts
            bs, asz = bs / bp, asz / ap
        msg = schemas.BBO(
            venue=VENUE, symbol=names[0], ts_event=q.timestamp * MS, ts_recv=frame.ts_recv,
            bid_price=bp, bid_size=bs, ask_price=ap, ask_size=asz,
        )  # fmt: skip
        return [new_out((names[1], f"{names[2]}{q.timestamp}:r{frame.raw_seq}", encode(msg)))]

    # -- ticker: ticker, mark/index, open interest, funding ------------------------------
    def _ticker_names(self, native: str) -> TickerNames:
        tk, mark = self._instr("ticker", native), self._instr("mark", native)
        oi, funding = self._instr("open_interest", native), self._instr("funding", native)
        names = (tk[0], self._is_inverse(native), native.count("-") == 1,
                 tk[1], tk[2], mark[1], mark[2], oi[1], oi[2], funding[1], funding[2])  # fmt: skip
        self._tickers[native] = names
        return names

    def _ticker(self, frame: Frame) -> list[Out]:
        t = self._data(_ticker.decode(frame.data), frame)
        native = t.instrument_name
        ts, recv = t.timestamp * MS, frame.ts_recv
        n = self._tickers.get(native) or self._ticker_names(native)
        symbol = n[0]
        natural = str(t.timestamp)
        s = t.stats
        out = [
            new_out((n[3], n[4] + natural, encode(schemas.Ticker(
                venue=VENUE, symbol=symbol, ts_event=ts, ts_recv=recv, last=t.last_price,
                bid=t.best_bid_price or None, ask=t.best_ask_price or None, high_24h=s.high,
                low_24h=s.low, volume_24h=s.volume, quote_volume_24h=s.volume_usd,
            ))))
        ]  # fmt: skip
        mark = t.mark_price
        if mark is not None or t.index_price is not None:
            out.append(new_out((n[5], n[6] + natural, encode(schemas.Mark(
                venue=VENUE, symbol=symbol, ts_event=ts, ts_recv=recv,
                mark_price=mark, index_price=t.index_price,
            )))))  # fmt: skip
        oi = t.open_interest
        if oi is not None:
            value: float | None = None
            if n[1]:  # inverse
                value = oi  # already USD
                oi = oi / mark if mark else None
            elif mark is not None and n[2]:
                value = oi * mark  # linear perpetual/future: quote currency
            if oi is not None:
                out.append(new_out((n[7], n[8] + natural, encode(schemas.OpenInterest(
                    venue=VENUE, symbol=symbol, ts_event=ts, ts_recv=recv, open_interest=oi,
                    open_interest_value=value,
                )))))  # fmt: skip
        if t.funding_8h is not None:
            out.append(new_out((n[9], n[10] + natural, encode(schemas.Funding(
                venue=VENUE, symbol=symbol, ts_event=ts, ts_recv=recv, rate=t.funding_8h,
                predicted_rate=t.current_funding,
            )))))  # fmt: skip
        if t.greeks is not None:
            out.append(self._greeks(frame, t, symbol, natural))
        return out

    def _greeks(self, frame: Frame, t: wire.Ticker, symbol: str, natural: str) -> Out:
        """An option's ticker: its analytics. Deribit writes implied volatilities in percent
        (``"mark_iv":120.74``): published as fractions (1.2074). Prices are in the option's
        own currency (BTC for BTC options, USDC for ``_USDC`` ones), open interest in the base
        coin (options' amounts are base units, module docstring)."""
        try:
            expiry, strike, kind = option_terms(symbol)
        except ValueError:
            raise Rejected(f"greeks on a ticker of {symbol!r}, which is not an option") from None
        g = t.greeks
        assert g is not None
        iv = _pct
        return self.emit(
            schemas.OptionGreeks, t.instrument_name, natural, frame, t.timestamp * MS,
            strike=strike, expiry_ts=expiry, option_type=kind, mark_price=t.mark_price,
            bid_price=t.best_bid_price or None, ask_price=t.best_ask_price or None,
            mark_iv=iv(t.mark_iv), bid_iv=iv(t.bid_iv), ask_iv=iv(t.ask_iv), delta=g.delta,
            gamma=g.gamma, vega=g.vega, theta=g.theta, underlying_price=t.underlying_price,
            index_price=t.index_price, open_interest=t.open_interest,
        )  # fmt: skip

    # -- candles -------------------------------------------------------------------------
    def _chart_channel(self, frame: Frame, channel: str) -> Chart:
        parts = channel.split(".")
        if len(parts) != 4 or parts[:2] != ["chart", "trades"]:
            raise Rejected(f"not a chart.trades channel: {channel!r}")
        native, resolution = parts[2], parts[3]
        self._same(frame, native)
        interval = INTERVALS.get(resolution)
        if interval is None:
            raise Rejected(f"unknown chart resolution {resolution!r}")
        known = (native, interval, self._instr("candle", native))
        self._charts[channel] = known
        return known

    def _chart_trades(self, frame: Frame) -> list[Out]:
        f = _candle.decode(frame.data)
        if f.method != "subscription":
            self._notification(f.method)
        channel = f.params.channel  # one per instrument and resolution: the state's key
        known = self._charts.get(channel)
        if known is None or known[0] != frame.native_symbol:
            known = self._chart_channel(frame, channel)
        k = f.params.data
        out = []
        prev = self._candles.get(channel)
        if prev is not None and prev[1].tick < k.tick:
            out.append(self._candle(frame, known, prev[1], prev[0], True))
        if prev is None or prev[1].tick <= k.tick:
            self._candles[channel] = (frame.ts_recv, k)
        out.append(self._candle(frame, known, k, frame.ts_recv, False))
        return out

    @staticmethod
    def _candle(frame: Frame, known: Chart, k: wire.Candle, ts: int, closed: bool) -> Out:
        _, interval, names = known
        msg = schemas.Candle(
            venue=VENUE, symbol=names[0], ts_event=ts, ts_recv=frame.ts_recv, interval=interval,
            ts_open=k.tick * MS, open=k.open, high=k.high, low=k.low, close=k.close,
            volume=k.volume, closed=closed,
        )  # fmt: skip
        pre = names[2]
        msg_id = (
            f"{pre}{interval}:{k.tick}:closed"
            if closed
            else f"{pre}{interval}:{k.tick}:r{frame.raw_seq}"
        )
        return new_out((names[1], msg_id, encode(msg)))

    # -- reference data and connection events -----------------------------------------
    def _instruments(self, frame: Frame) -> list[Out]:
        body = _instruments.decode(frame.data)
        if body.error is not None or body.result is None:
            err = body.error
            raise Rejected(f"instruments error {err.code}: {err.message}"[:300] if err else
                           "instruments body without result")  # fmt: skip
        out = []
        for i in body.result:
            try:
                symbol = symbols.to_symbol(i.instrument_name)
            except ValueError:
                continue  # combos and spreads: not single instruments
            perpetual = i.settlement_period == "perpetual"
            kind = {"spot": "spot", "option": "option"}.get(
                i.kind, "perpetual" if perpetual else "future"
            )
            if i.kind not in ("spot", "option", "future"):
                continue
            base, quote = symbol.split("-")[:2]
            expiry = i.expiration_timestamp
            inverse = symbols.inverse(i.instrument_name) or i.future_type == "reversed"
            msg = schemas.Instrument(
                venue=VENUE, symbol=symbol, ts_event=frame.ts_recv, ts_recv=frame.ts_recv,
                native_symbol=i.instrument_name, kind=kind, base=base, quote=quote,  # type: ignore[arg-type]
                settle=i.settlement_currency or (i.base_currency if inverse or kind == "option"
                                                 else i.quote_currency),
                tick_size=i.tick_size, lot_size=i.min_trade_amount,
                contract_size=i.contract_size,
                expiry_ts=None if perpetual or not expiry or expiry >= PERPETUAL_EXPIRY_MS
                else expiry * MS,
                strike=i.strike if kind == "option" else None,
                option_type=OPTION_TYPES.get(i.option_type or "") if kind == "option" else None,  # type: ignore[arg-type]
                active=i.is_active,
            )  # fmt: skip
            out.append(self.instrument_out(msg, frame))
        return out
