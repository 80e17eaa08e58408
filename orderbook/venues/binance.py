"""Binance book sync: spot diff-depth and futures diff-depth (USDⓈ-M and COIN-M speak the
same rule: ``pu`` chains each event to the previous one), REST snapshots."""

from __future__ import annotations

from orderbook.venues.base import Rule
from streams.schemas import Book


class BinanceSpot:
    """Spot diff-depth: drop ``u <= lastUpdateId``; first needs ``U <= lastUpdateId+1 <= u``;
    then every ``U == previous u + 1``."""

    name = "binance-spot"
    rest_snapshot = True

    def stale(self, last: int, d: Book) -> bool:
        return d.seq <= last

    def bridges(self, snap: int, d: Book) -> bool:
        return (d.first_seq or 0) <= snap + 1 <= d.seq

    def continues(self, last: int, d: Book) -> bool:
        return d.first_seq == last + 1


class BinanceFutures:
    """USDⓈ-M and COIN-M diff-depth (both documented alike, "How to manage a local order
    book correctly", fapi and dapi): drop ``u < lastUpdateId``; first needs
    ``U <= lastUpdateId <= u``; then every ``pu == previous u``."""

    name = "binance-futures"
    rest_snapshot = True

    def stale(self, last: int, d: Book) -> bool:
        return d.seq < last  # u == lastUpdateId is the bridging event

    def bridges(self, snap: int, d: Book) -> bool:
        return (d.first_seq or 0) <= snap <= d.seq

    def continues(self, last: int, d: Book) -> bool:
        return d.prev_seq == last


def rule_for(symbol: str) -> Rule:
    # BTC-USDT is spot; futures are BTC-USDT-PERP / BTC-USDT-20251226 (USDⓈ-M) and
    # BTC-USD-PERP / BTC-USD-20251226 (COIN-M)
    spot = symbol.count("-") == 1
    return BinanceSpot() if spot else BinanceFutures()
