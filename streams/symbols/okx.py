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

from functools import cache


def _date6(s: str) -> bool:
    return len(s) == 6 and s.isdigit()


def _parts(name: str, refusal: str) -> list[str]:
    """The parts of an OKX instId or a jetmarket symbol, which share one shape: BASE-QUOTE,
    BASE-QUOTE-TAIL or BASE-QUOTE-EXPIRY-STRIKE-C|P (only TAIL and EXPIRY are written
    differently); ValueError(``refusal``) for any other."""
    p = name.split("-")
    if not all(p) or len(p) not in (2, 3, 5):
        raise ValueError(refusal)
    return p


@cache
def to_symbol(inst_id: str) -> str:
    """OKX ``instId`` -> jetmarket symbol; ValueError for shapes we do not know."""
    p = _parts(inst_id, f"unknown okx instId {inst_id!r}")
    if len(p) == 2:
        return inst_id
    if p[2] == "SWAP":
        return f"{p[0]}-{p[1]}-PERP"
    if _date6(p[2]) and len(p) == 3:
        return f"{p[0]}-{p[1]}-20{p[2]}"
    if _date6(p[2]) and p[4] in ("C", "P"):
        return f"{p[0]}-{p[1]}-20{p[2]}-{p[3]}-{p[4]}"
    raise ValueError(f"unknown okx instId {inst_id!r}")


def to_native(symbol: str) -> str:
    """jetmarket symbol -> OKX ``instId``."""
    p = _parts(symbol, f"not a jetmarket symbol: {symbol!r}")
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
