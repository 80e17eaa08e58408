"""Kraken WebSocket v2 public raw frames -> typed jetmarket messages (spot only).

Channel map (raw channel -> market type):

| channel     | market type  | notes                                                    |
|-------------|--------------|----------------------------------------------------------|
| trade       | trade        | id = trade_id (per pair), side = taker side              |
| book        | book         | snapshot/update, ``checksum`` = Kraken's CRC32 of top 10 |
| ticker      | bbo + ticker | best bid/ask with sizes; 24 h last/high/low/volume       |
| ohlc        | candle       | interval in minutes -> ``1m``/``1h``/``1d``...           |
| instrument  | instrument   | the v2 ``instrument`` channel's ``pairs``                |
| instruments | instrument   | REST ``/0/public/AssetPairs`` body (published by the collector) |
| conn        | gap          | our collector's disconnect events, one gap per pair      |
| control     | nothing      | subscribe acks, pong, heartbeat, status                  |

Kraken v2 books carry no sequence number: ``Book.seq`` is the RAW stream sequence of the
frame (deterministic on re-normalization; it only orders messages), and continuity is
guarded by the checksum alone (orderbook/venues/kraken.py). Ticker has no open price or
quote volume, so those stay empty rather than being derived with rounding noise.

Quirks of the real feed (regression tests in tests/venues/kraken/test_real_frames.py):

- A ticker of a pair whose book is empty carries ``"bid":0,"ask":0`` (and ``last``,
  ``high``, ``low`` 0 before a first trade). It is a valid frame, not a malformed one: the
  ticker comes out with those fields None (0 is "none", not a price) and no BBO is made
  (there is no best bid/offer). The dead-letter queue stays a signal of real problems.
- Kraken v1 frames (arrays ``[channelID, {...}, "book-10", "XBT/USD"]``, ``{"event": ...}``
  objects) of a replayed old capture are dead-lettered as "a Kraken v1 WebSocket frame ...:
  jetmarket speaks v2".
"""

from __future__ import annotations

from datetime import date
from typing import TypeVar

import msgspec

from normalizer.venues.base import Frame, Out, Parser, Rejected, encode, json_or_none, new_out
from normalizer.venues.kraken import wire
from streams import schemas, subjects
from streams.symbols import kraken as symbols

VENUE = "kraken"
NS = 1_000_000_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# minutes -> our interval names (the intervals Kraken's ohlc channel accepts)
INTERVALS = {1: "1m", 5: "5m", 15: "15m", 30: "30m", 60: "1h", 240: "4h", 1440: "1d",
             10080: "1w", 21600: "15d"}  # fmt: skip

_trades, _books, _tickers, _ohlc = (
    wire.decoder(wire.Push[row]) for row in (wire.Trade, wire.Book, wire.Ticker, wire.Ohlc)
)  # fmt: skip
_instrument, _asset_pairs, _control = map(wire.decoder, (wire.InstrumentFrame, wire.AssetPairs,
                                                         wire.Control))  # fmt: skip

# (raw subject token, symbol, market subject, "kraken:<type>:<symbol>:") of one native pair
Names = tuple[str, str, str, str]
_days: dict[str, int] = {}
_secs: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" -> epoch ns, already validated
_FRAC_SCALE = [10 ** (9 - k) for k in range(10)]  # fraction digits -> ns per unit
P = TypeVar("P", bound=wire.Push)  # type: ignore[type-arg]


def push(decoder: msgspec.json.Decoder[P], frame: Frame) -> P:
    """A data push, refused when it names another channel than its raw subject's. A
    function, not a method: one lookup less on every frame."""
    f = decoder.decode(frame.data)
    if f.channel != frame.channel:
        raise Rejected(f"channel {f.channel!r} on a raw {frame.channel!r} subject")
    return f


def _whole_seconds(s: str) -> int:
    """Epoch ns of the validated ``YYYY-MM-DDTHH:MM:SS`` prefix of ``s``."""
    if len(s) < 20 or s[10] != "T" or s[13] != ":" or s[16] != ":":
        raise ValueError(f"bad timestamp {s!r}")
    day = _days.get(s[:10])
    if day is None:
        day = date.fromisoformat(s[:10]).toordinal() - _EPOCH_ORDINAL
        if len(_days) > 10_000:
            _days.clear()
        _days[s[:10]] = day
    clock = s[11:13], s[14:16], s[17:19]
    if not all(c.isdigit() for c in clock):
        raise ValueError(f"bad timestamp {s!r}")
    return (day * 86400 + int(clock[0]) * 3600 + int(clock[1]) * 60 + int(clock[2])) * NS


def ts_ns(s: str) -> int:
    """RFC 3339 UTC (``2023-09-25T07:48:36.925533Z``, 0-9 fraction digits) -> epoch ns,
    by slicing: a datetime per message would cost more than the rest of the parse. The
    whole-second prefix is cached (frames of one second share it): validating it was
    half of an ohlc frame's parse in a profile."""
    base = _secs.get(s[:19])
    if base is None:
        base = _whole_seconds(s)
        if len(_secs) > 10_000:
            _secs.clear()
        _secs[s[:19]] = base
    # Kraken writes microseconds: one slice and no scale lookup for the usual shape
    if len(s) == 27 and s[19] == "." and s[26] == "Z":
        frac = s[20:26]
        if frac.isdigit():
            return base + int(frac) * 1000
    if len(s) <= 20:  # a cached prefix says nothing about what follows it
        if len(s) < 20 or s[19] != "Z":
            raise ValueError(f"bad timestamp {s!r}")
        return base
    frac = s[20:-1]
    if s[19] != "." or s[-1] != "Z" or not frac.isdigit() or len(frac) > 9:
        raise ValueError(f"bad timestamp {s!r}")
    return base + int(frac) * _FRAC_SCALE[len(frac)]


_bounds: dict[str, int] = {}


def bound_ns(s: str) -> int:
    """``ts_ns`` of a candle's ``interval_begin``/``timestamp``: whole-minute instants that
    every push of the candle repeats, so the whole string is cached."""
    hit = _bounds.get(s)
    if hit is None:
        hit = ts_ns(s)
        if len(_bounds) > 10_000:
            _bounds.clear()
        _bounds[s] = hit
    return hit


class KrakenParser(Parser):
    venue = VENUE
    to_symbol = staticmethod(symbols.to_symbol)
    channels = {
        "trade": "trade", "book": "book", "ticker": "bbo+ticker", "ohlc": "candle",
        "instrument": "instrument", "instruments": "instrument", "conn": "gap",
        "control": "",
    }  # fmt: skip

    def retired(self, data: bytes) -> str | None:
        """Kraken WebSocket v1: data pushes are arrays ``[channelID, {...}, "book-10",
        "XBT/USD"]``, control frames objects with ``event`` (heartbeat, systemStatus,
        subscriptionStatus); v2 writes objects with ``channel`` or ``method``."""
        body = json_or_none(data)
        if isinstance(body, list) and len(body) >= 3 and isinstance(body[-2], str):
            return f"a Kraken v1 WebSocket frame ({body[-2][:30]!r}): jetmarket speaks v2"
        if isinstance(body, dict) and "event" in body and "channel" not in body:
            event = str(body["event"])[:30]
            return f"a Kraken v1 WebSocket frame (event {event!r}): jetmarket speaks v2"
        return None

    def __init__(self) -> None:
        super().__init__()
        # per message type: native pair -> (raw subject token, symbol, subject, msg-id prefix)
        self._pre: dict[str, dict[str, Names]] = {
            t: {} for t in ("trade", "book", "bbo", "ticker", "candle")
        }

    # -- helpers -------------------------------------------------------------------------

    def _pair(self, msg_type: str, native: str, frame: Frame) -> Names:
        """The cached names of ``native`` for ``msg_type``, after the same checks in the same
        order as ``_same`` then ``_names``: hot paths look the cache up inline and call this
        only on a miss, so the subject token and message-id prefix are built once per pair."""
        self._same(frame, native)
        _, symbol = self._names(msg_type, native)
        names = (
            subjects.token(native), symbol, subjects.market(msg_type, VENUE, symbol),
            f"{VENUE}:{msg_type}:{symbol}:",
        )  # fmt: skip
        self._pre[msg_type][native] = names
        return names

    @staticmethod
    def _same(frame: Frame, symbol: str) -> None:
        # the raw subject token is the pair with '.' made '_' (subjects.token)
        if subjects.token(symbol) != frame.native_symbol:
            raise Rejected(f"pair {symbol!r} on a frame for {frame.native_symbol!r}")

    # -- market data ---------------------------------------------------------------------
    def _trade(self, frame: Frame) -> list[Out]:
        f = push(_trades, frame)
        cache = self._pre["trade"]
        out = []
        for t in f.data:
            names = cache.get(t.symbol)
            if names is None or names[0] != frame.native_symbol:
                names = self._pair("trade", t.symbol, frame)
            tid = str(t.trade_id)
            msg = schemas.Trade(
                venue=VENUE, symbol=names[1], ts_event=ts_ns(t.timestamp),
                ts_recv=frame.ts_recv, id=tid, price=t.price, size=t.qty,
                side=t.side if t.side in ("buy", "sell") else "unknown",  # type: ignore[arg-type]
            )  # fmt: skip
            out.append(new_out((names[2], names[3] + tid, encode(msg))))
        return out

    def _book(self, frame: Frame) -> list[Out]:
        f = push(_books, frame)
        if len(f.data) != 1:
            # one entry per frame is what Kraken sends; two would need two sequence numbers
            raise Rejected(f"book frame with {len(f.data)} entries, expected 1")
        d = f.data[0]
        names = self._pre["book"].get(d.symbol)
        if names is None or names[0] != frame.native_symbol:
            names = self._pair("book", d.symbol, frame)
        snapshot = f.type == "snapshot"
        msg = schemas.Book(
            venue=VENUE, symbol=names[1],
            ts_event=ts_ns(d.timestamp) if d.timestamp else frame.ts_recv, ts_recv=frame.ts_recv,
            snapshot=snapshot, bids=[(lv.price, lv.qty) for lv in d.bids],
            asks=[(lv.price, lv.qty) for lv in d.asks], seq=frame.raw_seq,
            checksum=d.checksum,
        )  # fmt: skip
        msg_id = f"{names[3]}snap{frame.raw_seq}" if snapshot else f"{names[3]}{frame.raw_seq}"
        return [new_out((names[2], msg_id, encode(msg)))]

    def _ticker(self, frame: Frame) -> list[Out]:
        f = push(_tickers, frame)
        bbos, tickers = self._pre["bbo"], self._pre["ticker"]
        out = []
        for t in f.data:
            names = bbos.get(t.symbol)
            if names is None or names[0] != frame.native_symbol:
                names = self._pair("bbo", t.symbol, frame)
                self._pair("ticker", t.symbol, frame)
            tnames = tickers[t.symbol]
            ts = ts_ns(t.timestamp) if t.timestamp else frame.ts_recv
            natural = f"r{frame.raw_seq}"
            bid, ask = t.bid, t.ask
            if bid > 0.0 and ask > 0.0:
                bbo = schemas.BBO(
                    venue=VENUE, symbol=names[1], ts_event=ts, ts_recv=frame.ts_recv,
                    bid_price=bid, bid_size=t.bid_qty, ask_price=ask, ask_size=t.ask_qty,
                )  # fmt: skip
                out.append(new_out((names[2], names[3] + natural, encode(bbo))))
            # an empty side (0) is "no quote": the ticker says None, and no BBO is made
            ticker = schemas.Ticker(
                venue=VENUE, symbol=names[1], ts_event=ts, ts_recv=frame.ts_recv,
                last=t.last or None, bid=bid or None, ask=ask or None, high_24h=t.high or None,
                low_24h=t.low or None, volume_24h=t.volume,
            )  # fmt: skip
            out.append(new_out((tnames[2], tnames[3] + natural, encode(ticker))))
        return out

    def _ohlc(self, frame: Frame) -> list[Out]:
        f = push(_ohlc, frame)
        frame_ts = ts_ns(f.timestamp) if f.timestamp else frame.ts_recv
        # a snapshot lists past candles then the open one: all but the newest are closed
        snapshot = f.type == "snapshot"
        newest = max((k.interval_begin for k in f.data), default="") if snapshot else ""
        cache = self._pre["candle"]
        out = []
        for k in f.data:
            names = cache.get(k.symbol)
            if names is None or names[0] != frame.native_symbol:
                self._same(frame, k.symbol)
            interval = INTERVALS.get(k.interval)
            if interval is None:
                raise Rejected(f"unknown ohlc interval {k.interval} minutes")
            if names is None or names[0] != frame.native_symbol:
                names = self._pair("candle", k.symbol, frame)
            ts_open = bound_ns(k.interval_begin)
            ts = bound_ns(k.timestamp) if k.timestamp else frame_ts
            msg = schemas.Candle(
                venue=VENUE, symbol=names[1], ts_event=ts,
                ts_recv=frame.ts_recv, interval=interval, ts_open=ts_open, open=k.open,
                high=k.high, low=k.low, close=k.close, volume=k.volume,
                closed=snapshot and k.interval_begin != newest, trades=k.trades,
            )  # fmt: skip
            msg_id = f"{names[3]}{interval}:{ts_open}:r{frame.raw_seq}"
            out.append(new_out((names[2], msg_id, encode(msg))))
        return out

    # -- reference data ------------------------------------------------------------------
    def _instrument_msg(
        self,
        frame: Frame,
        native: str,
        base: str,
        quote: str,
        tick: float,
        lot: float,
        active: bool,
    ) -> Out | None:
        try:
            symbol = symbols.to_symbol(native)
        except ValueError:
            return None  # a name outside our scheme (none known today)
        msg = schemas.Instrument(
            venue=VENUE, symbol=symbol, ts_event=frame.ts_recv, ts_recv=frame.ts_recv,
            native_symbol=native, kind="spot", base=base, quote=quote, settle=None,
            tick_size=tick, lot_size=lot, contract_size=1.0, active=active,
        )  # fmt: skip
        # what Naming.instrument_out publishes, with the subject from the per-pair cache:
        # building it (three str.translate calls) was a quarter of an instrument frame
        subject = self._names("instrument", native)[0]
        return new_out((subject, f"{VENUE}:instrument:{symbol}:{frame.raw_seq}", encode(msg)))

    def _instrument(self, frame: Frame) -> list[Out]:
        f = _instrument.decode(frame.data)
        out = []
        for p in f.data.pairs:
            tick = p.price_increment or p.tick_size or 10.0**-p.price_precision
            o = self._instrument_msg(frame, p.symbol, p.base, p.quote, tick, p.qty_increment,
                                     p.status == "online")  # fmt: skip
            if o is not None:
                out.append(o)
        return out

    def _instruments(self, frame: Frame) -> list[Out]:
        body = _asset_pairs.decode(frame.data)
        if body.error:
            raise Rejected(f"AssetPairs error: {'; '.join(body.error)}"[:300])
        out = []
        for row in body.result.values():
            if not row.wsname or row.pair_decimals < 0 or row.lot_decimals < 0:
                continue  # dark-pool ``.d`` pairs have no WebSocket name
            native = symbols.from_wsname(row.wsname)
            base, _, quote = native.partition("/")
            tick = float(row.tick_size) if row.tick_size else 10.0**-row.pair_decimals
            o = self._instrument_msg(frame, native, base, quote, tick,
                                     10.0**-row.lot_decimals, row.status == "online")  # fmt: skip
            if o is not None:
                out.append(o)
        return out

    # -- control and connection events ---------------------------------------------------
    def _control(self, frame: Frame) -> list[Out]:
        c = _control.decode(frame.data)
        if not c.method and c.channel not in ("heartbeat", "status"):
            raise Rejected("not a Kraken v2 control frame (no method, not heartbeat/status)")
        return []
