"""Keeping a book in sync: each venue's sequence rule, snapshot bridging, validity.

A ``BookState`` is fed ``book`` messages in stream order. While it has no valid snapshot
it buffers deltas; when a snapshot arrives it replays the buffer through the venue's
bridging rule. Any break (sequence gap, checksum mismatch, crossed book) makes the book
invalid and returns a ``Problem``; the service then asks for a fresh snapshot and never
publishes depth/BBO from an invalid book.
"""

from __future__ import annotations

import importlib
from collections import deque

from orderbook.book import L2Book
from orderbook.venues.base import Problem, Rule
from streams.schemas import Book, Instrument


def rule_for(venue: str, symbol: str, instrument: Instrument | None = None) -> Rule | None:
    """The sequencing rule of a venue's book, from ``orderbook/venues/<venue>.py``
    (``rule_for(symbol)``): one module per venue, found by name. A venue whose checksum
    needs the instrument's specification (contract size, precisions) also defines
    ``rule_with(symbol, instrument)``, used once the instrument message has been seen."""
    try:
        mod = importlib.import_module(f"orderbook.venues.{venue}")
    except ModuleNotFoundError:  # the ccxt long tail: ccxt validates, the chain is ours
        from orderbook.venues import ccxt

        return ccxt.rule_for_venue(venue, symbol)
    if instrument is not None and hasattr(mod, "rule_with"):
        return mod.rule_with(symbol, instrument)
    return mod.rule_for(symbol)


def wants_instruments(venue: str) -> bool:
    try:
        mod = importlib.import_module(f"orderbook.venues.{venue}")
    except ModuleNotFoundError:
        return False
    return hasattr(mod, "rule_with")


class BookState:
    def __init__(self, rule: Rule, *, max_buffer: int = 20_000) -> None:
        self.rule = rule
        self.book = L2Book()
        self.valid = False
        self.seq: int | None = None
        self.ts_event = 0
        self.ts_recv = 0
        self.buffer: deque[Book] = deque(maxlen=max_buffer)
        self.bridging = False  # next delta is the first after a snapshot
        self.updates = 0  # deltas applied
        self.problems = 0

    def feed(self, m: Book) -> Problem | None:
        if m.snapshot:
            if self.valid and self.rule.rest_snapshot:
                return None  # a valid book needs no extra REST snapshot (a 2nd resync answer)
            # a stream snapshot always resets the book: the venue restarted its sequence
            # (Bybit u == 1) or we resubscribed
            return self._snapshot(m)
        if not self.valid:
            self.buffer.append(m)
            return None
        return self._delta(m)

    def invalidate(self) -> None:
        self.valid = False
        self.buffer.clear()

    def _delta(self, m: Book) -> Problem | None:
        assert self.seq is not None
        rule = self.rule
        if self.bridging and rule.stale(self.seq, m):
            return None  # older than the snapshot: dropping it is the venue's procedure
        if not self.bridging and m.seq <= self.seq:  # once synced: a duplicate or old delta
            return Problem("sequence", self.seq + 1, m.seq, "duplicate or old delta ignored", False)
        ok = rule.bridges(self.seq, m) if self.bridging else rule.continues(self.seq, m)
        if not ok:
            expected = self.seq + 1
            got = m.first_seq if m.first_seq is not None else m.prev_seq
            self.invalidate()
            self.buffer.append(m)  # may bridge the next snapshot
            return Problem("sequence", expected, got, f"{rule.name}: delta does not continue")
        self.book.apply(m.bids, m.asks)
        self.seq = m.seq
        self.bridging = False
        self.ts_event, self.ts_recv = m.ts_event, m.ts_recv
        self.updates += 1
        if self.book.crossed():
            bb, ba = self.book.best_bid(), self.book.best_ask()
            self.invalidate()
            return Problem("crossed", None, m.seq, f"best bid {bb} >= best ask {ba}")
        return self._verify(m)

    def _verify(self, m: Book) -> Problem | None:
        verify = getattr(self.rule, "verify", None)
        if verify is None or m.checksum is None:
            return None
        detail = verify(self.book, m)
        if detail is None:
            return None
        self.invalidate()
        return Problem("checksum", m.checksum, None, detail)

    def _snapshot(self, m: Book) -> Problem | None:
        self.book.load(m.bids, m.asks)
        self.seq = m.seq
        self.ts_event, self.ts_recv = m.ts_event, m.ts_recv
        self.valid = True
        pending = list(self.buffer)
        self.buffer.clear()
        first = self.bridging = True
        for d in pending:
            if self.rule.stale(self.seq, d):
                continue
            if first and not self.rule.bridges(self.seq, d):
                snap = self.seq
                self.valid = False
                self.buffer.extend(pending)  # keep them for a newer snapshot
                return Problem(
                    "snapshot", snap + 1, d.first_seq, "snapshot older than the buffered deltas"
                )
            if not first and not self.rule.continues(self.seq, d):
                expected = self.seq + 1
                self.invalidate()
                return Problem("sequence", expected, d.first_seq, "gap inside buffered deltas")
            first = self.bridging = False
            self.book.apply(d.bids, d.asks)
            self.seq = d.seq
            self.ts_event, self.ts_recv = d.ts_event, d.ts_recv
        if self.book.crossed():
            self.invalidate()
            return Problem("crossed", None, self.seq, "crossed right after snapshot")
        if not pending:
            return self._verify(m)
        return None
