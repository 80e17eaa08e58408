"""OKX instrument ids <-> jetmarket symbols, both ways, as pure functions of the name.

| OKX                      | jetmarket                    |
|--------------------------|------------------------------|
| BTC-USDT                 | BTC-USDT (spot, or an index) |
| BTC-USDT-SWAP            | BTC-USDT-PERP                |
| BTC-USD-SWAP             | BTC-USD-PERP (inverse)       |
| BTC-USD-251226           | BTC-USD-20251226             |
| BTC-USD-251226-100000-C  | BTC-USD-20251226-100000-C    |
"""

from __future__ import annotations

_cache: dict[str, str] = {}


def _date6(s: str) -> bool:
    return len(s) == 6 and s.isdigit()


def to_symbol(inst_id: str) -> str:
    """OKX ``instId`` -> jetmarket symbol; ValueError for shapes we do not know."""
    hit = _cache.get(inst_id)
    if hit is not None:
        return hit
    p = inst_id.split("-")
    if not all(p) or len(p) not in (2, 3, 5):
        raise ValueError(f"unknown okx instId {inst_id!r}")
    if len(p) == 2:
        out = inst_id
    elif p[2] == "SWAP":
        out = f"{p[0]}-{p[1]}-PERP"
    elif _date6(p[2]) and len(p) == 3:
        out = f"{p[0]}-{p[1]}-20{p[2]}"
    elif _date6(p[2]) and p[4] in ("C", "P"):
        out = f"{p[0]}-{p[1]}-20{p[2]}-{p[3]}-{p[4]}"
    else:
        raise ValueError(f"unknown okx instId {inst_id!r}")
    _cache[inst_id] = out
    return out


def to_native(symbol: str) -> str:
    """jetmarket symbol -> OKX ``instId``."""
    p = symbol.split("-")
    if not all(p) or len(p) not in (2, 3, 5):
        raise ValueError(f"not a jetmarket symbol: {symbol!r}")
    if len(p) == 2:
        return symbol
    tail = p[2]
    if len(p) == 3 and tail == "PERP":
        return f"{p[0]}-{p[1]}-SWAP"
    if len(tail) == 8 and tail.isdigit() and tail.startswith("20"):
        if len(p) == 3:
            return f"{p[0]}-{p[1]}-{tail[2:]}"
        if p[4] in ("C", "P"):
            return f"{p[0]}-{p[1]}-{tail[2:]}-{p[3]}-{p[4]}"
    raise ValueError(f"not a jetmarket symbol: {symbol!r}")


def inst_type(inst_id: str) -> str:
    """The ``instType`` an instrument id belongs to (for the instruments REST call)."""
    p = inst_id.split("-")
    if len(p) == 2:
        return "SPOT"
    if len(p) == 3:
        return "SWAP" if p[2] == "SWAP" else "FUTURES"
    return "OPTION"
