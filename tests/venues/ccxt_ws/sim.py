"""What the long-tail emulators share: a seeded market per symbol (trades, an L2 book moved
by deltas, a ticker) whose truth the tests compare with what reached MARKET and ClickHouse.
Each emulator writes these events in its venue's own wire format."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

T0_MS = 1_760_000_000_000


@dataclass
class Trade:
    id: int
    ms: int
    price: float
    size: float
    side: str  # taker side: "buy" | "sell"


@dataclass
class Market:
    """One symbol: prices in ticks of ``tick``, sizes in lots of ``lot``."""

    unified: str
    native: str
    mid: int  # ticks
    tick: float = 0.1
    lot: float = 0.0001
    levels: int = 12
    rnd: random.Random = field(default_factory=lambda: random.Random(1))
    bids: dict[int, int] = field(default_factory=dict)  # ticks -> lots
    asks: dict[int, int] = field(default_factory=dict)
    trades: list[Trade] = field(default_factory=list)
    next_id: int = 1_000_000
    ms: int = T0_MS

    def __post_init__(self) -> None:
        for i in range(1, self.levels + 1):
            self.bids[self.mid - i] = self.rnd.randint(1, 50_000)
            self.asks[self.mid + i] = self.rnd.randint(1, 50_000)

    def price(self, ticks: int) -> float:
        return round(ticks * self.tick, 8)

    def size(self, lots: int) -> float:
        return round(lots * self.lot, 8)

    def book(self) -> dict[str, dict[float, float]]:
        """The book as the venue holds it: price -> size, floats."""
        return {
            "bids": {self.price(p): self.size(q) for p, q in self.bids.items()},
            "asks": {self.price(p): self.size(q) for p, q in self.asks.items()},
        }

    def trade(self) -> Trade:
        self.ms += self.rnd.randint(0, 400)
        self.next_id += self.rnd.randint(1, 3)
        side = "buy" if self.rnd.random() < 0.5 else "sell"
        ticks = min(self.asks) if side == "buy" else max(self.bids)
        t = Trade(self.next_id, self.ms, self.price(ticks), self.size(self.rnd.randint(1, 9_000)),
                  side)  # fmt: skip
        self.trades.append(t)
        return t

    def delta(self) -> list[tuple[str, int, int]]:
        """One book change: (side, ticks, lots) with lots 0 = delete; the book never
        crosses and keeps between levels-3 and levels+3 levels a side."""
        self.ms += self.rnd.randint(0, 200)
        side = "bids" if self.rnd.random() < 0.5 else "asks"
        book = self.bids if side == "bids" else self.asks
        r = self.rnd.random()
        if r < 0.3 and len(book) > self.levels - 3:
            p = self.rnd.choice(sorted(book))
            del book[p]
            return [(side, p, 0)]
        if r < 0.6 or len(book) >= self.levels + 3:
            p = self.rnd.choice(sorted(book))
        else:  # a new level beyond the best, on the own side of the other side's best
            if side == "bids":
                p = max(self.bids) - self.rnd.randint(1, self.levels + 3)
                if p in book:
                    p = min(book) - 1
            else:
                p = min(self.asks) + self.rnd.randint(1, self.levels + 3)
                if p in book:
                    p = max(book) + 1
        book[p] = self.rnd.randint(1, 50_000)
        return [(side, p, book[p])]

    def ticker(self) -> dict[str, float]:
        bid, ask = max(self.bids), min(self.asks)
        last = self.trades[-1].price if self.trades else self.price(self.mid)
        return {"bid": self.price(bid), "bid_size": self.size(self.bids[bid]),
                "ask": self.price(ask), "ask_size": self.size(self.asks[ask]), "last": last,
                "high": last + 10, "low": last - 10, "volume": 123.4567,
                "quote_volume": 8_000_000.5}  # fmt: skip
