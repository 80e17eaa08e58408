"""An L2 order book: price -> size per side, kept sorted for top-N and BBO.

sortedcontainers (Apache-2.0) gives O(log n) inserts with C-speed bisect; a plain dict
would make every depth/BBO read an O(n log n) sort.
"""

from __future__ import annotations

from operator import neg

from sortedcontainers import SortedDict

Level = tuple[float, float]


class L2Book:
    __slots__ = ("asks", "bids")

    def __init__(self) -> None:
        self.bids: SortedDict = SortedDict(neg)  # best (highest) first
        self.asks: SortedDict = SortedDict()  # best (lowest) first

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()

    def load(self, bids: list[Level], asks: list[Level]) -> None:
        """Replace the whole book with a snapshot."""
        self.clear()
        self.apply(bids, asks)

    def apply(self, bids: list[Level], asks: list[Level]) -> None:
        """Apply level changes: size 0 deletes the level (absent levels are fine)."""
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, size in levels:
                if size == 0.0:
                    side.pop(price, None)
                else:
                    side[price] = size

    def best_bid(self) -> Level | None:
        return self.bids.peekitem(0) if self.bids else None

    def best_ask(self) -> Level | None:
        return self.asks.peekitem(0) if self.asks else None

    def crossed(self) -> bool:
        if not self.bids or not self.asks:
            return False
        return bool(self.bids.peekitem(0)[0] >= self.asks.peekitem(0)[0])

    def top(self, n: int) -> tuple[list[Level], list[Level]]:
        return list(self.bids.items()[:n]), list(self.asks.items()[:n])

    def levels(self) -> tuple[list[Level], list[Level]]:
        return list(self.bids.items()), list(self.asks.items())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, L2Book) and self.levels() == other.levels()

    def __repr__(self) -> str:
        bbo = f"{self.best_bid()}/{self.best_ask()}"
        return f"L2Book(bids={len(self.bids)}, asks={len(self.asks)}, bbo={bbo})"
