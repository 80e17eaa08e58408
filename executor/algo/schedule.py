"""What each algorithm wants done by a given time: pure functions, no I/O, so the schedules
are tested by hand calculation (tests/executor/test_algo_units.py).

A target is a cumulative base quantity: the parent sends a child for ``target - filled``
(rounded down to the lot) whenever no child of its own is working. A child that does not
fill (a limit beyond the market, a venue refusal) leaves the shortfall to the next slice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

NS = 1_000_000_000


def slice_index(now_ns: int, start_ns: int, end_ns: int, slices: int) -> int:
    """How many of ``slices`` equal intervals of [start, end) have begun at ``now`` (the
    first slice is due at the start): 0 before the start, ``slices`` from the last on."""
    if now_ns < start_ns:
        return 0
    if now_ns >= end_ns or end_ns <= start_ns:
        return slices
    return min(slices, (now_ns - start_ns) * slices // (end_ns - start_ns) + 1)


def twap_target(quantity: float, now_ns: int, start_ns: int, end_ns: int, slices: int) -> float:
    """Equal slices: ``quantity * k / slices`` once slice k has begun."""
    k = slice_index(now_ns, start_ns, end_ns, slices)
    return quantity if k >= slices else quantity * k / slices


def vwap_target(
    quantity: float, now_ns: int, start_ns: int, end_ns: int, profile: list[float]
) -> float:
    """Slices weighted by the volume profile (weights summing to 1, one per slice)."""
    k = slice_index(now_ns, start_ns, end_ns, len(profile))
    return quantity if k >= len(profile) else quantity * math.fsum(profile[:k])


def pov_target(quantity: float, participation: float, market_volume: float) -> float:
    """A share of what the market traded since the start, never above the quantity."""
    return min(quantity, participation * market_volume)


def vwap_profile(
    hourly: Mapping[int, float] | None, start_ns: int, end_ns: int, slices: int
) -> tuple[list[float], str]:
    """Slice weights from the traded volume per UTC hour of day (``{hour: volume}`` over
    the history), each slice weighted by the volume of the hour its midpoint falls in.
    Without history (none, or zero volume in every slice's hour) the profile is flat, and
    the second value says so: VWAP then works as TWAP."""
    if slices <= 0:
        return [], ""
    flat = [1.0 / slices] * slices
    if not hourly or sum(v for v in hourly.values() if v > 0) <= 0:
        return flat, "vwap profile: no trade history, flat (TWAP) profile"
    step = (end_ns - start_ns) / slices
    raw = []
    for i in range(slices):
        mid = start_ns + step * (i + 0.5)
        raw.append(max(0.0, float(hourly.get(int(mid // (3600 * NS)) % 24, 0.0))))
    total = math.fsum(raw)
    if total <= 0:
        return flat, "vwap profile: no volume in the parent's hours, flat (TWAP) profile"
    return [w / total for w in raw], "vwap profile: hourly volume of the trade history"


def peg_price(
    side: str,
    best_bid: float,
    best_ask: float,
    tick: float,
    offset_ticks: int,
    limit: float | None,
) -> float:
    """A passive price: the touch on our side moved ``offset_ticks`` towards the other side,
    never reaching it (a buy stays below the best ask), never beyond the limit."""
    if side == "buy":
        px = max(min(best_bid + offset_ticks * tick, best_ask - tick), best_bid)
        return min(px, limit) if limit is not None else px
    px = min(max(best_ask - offset_ticks * tick, best_bid + tick), best_ask)
    return max(px, limit) if limit is not None else px


def floor_lot(qty: float, lot: float) -> float:
    """``qty`` rounded down to a multiple of ``lot`` (a hair of float error tolerated, so
    0.3 / 0.1 counts as 3 lots)."""
    if lot <= 0:
        return qty
    n = math.floor(qty / lot + 1e-9)
    return round(n * lot, 12)
