"""Kraken v2 pair names <-> jetmarket symbols, both ways, as pure functions of the name.

| Kraken v2 (WebSocket, instrument channel) | jetmarket  |
|--------------------------------------------|------------|
| BTC/USD                                    | BTC-USD    |
| ETH/BTC                                    | ETH-BTC    |
| DOGE/USDT                                  | DOGE-USDT  |

Kraken spot only (no perpetuals, futures or options on this API). The REST AssetPairs body
still names assets the v1 way (``XBT/USD``, ``XDG/USD`` in ``wsname``); ``from_wsname``
renames those, because the v2 feed calls them ``BTC`` and ``DOGE``.
"""

from __future__ import annotations

from functools import cache

# v1 asset code -> v2 asset code (the only two Kraken renamed between the APIs)
V1_ASSETS = {"XBT": "BTC", "XDG": "DOGE"}


@cache
def to_symbol(native: str) -> str:
    """``BTC/USD`` -> ``BTC-USD``; ValueError for names that are not ``BASE/QUOTE``."""
    base, sep, quote = native.partition("/")
    if not sep or not base or not quote or "/" in quote or "-" in native or " " in native:
        raise ValueError(f"unknown kraken pair {native!r}")
    return f"{base}-{quote}"


def to_native(symbol: str) -> str:
    """``BTC-USD`` -> ``BTC/USD``."""
    p = symbol.split("-")
    if len(p) != 2 or not all(p) or "/" in symbol:
        raise ValueError(f"not a kraken spot symbol: {symbol!r}")
    return f"{p[0]}/{p[1]}"


def from_wsname(wsname: str) -> str:
    """REST ``wsname`` (``XBT/USD``) -> the v2 pair name (``BTC/USD``)."""
    base, sep, quote = wsname.partition("/")
    if not sep:
        raise ValueError(f"unknown kraken wsname {wsname!r}")
    return f"{V1_ASSETS.get(base, base)}/{V1_ASSETS.get(quote, quote)}"
