"""What every venue parser is: its channel map, one handler per channel, and here the one
``parse()`` that dispatches a frame to its handler and turns what the handler raises into a
dead letter's reason (the policy below), so the venues' parse modules hold only their own
channels."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar, NamedTuple, Protocol

import msgspec
from prometheus_client import Counter

from streams import schemas, subjects

# Venue rows deliberately not published (not malformed, so not dead letters: the DLQ stays a
# signal of real problems), counted by a fixed reason per venue. Only cold paths count.
SKIPPED = Counter(
    "jetmarket_normalizer_skipped_total",
    "venue rows a parser deliberately did not publish, by reason",
    ["venue", "reason"],
)


def json_or_none(data: bytes) -> Any:
    """``data`` decoded as untyped JSON, or None when it is not JSON: for the cold paths
    that only sniff what an unroutable frame is."""
    try:
        return msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return None


class Out(NamedTuple):
    """One typed message ready to publish: subject, Nats-Msg-Id, encoded JSON."""

    subject: str
    msg_id: str
    data: bytes


# ``Out((subject, msg_id, data))`` without the NamedTuple's Python-level ``__new__``: half
# the cost, for parsers' hot paths.
new_out: Callable[[tuple[str, str, bytes]], Out] = partial(tuple.__new__, Out)  # type: ignore[assignment]


class Rejected(Exception):
    """A frame that cannot be normalized; the message is the reason sent to the DLQ."""


# one encoder for every parser's messages (a bound method: no attribute lookup per call)
encode = msgspec.json.Encoder().encode


class ConnEvent(msgspec.Struct):
    """Written by our own collectors to ``raw.<venue>.conn.ALL`` (collectors/base.py)."""

    event: str  # "connected" | "disconnected"
    conn: str
    ts: int
    symbols: list[str] = []
    reason: str = ""
    # a "lost" event (collectors/base.py): its channel and, per native symbol, [frames,
    # first receive ns, last receive ns]
    channel: str = ""
    lost: dict[str, list[int]] = {}


_conn_event = msgspec.json.Decoder(ConnEvent).decode

# One native symbol's names for one message type: (subject, symbol, message-id prefix
# ``<venue>:<type>:<symbol>:``). A hot handler appends the natural id to the prefix: one
# concatenation instead of formatting four parts per message.
Names = tuple[str, str, str]


class Naming:
    """Subjects, symbols and message ids of a venue's output, shared by the parsers.

    ``(subject, symbol)`` is cached per (message type, native symbol): subjects are built
    once per symbol, not per frame. ``Nats-Msg-Id`` is ``<venue>:<type>:<symbol>:<id>``.
    A parser sets ``to_symbol`` (and ``market_venue`` when its raw venue token is not the
    messages' venue); :class:`Parser` creates the cache."""

    market_venue: str = ""  # the messages' venue; the raw venue token when empty
    # native name -> jetmarket symbol; ValueError for a name outside our scheme
    to_symbol: Callable[[str], str]
    _names_cache: dict[tuple[str, str], tuple[str, str]]

    def _names(self, msg_type: str, native: str) -> tuple[str, str]:
        key = (msg_type, native)
        hit = self._names_cache.get(key)
        if hit is None:
            try:
                symbol = self.to_symbol(native)
            except ValueError as exc:
                raise Rejected(str(exc)) from None
            hit = (subjects.market(msg_type, self.market_venue, symbol), symbol)
            self._names_cache[key] = hit
        return hit

    def names_of(self, msg_type: str) -> dict[str, Names]:
        """The :data:`Names` of one message type by native symbol. A handler binds this dict
        once (in ``__init__``) and looks a symbol up inline, falling back to
        :meth:`names_miss`: a dict hit per message instead of a method call and a tuple key."""
        return self._typed_names.setdefault(msg_type, {})

    def names_miss(self, msg_type: str, native: str) -> Names:
        """First sight of ``native`` for ``msg_type``: name it (Rejected when it cannot be
        named) and cache the result in :meth:`names_of`."""
        subject, symbol = self._names(msg_type, native)
        hit = (subject, symbol, f"{self.market_venue}:{msg_type}:{symbol}:")
        self.names_of(msg_type)[native] = hit
        return hit

    def reconnect_gaps(
        self, frame: Frame, *, skip_unknown: bool = False, stale: bool = False
    ) -> list[Out]:
        """A ``disconnected`` event: a ``reconnect`` gap (``stale`` when the collector cut a
        silent feed and ``stale`` is asked for) for every symbol the connection carried:
        frames may have been missed until the next connection's snapshot. ``skip_unknown``:
        symbols the parser cannot name produced nothing, so they get no gap either."""
        ev = _conn_event(frame.data)
        if ev.event == "lost":
            return self._lost_gaps(ev, frame)
        if ev.event != "disconnected":
            return []
        reason = "stale" if stale and ev.reason.startswith("stale") else "reconnect"
        out = []
        for native in ev.symbols:
            try:
                _, symbol = self._names("gap", native)
            except Rejected:
                if skip_unknown:
                    continue
                raise
            msg = schemas.Gap(
                venue=self.market_venue, symbol=symbol, ts_event=ev.ts, ts_recv=frame.ts_recv,
                reason=reason, channel="ws",  # type: ignore[arg-type]
                detail=f"connection {ev.conn} closed: {ev.reason}"[:500],
            )  # fmt: skip
            out.append(self._out("gap", native, f"raw{frame.raw_seq}", msg))
        return out

    def _lost_gaps(self, ev: ConnEvent, frame: Frame) -> list[Out]:
        """A ``lost`` event: a ``lost`` gap per symbol saying how many frames of which
        channel, received when, and why; ts_event is the first lost frame's receive time.
        A name outside our scheme (``ALL`` of an instruments body) keeps its native name."""
        out = []
        for native, (count, first, last) in ev.lost.items():
            try:
                _, symbol = self._names("gap", native)
            except Rejected:
                symbol = subjects.token(native)
            msg = schemas.Gap(
                venue=self.market_venue, symbol=symbol, ts_event=first, ts_recv=frame.ts_recv,
                reason="lost", channel=ev.channel[:100],
                detail=f"lost {count} frames received {first}..{last} ns: {ev.reason}"[:500],
            )  # fmt: skip
            msg_id = f"{self.market_venue}:gap:{symbol}:raw{frame.raw_seq}"
            out.append(new_out((subjects.market("gap", self.market_venue, symbol), msg_id,
                                encode(msg))))  # fmt: skip
        return out

    def instrument_out(self, msg: schemas.Instrument, frame: Frame) -> Out:
        """An instrument message, identified by the raw frame it came from: a venue's list
        is republished on every refresh, and each refresh is a new row in ``instruments``."""
        return new_out((
            subjects.market("instrument", self.market_venue, msg.symbol),
            f"{self.market_venue}:instrument:{msg.symbol}:{frame.raw_seq}",
            encode(msg),
        ))  # fmt: skip

    def emit(
        self, kind: type[schemas.Base], native: str, natural_id: object, frame: Frame,
        ts_event: int, **fields: Any,
    ) -> Out:  # fmt: skip
        """One message of ``kind`` about ``native``, received with ``frame``: its venue,
        symbol and ``ts_recv`` filled in. For the low-rate channels (funding, open interest,
        marks, liquidations, snapshots): keyword arguments cost more than the hot handlers'
        inline construction."""
        msg_type: str = kind.__struct_config__.tag  # type: ignore[assignment]
        subject, symbol = self._names(msg_type, native)
        msg = kind(
            venue=self.market_venue, symbol=symbol, ts_event=ts_event, ts_recv=frame.ts_recv,
            **fields,
        )  # fmt: skip
        return new_out((subject, f"{self.market_venue}:{msg_type}:{symbol}:{natural_id}",
                        encode(msg)))  # fmt: skip

    def history_out(
        self, kind: type[schemas.Base], frame: Frame, period: str, ts_ms: int, **fields: Any
    ) -> Out:
        """One row of a REST history page (a ``<endpoint>-<period>`` channel) about the raw
        subject's symbol: :meth:`emit` with the natural id ``<period>:<row ms>`` every
        venue's history rows use, and the row's ``period``."""
        return self.emit(
            kind, frame.native_symbol, f"{period}:{ts_ms}", frame, ts_ms * 1_000_000,
            period=period, **fields,
        )  # fmt: skip

    def _out(self, msg_type: str, native: str, natural_id: object, msg: schemas.Base) -> Out:
        # the cache hit inline and no NamedTuple __new__: this runs once per output message
        names = self._names_cache.get((msg_type, native)) or self._names(msg_type, native)
        return new_out(
            (names[0], f"{self.market_venue}:{msg_type}:{names[1]}:{natural_id}", encode(msg))
        )


class Frame(msgspec.Struct, frozen=True, gc=False):
    """One raw frame as a parser sees it. A Struct: built once per frame, and a NamedTuple
    costs ~4x more to construct (its ``__new__`` is Python code)."""

    channel: str
    native_symbol: str
    data: bytes
    ts_recv: int  # collector receive time, ns
    raw_seq: int  # RAW stream sequence: a stable identity for frames without one


class VenueParser(Protocol):
    venue: str
    # channel -> what it becomes; channels not listed are rejected as unknown.
    channels: dict[str, str]

    def parse(self, frame: Frame) -> list[Out]: ...


Handler = Callable[[Frame], list[Out]]


class Parser(Naming):
    """One venue's parser: ``channels`` (raw channel -> the message types it becomes, read
    by normalizer/coverage.py too) and a handler per channel, the method ``_<channel>``
    (``-`` written ``_``) unless ``handler_of`` names another.

    The dead-letter policy, for every venue: a handler raises :class:`Rejected` with the
    reason; a frame that does not fit its wire shape (``msgspec.ValidationError``) is
    ``invalid``; one that is not JSON, not UTF-8 or nested deeper than the decoder recurses
    is ``malformed``; a ``ValueError`` (a bad timestamp or decimal string the handler
    converts itself) is ``invalid``. Anything else is a parser bug and reaches
    ``normalizer.core.failure`` as one ("parser error ..."): the frame is kept either way."""

    venue: str  # the raw subject's venue token
    channels: ClassVar[dict[str, str]] = {}
    handler_of: ClassVar[dict[str, str]] = {}
    # message types whose names the hot handlers look up inline: each gets the attribute
    # ``_<type>_names`` (:meth:`Naming.names_of`), a dict hit per message
    inline_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.market_venue = self.market_venue or self.venue
        self._names_cache: dict[tuple[str, str], tuple[str, str]] = {}
        # a plain attribute, never through ``self.__dict__``: touching the instance dict
        # turns off CPython 3.11's inline attribute values, which cost ~250 ns per Coinbase
        # trade frame (3.10 -> 2.85 us per frame of bench_coinbase market_trades, A/B runs)
        self._typed_names: dict[str, dict[str, Names]] = {}
        for msg_type in self.inline_names:
            setattr(self, f"_{msg_type}_names", self.names_of(msg_type))
        self._dispatch: dict[str, Handler] = {
            ch: getattr(self, self.handler_of.get(ch) or "_" + ch.replace("-", "_"))
            for ch in self.channels
        }

    def parse(self, frame: Frame) -> list[Out]:
        try:  # a subscript, not .get(): no method call on every frame
            handler = self._dispatch[frame.channel]
        except KeyError:
            handler = self._unlisted(frame.channel)
        try:
            return handler(frame)
        except msgspec.ValidationError as exc:  # before DecodeError: it is one
            raise Rejected(f"invalid {frame.channel} frame: {exc}") from None
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise Rejected(f"malformed {frame.channel} frame: {exc}") from None
        except ValueError as exc:  # after DecodeError and UnicodeDecodeError: they are ones
            raise Rejected(f"invalid {frame.channel} frame: {exc}") from None

    def _unlisted(self, channel: str) -> Handler:
        """The handler of a channel outside the map (a parser with families of channels
        overrides this); Rejected by default. ``unknown`` (what a collector routes a frame
        it cannot place to) gets :meth:`_unknown`, which says what the frame is."""
        if channel == "unknown":
            return self._unknown
        raise Rejected(f"unknown channel {channel!r}") from None

    def _unknown(self, frame: Frame) -> list[Out]:
        """A frame the collector could not route: a retired API's frame (a replayed old
        capture) is named as such, so whoever reads the dead letter knows at once."""
        raise Rejected(self.retired(frame.data) or "unknown channel 'unknown'")

    def retired(self, data: bytes) -> str | None:
        """Why ``data`` is a frame of a retired API of this venue, or None (not one, or not
        recognised). Runs only for unroutable frames, never on the hot path."""
        return None

    # -- handlers every venue has ------------------------------------------------------
    def _conn(self, frame: Frame) -> list[Out]:
        """Our collectors' connection events: a reconnect gap per symbol on disconnect."""
        return self.reconnect_gaps(frame)

    def _control(self, frame: Frame) -> list[Out]:
        """Subscription acks, pongs, notices: nothing to publish."""
        return []

    @staticmethod
    def _same(frame: Frame, native: str) -> None:
        """A frame naming another symbol than its raw subject's: refused (a venue whose
        names differ from the subject token, or which words it otherwise, overrides)."""
        if native != frame.native_symbol:
            raise Rejected(f"symbol {native!r} in a frame published for {frame.native_symbol!r}")
