"""Deribit book sync: ``book.<instrument>.<interval>`` pushes a full snapshot on subscribe
(``type: snapshot``, ``change_id`` only), then changes whose ``prev_change_id`` equals the
previous message's ``change_id`` (Deribit: "if prev_change_id equals the change_id of the
previous message, no messages were missed"). ``Book.seq`` is ``change_id`` and
``prev_seq`` is ``prev_change_id``; change ids grow but skip values, so only the chain is
a valid test, never ``seq == last + 1``.

Snapshots come through the stream, so a resync is a re-subscription (the collector answers
``ctl.snapshot.deribit.<symbol>`` with unsubscribe + subscribe) and a snapshot always
resets the book. Deribit publishes no checksum for this channel, so there is nothing to
verify beyond the chain and a crossed book: a corrupted size that leaves the book uncrossed
cannot be seen from this channel alone (a corrupt frame the normalizer rejects does break
the chain, and that is caught).
"""

from __future__ import annotations

from orderbook.venues.base import Rule
from streams.schemas import Book


class DeribitChangeId:
    name = "deribit"
    rest_snapshot = False

    def stale(self, last: int, d: Book) -> bool:
        return d.seq <= last  # pushed before the snapshot we hold (around a resubscribe)

    def bridges(self, snap: int, d: Book) -> bool:
        return d.prev_seq == snap

    def continues(self, last: int, d: Book) -> bool:
        return d.prev_seq == last


def rule_for(symbol: str) -> Rule:
    return DeribitChangeId()
