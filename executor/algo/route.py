"""Smart order routing: where a marketable child goes when a parent names several venues.

Pure arithmetic over the live validated books (``market.depth``/``market.bbo`` from the
order-book service, as executor/algo/tape.py holds them): every level of every venue is
valued at its *effective* price, the price moved against us by the venue's taker fee and by
our measured latency to it (``drift_bps_per_ms`` of adverse move per millisecond of ack
latency), and the quantity is swept across the levels best first, within each venue's
headroom (position limit). A book in a gap, or one-sided, is never routed to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class Quote:
    venue: str
    levels: list[tuple[float, float]]  # the side we take, best first: asks to buy, bids to sell
    fee: float  # taker fee, fraction of notional
    latency_ms: float = 0.0  # measured child ack latency to this venue
    headroom: float = math.inf  # base units we may still trade there
    in_gap: bool = False


@dataclass(slots=True)
class Leg:
    venue: str
    quantity: float
    price: float  # average book price of the levels taken
    effective: float  # average effective price (fees and latency included)


def effective(side: str, price: float, fee: float, latency_ms: float, drift: float) -> float:
    adj = fee + latency_ms * drift / 1e4
    return price * (1 + adj) if side == "buy" else price * (1 - adj)


def route(
    side: str, quantity: float, quotes: list[Quote], drift_bps_per_ms: float = 0.0
) -> list[Leg]:
    """The legs, best effective price first; their quantities sum to at most ``quantity``
    (less when the books and headrooms hold less). Ties go to the venue listed first."""
    order = {q.venue: i for i, q in enumerate(quotes)}
    cands: list[tuple[float, int, str, float, float]] = []
    room: dict[str, float] = {}
    for q in quotes:
        if q.in_gap or not q.levels or q.headroom <= 0:
            continue
        room[q.venue] = q.headroom
        for px, size in q.levels:
            if size > 0:
                eff = effective(side, px, q.fee, q.latency_ms, drift_bps_per_ms)
                cands.append((eff if side == "buy" else -eff, order[q.venue], q.venue, px, size))
    cands.sort()
    left = quantity
    got: dict[str, list[float]] = {}  # venue -> [qty, notional, effective notional]
    for key, _, venue, px, size in cands:
        if left <= 1e-12:
            break
        take = min(left, size, room[venue])
        if take <= 0:
            continue
        room[venue] -= take
        left -= take
        acc = got.setdefault(venue, [0.0, 0.0, 0.0])
        acc[0] += take
        acc[1] += take * px
        acc[2] += take * abs(key)
    legs = [Leg(v, a[0], a[1] / a[0], a[2] / a[0]) for v, a in got.items()]
    legs.sort(key=lambda leg: (leg.effective if side == "buy" else -leg.effective,
                               order[leg.venue]))  # fmt: skip
    return legs
