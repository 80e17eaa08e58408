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

from functools import cache

from streams.symbols import PERP, is_date, longest_first, split_quote

BINANCE_QUOTES = longest_first((
    "USDT", "USDC", "FDUSD", "TUSD", "BUSD", "USDP", "DAI", "BTC", "ETH", "BNB",
    "EUR", "TRY", "BRL", "GBP", "AUD", "JPY", "RUB", "UAH", "ZAR", "PLN", "RON",
    "ARS", "MXN", "COP", "CZK", "IDR", "XRP", "DOGE", "TRX", "DOT", "SOL", "USD1",
))  # fmt: skip


@cache
def binance_spot(native: str) -> str:
    """``BTCUSDT`` -> ``BTC-USDT``; raises ValueError when no known quote asset ends it."""
    base, quote = split_quote(native.upper(), BINANCE_QUOTES, "binance")
    return f"{base}-{quote}"


def binance_spot_native(symbol: str) -> str:
    """``BTC-USDT`` -> ``BTCUSDT``."""
    parts = symbol.split("-")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"not a spot symbol: {symbol!r}")
    return parts[0] + parts[1]


# How each futures market writes a perpetual's contract code (``BTCUSDT``, ``BTCUSD_PERP``);
# a delivery contract's code is its ``YYMMDD`` in both.
USDM_PERP, COINM_PERP = "", "PERP"


def _contract(head: str, code: str, perp: str, native: str, what: str) -> str:
    """``head`` (``BTC-USDT``) and a Binance contract code -> the jetmarket symbol: ``perp``
    -> ``PERP``, ``YYMMDD`` -> ``YYYYMMDD``."""
    if code == perp:
        return f"{head}-{PERP}"
    if len(code) == 6 and code.isdigit():
        return f"{head}-20{code}"
    raise ValueError(f"unknown binance {what} in {native!r}")


def _native_contract(pair: str, tail: str, perp: str, symbol: str, what: str) -> str:
    """The reverse of :func:`_contract`: ``pair`` (``BTCUSDT``) and a jetmarket symbol's
    last part -> the Binance name (``BTCUSDT``, ``BTCUSD_PERP``, ``BTCUSDT_251226``)."""
    if tail == PERP:
        code = perp
    elif is_date(tail):
        code = tail[2:]
    else:
        raise ValueError(f"not a {what} symbol: {symbol!r}")
    return f"{pair}_{code}" if code else pair


@cache
def binance_usdm(native: str) -> str:
    """USDⓈ-M: ``BTCUSDT`` -> ``BTC-USDT-PERP``; ``BTCUSDT_251226`` -> ``BTC-USDT-20251226``."""
    pair, _, expiry = native.upper().partition("_")
    return _contract(binance_spot(pair), expiry, USDM_PERP, native, "futures expiry")


def binance_usdm_native(symbol: str) -> str:
    parts = symbol.split("-")
    if len(parts) != 3:
        raise ValueError(f"not a futures symbol: {symbol!r}")
    base, quote, tail = parts
    return _native_contract(base + quote, tail, USDM_PERP, symbol, "futures")


@cache
def binance_coinm(native: str) -> str:
    """COIN-M: ``BTCUSD_PERP`` -> ``BTC-USD-PERP``; ``BTCUSD_251226`` -> ``BTC-USD-20251226``."""
    pair, _, tail = native.upper().partition("_")
    if not pair.endswith("USD") or len(pair) <= 3 or not pair[:-3].isalnum():
        raise ValueError(f"not a binance COIN-M symbol: {native!r}")
    return _contract(f"{pair[:-3]}-USD", tail, COINM_PERP, native, "COIN-M contract")


def binance_coinm_native(symbol: str) -> str:
    """``BTC-USD-PERP`` -> ``BTCUSD_PERP``; ``BTC-USD-20251226`` -> ``BTCUSD_251226``."""
    parts = symbol.split("-")
    if len(parts) != 3 or parts[1] != "USD":
        raise ValueError(f"not a COIN-M symbol: {symbol!r}")
    return _native_contract(parts[0] + "USD", parts[2], COINM_PERP, symbol, "COIN-M")
