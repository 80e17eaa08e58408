"""The jetmarket symbol scheme, and each venue's native <-> jetmarket rules beside it
(``streams/symbols/<venue>.py``), imported by the collectors and the normalizer alike.

| kind                          | jetmarket symbol                 |
|-------------------------------|----------------------------------|
| spot                          | ``BASE-QUOTE`` (``BTC-USDT``)    |
| perpetual, linear or inverse  | ``BASE-QUOTE-PERP``              |
| dated future                  | ``BASE-QUOTE-YYYYMMDD``          |
| option                        | ``BASE-QUOTE-YYYYMMDD-STRIKE-C`` (or ``-P``) |

Every rule is a pure function of the name, so re-normalizing raw frames is deterministic:
a symbol never depends on which instrument frames happened to be seen first. A name
outside the scheme raises ValueError. Being pure, the native -> jetmarket rules are
memoized with ``functools.cache`` (a name is mapped once; a refused one is not kept).
"""

from __future__ import annotations

from datetime import date
from functools import cache

PERP = "PERP"
# Month abbreviations as venues write them in expiries (``26DEC25``), January first.
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def longest_first(quotes: tuple[str, ...]) -> tuple[str, ...]:
    """Quote assets in the order :func:`split_quote` must try them: ``USDT`` before
    ``USD``, ``FDUSD`` before ``USD``."""
    return tuple(sorted(quotes, key=len, reverse=True))


def split_quote(pair: str, quotes: tuple[str, ...], venue: str) -> tuple[str, str]:
    """``BTCUSDT`` -> (``BTC``, ``USDT``) for venues that glue base and quote together;
    ``quotes`` longest first. ValueError when no known quote asset ends the name."""
    for quote in quotes:
        if pair.endswith(quote) and len(pair) > len(quote):
            return pair[: -len(quote)], quote
    raise ValueError(f"cannot split {venue} symbol {pair!r} into base and quote")


def is_date(tail: str) -> bool:
    """A jetmarket expiry: ``YYYYMMDD``."""
    return len(tail) == 8 and tail.isdigit()


_EPOCH = date(1970, 1, 1)


@cache
def option_terms(symbol: str) -> tuple[int, float, str]:
    """``BTC-USD-20240329-92000-C`` -> (expiry ns at 08:00 UTC, strike 92000.0, ``call``).

    Expiry at 08:00 UTC: the settlement time of Deribit's, OKX's and Bybit's options (their
    instrument frames carry the exact one). A fractional strike keeps Deribit's ``d``
    (``1d02`` = 1.02). ValueError for a symbol that is not an option's."""
    parts = symbol.split("-")
    if len(parts) != 5 or not is_date(parts[2]) or parts[4] not in ("C", "P"):
        raise ValueError(f"not an option symbol: {symbol!r}")
    ymd = parts[2]
    days = _days(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:]))
    try:
        strike = float(parts[3].replace("d", "."))
    except ValueError:
        raise ValueError(f"bad strike in option symbol {symbol!r}") from None
    return (
        (days * 86_400 + 8 * 3600) * 1_000_000_000,
        strike,
        "call" if parts[4] == "C" else "put",
    )


def _days(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a civil date."""
    return (date(y, m, d) - _EPOCH).days
