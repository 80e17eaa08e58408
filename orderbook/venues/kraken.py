"""Kraken WebSocket v2 book sync: snapshot then updates over the stream, no sequence numbers,
a CRC32 of the top 10 levels on every message (snapshots included).

Checksum (Kraken's "Book checksum (WebSocket v2)" guide): for the 10 best asks (price
ascending) then the 10 best bids (price descending), write price and qty with the pair's
price / qty precision, remove the decimal point, strip leading zeros, concatenate, and take
the CRC32 as an unsigned 32-bit integer. The v1 feed uses the same string rule on its own
decimal strings (``digits``), which the tests check against recorded v1 checksums.

Precision: v2 sends numbers (``0.1`` for ``0.10000000``), so the strings need the pair's
``price_precision`` / ``qty_precision``. The service feeds rules book messages only, so the
rule learns them from the venue's own checksum: the first message it verifies (and any later
mismatch) tries every precision from the fewest decimals the numbers need up to 12 and keeps
the one whose CRC equals Kraken's. A wrong book matches none of them (a 1 in ~2^25 chance of
a false match over the ~150 candidates), so a mismatch still invalidates the book.

Depth: Kraken never deletes a level pushed out of the subscribed depth; clients must truncate
after each update. The rule learns the depth (10, 25, 100, 500, 1000) from the snapshot's size
and truncates the book in ``verify`` (the per-message hook BookState gives rules). A thin
snapshot under-estimates it; the worst case is a checksum mismatch and a resync.

Sequencing: ``Book.seq`` is the RAW stream sequence (the parser's), so only order is checked,
plus a replayed frame (identical to the previous one) counts as a sequence fault. Faults
that touch only levels below the top 10 are invisible to Kraken's checksum by design.
"""

from __future__ import annotations

import zlib
from decimal import Decimal

from orderbook.book import L2Book
from orderbook.venues.base import Rule
from streams.schemas import Book, Level

TOP = 10
DEPTHS = (10, 25, 100, 500, 1000)  # the depths Kraken's book channel offers
MAX_DECIMALS = 12


def digits(decimal_text: str) -> str:
    """Kraken's per-value string: decimal point removed, leading zeros stripped."""
    return decimal_text.replace(".", "").lstrip("0")


def crc(asks: list[tuple[str, str]], bids: list[tuple[str, str]]) -> int:
    """The checksum of best-first decimal strings (the top 10 of each side are used)."""
    text = "".join(digits(p) + digits(q) for p, q in asks[:TOP])
    text += "".join(digits(p) + digits(q) for p, q in bids[:TOP])
    return zlib.crc32(text.encode())


def checksum(asks: list[Level], bids: list[Level], price_dec: int, qty_dec: int) -> int:
    """The checksum of best-first float levels written with the pair's precisions."""
    parts = [
        f"{p:.{price_dec}f}".replace(".", "").lstrip("0")
        + f"{q:.{qty_dec}f}".replace(".", "").lstrip("0")
        for side in (asks[:TOP], bids[:TOP])
        for p, q in side
    ]
    return zlib.crc32("".join(parts).encode())


def decimals(x: float) -> int:
    """Fewest decimals that write ``x`` exactly (from its shortest round-trip repr)."""
    s = repr(x)
    if "e" in s or "E" in s:
        s = format(Decimal(s), "f")
    return len(s.partition(".")[2].rstrip("0"))


def depth_of(levels: int) -> int:
    """The subscribed depth a snapshot with this many levels on its fuller side implies."""
    for d in DEPTHS:
        if levels <= d:
            return d
    return DEPTHS[-1]


def truncate(book: L2Book, depth: int) -> None:
    for side in (book.bids, book.asks):
        while len(side) > depth:
            side.popitem(-1)  # the worst level


class KrakenV2:
    name = "kraken-v2"
    rest_snapshot = False

    def __init__(self, depth: int | None = None, precision: tuple[int, int] | None = None) -> None:
        self.fixed_depth = depth is not None
        self.depth = depth
        self.precision = precision  # (price decimals, qty decimals), learned if None
        self._last: tuple[int, list[Level], list[Level], int | None] | None = None

    # -- sequencing: only order, plus replays ---------------------------------------------
    def stale(self, last: int, d: Book) -> bool:
        return d.seq <= last  # sent before the (re)subscription's snapshot

    def bridges(self, snap: int, d: Book) -> bool:
        return d.seq > snap and not self._replay(d)

    def continues(self, last: int, d: Book) -> bool:
        return d.seq > last and not self._replay(d)

    def _replay(self, d: Book) -> bool:
        """Kraken sends an update only when the book changed, so the same update twice in a
        row (same time, levels and checksum) is a replayed frame: resync."""
        key = (d.ts_event, d.bids, d.asks, d.checksum)
        replay = key == self._last
        self._last = key
        return replay

    # -- checksum -------------------------------------------------------------------------
    def verify(self, book: L2Book, m: Book) -> str | None:
        if m.snapshot:
            self._last = None
            if not self.fixed_depth:
                self.depth = depth_of(max(len(m.bids), len(m.asks)))
        elif self.depth is None:  # the snapshot was not verified (stale deltas bridged it)
            # the largest depth the book fills: one update adds few levels beyond it
            n = max(len(book.bids), len(book.asks))
            self.depth = max((d for d in DEPTHS if d <= n), default=DEPTHS[0])
        truncate(book, self.depth)
        bids, asks = book.top(TOP)
        if self.precision is not None and checksum(asks, bids, *self.precision) == m.checksum:
            return None
        found = self.calibrate(asks, bids, m.checksum)
        if found is not None:
            self.precision = found
            return None
        return f"kraken crc32 of top {TOP} matches no precision, venue sent {m.checksum}"

    @staticmethod
    def calibrate(asks: list[Level], bids: list[Level], want: int | None) -> tuple[int, int] | None:
        """The (price, qty) decimals whose checksum equals the venue's, or None."""
        levels = asks[:TOP] + bids[:TOP]
        if want is None or not levels:
            return None
        p_min = max(decimals(p) for p, _ in levels)
        q_min = max(decimals(q) for _, q in levels)
        for p in range(p_min, MAX_DECIMALS + 1):
            for q in range(q_min, MAX_DECIMALS + 1):
                if checksum(asks, bids, p, q) == want:
                    return p, q
        return None


def rule_for(symbol: str) -> Rule:
    return KrakenV2()
