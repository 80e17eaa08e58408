"""Transaction-cost analysis: pure arithmetic over fills and market figures (docs/execution.md
gives the definitions; tests/executor/test_algo_units.py checks a hand-computed example).

Signs are the cost's: a buy above its benchmark and a sell below it are positive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class Figures:
    avg_price: float | None
    slippage_bps: float | None
    vwap_slippage_bps: float | None
    interval_vwap: float | None
    shortfall: float | None
    shortfall_bps: float | None
    fill_ratio: float
    fees: float


def _bps(side: str, price: float | None, bench: float | None) -> float | None:
    if price is None or not bench:
        return None
    sign = 1.0 if side == "buy" else -1.0
    return sign * (price - bench) / bench * 1e4


def figures(
    side: str,
    quantity: float,
    fills: list[tuple[float, float, float]],
    arrival_mid: float | None,
    market_volume: float,
    market_notional: float,
    end_mid: float | None,
) -> Figures:
    """``fills`` as (price, size, fee in quote). Implementation shortfall (Perold) in quote:
    what the fills cost against the arrival mid, plus fees, plus the unfilled rest valued at
    the move from arrival to ``end_mid`` (the opportunity cost); in bps of the arrival
    notional of the whole quantity."""
    filled = math.fsum(s for _, s, _ in fills)
    notional = math.fsum(p * s for p, s, _ in fills)
    fees = math.fsum(f for _, _, f in fills)
    avg = notional / filled if filled > 0 else None
    ivwap = market_notional / market_volume if market_volume > 0 else None
    sign = 1.0 if side == "buy" else -1.0
    shortfall = shortfall_bps = None
    if arrival_mid:
        shortfall = sign * (notional - arrival_mid * filled) + fees
        rest = max(quantity - filled, 0.0)
        if rest > 0 and end_mid is not None:
            shortfall += sign * (end_mid - arrival_mid) * rest
        shortfall_bps = shortfall / (quantity * arrival_mid) * 1e4 if quantity > 0 else None
    return Figures(
        avg_price=avg,
        slippage_bps=_bps(side, avg, arrival_mid),
        vwap_slippage_bps=_bps(side, avg, ivwap),
        interval_vwap=ivwap,
        shortfall=shortfall,
        shortfall_bps=shortfall_bps,
        fill_ratio=filled / quantity if quantity > 0 else 0.0,
        fees=fees,
    )
