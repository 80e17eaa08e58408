"""Books of the ccxt WebSocket long tail (normalizer/venues/ccxt_ws): any ccxt exchange id
without a native rule module here.

ccxt's own handler keeps the venue's book (snapshot, deltas, and the venue's checksum or
sequence check where ccxt implements one); the normalizer publishes what changed in it,
``seq`` = the RAW sequence of the frame and ``prev_seq`` = that of the symbol's previous
book message. So the chain checked here proves nothing was lost between the normalizer and
this service; the venue-level validation is ccxt's, and the normalizer cuts the chain
(prev_seq no longer matches) when ccxt reports a checksum or sequence failure or drops the
book, which invalidates it here until the next snapshot.

``validation`` says what ccxt checks for a venue (``book.get`` replies carry it): where it
checks nothing, a lost or reordered venue frame cannot be detected, and the reply says so.
"""

from __future__ import annotations

from orderbook.venues.base import Rule
from streams.schemas import Book

# what ccxt pro (4.5) verifies of each venue's book, read from its handlers
VALIDATION = {
    "bitfinex": "checksum (crc32 of the top 25 levels, 'cs' frames; checked by ccxt)",
    "bitget": "checksum (crc32 of the top 25 levels of 'books'; checked by ccxt)",
    "cryptocom": "sequence (each book.update's pu = the previous u; checked by ccxt)",
}
UNVALIDATED = "none: ccxt applies this venue's deltas without a checksum or sequence check"


class CcxtChain:
    """``prev_seq`` chains each delta to the previous book message of the symbol."""

    rest_snapshot = False

    def __init__(self, venue: str) -> None:
        self.name = f"ccxt-{venue}"
        self.validation = VALIDATION.get(venue, UNVALIDATED)

    def stale(self, last: int, d: Book) -> bool:
        return d.seq <= last

    def bridges(self, snap: int, d: Book) -> bool:
        return d.prev_seq == snap

    def continues(self, last: int, d: Book) -> bool:
        return d.prev_seq == last


def rule_for_venue(venue: str, symbol: str) -> Rule:
    return CcxtChain(venue)
