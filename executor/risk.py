"""Pre-trade risk checks. Each returns a reason a trader can act on, or None to pass.

An order is valued at the worst price it can really execute at: a limit sell far below the
market fills at the book, not at its limit, so notional uses the higher of the order's
price (limit or stop) and the current mark. A price collar refuses limit orders too far
through the market. Position limits count the open orders on the same side too: two
resting buys may not each fit the limit and together exceed it.
"""

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

    def collar(self, symbol: str) -> float:
        pc = self.cfg.price_collar
        return pc.get(symbol, pc.get("*", 1.0))

    def _collar_check(
        self, symbol: str, side: str, order_type: str, price: float | None,
        stop_price: float | None, mark: float,
    ) -> str | None:  # fmt: skip
        if price is None or order_type not in ("limit", "stop_limit"):
            return None
        # a stop-limit's limit applies once the market is at its stop: measured from there
        from_stop = order_type == "stop_limit" and stop_price is not None
        ref = stop_price if from_stop and stop_price is not None else mark
        what = "stop price" if from_stop else "mark"
        c = self.collar(symbol)
        if side == "buy" and price > ref * (1 + c):
            return (f"limit buy at {price:g} is more than {c:.2%} above the {what} {ref:g} "
                    f"(risk.price_collar for {symbol})")  # fmt: skip
        if side == "sell" and price < ref * (1 - c):
            return (f"limit sell at {price:g} is more than {c:.2%} below the {what} {ref:g} "
                    f"(risk.price_collar for {symbol})")  # fmt: skip
        return None

    def check(
        self,
        *,
        symbol: str,
        side: str,
        order_type: str,
        quantity: float,
        price: float | None,
        stop_price: float | None,
        mark: float | None,
        position: float,
        working: float,
        open_orders: int,
        reduce_only: bool,
        halted: str | None,
        now: float,
    ) -> str | None:
        """``working``: signed remaining quantity of this account's open orders on the
        symbol on the same side as this one (what may still fill on top of ``position``)."""
        c = self.cfg
        if halted is not None:
            return f"trading halted: {halted}"
        if c.allow_symbols and symbol not in c.allow_symbols:
            return f"symbol {symbol} not in the allow-list"
        signed = quantity if side == "buy" else -quantity
        if reduce_only and (position == 0 or (position > 0) == (signed > 0)
                            or abs(signed) > abs(position) + 1e-12):  # fmt: skip
            return f"reduce-only {side} {quantity:g} would not reduce position {position:g}"
        if mark is None and c.require_mark:
            return (f"no mark for {symbol} yet (no mark, BBO or trade seen on market.>): "
                    "orders need one to be valued (risk.require_mark)")  # fmt: skip
        if mark is not None:
            why = self._collar_check(symbol, side, order_type, price, stop_price, mark)
            if why is not None:
                return why
        prices = [p for p in (price, stop_price, mark) if p is not None]
        if not prices:
            return f"no price for {symbol} to check notional (no limit price, no market data)"
        notional = quantity * max(prices)  # the worst price it can execute at
        if notional > c.max_order_notional:
            return (
                f"order notional {notional:.2f} exceeds max_order_notional {c.max_order_notional}"
            )
        limit = self.max_position(symbol)
        after = position + working + signed
        if abs(after) > limit and abs(after) > abs(position):
            pending = f" with {working:g} in open orders" if working else ""
            return f"position {after:g}{pending} would exceed max_position {limit:g} for {symbol}"
        if open_orders >= c.max_open_orders:
            return f"{open_orders} open orders: max_open_orders {c.max_open_orders} reached"
        while self._sent and now - self._sent[0] >= 1.0:
            self._sent.popleft()
        if len(self._sent) >= c.max_orders_per_s:
            return f"order rate above max_orders_per_s {c.max_orders_per_s:g}"
        self._sent.append(now)
        return None
