"""What every venue's book rule is (``orderbook/venues/<venue>.py``): the sequencing
``Rule`` on ``Book.seq`` / ``first_seq`` / ``prev_seq``, a ``ChecksumRule`` where the venue
sends a checksum, and the ``Problem`` a rule reports. orderbook/sync.py applies them."""

from __future__ import annotations

from typing import NamedTuple, Protocol

from orderbook.book import L2Book
from streams.schemas import Book


class Problem(NamedTuple):
    reason: str  # "sequence" | "checksum" | "crossed" | "snapshot"
    expected: int | None
    got: int | None
    detail: str
    fatal: bool = True  # False: detected and harmless (e.g. a duplicate), book still valid


class Rule(Protocol):
    """A venue's sequencing rule on ``Book.seq`` / ``first_seq`` / ``prev_seq``."""

    name: str
    rest_snapshot: bool  # snapshots come from REST (deltas must be buffered meanwhile)

    def stale(self, last: int, d: Book) -> bool: ...  # to drop before bridging a snapshot
    def bridges(self, snap: int, d: Book) -> bool: ...  # first delta valid after a snapshot
    def continues(self, last: int, d: Book) -> bool: ...  # next delta valid after ``last``


class ChecksumRule(Rule, Protocol):
    """A rule whose venue sends a checksum of the book after each message."""

    def verify(self, book: L2Book, m: Book) -> str | None: ...  # mismatch detail, or None
