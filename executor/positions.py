"""Positions and PnL from fills: average-cost accounting in base units, fees in quote.

``realized_pnl`` is net of fees (closing PnL minus every fee paid on the symbol), so
``realized_pnl + unrealized_pnl`` is what the account made; ``fees`` shows the fee part.
A fee charged in the base currency is valued at the fill price.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.schemas import Position


@dataclass(slots=True)
class Pos:
    size: float = 0.0  # signed base units
    avg_price: float | None = None
    gross: float = 0.0  # realized before fees
    fees: float = 0.0  # quote currency
    fills: int = 0

    def apply(self, side: str, price: float, size: float, fee_quote: float) -> None:
        signed = size if side == "buy" else -size
        self.fees += fee_quote
        self.fills += 1
        if self.size == 0 or (self.size > 0) == (signed > 0):
            # opening or adding: new average cost
            total = self.size + signed
            avg = self.avg_price or 0.0
            self.avg_price = (avg * abs(self.size) + price * size) / abs(total)
            self.size = total
            return
        closing = min(abs(signed), abs(self.size))
        direction = 1.0 if self.size > 0 else -1.0
        self.gross += (price - (self.avg_price or price)) * closing * direction
        rest = self.size + signed
        if abs(rest) < 1e-12:
            self.size, self.avg_price = 0.0, None
        elif (rest > 0) == (self.size > 0):
            self.size = rest  # reduced, same average
        else:
            self.size, self.avg_price = rest, price  # flipped: the remainder opened at price

    def unrealized(self, mark: float | None) -> float:
        if mark is None or self.avg_price is None or self.size == 0:
            return 0.0
        return (mark - self.avg_price) * self.size

    def message(
        self, account: str, venue: str, symbol: str, mark: float | None, ts_ns: int
    ) -> Position:
        return Position(
            account=account, venue=venue, symbol=symbol, ts_event=ts_ns, ts_recv=ts_ns,
            size=round(self.size, 12), avg_price=self.avg_price,
            realized_pnl=self.gross - self.fees, unrealized_pnl=self.unrealized(mark),
            fees=self.fees, mark_price=mark,
        )  # fmt: skip


def fee_in_quote(symbol: str, fee: float, fee_currency: str, price: float) -> float:
    parts = symbol.split("-")
    if len(parts) >= 2 and fee_currency == parts[0] and parts[0] != parts[1]:
        return fee * price
    return fee
