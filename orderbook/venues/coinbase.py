"""Coinbase Advanced Trade book sync: ``level2`` over the WebSocket, no REST bridging.

What the venue gives: every message on a connection carries ``sequence_num``, which grows
by exactly 1 per message *on that connection, across all its channels* (level2 of every
product, trades, tickers, candles, heartbeats, subscription acks). There is no per-product
sequence and no checksum in Advanced Trade level2 (the legacy Exchange feed had neither).

What that means here: one product's book messages are not consecutive (BTC-USD at 17, a
heartbeat at 18, ETH-USD at 19, BTC-USD at 20), so "seq == last + 1" on book messages
would fail constantly, and "seq > last" would miss a lost update. Only something that sees
every message of the connection can tell whether anything was lost between two BTC-USD
messages; that is the normalizer (it reads all of RAW in order). It writes into each book
message ``first_seq``: the start of the unbroken run (every message from ``first_seq`` to
``seq`` arrived exactly once and in order) — see normalizer/venues/coinbase/parse.py.

The rule enforced: a delta continues a book whose last message was ``last`` iff
``first_seq <= last < seq``, i.e. the venue's +1-per-message rule held for the whole
stretch between them. Any break on the connection — a hole, a repeated or late message,
a frame that could not be decoded — restarts the run and so invalidates every book on
that connection whose last message lies before it. That is deliberately conservative:
we cannot know whose message was lost, so each product resyncs. A ``snapshot`` always
resets the book (subscribing sends one; so does re-subscribing on
``ctl.snapshot.coinbase.<symbol>``, the resync), and a reconnect restarts ``sequence_num``
at 0 with a snapshot per product first. Without a checksum, a level whose size is wrong
but well-formed cannot be detected by anyone; a malformed one is rejected by the
normalizer (a hole, hence a resync), one on the wrong side shows up as a crossed book.
"""

from __future__ import annotations

from orderbook.venues.base import Rule
from streams.schemas import Book


class CoinbaseConnectionSequence:
    name = "coinbase"
    rest_snapshot = False

    def stale(self, last: int, d: Book) -> bool:
        return d.seq <= last  # sent before the snapshot we hold

    def bridges(self, snap: int, d: Book) -> bool:
        return self.continues(snap, d)

    def continues(self, last: int, d: Book) -> bool:
        return d.first_seq is not None and d.first_seq <= last < d.seq


def rule_for(symbol: str) -> Rule:
    return CoinbaseConnectionSequence()
