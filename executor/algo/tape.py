"""What the algorithms read from MARKET: the validated top of book (``market.bbo`` /
``market.depth`` from the order-book service), whether that book is in a gap, and the
traded volume and notional (``market.trade``). Runs on every market message the executor
receives, so it only compares types and adds floats."""

from __future__ import annotations

from dataclasses import dataclass

from streams.schemas import BBO, Depth, Gap, Trade


@dataclass(slots=True)
class Tape:
    bid: float | None = None
    ask: float | None = None
    bid_size: float = 0.0
    ask_size: float = 0.0
    bids: list[tuple[float, float]] | None = None  # levels of the last depth (else the BBO)
    asks: list[tuple[float, float]] | None = None
    book_ns: int = 0  # ts_event of the last top of book
    in_gap: bool = False  # a gap was reported and no book has been published since
    volume: float = 0.0  # traded since this process started (cumulative)
    notional: float = 0.0
    trades: int = 0

    @property
    def mid(self) -> float | None:
        if self.bid is None or self.ask is None or self.in_gap:
            return None
        return (self.bid + self.ask) / 2

    def levels(self, side: str) -> list[tuple[float, float]]:
        """The side a ``side`` order takes (asks for a buy), best first; [] if unusable."""
        if not self.usable():
            return []
        if side == "buy":
            return self.asks or [(self.ask, self.ask_size)]  # type: ignore[list-item]
        return self.bids or [(self.bid, self.bid_size)]  # type: ignore[list-item]

    def usable(self) -> bool:
        """A two-sided, uncrossed book that is not in a gap."""
        return (
            not self.in_gap
            and self.bid is not None
            and self.ask is not None
            and self.bid < self.ask
        )


class Tapes:
    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str], Tape] = {}

    def get(self, venue: str, symbol: str) -> Tape:
        key = (venue, symbol)
        t = self.by_key.get(key)
        if t is None:
            t = self.by_key[key] = Tape()
        return t

    def on_market(self, msg: object) -> None:
        if isinstance(msg, Trade):
            t = self.get(msg.venue, msg.symbol)
            t.volume += msg.size
            t.notional += msg.price * msg.size
            t.trades += 1
        elif isinstance(msg, BBO):
            t = self.get(msg.venue, msg.symbol)
            t.bid, t.ask, t.bid_size, t.ask_size = (
                msg.bid_price, msg.ask_price, msg.bid_size, msg.ask_size)  # fmt: skip
            t.book_ns, t.in_gap = msg.ts_event, False
            t.bids = t.asks = None
        elif isinstance(msg, Depth):
            t = self.get(msg.venue, msg.symbol)
            if msg.bids and msg.asks:
                (t.bid, t.bid_size), (t.ask, t.ask_size) = msg.bids[0], msg.asks[0]
                t.bids, t.asks = msg.bids, msg.asks  # kept as received: no copy per message
                t.book_ns, t.in_gap = msg.ts_event, False
        elif isinstance(msg, Gap) and not msg.detail.endswith("(book still valid)"):
            # until the order-book service publishes the book again (only valid books are
            # published); conservative for feed gaps of other channels too
            self.get(msg.venue, msg.symbol).in_gap = True
