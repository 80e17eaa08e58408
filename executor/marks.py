"""The latest price per instrument, from MARKET messages: what risk values orders at and
positions are marked to. Runs on every market message, so it only stores floats."""

from __future__ import annotations

from streams.schemas import BBO, Depth, Mark, Trade


class Marks:
    """Latest mark price per (venue, symbol): mark price, else BBO mid, else last trade."""

    def __init__(self) -> None:
        self.prices: dict[tuple[str, str], float] = {}
        self._has_mark: set[tuple[str, str]] = set()

    def on_market(self, msg: object) -> None:
        if isinstance(msg, Mark) and msg.mark_price:
            key = (msg.venue, msg.symbol)
            self._has_mark.add(key)
            self.prices[key] = msg.mark_price
        elif isinstance(msg, BBO) and msg.bid_price and msg.ask_price:
            key = (msg.venue, msg.symbol)
            if key not in self._has_mark:
                self.prices[key] = (msg.bid_price + msg.ask_price) / 2
        elif isinstance(msg, Depth) and msg.bids and msg.asks:
            key = (msg.venue, msg.symbol)
            if key not in self._has_mark:
                self.prices[key] = (msg.bids[0][0] + msg.asks[0][0]) / 2
        elif isinstance(msg, Trade):
            key = (msg.venue, msg.symbol)
            if key not in self._has_mark:
                self.prices[key] = msg.price

    def get(self, venue: str, symbol: str) -> float | None:
        return self.prices.get((venue, symbol))
