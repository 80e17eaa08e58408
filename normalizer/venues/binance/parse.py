"""Binance spot raw frames -> typed jetmarket messages.

Channel map (raw channel -> market type):
  trade        -> trade               (``t`` is the natural id)
  aggTrade     -> trade, aggregated   (``a`` is the natural id)
  depth        -> book delta          (``U``/``u`` carried as first_seq/seq)
  snapshot     -> book snapshot       (REST depth; ``lastUpdateId`` as seq)
  instruments  -> instrument per symbol (REST exchangeInfo)
  conn         -> gap(reason=reconnect) per symbol when a connection drops
  control      -> nothing (subscription acknowledgements)
"""

from __future__ import annotations

import msgspec

from normalizer.symbols import binance_spot
from normalizer.venues.base import Frame, Out, Rejected
from normalizer.venues.binance import wire
from streams import schemas, subjects

VENUE = "binance"
MS = 1_000_000

_trade = wire.decoder(wire.TradeFrame)
_agg = wire.decoder(wire.AggTradeFrame)
_depth = wire.decoder(wire.DepthFrame)
_snapshot = wire.decoder(wire.DepthSnapshot)
_info = wire.decoder(wire.ExchangeInfo)
_conn = wire.decoder(wire.ConnEvent)
_encode = msgspec.json.Encoder().encode


class BinanceSpotParser:
    venue = VENUE
    channels = {
        "trade": "trade",
        "aggTrade": "trade",
        "depth": "book",
        "snapshot": "book",
        "instruments": "instrument",
        "conn": "gap",
        "control": "",
    }

    def __init__(self) -> None:
        self._subject: dict[tuple[str, str], tuple[str, str]] = {}
        self._dispatch = {
            "trade": self._trade,
            "aggTrade": self._agg_trade,
            "depth": self._depth,
            "snapshot": self._snapshot,
            "instruments": self._instruments,
            "conn": self._conn,
            "control": _nothing,
        }

    def parse(self, frame: Frame) -> list[Out]:
        handler = self._dispatch.get(frame.channel)
        if handler is None:
            raise Rejected(f"unknown channel {frame.channel!r}")
        try:
            return handler(frame)
        except msgspec.ValidationError as exc:
            raise Rejected(f"invalid {frame.channel} frame: {exc}") from None
        except msgspec.DecodeError as exc:
            raise Rejected(f"malformed {frame.channel} frame: {exc}") from None

    def _names(self, msg_type: str, native: str) -> tuple[str, str]:
        """(subject, symbol) cached per native symbol: subjects are built once, not per frame."""
        key = (msg_type, native)
        hit = self._subject.get(key)
        if hit is None:
            try:
                symbol = binance_spot(native)
            except ValueError as exc:
                raise Rejected(str(exc)) from None
            hit = (subjects.market(msg_type, VENUE, symbol), symbol)
            self._subject[key] = hit
        return hit

    def _check_symbol(self, frame: Frame, s: str) -> None:
        if s != frame.native_symbol:
            raise Rejected(f"symbol {s!r} in a frame published for {frame.native_symbol!r}")

    def _trade(self, frame: Frame) -> list[Out]:
        d = _trade.decode(frame.data).data
        if d.e != "trade":
            raise Rejected(f"unexpected event {d.e!r} on the trade channel")
        self._check_symbol(frame, d.s)
        subject, symbol = self._names("trade", d.s)
        msg = schemas.Trade(
            venue=VENUE,
            symbol=symbol,
            ts_event=d.trade_time * MS,
            ts_recv=frame.ts_recv,
            id=str(d.t),
            price=d.p,
            size=d.q,
            side="sell" if d.m else "buy",
        )
        return [Out(subject, f"binance:trade:{symbol}:{d.t}", _encode(msg))]

    def _agg_trade(self, frame: Frame) -> list[Out]:
        d = _agg.decode(frame.data).data
        if d.e != "aggTrade":
            raise Rejected(f"unexpected event {d.e!r} on the aggTrade channel")
        self._check_symbol(frame, d.s)
        subject, symbol = self._names("trade", d.s)
        msg = schemas.Trade(
            venue=VENUE,
            symbol=symbol,
            ts_event=d.trade_time * MS,
            ts_recv=frame.ts_recv,
            id=f"a{d.a}",
            price=d.p,
            size=d.q,
            side="sell" if d.m else "buy",
            aggregated=True,
        )
        return [Out(subject, f"binance:trade:{symbol}:a{d.a}", _encode(msg))]

    def _depth(self, frame: Frame) -> list[Out]:
        d = _depth.decode(frame.data).data
        if d.e != "depthUpdate":
            raise Rejected(f"unexpected event {d.e!r} on the depth channel")
        self._check_symbol(frame, d.s)
        if d.first_id > d.last_id:
            raise Rejected(f"depth update with U {d.first_id} > u {d.last_id}")
        subject, symbol = self._names("book", d.s)
        msg = schemas.Book(
            venue=VENUE,
            symbol=symbol,
            ts_event=d.event_time * MS,
            ts_recv=frame.ts_recv,
            snapshot=False,
            bids=d.b,
            asks=d.a,
            seq=d.last_id,
            first_seq=d.first_id,
        )
        return [Out(subject, f"binance:book:{symbol}:{d.last_id}", _encode(msg))]

    def _snapshot(self, frame: Frame) -> list[Out]:
        d = _snapshot.decode(frame.data)
        subject, symbol = self._names("book", frame.native_symbol)
        msg = schemas.Book(
            venue=VENUE,
            symbol=symbol,
            # REST depth carries no exchange time: the receive time is the best we have.
            ts_event=frame.ts_recv,
            ts_recv=frame.ts_recv,
            snapshot=True,
            bids=d.bids,
            asks=d.asks,
            seq=d.lastUpdateId,
        )
        return [Out(subject, f"binance:book:{symbol}:snap{d.lastUpdateId}", _encode(msg))]

    def _instruments(self, frame: Frame) -> list[Out]:
        info = _info.decode(frame.data)
        out = []
        for s in info.symbols:
            tick = next((f.tickSize for f in s.filters if f.filterType == "PRICE_FILTER"), None)
            lot = next((f.stepSize for f in s.filters if f.filterType == "LOT_SIZE"), None)
            if not tick or not lot:
                continue  # not tradable as described; nothing sensible to publish
            symbol = f"{s.baseAsset}-{s.quoteAsset}"
            msg = schemas.Instrument(
                venue=VENUE,
                symbol=symbol,
                ts_event=info.serverTime * MS,
                ts_recv=frame.ts_recv,
                native_symbol=s.symbol,
                kind="spot",
                base=s.baseAsset,
                quote=s.quoteAsset,
                tick_size=tick,
                lot_size=lot,
                active=s.status == "TRADING",
            )
            out.append(
                Out(
                    subjects.market("instrument", VENUE, symbol),
                    f"binance:instrument:{symbol}:{frame.raw_seq}",
                    _encode(msg),
                )
            )
        return out

    def _conn(self, frame: Frame) -> list[Out]:
        ev = _conn.decode(frame.data)
        if ev.event != "disconnected":
            return []
        out = []
        for native in ev.symbols:
            subject, symbol = self._names("gap", native)
            msg = schemas.Gap(
                venue=VENUE,
                symbol=symbol,
                ts_event=ev.ts,
                ts_recv=frame.ts_recv,
                reason="reconnect",
                channel="ws",
                detail=f"connection {ev.conn} closed: {ev.reason}"[:500],
            )
            out.append(Out(subject, f"binance:gap:{symbol}:raw{frame.raw_seq}", _encode(msg)))
        return out


def _nothing(frame: Frame) -> list[Out]:
    return []
