"""Bybit v5 book sync: ``orderbook.50`` / ``orderbook.200`` pushed over the stream.

Snapshots arrive in-stream (on subscribe, after a venue restart with ``u == 1``, and when
the collector re-subscribes on ``ctl.snapshot.bybit.<symbol>``), so there is no REST
bridging: ``Book.seq`` is ``u``, and Bybit increments ``u`` by exactly one per message of
a topic ("under normal circumstances the id is continuous"), so anything else is a gap.
"""

from __future__ import annotations

from orderbook.venues.base import Rule
from streams.schemas import Book


class BybitV5:
    name = "bybit-v5"
    rest_snapshot = False

    def stale(self, last: int, d: Book) -> bool:
        return d.seq <= last  # pushed before the snapshot we hold (e.g. around a resubscribe)

    def bridges(self, snap: int, d: Book) -> bool:
        return d.seq == snap + 1

    def continues(self, last: int, d: Book) -> bool:
        return d.seq == last + 1


def rule_for(symbol: str) -> Rule:
    return BybitV5()
