"""Exact decimal rounding to an instrument's increments, with ccxt's own helper.

Quantities are truncated to the lot (a venue rejects or silently cuts a size that is not a
multiple of its step, and rounding up could exceed what the user asked for); prices are
rounded to the nearest tick, as ccxt's ``price_to_precision`` does for every venue.
Decimal work happens here once per command, never per market message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from ccxt.base.decimal_to_precision import (
    NO_PADDING,
    ROUND,
    TICK_SIZE,
    TRUNCATE,
    decimal_to_precision,
)


class PrecisionError(ValueError):
    pass


MAX_EXPONENT = 15
# Below any tick or lot a venue lists (the smallest seen are ~1e-10), and far above
# Decimal's Emin: 1e-999999999 would raise decimal.Underflow in the arithmetic below.
MIN_EXPONENT = -20
MAX_CHARS = 40  # no price or size needs more; bounds the Decimal work per command
# Plain ASCII decimal notation only: Decimal() alone also takes "1_000", non-ASCII digits
# (Arabic-Indic "100"), "NaN", "Infinity" and surrounding whitespace, none of which a trader means.
NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def parse_decimal(name: str, value: str | None) -> Decimal:
    if value is None or value == "":
        raise PrecisionError(f"{name} is required")
    if not isinstance(value, str) or len(value) > MAX_CHARS:
        raise PrecisionError(f"{name} {str(value)[:40]!r}... is longer than {MAX_CHARS} characters")
    if not NUMBER.fullmatch(value):
        raise PrecisionError(
            f"{name} {value!r} is not a decimal number (ASCII digits, one '.', optional exponent)"
        )
    try:
        d = Decimal(value)
    except (InvalidOperation, TypeError):
        raise PrecisionError(f"{name} {value!r} is not a decimal number") from None
    if d <= 0:
        raise PrecisionError(f"{name} {value!r} must be > 0")
    if d.adjusted() > MAX_EXPONENT:  # beyond any market, and beyond float's exact integers
        raise PrecisionError(f"{name} {value!r} is too large")
    if d.adjusted() < MIN_EXPONENT:
        raise PrecisionError(f"{name} {value!r} is too small (below 1e{MIN_EXPONENT})")
    return d


@dataclass(frozen=True, slots=True)
class Spec:
    """Increments of one instrument as decimal strings; quantities in venue units
    (contracts for derivatives: base units = contracts * contract_size)."""

    tick: str
    lot: str
    min_notional: float = 0.0
    contract_size: float = 1.0

    def round_qty(self, value: Decimal) -> str:
        out = decimal_to_precision(str(value), TRUNCATE, self.lot, TICK_SIZE, NO_PADDING)
        if Decimal(out) == 0:
            raise PrecisionError(f"quantity {value} rounds to 0 at lot size {self.lot}")
        return out

    def round_price(self, value: Decimal) -> str:
        out = decimal_to_precision(str(value), ROUND, self.tick, TICK_SIZE, NO_PADDING)
        if Decimal(out) == 0:
            raise PrecisionError(f"price {value} rounds to 0 at tick size {self.tick}")
        return out
