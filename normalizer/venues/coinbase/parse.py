"""Coinbase Advanced Trade public raw frames -> typed jetmarket messages.

Channel map (raw channel token -> market type). The raw token is the *subscription*
channel name; Coinbase labels level2 messages ``l2_data`` and the collector files them
under ``level2``.

| channel       | market type  | notes                                                  |
|---------------|--------------|--------------------------------------------------------|
| market_trades | trade        | id = trade_id; taker side (Coinbase sends the maker's) |
| level2        | book         | snapshot/update; seq = sequence_num; first_seq: below  |
| ticker        | bbo + ticker | bbo from best_bid/ask(+_quantity); last, 24 h, volume  |
| candles       | candle       | five-minute buckets ("5m"), never marked closed        |
| instruments   | instrument   | REST products body (spot rows)                         |
| conn          | gap          | reconnect / stale, per collected symbol                |
| heartbeats    | nothing      | but counted in the connection sequence                 |
| control       | nothing      | subscriptions acks and errors (also counted)           |
| (none)        | funding, open_interest, liquidation, mark: not offered (spot venue)   |

Sequence numbers. ``sequence_num`` counts every message of a *connection*, across all
channels (heartbeats and acks included), so one product's level2 messages are not
consecutive and the order-book service, which sees only book messages, cannot tell a
harmless hole (somebody else's trade) from a lost level2 update. This parser sees every
frame of the connection in RAW order, so it checks the connection's rule: each message is
exactly the previous one + 1. ``first_seq`` of a book message is the first message of
the unbroken run it belongs to: every message from ``first_seq`` to ``seq`` arrived,
once, in order. After any break (a hole, a repeat, a step back) the run restarts, so a
book whose last message is older than ``first_seq`` knows it may have lost an update
(orderbook/venues/coinbase.py). A ``connected`` event starts a fresh run. A frame that
cannot be decoded is rejected before it is counted, so it shows up as a hole too.

Trade side: Coinbase's public trades carry the resting (maker) order's side, like the
legacy ``matches`` channel; the taker side we store is the opposite.

Quirks: frames of the retired Coinbase Pro / Exchange feed (``ws-feed.pro.coinbase.com``:
``{"type": "l2update", "product_id": ...}``, no ``channel``) in a replayed old capture are
dead-lettered as "a Coinbase Pro feed frame ...: jetmarket speaks Advanced Trade".
"""

from __future__ import annotations

import calendar
from typing import TypeVar

import msgspec

from normalizer.venues.base import (
    Frame,
    Names,
    Out,
    Parser,
    Rejected,
    encode,
    json_or_none,
    new_out,
)
from normalizer.venues.coinbase import wire
from streams import schemas
from streams.symbols import coinbase as symbols

VENUE = "coinbase"
# message types of the retired Coinbase Pro / Exchange WebSocket feed
PRO_TYPES = frozenset({
    "l2update", "snapshot", "match", "last_match", "ticker", "heartbeat", "subscriptions",
    "received", "open", "done", "change", "activate", "status", "full", "auction",
})  # fmt: skip
CANDLE_INTERVAL = "5m"
TAKER = {"BUY": "sell", "SELL": "buy"}  # maker side on the wire -> taker side
UNSUPPORTED = {
    "funding": "spot venue", "open_interest": "spot venue", "liquidation": "spot venue",
    "mark": "spot venue",
}  # fmt: skip

_trades, _l2, _ticker, _candles = (
    wire.decoder(wire.Envelope[event])
    for event in (wire.TradesEvent, wire.L2Event, wire.TickerEvent, wire.CandlesEvent)
)  # fmt: skip
_probe, _products = wire.decoder(wire.Probe), wire.decoder(wire.Products)

_seconds: dict[str, int] = {}
Env = TypeVar("Env", bound=wire.Envelope)  # type: ignore[type-arg]


def envelope(decoder: msgspec.json.Decoder[Env], data: bytes, want: str) -> Env:
    """A channel's envelope, refused when it names another channel. A function, not a
    method: one lookup less on every frame."""
    env = decoder.decode(data)
    if env.channel != want:
        raise Rejected(f"channel {env.channel!r} on a {want} frame")
    return env


def to_ns(ts: str) -> int:
    """RFC 3339 UTC (``2023-02-09T20:32:50.714964855Z``) -> ns. The whole-second part is
    cached: every message of a second shares it, and the fraction is plain digits."""
    head = ts[:19]
    base = _seconds.get(head)
    # nanoseconds, as Coinbase writes them: one slice, no padding
    if base is not None and len(ts) == 30 and ts[19] == "." and ts[29] == "Z":
        frac = ts[20:29]
        if frac.isdigit():
            return base + int(frac)
    if base is None:
        if len(head) != 19 or head[4] != "-" or head[10] != "T" or head[13] != ":":
            raise ValueError(f"bad timestamp {ts!r}")
        base = calendar.timegm(
            (int(head[:4]), int(head[5:7]), int(head[8:10]), int(head[11:13]),
             int(head[14:16]), int(head[17:19]), 0, 0, 0)
        ) * 1_000_000_000  # fmt: skip
        if len(_seconds) > 4096:
            _seconds.clear()
        _seconds[head] = base
    tail = ts[19:]
    if tail == "Z":
        return base
    if tail[:1] != "." or tail[-1:] != "Z" or not tail[1:-1].isdigit():
        raise ValueError(f"bad timestamp {ts!r}")
    return base + int(tail[1:-1][:9].ljust(9, "0"))


class CoinbaseParser(Parser):
    venue = VENUE
    to_symbol = staticmethod(symbols.to_symbol)
    channels = {
        "market_trades": "trade", "level2": "book", "ticker": "bbo+ticker",
        "candles": "candle", "instruments": "instrument", "conn": "gap",
        "heartbeats": "", "control": "",
    }  # fmt: skip

    handler_of = {"heartbeats": "_control"}  # counted in the connection sequence too
    inline_names = ("trade", "book", "bbo", "ticker", "candle")

    def retired(self, data: bytes) -> str | None:
        """The Coinbase Pro / Exchange feed (``ws-feed.pro.coinbase.com``): objects typed by
        ``type`` (``l2update``, ``match``, ``snapshot`` ...) with no ``channel`` key."""
        body = json_or_none(data)
        if isinstance(body, dict) and "channel" not in body and body.get("type") in PRO_TYPES:
            return (
                f"a Coinbase Pro feed frame (type {body['type']!r}): jetmarket speaks "
                "Advanced Trade"
            )
        return None

    def __init__(self) -> None:
        super().__init__()
        self.last_seq: int | None = None  # last sequence_num of the current connection
        self.run_start = 0  # first message of the unbroken run ending at last_seq
        self.breaks = 0  # sequence breaks seen (holes, repeats, steps back)

    # -- connection sequence ----------------------------------------------------------
    def track(self, seq: int) -> int:
        """Count one message of the connection; returns the start of its unbroken run."""
        last = self.last_seq
        if last is None:
            self.run_start = seq  # first message seen on this connection
        elif seq != last + 1:
            self.breaks += 1
            # a hole: the run restarts here; a repeat or a step back: nothing before the
            # next message can be vouched for (a step back means something came late)
            self.run_start = seq if seq > last else last + 1
            if seq <= last:
                return self.run_start
        self.last_seq = seq
        return self.run_start

    def _count(self, seq: int) -> None:
        """``track`` for a message whose run start is not needed; the usual case (the next
        message of the run) without track's branches."""
        last = self.last_seq
        if last is not None and seq == last + 1:
            self.last_seq = seq
        else:
            self.track(seq)

    def _reset(self) -> None:
        self.last_seq = None

    # -- channels ------------------------------------------------------------------------
    def _market_trades(self, frame: Frame) -> list[Out]:
        env = envelope(_trades, frame.data, "market_trades")
        cache = self._trade_names
        out = []
        for ev in env.events:
            for t in ev.trades:
                names = cache.get(t.product_id) or self.names_miss("trade", t.product_id)
                msg = schemas.Trade(
                    venue=VENUE, symbol=names[1], ts_event=to_ns(t.time), ts_recv=frame.ts_recv,
                    id=t.trade_id, price=t.price, size=t.size,
                    side=TAKER.get(t.side, "unknown"),  # type: ignore[arg-type]
                )  # fmt: skip
                out.append(new_out((names[0], names[2] + t.trade_id, encode(msg))))
        self._count(env.sequence_num)  # last: a rejected frame is not counted
        return out

    def _level2(self, frame: Frame) -> list[Out]:
        env = envelope(_l2, frame.data, "l2_data")
        ts = to_ns(env.timestamp)
        cache = self._book_names
        # one Book per product per message: they share the message's sequence_num, so two
        # would look like a repeat to the book; a snapshot drops what came before it
        books: dict[str, tuple[bool, list[schemas.Level], list[schemas.Level], Names]] = {}
        for ev in env.events:
            if ev.type != "update" and ev.type != "snapshot":
                raise Rejected(f"unknown level2 event type {ev.type!r}")
            names = cache.get(ev.product_id) or self.names_miss("book", ev.product_id)
            prior = books.get(ev.product_id)
            if ev.type == "snapshot" or prior is None:
                prior = (ev.type == "snapshot", [], [], names)
                books[ev.product_id] = prior
            bids, asks = prior[1], prior[2]
            for u in ev.updates:
                if u.side == "bid":
                    bids.append((u.price_level, u.new_quantity))
                elif u.side == "offer":
                    asks.append((u.price_level, u.new_quantity))
                else:
                    raise Rejected(f"unknown level2 side {u.side!r}")
        seq = env.sequence_num
        last = self.last_seq
        if last is None or seq != last + 1:  # else the run goes on: track() inline
            first = self.track(seq)
        else:
            self.last_seq = seq
            first = self.run_start
        out = []
        for snapshot, bids, asks, names in books.values():
            msg = schemas.Book(
                venue=VENUE, symbol=names[1], ts_event=ts, ts_recv=frame.ts_recv,
                snapshot=snapshot, bids=bids, asks=asks, seq=seq, first_seq=first,
            )  # fmt: skip
            pre = names[2]
            msg_id = (
                f"{pre}snap{seq}r{frame.raw_seq}" if snapshot else f"{pre}{seq}r{frame.raw_seq}"
            )
            out.append(new_out((names[0], msg_id, encode(msg))))
        return out

    def _ticker(self, frame: Frame) -> list[Out]:
        env = envelope(_ticker, frame.data, "ticker")
        ts = to_ns(env.timestamp)
        bbos, tickers = self._bbo_names, self._ticker_names
        seq, recv, i = env.sequence_num, frame.ts_recv, 0
        out = []
        for ev in env.events:
            for t in ev.tickers:
                names = bbos.get(t.product_id)
                if names is None:
                    names = self.names_miss("bbo", t.product_id)
                    self.names_miss("ticker", t.product_id)
                tnames = tickers[t.product_id]
                # "" = no value (new listings); float() of anything else, or Rejected
                bb = float(t.best_bid) if t.best_bid else None
                ba = float(t.best_ask) if t.best_ask else None
                bq = float(t.best_bid_quantity) if t.best_bid_quantity else None
                aq = float(t.best_ask_quantity) if t.best_ask_quantity else None
                last = float(t.price) if t.price else None
                high = float(t.high_24_h) if t.high_24_h else None
                low = float(t.low_24_h) if t.low_24_h else None
                vol = float(t.volume_24_h) if t.volume_24_h else None
                natural = f"r{frame.raw_seq}:{i}"
                i += 1
                symbol = names[1]
                if bb is not None and ba is not None and bq is not None and aq is not None:
                    bbo = schemas.BBO(
                        venue=VENUE, symbol=symbol, ts_event=ts, ts_recv=recv,
                        bid_price=bb, bid_size=bq, ask_price=ba, ask_size=aq, seq=seq,
                    )  # fmt: skip
                    out.append(new_out((names[0], names[2] + natural, encode(bbo))))
                tk = schemas.Ticker(
                    venue=VENUE, symbol=symbol, ts_event=ts, ts_recv=recv, last=last,
                    bid=bb, ask=ba, high_24h=high, low_24h=low, volume_24h=vol,
                )  # fmt: skip
                out.append(new_out((tnames[0], tnames[2] + natural, encode(tk))))
        self._count(seq)  # last: a rejected frame is not counted
        return out

    def _candles(self, frame: Frame) -> list[Out]:
        env = envelope(_candles, frame.data, "candles")
        ts = to_ns(env.timestamp)
        cache = self._candle_names
        out = []
        for ev in env.events:
            for c in ev.candles:
                names = cache.get(c.product_id) or self.names_miss("candle", c.product_id)
                msg = schemas.Candle(
                    venue=VENUE, symbol=names[1], ts_event=ts, ts_recv=frame.ts_recv,
                    interval=CANDLE_INTERVAL, ts_open=c.start * 1_000_000_000, open=c.open,
                    high=c.high, low=c.low, close=c.close, volume=c.volume, closed=False,
                )  # fmt: skip
                msg_id = f"{names[2]}{CANDLE_INTERVAL}:{c.start}:r{frame.raw_seq}"
                out.append(new_out((names[0], msg_id, encode(msg))))
        self._count(env.sequence_num)  # last: a rejected frame is not counted
        return out

    def _control(self, frame: Frame) -> list[Out]:
        """Heartbeats, subscription acks, errors: nothing to publish, but they are part
        of the connection's sequence."""
        p = _probe.decode(frame.data)
        if p.sequence_num is not None:
            self.track(p.sequence_num)
        elif p.type != "error":
            raise Rejected("control frame with neither sequence_num nor type error")
        return []

    # -- reference data and connection events -----------------------------------------
    def _instruments(self, frame: Frame) -> list[Out]:
        body = _products.decode(frame.data)
        out = []
        for p in body.products:
            if p.product_type != "SPOT":
                continue  # CDE/INTX derivatives are not collected by this venue module
            try:
                symbol = symbols.to_symbol(p.product_id)
            except ValueError:
                continue  # a shape outside our naming scheme
            base, quote = p.product_id.split("-")
            msg = schemas.Instrument(
                venue=VENUE, symbol=symbol, ts_event=frame.ts_recv, ts_recv=frame.ts_recv,
                native_symbol=p.product_id, kind="spot", base=p.base_currency_id or base,
                quote=p.quote_currency_id or quote, settle=None,
                tick_size=float(p.price_increment or p.quote_increment),
                lot_size=float(p.base_increment), contract_size=1.0,
                active=p.status == "online" and not p.trading_disabled and not p.is_disabled,
            )  # fmt: skip
            out.append(self.instrument_out(msg, frame))
        return out

    def _conn(self, frame: Frame) -> list[Out]:
        self._reset()  # a new connection numbers its messages from 0 again
        return self.reconnect_gaps(frame, stale=True)
