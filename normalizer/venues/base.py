"""What every venue parser returns and raises."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import ClassVar, NamedTuple, Protocol

import msgspec

from streams import schemas, subjects


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


_encode = msgspec.json.Encoder().encode


class Naming:
    """Subjects, symbols and message ids of a venue's output, shared by the parsers.

    ``(subject, symbol)`` is cached per (message type, native symbol): subjects are built
    once per symbol, not per frame. ``Nats-Msg-Id`` is ``<venue>:<type>:<symbol>:<id>``.
    A parser sets ``market_venue`` and ``to_symbol`` and creates ``_names_cache``."""

    market_venue: ClassVar[str]
    _names_cache: dict[tuple[str, str], tuple[str, str]]

    def to_symbol(self, native: str) -> str:  # ValueError for a name outside our scheme
        raise NotImplementedError

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

    def _out(self, msg_type: str, native: str, natural_id: object, msg: schemas.Base) -> Out:
        # the cache hit inline and no NamedTuple __new__: this runs once per output message
        names = self._names_cache.get((msg_type, native)) or self._names(msg_type, native)
        return new_out(
            (names[0], f"{self.market_venue}:{msg_type}:{names[1]}:{natural_id}", _encode(msg))
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
