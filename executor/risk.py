"""Pre-trade risk checks. Each returns a reason a trader can act on, or None to pass."""

from __future__ import annotations

from collections import deque

from streams.settings import RiskSettings


class Risk:
    def __init__(self, cfg: RiskSettings) -> None:
        self.cfg = cfg
        self._sent: deque[float] = deque()  # submission times within the last second

    def max_position(self, symbol: str) -> float:
        mp = self.cfg.max_position
        return mp.get(symbol, mp.get("*", float("inf")))

    def check(
        self,
        *,
        symbol: str,
        side: str,
        quantity: float,
        ref_price: float | None,
        position: float,
        open_orders: int,
        reduce_only: bool,
        halted: str | None,
        now: float,
    ) -> str | None:
        c = self.cfg
        if halted is not None:
            return f"trading halted: {halted}"
        if c.allow_symbols and symbol not in c.allow_symbols:
            return f"symbol {symbol} not in the allow-list"
        signed = quantity if side == "buy" else -quantity
        if reduce_only and (position == 0 or (position > 0) == (signed > 0)
                            or abs(signed) > abs(position) + 1e-12):  # fmt: skip
            return f"reduce-only {side} {quantity:g} would not reduce position {position:g}"
        if ref_price is None:
            return f"no price for {symbol} to check notional (no limit price, no market data)"
        notional = quantity * ref_price
        if notional > c.max_order_notional:
            return (
                f"order notional {notional:.2f} exceeds max_order_notional {c.max_order_notional}"
            )
        limit = self.max_position(symbol)
        if abs(position + signed) > limit and abs(position + signed) > abs(position):
            return (
                f"position {position + signed:g} would exceed max_position {limit:g} for {symbol}"
            )
        if open_orders >= c.max_open_orders:
            return f"{open_orders} open orders: max_open_orders {c.max_open_orders} reached"
        while self._sent and now - self._sent[0] >= 1.0:
            self._sent.popleft()
        if len(self._sent) >= c.max_orders_per_s:
            return f"order rate above max_orders_per_s {c.max_orders_per_s:g}"
        self._sent.append(now)
        return None
