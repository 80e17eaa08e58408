"""Deribit instrument names <-> jetmarket symbols, both ways, as pure functions of the name.

| Deribit                    | jetmarket                      | kind                         |
|----------------------------|--------------------------------|------------------------------|
| BTC-PERPETUAL              | BTC-USD-PERP                   | inverse perpetual (USD)      |
| BTC-27DEC24                | BTC-USD-20241227               | inverse dated future         |
| BTC-27DEC24-100000-C       | BTC-USD-20241227-100000-C      | option (priced in BTC)       |
| BTC_USDC-PERPETUAL         | BTC-USDC-PERP                  | linear perpetual             |
| BTC_USDC-27DEC24           | BTC-USDC-20241227              | linear dated future          |
| XRP_USDC-27DEC24-0d625-C   | XRP-USDC-20241227-0d625-C      | linear option                |
| BTC_USDC                   | BTC-USDC                       | spot                         |

Deribit writes expiry days without a leading zero (``3JAN25``). A fractional strike keeps
Deribit's ``d`` for the decimal point: a ``.`` would split a NATS subject token. Combos and
spreads (``BTC-FS-...``, ``BTC-CS-...``) are not single instruments and are refused.
"""

from __future__ import annotations

from functools import cache

from streams.symbols import MONTHS

_MONTH = {m: i + 1 for i, m in enumerate(MONTHS)}


def _date(s: str) -> str | None:
    """``27DEC24`` / ``3JAN25`` -> ``20241227`` / ``20250103``; None if not a date."""
    if not 6 <= len(s) <= 7:
        return None
    day, mon, yy = s[:-5], s[-5:-2], s[-2:]
    if not (day.isdigit() and yy.isdigit()) or mon not in _MONTH or not 1 <= int(day) <= 31:
        return None
    return f"20{yy}{_MONTH[mon]:02d}{int(day):02d}"


def _native_date(s: str) -> str | None:
    """``20241227`` -> ``27DEC24``; None if not a date Deribit can write."""
    if len(s) != 8 or not s.isdigit() or not s.startswith("20"):
        return None
    month, day = int(s[4:6]), int(s[6:8])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    return f"{day}{MONTHS[month - 1]}{s[2:4]}"


def _strike_ok(s: str) -> bool:
    whole, _, frac = s.partition("d")
    return whole.isdigit() and (frac == "" or frac.isdigit()) and not s.endswith("d")


def _pair(head: str) -> tuple[str, str] | None:
    """``BTC`` -> (BTC, USD) (inverse, USD quoted); ``BTC_USDC`` -> (BTC, USDC)."""
    base, sep, quote = head.partition("_")
    if not base.isalnum() or (sep and not quote.isalnum()) or "_" in quote:
        return None
    return (base, quote) if sep else (base, "USD")


@cache
def to_symbol(native: str) -> str:
    """Deribit ``instrument_name`` -> jetmarket symbol; ValueError for shapes we do not know."""
    p = native.split("-")
    pair = _pair(p[0])
    out: str | None = None
    if pair is not None:
        base, quote = pair
        if len(p) == 1 and "_" in native:
            out = f"{base}-{quote}"
        elif len(p) == 2 and p[1] == "PERPETUAL":
            out = f"{base}-{quote}-PERP"
        elif len(p) == 2 and (d := _date(p[1])):
            out = f"{base}-{quote}-{d}"
        elif len(p) == 4 and (d := _date(p[1])) and _strike_ok(p[2]) and p[3] in ("C", "P"):
            out = f"{base}-{quote}-{d}-{p[2]}-{p[3]}"
    if out is None:
        raise ValueError(f"unknown deribit instrument {native!r}")
    return out


def to_native(symbol: str) -> str:
    """jetmarket symbol -> Deribit ``instrument_name``."""
    p = symbol.split("-")
    if len(p) not in (2, 3, 5) or not all(x.isalnum() for x in p[:2]):
        raise ValueError(f"not a deribit-shaped symbol: {symbol!r}")
    base, quote = p[0], p[1]
    if len(p) == 2:
        return f"{base}_{quote}"
    head = base if quote == "USD" else f"{base}_{quote}"
    if len(p) == 3 and p[2] == "PERP":
        return f"{head}-PERPETUAL"
    d = _native_date(p[2])
    if d is not None and len(p) == 3:
        return f"{head}-{d}"
    if d is not None and _strike_ok(p[3]) and p[4] in ("C", "P"):
        return f"{head}-{d}-{p[3]}-{p[4]}"
    raise ValueError(f"not a deribit-shaped symbol: {symbol!r}")


def inverse(native: str) -> bool:
    """True when Deribit states amounts in USD: BTC/ETH-style (no ``_QUOTE``) perpetuals and
    dated futures. Options, linear (``_USDC``/``_USDT``) contracts and spot use base coin."""
    p = native.split("-")
    return "_" not in p[0] and len(p) == 2


def currency(native: str) -> str:
    """The ``currency`` parameter of ``public/get_instruments`` that lists ``native``:
    the base coin for inverse contracts and options, the quote (USDC, USDT) for linear
    ones; spot pairs are listed under their base coin."""
    head = native.split("-")[0]
    base, sep, quote = head.partition("_")
    if not sep:
        return base
    return base if "-" not in native else quote


def kind(native: str) -> str:
    """``future`` (perpetuals too), ``option`` or ``spot``: the ``kind`` REST parameter."""
    n = native.count("-")
    return "spot" if n == 0 else "option" if n == 3 else "future"
