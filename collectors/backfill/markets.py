"""Which ccxt market a backfill's ``--symbol`` names."""

from __future__ import annotations

from typing import Any

from collectors.backfill.errors import BadArgs


def resolve_symbol(markets: dict[str, Any], symbol: str) -> str:
    """A ccxt unified symbol as given, or the market a jetmarket symbol names
    (``BTC-USDT``, ``BTC-USDT-PERP``, ``BTC-USDT-20251226``, ``BTC-USD-20251226-100000-C``),
    matched on the market's own base/quote/type/expiry fields."""
    if symbol in markets:
        return symbol
    base, _, rest = symbol.partition("-")
    quote, _, tail = rest.partition("-")
    parts = tail.split("-") if tail else []

    def fits(m: dict[str, Any]) -> bool:
        if m.get("base") != base or m.get("quote") != quote:
            return False
        if not parts:
            return bool(m.get("spot"))
        if parts == ["PERP"]:
            return bool(m.get("swap"))
        expiry = str(m.get("expiryDatetime") or "")[:10].replace("-", "")
        if expiry != parts[0]:
            return False
        if len(parts) == 1:
            return bool(m.get("future"))
        kind = {"C": "call", "P": "put"}.get(parts[2]) if len(parts) == 3 else None
        return (
            bool(m.get("option"))
            and m.get("optionType") == kind
            and str(m.get("strike")).removesuffix(".0") == parts[1]
        )

    found = sorted(u for u, m in markets.items() if fits(m))
    if len(found) > 1:  # the same pair settled in two currencies: the usual one, else ask
        usual = base if quote == "USD" else quote
        found = [u for u in found if markets[u].get("settle") == usual] or found
    if len(found) == 1:
        return found[0]
    if found:
        raise BadArgs(f"{symbol!r} is ambiguous here: one of {found}")
    close = sorted(u for u in markets if base in u)[:8]
    raise BadArgs(f"no market {symbol!r}" + (f" (similar: {close})" if close else ""))
