"""Coinbase product ids <-> jetmarket symbols, both ways, as pure functions of the name.

Advanced Trade spot products are already named ``BASE-QUOTE`` (``BTC-USD``, ``ETH-USDC``),
which is jetmarket's spot form, so the mapping is the identity on valid spot names. Any
other shape (the CDE/INTX derivatives ``BIT-31JAN25-CDE``, ``BTC-PERP-INTX``) is not
collected here and raises ValueError rather than being guessed. Note Coinbase serves
``*-USDC`` market data under the ``*-USD`` product on public channels.
"""

from __future__ import annotations

from functools import cache

_OK = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def _spot(name: str, what: str) -> str:
    parts = name.split("-")
    if len(parts) != 2 or not all(p and _OK.issuperset(p) for p in parts):
        raise ValueError(f"not a coinbase spot {what}: {name!r}")
    return name


@cache
def to_symbol(product_id: str) -> str:
    """Coinbase ``product_id`` -> jetmarket symbol; ValueError for other shapes."""
    return _spot(product_id, "product id")


def to_native(symbol: str) -> str:
    """jetmarket symbol -> Coinbase ``product_id`` (spot only)."""
    return _spot(symbol, "symbol")
