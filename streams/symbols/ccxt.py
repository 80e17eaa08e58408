"""ccxt unified symbols <-> jetmarket symbols, for every ccxt exchange.

| ccxt unified                    | jetmarket                     |
|---------------------------------|-------------------------------|
| ``BTC/USDT``                    | ``BTC-USDT``                  |
| ``BTC/USDT:USDT`` (linear perp) | ``BTC-USDT-PERP``             |
| ``BTC/USD:BTC`` (inverse perp)  | ``BTC-USD-PERP``              |
| ``BTC/USDT:USDT-251226``        | ``BTC-USDT-20251226``         |
| ``BTC/USD:BTC-251226-100000-C`` | ``BTC-USD-20251226-100000-C`` |

The jetmarket symbol drops the settle currency, so the way back is ambiguous only where a
venue lists the same pair settled in two currencies; ``to_unified`` then prefers the usual
one (the quote, except USD-quoted contracts which settle in the base) and
``resolve`` picks the exact one from an exchange's loaded markets.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache


def _ymd(yymmdd: str, unified: str) -> str:
    if len(yymmdd) != 6 or not yymmdd.isdigit():
        raise ValueError(f"bad expiry {yymmdd!r} in ccxt symbol {unified!r}")
    return "20" + yymmdd


@cache
def to_symbol(unified: str) -> str:
    """``BTC/USDT:USDT`` -> ``BTC-USDT-PERP``; raises ValueError on anything else."""
    pair, _, contract = unified.partition(":")
    base, slash, quote = pair.partition("/")
    if not slash or not base or not quote or "-" in base or "-" in quote:
        raise ValueError(f"not a ccxt unified symbol: {unified!r}")
    if not contract:
        return f"{base}-{quote}"
    settle, *rest = contract.split("-")
    if not settle:
        raise ValueError(f"no settle currency in ccxt symbol {unified!r}")
    if not rest:
        return f"{base}-{quote}-PERP"
    if len(rest) == 1:
        return f"{base}-{quote}-{_ymd(rest[0], unified)}"
    if len(rest) == 3 and rest[2] in ("C", "P") and rest[1]:
        return f"{base}-{quote}-{_ymd(rest[0], unified)}-{rest[1]}-{rest[2]}"
    raise ValueError(f"unknown contract suffix in ccxt symbol {unified!r}")


def _settle(base: str, quote: str) -> str:
    return base if quote == "USD" else quote


def to_unified(symbol: str, settle: str | None = None) -> str:
    """``BTC-USDT-PERP`` -> ``BTC/USDT:USDT``; ``settle`` overrides the usual settle currency."""
    parts = symbol.split("-")
    if len(parts) < 2 or not all(parts):
        raise ValueError(f"not a jetmarket symbol: {symbol!r}")
    base, quote, *rest = parts
    if not rest:
        return f"{base}/{quote}"
    s = settle or _settle(base, quote)
    tail = rest[0]
    if len(rest) == 1 and tail == "PERP":
        return f"{base}/{quote}:{s}"
    if len(tail) == 8 and tail.isdigit():
        if len(rest) == 1:
            return f"{base}/{quote}:{s}-{tail[2:]}"
        if len(rest) == 3 and rest[2] in ("C", "P"):
            return f"{base}/{quote}:{s}-{tail[2:]}-{rest[1]}-{rest[2]}"
    raise ValueError(f"not a jetmarket symbol: {symbol!r}")


def resolve(symbol: str, unified_symbols: Iterable[str]) -> str:
    """The exchange's own unified symbol for a jetmarket (or already unified) ``symbol``."""
    known = set(unified_symbols)
    if symbol in known:
        return symbol
    matches = sorted(u for u in known if _maps_to(u, symbol))
    if not matches:
        raise ValueError(f"the exchange lists no market for {symbol!r}")
    usual = to_unified(symbol)
    return usual if usual in matches else matches[0]


def _maps_to(unified: str, symbol: str) -> bool:
    try:
        return to_symbol(unified) == symbol
    except ValueError:
        return False
