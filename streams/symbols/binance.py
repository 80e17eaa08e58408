"""Binance native symbols <-> jetmarket symbols, spot and USDⓈ-M futures.

| market | Binance           | jetmarket            |
|--------|-------------------|----------------------|
| spot   | ``BTCUSDT``       | ``BTC-USDT``         |
| USDⓈ-M | ``BTCUSDT``       | ``BTC-USDT-PERP``    |
| USDⓈ-M | ``BTCUSDT_251226``| ``BTC-USDT-20251226``|
| COIN-M | ``BTCUSD_PERP``   | ``BTC-USD-PERP``     |
| COIN-M | ``BTCUSD_251226`` | ``BTC-USD-20251226`` |

COIN-M (inverse) contracts are quoted in USD; USDⓈ-M never is, so the two markets' symbols
cannot collide under the one venue name ``binance``.
"""

from __future__ import annotations

from streams.symbols import PERP, is_date, longest_first, split_quote

BINANCE_QUOTES = longest_first((
    "USDT", "USDC", "FDUSD", "TUSD", "BUSD", "USDP", "DAI", "BTC", "ETH", "BNB",
    "EUR", "TRY", "BRL", "GBP", "AUD", "JPY", "RUB", "UAH", "ZAR", "PLN", "RON",
    "ARS", "MXN", "COP", "CZK", "IDR", "XRP", "DOGE", "TRX", "DOT", "SOL", "USD1",
))  # fmt: skip

_cache: dict[str, str] = {}


def binance_spot(native: str) -> str:
    """``BTCUSDT`` -> ``BTC-USDT``; raises ValueError when no known quote asset ends it."""
    hit = _cache.get(native)
    if hit is not None:
        return hit
    base, quote = split_quote(native.upper(), BINANCE_QUOTES, "binance")
    out = _cache[native] = f"{base}-{quote}"
    return out


def binance_spot_native(symbol: str) -> str:
    """``BTC-USDT`` -> ``BTCUSDT``."""
    parts = symbol.split("-")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"not a spot symbol: {symbol!r}")
    return parts[0] + parts[1]


def binance_usdm(native: str) -> str:
    """USDⓈ-M: ``BTCUSDT`` -> ``BTC-USDT-PERP``; ``BTCUSDT_251226`` -> ``BTC-USDT-20251226``."""
    hit = _cache.get("usdm:" + native)
    if hit is not None:
        return hit
    pair, _, expiry = native.upper().partition("_")
    spot = binance_spot(pair)
    if not expiry:
        out = f"{spot}-{PERP}"
    elif len(expiry) == 6 and expiry.isdigit():
        out = f"{spot}-20{expiry}"
    else:
        raise ValueError(f"unknown binance futures expiry in {native!r}")
    _cache["usdm:" + native] = out
    return out


def binance_usdm_native(symbol: str) -> str:
    parts = symbol.split("-")
    if len(parts) != 3:
        raise ValueError(f"not a futures symbol: {symbol!r}")
    base, quote, tail = parts
    if tail == PERP:
        return base + quote
    if is_date(tail):
        return f"{base}{quote}_{tail[2:]}"
    raise ValueError(f"not a futures symbol: {symbol!r}")


def binance_coinm(native: str) -> str:
    """COIN-M: ``BTCUSD_PERP`` -> ``BTC-USD-PERP``; ``BTCUSD_251226`` -> ``BTC-USD-20251226``."""
    hit = _cache.get("coinm:" + native)
    if hit is not None:
        return hit
    pair, _, tail = native.upper().partition("_")
    if not pair.endswith("USD") or len(pair) <= 3 or not pair[:-3].isalnum():
        raise ValueError(f"not a binance COIN-M symbol: {native!r}")
    if tail == "PERP":
        out = f"{pair[:-3]}-USD-{PERP}"
    elif len(tail) == 6 and tail.isdigit():
        out = f"{pair[:-3]}-USD-20{tail}"
    else:
        raise ValueError(f"unknown binance COIN-M contract in {native!r}")
    _cache["coinm:" + native] = out
    return out


def binance_coinm_native(symbol: str) -> str:
    """``BTC-USD-PERP`` -> ``BTCUSD_PERP``; ``BTC-USD-20251226`` -> ``BTCUSD_251226``."""
    parts = symbol.split("-")
    if len(parts) != 3 or parts[1] != "USD":
        raise ValueError(f"not a COIN-M symbol: {symbol!r}")
    base, _, tail = parts
    if tail == PERP:
        return f"{base}USD_PERP"
    if is_date(tail):
        return f"{base}USD_{tail[2:]}"
    raise ValueError(f"not a COIN-M symbol: {symbol!r}")
