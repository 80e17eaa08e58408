"""Binance book sync: spot diff-depth and USDⓈ-M futures diff-depth, REST snapshots."""

from __future__ import annotations

from orderbook.sync import Rule
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
    """USDⓈ-M diff-depth: drop ``u < lastUpdateId``; first needs ``U <= lastUpdateId <= u``;
    then every ``pu == previous u``."""

    name = "binance-futures"
    rest_snapshot = True

    def stale(self, last: int, d: Book) -> bool:
        return d.seq < last  # u == lastUpdateId is the bridging event

    def bridges(self, snap: int, d: Book) -> bool:
        return (d.first_seq or 0) <= snap <= d.seq

    def continues(self, last: int, d: Book) -> bool:
        return d.prev_seq == last


def rule_for(symbol: str) -> Rule:
    spot = symbol.count("-") == 1  # BTC-USDT; futures are BTC-USDT-PERP / BTC-USDT-20251226
    return BinanceSpot() if spot else BinanceFutures()
