"""Bybit v5 native symbols <-> jetmarket symbols, per category.

| category | native                      | jetmarket             |
|----------|-----------------------------|-----------------------|
| spot     | ``BTCUSDT``                 | ``BTC-USDT``          |
| linear   | ``BTCUSDT`` (USDT perp)     | ``BTC-USDT-PERP``     |
| linear   | ``BTCPERP`` (USDC perp)     | ``BTC-USDC-PERP``     |
| linear   | ``BTCUSDT-26DEC25``         | ``BTC-USDT-20251226`` |
| linear   | ``BTC-26DEC25`` (USDC fut.) | ``BTC-USDC-20251226`` |
| inverse  | ``BTCUSD``                  | ``BTC-USD-PERP``      |
| inverse  | ``BTCUSDZ25`` (month code)  | ``BTC-USD-20251226``  |
| option   | ``BTC-27DEC25-100000-C``    | ``BTC-USDC-20251227-100000-C`` |
| option   | ``BTC-27DEC25-100000-P-USDT`` | ``BTC-USDT-20251227-100000-P`` |

Options are quoted and settled in USDC (instruments-info says quoteCoin ``USD``,
settleCoin ``USDC``: the premium is paid in USDC), or in USDT when the name ends ``-USDT``.

Pure functions of the native name, so re-normalizing is deterministic; the one exception
is an inverse future, whose native name has a month code but no day: its delivery time
comes from the instruments frame (``expiry_ms``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache

from streams.symbols import MONTHS, longest_first, split_quote

SPOT_QUOTES = longest_first((
    "USDT", "USDC", "USDE", "USD1", "BTC", "ETH", "EUR", "DAI", "BRL", "BRZ", "TRY", "PLN",
    "MNT", "USD",
))  # fmt: skip
LINEAR_QUOTES = ("USDT", "USDC")
MONTH_CODES = "FGHJKMNQUVXZ"  # futures month letters, January..December


def _split(pair: str, quotes: tuple[str, ...]) -> tuple[str, str]:
    return split_quote(pair, quotes, "bybit")


def _ddmonyy(text: str) -> str:
    """``26DEC25`` -> ``20251226``."""
    try:
        day, mon, year = int(text[:-5]), MONTHS.index(text[-5:-2]) + 1, int(text[-2:])
    except ValueError:
        raise ValueError(f"bad bybit expiry {text!r}") from None
    return f"20{year:02d}{mon:02d}{day:02d}"


def _to_ddmonyy(ymd: str) -> str:
    if len(ymd) != 8 or not ymd.isdigit():
        raise ValueError(f"bad expiry {ymd!r}")
    return f"{int(ymd[6:])}{MONTHS[int(ymd[4:6]) - 1]}{ymd[2:4]}"


def spot(native: str) -> str:
    base, quote = _split(native.upper(), SPOT_QUOTES)
    return f"{base}-{quote}"


@cache
def linear(native: str) -> str:
    up = native.upper()
    if "-" in up:  # dated: BTCUSDT-26DEC25 (USDT) or BTC-26DEC25 (USDC)
        pair, _, expiry = up.partition("-")
        if pair.endswith(LINEAR_QUOTES):
            base, quote = _split(pair, LINEAR_QUOTES)
        else:
            base, quote = pair, "USDC"
        return f"{base}-{quote}-{_ddmonyy(expiry)}"
    if up.endswith("PERP") and len(up) > 4:
        return f"{up[:-4]}-USDC-PERP"
    base, quote = _split(up, LINEAR_QUOTES)
    return f"{base}-{quote}-PERP"


def inverse(native: str, expiry_ms: int | None = None) -> str:
    """``BTCUSD`` -> ``BTC-USD-PERP``; ``BTCUSDZ25`` needs the delivery time (``expiry_ms``)."""
    up = native.upper()
    if up.endswith("USD"):
        return f"{up[:-3]}-USD-PERP"
    pair, code, year = up[:-3], up[-3:-2], up[-2:]
    if pair.endswith("USD") and code in MONTH_CODES and year.isdigit():
        if expiry_ms is None:
            raise ValueError(f"inverse future {native!r}: delivery time unknown")
        day = datetime.fromtimestamp(expiry_ms / 1000, UTC).strftime("%Y%m%d")
        return f"{pair[:-3]}-USD-{day}"
    raise ValueError(f"not a bybit inverse symbol: {native!r}")


@cache
def option(native: str) -> str:
    """``BTC-27DEC25-100000-C`` -> ``BTC-USDC-20251227-100000-C``; ``...-C-USDT`` -> USDT."""
    p = native.upper().split("-")
    quote = "USDC"
    if len(p) == 5 and p[4] in ("USDT", "USDC"):
        quote = p.pop()
    if len(p) != 4 or not p[0].isalnum() or p[3] not in ("C", "P"):
        raise ValueError(f"not a bybit option symbol: {native!r}")
    strike = p[2]
    if not strike.replace(".", "", 1).isdigit():
        raise ValueError(f"bad strike in bybit option {native!r}")
    strike = strike.replace(".", "d")  # a "." would split a subject token (Deribit's way)
    return f"{p[0]}-{quote}-{_ddmonyy(p[1])}-{strike}-{p[3]}"


TO_SYMBOL: dict[str, Callable[[str], str]] = {
    "spot": spot,
    "linear": linear,
    "inverse": inverse,
    "option": option,
}


def to_native(symbol: str) -> tuple[str, str]:
    """jetmarket symbol -> (category, native): the category is part of the answer because
    spot ``BTCUSDT`` and linear ``BTCUSDT`` are different instruments."""
    parts = symbol.upper().split("-")
    if len(parts) == 5 and parts[1] in ("USDC", "USDT") and parts[4] in ("C", "P"):
        base, quote, ymd, strike, kind = parts
        tail = "" if quote == "USDC" else "-USDT"
        return "option", f"{base}-{_to_ddmonyy(ymd)}-{strike.replace('D', '.')}-{kind}{tail}"
    if len(parts) == 2 and all(parts):
        return "spot", parts[0] + parts[1]
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"not a bybit symbol: {symbol!r}")
    base, quote, tail = parts
    if quote == "USD":
        if tail == "PERP":
            return "inverse", f"{base}USD"
        if len(tail) == 8 and tail.isdigit():
            return "inverse", f"{base}USD{MONTH_CODES[int(tail[4:6]) - 1]}{tail[2:4]}"
    elif quote == "USDC":
        if tail == "PERP":
            return "linear", f"{base}PERP"
        return "linear", f"{base}-{_to_ddmonyy(tail)}"
    elif quote == "USDT":
        if tail == "PERP":
            return "linear", f"{base}USDT"
        return "linear", f"{base}USDT-{_to_ddmonyy(tail)}"
    raise ValueError(f"not a bybit symbol: {symbol!r}")
