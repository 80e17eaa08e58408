"""What every venue parser returns and raises."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple, Protocol

import msgspec


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
