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
outside the scheme raises ValueError.
"""

from __future__ import annotations

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
