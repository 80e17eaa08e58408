"""Moving-average cross: long when the fast average of bar closes is above the slow one,
short (or flat with ``short=False``) when below. Bars are ``bar_s`` seconds of replayed
time, closed by the first trade after them; orders are market orders for the difference
between the target position and the current one.

    jetmarket backtest --strategy examples/sma_cross.py:SmaCross --venue binance \\
        --symbol BTC-USDT --param fast=5 --param slow=20 --param size=0.01
"""

from __future__ import annotations

from collections import deque

from executor.backtest import Strategy
from streams.schemas import OrderUpdate, Trade


class SmaCross(Strategy):
    fast = 5  # bars in the fast average
    slow = 20  # bars in the slow average
    bar_s = 1.0  # bar length, seconds of replayed time
    size = 0.01  # position size in base units
    short = True  # go short on a down-cross (else flat)

    def on_start(self) -> None:
        if not 0 < self.fast < self.slow:
            raise ValueError("need 0 < fast < slow")
        self.closes: deque[float] = deque(maxlen=self.slow)
        self.bar_end = 0
        self.last = 0.0
        self.working = False  # an order is out: wait for its outcome
        self.state = 0  # +1 fast above slow, -1 below, 0 not known yet

    def on_trade(self, trade: Trade) -> None:
        if trade.symbol != self.ctx.symbol:  # bars of the traded symbol only
            return
        if self.bar_end == 0:
            self.bar_end = self._bar_end(trade.ts_recv)
        elif trade.ts_recv >= self.bar_end:
            self.closes.append(self.last)  # the bar closed at the previous trade's price
            self.bar_end = self._bar_end(trade.ts_recv)
            self._decide()
        self.last = trade.price

    def _bar_end(self, ts: int) -> int:
        step = int(self.bar_s * 1e9)
        return (ts // step + 1) * step

    def _decide(self) -> None:
        if len(self.closes) < self.slow or self.working:
            return
        fast = sum(list(self.closes)[-self.fast :]) / self.fast
        slow = sum(self.closes) / self.slow
        state = 1 if fast > slow else -1 if fast < slow else self.state
        if state == self.state:
            return
        self.state = state
        target = self.size if state > 0 else (-self.size if self.short else 0.0)
        delta = round(target - self.ctx.position(), 12)
        if delta > 0:
            self.ctx.buy(delta)
        elif delta < 0:
            self.ctx.sell(-delta)
        self.working = delta != 0

    def on_order(self, update: OrderUpdate) -> None:
        if update.state in ("filled", "canceled", "rejected", "expired"):
            self.working = False
