"""The conformance corpus: every payload file recorded from the real venues (kept outside the
repository, in ``../shared/frames``: see its SOURCES.md) run through the normalizer the way
production would see it, and ``docs/conformance.md`` generated from the result.

Every file is classified (:func:`classify`): a public payload of an API jetmarket supports
is routed exactly as the venue's collector routes it (``collectors.<venue>.route``), with
REST bodies on the raw channel the collector publishes them to, and normalized frame by
frame; private payloads (account, orders, fills), APIs jetmarket does not speak and retired
APIs are listed with the reason. Each frame of a supported file gets a verdict:

- ``right``: its messages are valid jetmarket messages of the types the channel produces
  and, for the files in :data:`EXPECT`, equal field by field to what the venue's
  documentation says the frame means (tests/venues/*/test_real_frames.py say why where
  the recorded frame and the documentation differ);
- ``rejected``: dead-lettered with a deliberate, precise reason (:data:`DELIBERATE`);
- ``wrong``: anything else (a dead letter for a frame that should parse, a message that
  differs from :data:`EXPECT`).

``python -m tests.venues.conformance`` prints the document; ``--write [docs/conformance.md]``
writes it; ``--check [docs/conformance.md]`` exits 1 when the file is out of date
(tests/normalizer/test_conformance.py runs the check). ccxt's opinion of the same frames
(tests/normalizer/test_ccxt_differential.py) adds its explained differences from
:data:`CCXT_DIFFERENCES`.

A test tool, not a worker: it routes each frame with the collector's own ``route`` to
replay what a collector would publish; no component imports it.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import msgspec
import orjson

from normalizer.core import Dead, Normalizer
from normalizer.venues.base import Out
from streams import schemas, subjects
from tests.recorded import read  # the loader of the capture format

ROOT = Path(__file__).resolve().parents[2]  # the checkout
SHARED = Path(os.environ.get("JETMARKET_SHARED_FRAMES", ROOT.parent / "shared" / "frames"))
DOC = ROOT / "docs" / "conformance.md"
RECV_NS = 1_700_000_000_000_000_000
_HEADERS = {subjects.H_RECV_NS: str(RECV_NS)}

# Dead-letter reasons that are the right answer for the frame (substrings)
DELIBERATE = (
    "jetmarket speaks",  # a retired API's frame, named
    "collector does not subscribe",  # a current API's channel jetmarket does not collect
    "jetmarket subscribes the raw",  # a variant of a channel (Deribit grouped books)
    "jetmarket does not normalize",  # not a single instrument (Deribit combos)
)

Route = Callable[[bytes], tuple[str, str]]


class Item(msgspec.Struct, frozen=True):
    """One payload as the normalizer receives it: raw venue token, channel, native symbol."""

    venue: str
    channel: str
    native: str
    data: bytes


@dataclass
class Source:
    """One corpus file: what it is, and (for a supported public one) its payloads."""

    rel: str  # path under SHARED
    venue: str  # the row's venue (raw venue token, or the venue's name when unsupported)
    status: str  # "public" | "private" | "unsupported" | "retired" | "not collected"
    why: str = ""
    items: Callable[[], list[Item]] | None = None
    prime: tuple[str, ...] = ()  # files fed first (instruments), not counted


@dataclass
class Row:
    """Results of one file x raw channel."""

    rel: str
    venue: str
    channel: str
    frames: int = 0
    messages: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    right: int = 0
    deliberate: int = 0
    wrong: int = 0
    wrong_why: Counter[str] = field(default_factory=Counter)


# -- routing, the collectors' way ------------------------------------------------------------
@cache
def router(venue: str) -> Route:
    """The collector's ``route`` for a raw venue token (USDⓈ-M: spot's with its channels)."""
    if venue.startswith("bybit_"):
        return importlib.import_module("collectors.bybit").route  # type: ignore[no-any-return]
    if venue in ("binanceusdm", "binancecoinm"):
        spot, fut = (importlib.import_module(f"collectors.{m}") for m in ("binance", venue))
        return lambda data: spot.route(data, fut.CHANNELS)  # type: ignore[no-any-return]
    return importlib.import_module(f"collectors.{venue}").route  # type: ignore[no-any-return]


def routed(venue: str, data: bytes) -> Item:
    channel, native = router(venue)(data)
    return Item(venue, channel, native, data)


def compact(path: Path) -> bytes:
    """A pretty-printed capture as the venue sends it: compact JSON, keys in their order."""
    return orjson.dumps(orjson.loads(path.read_bytes()))


# Binance stream name of each event type: the nautilus captures hold the bare event; the
# collector subscribes combined streams, which wrap it as {"stream": ..., "data": ...}.
_BINANCE_STREAM = {
    "aggTrade": "aggTrade", "trade": "trade", "bookTicker": "bookTicker",
    "depthUpdate": "depth@100ms", "kline": "kline_1m", "forceOrder": "forceOrder",
    "markPriceUpdate": "markPrice@1s", "24hrTicker": "ticker",
}  # fmt: skip


def okx_opt_summary(rows: list[dict[str, Any]]) -> bytes:
    """The nautilus ``ws_opt_summary.json`` holds only the push's ``data`` rows; OKX sends
    them in ``{"arg": {"channel": "opt-summary", "instFamily": ...}, "data": [...]}``."""
    family = "-".join(rows[0]["instId"].split("-")[:2])
    return orjson.dumps({"arg": {"channel": "opt-summary", "instFamily": family}, "data": rows})


def binance_combined(event: dict[str, Any]) -> bytes:
    sym = event.get("s") or event.get("o", {}).get("s", "")
    stream = f"{sym.lower()}@{_BINANCE_STREAM[event['e']]}"
    return orjson.dumps({"stream": stream, "data": event})


# -- readers -----------------------------------------------------------------------------
def _cryptofeed_ws(rel: str, venue: str) -> Callable[[], list[Item]]:
    def items() -> list[Item]:
        return [routed(venue, r.payload.encode()) for r in read(SHARED / rel) if r.kind == "recv"]

    return items


def _cryptofeed_rest(rel: str, venue: str, pick: Callable[[str], tuple[str, str] | None]):
    """REST answers of a capture; ``pick(url)`` -> (channel, native) for those jetmarket
    collects, None for the rest (skipped, counted as not collected)."""

    def items() -> list[Item]:
        out = []
        for r in read(SHARED / rel):
            if r.kind == "rest" and (target := pick(r.url)) is not None:
                out.append(Item(venue, target[0], target[1], r.payload.encode()))
        return out

    return items


def _one(venue: str, channel: str | None, native: str = "ALL", wrap=None):
    """A nautilus file (one JSON document): routed by the collector's rule, or published to
    ``channel``/``native`` as the collector publishes a REST body."""

    def bind(rel: str) -> Callable[[], list[Item]]:
        def items() -> list[Item]:
            path = SHARED / rel
            if wrap is not None:
                return [routed(venue, wrap(orjson.loads(path.read_bytes())))]
            data = compact(path)
            if channel is None:
                return [routed(venue, data)]
            return [Item(venue, channel, native, data)]

        return items

    return bind


def _binance_pick(url: str) -> tuple[str, str] | None:
    u = urlparse(url)
    if u.path.endswith("/exchangeInfo"):
        return "instruments", "ALL"
    if u.path.endswith("/depth"):
        return "snapshot", parse_qs(u.query)["symbol"][0]
    return None


def _okx_pick(url: str) -> tuple[str, str] | None:
    return ("instruments", "ALL") if "/public/instruments" in url else None


def _deribit_pick(url: str) -> tuple[str, str] | None:
    u = urlparse(url)
    if u.path.endswith("/get_instruments"):
        return "instruments", parse_qs(u.query)["currency"][0]
    return None


def _kraken_pick(url: str) -> tuple[str, str] | None:
    return ("instruments", "ALL") if url.endswith("/AssetPairs") else None


PRIVATE = "private (account, orders, fills, positions): jetmarket's executor speaks to "
PRIVATE += "venues through ccxt, not through these payloads"
NOT_COLLECTED = "public REST endpoint jetmarket does not collect (its data comes over WebSocket)"
KRAKEN_FUTURES = "Kraken Futures: a separate API jetmarket does not speak (spot v2 only)"
SBE = PRIVATE + "; SBE binary encoding, which jetmarket does not decode"
L3 = "level3 (individual orders) needs an authenticated connection: " + PRIVATE

# (path prefix or name under SHARED) -> classification; the first match wins
Rule = tuple[str, str, str, str, Any]  # (prefix, venue, status, why, reader binder)
RULES: list[Rule] = [
    # cryptofeed continuous captures
    (
        "cryptofeed/BINANCE.0",
        "binance",
        "public",
        "",
        lambda r: _cryptofeed_rest(r, "binance", _binance_pick),
    ),
    (
        "cryptofeed/BINANCE.http",
        "binance",
        "public",
        "",
        lambda r: _cryptofeed_rest(r, "binance", _binance_pick),
    ),
    ("cryptofeed/BINANCE.ws", "binance", "public", "", lambda r: _cryptofeed_ws(r, "binance")),
    (
        "cryptofeed/BINANCE_FUTURES.0",
        "binanceusdm",
        "public",
        "",
        lambda r: _cryptofeed_rest(r, "binanceusdm", _binance_pick),
    ),
    (
        "cryptofeed/BINANCE_FUTURES.http",
        "binanceusdm",
        "public",
        "",
        lambda r: _cryptofeed_rest(r, "binanceusdm", _binance_pick),
    ),
    (
        "cryptofeed/BINANCE_FUTURES.ws",
        "binanceusdm",
        "public",
        "",
        lambda r: _cryptofeed_ws(r, "binanceusdm"),
    ),
    ("cryptofeed/OKX.0", "okx", "public", "", lambda r: _cryptofeed_rest(r, "okx", _okx_pick)),
    ("cryptofeed/OKX.ws", "okx", "public", "", lambda r: _cryptofeed_ws(r, "okx")),
    (
        "cryptofeed/DERIBIT.0",
        "deribit",
        "public",
        "",
        lambda r: _cryptofeed_rest(r, "deribit", _deribit_pick),
    ),
    ("cryptofeed/DERIBIT.ws", "deribit", "public", "", lambda r: _cryptofeed_ws(r, "deribit")),
    (
        "cryptofeed/KRAKEN.0",
        "kraken",
        "public",
        "",
        lambda r: _cryptofeed_rest(r, "kraken", _kraken_pick),
    ),
    (
        "cryptofeed/KRAKEN.ws",
        "kraken",
        "retired",
        "Kraken WebSocket v1 (jetmarket speaks v2)",
        lambda r: _cryptofeed_ws(r, "kraken"),
    ),
    ("cryptofeed/BYBIT.0", "bybit", "retired", "Bybit v2 REST (jetmarket speaks v5)", None),
    (
        "cryptofeed/BYBIT.ws",
        "bybit_linear",
        "retired",
        "Bybit v2 WebSocket (jetmarket speaks v5)",
        lambda r: _cryptofeed_ws(r, "bybit_linear"),
    ),
    (
        "cryptofeed/COINBASE.0",
        "coinbase",
        "retired",
        "Coinbase Pro REST (jetmarket speaks Advanced Trade)",
        None,
    ),
    (
        "cryptofeed/COINBASE.ws",
        "coinbase",
        "retired",
        "Coinbase Pro feed (jetmarket speaks Advanced Trade)",
        lambda r: _cryptofeed_ws(r, "coinbase"),
    ),
    # nautilus: Binance
    ("nautilus/binance/spot/user_data_sbe/", "binance", "private", SBE, None),
    ("nautilus/binance/spot/user_data_json/", "binance", "private", PRIVATE, None),
    ("nautilus/binance/futures/user_data_json/", "binanceusdm", "private", PRIVATE, None),
    ("nautilus/binance/futures/http_json/", "binanceusdm", "private", PRIVATE, None),
    (
        "nautilus/binance/futures/market_data_json/",
        "binanceusdm",
        "public",
        "",
        lambda r: _one("binanceusdm", None, wrap=binance_combined)(r),
    ),
    (
        "nautilus/binance/spot/http_json/exchange_info_response.json",
        "binance",
        "public",
        "",
        _one("binance", "instruments"),
    ),
    (
        "nautilus/binance/spot/http_json/depth_response.json",
        "binance",
        "public",
        "",
        _one("binance", "snapshot", "BTCUSDT"),
    ),
    ("nautilus/binance/spot/http_json/account", "binance", "private", PRIVATE, None),
    ("nautilus/binance/spot/http_json/all_orders", "binance", "private", PRIVATE, None),
    ("nautilus/binance/spot/http_json/cancel_", "binance", "private", PRIVATE, None),
    ("nautilus/binance/spot/http_json/new_order", "binance", "private", PRIVATE, None),
    ("nautilus/binance/spot/http_json/open_orders", "binance", "private", PRIVATE, None),
    ("nautilus/binance/spot/http_json/order_response", "binance", "private", PRIVATE, None),
    ("nautilus/binance/spot/http_json/", "binance", "not collected", NOT_COLLECTED, None),
    (
        "nautilus/binance/",
        "binance",
        "not collected",
        "notes about the captures, not payloads",
        None,
    ),
    # nautilus: Bybit v5
    ("nautilus/bybit/ws_account_", "bybit", "private", PRIVATE, None),
    ("nautilus/bybit/ws_auth_", "bybit", "private", PRIVATE, None),
    ("nautilus/bybit/ws_order_response", "bybit", "private", PRIVATE, None),
    (
        "nautilus/bybit/ws_ticker_option",
        "bybit_option",
        "public",
        "",
        _one("bybit_option", None),
    ),
    ("nautilus/bybit/ws_", "bybit_linear", "public", "", _one("bybit_linear", None)),
    (
        "nautilus/bybit/http_get_instruments_linear.json",
        "bybit_linear",
        "public",
        "",
        _one("bybit_linear", "instruments"),
    ),
    (
        "nautilus/bybit/http_get_instruments_linear_symbol_type.json",
        "bybit_linear",
        "public",
        "",
        _one("bybit_linear", "instruments"),
    ),
    (
        "nautilus/bybit/http_get_instruments_inverse",
        "bybit_inverse",
        "public",
        "",
        _one("bybit_inverse", "instruments"),
    ),
    (
        "nautilus/bybit/http_get_instruments_spot",
        "bybit_spot",
        "public",
        "",
        _one("bybit_spot", "instruments"),
    ),
    (
        "nautilus/bybit/http_get_instruments_option",
        "bybit_option",
        "public",
        "",
        _one("bybit_option", "instruments"),
    ),
    ("nautilus/bybit/http_get_orderbook", "bybit", "not collected", NOT_COLLECTED, None),
    ("nautilus/bybit/http_get_trades_recent", "bybit", "not collected", NOT_COLLECTED, None),
    ("nautilus/bybit/http_get_klines", "bybit", "not collected", NOT_COLLECTED, None),
    ("nautilus/bybit/http_", "bybit", "private", PRIVATE, None),
    # nautilus: Coinbase Advanced Trade
    ("nautilus/coinbase/ws_user", "coinbase", "private", PRIVATE, None),
    ("nautilus/coinbase/ws_", "coinbase", "public", "", _one("coinbase", None)),
    (
        "nautilus/coinbase/http_products.json",
        "coinbase",
        "public",
        "",
        _one("coinbase", "instruments"),
    ),
    (
        "nautilus/coinbase/http_products_future",
        "coinbase",
        "public",
        "",
        _one("coinbase", "instruments"),
    ),
    ("nautilus/coinbase/http_candles", "coinbase", "not collected", NOT_COLLECTED, None),
    ("nautilus/coinbase/http_product", "coinbase", "not collected", NOT_COLLECTED, None),
    ("nautilus/coinbase/http_ticker", "coinbase", "not collected", NOT_COLLECTED, None),
    ("nautilus/coinbase/http_", "coinbase", "private", PRIVATE, None),
    # nautilus: Deribit
    ("nautilus/deribit/ws_order", "deribit", "private", PRIVATE, None),
    ("nautilus/deribit/ws_portfolio", "deribit", "private", PRIVATE, None),
    (
        "nautilus/deribit/ws_volatility_index",
        "deribit",
        "not collected",
        "Deribit `deribit_volatility_index` channel (the DVOL index): jetmarket does not "
        "subscribe it; option analytics come from the options' own tickers",
        None,
    ),
    ("nautilus/deribit/ws_", "deribit", "public", "", _one("deribit", None)),
    (
        "nautilus/deribit/http_get_instruments.json",
        "deribit",
        "public",
        "",
        _one("deribit", "instruments", "BTC"),
    ),
    ("nautilus/deribit/http_get_instrument", "deribit", "not collected", NOT_COLLECTED, None),
    ("nautilus/deribit/http_get_account", "deribit", "private", PRIVATE, None),
    ("nautilus/deribit/http_", "deribit", "not collected", NOT_COLLECTED, None),
    # nautilus: Kraken (spot v2 is supported; Kraken Futures is another API)
    ("nautilus/kraken/ws_futures_", "kraken", "unsupported", KRAKEN_FUTURES, None),
    ("nautilus/kraken/http_futures_", "kraken", "unsupported", KRAKEN_FUTURES, None),
    ("nautilus/kraken/http_cancel_order_futures", "kraken", "unsupported", KRAKEN_FUTURES, None),
    ("nautilus/kraken/http_send_order_futures", "kraken", "unsupported", KRAKEN_FUTURES, None),
    ("nautilus/kraken/ws_l3_", "kraken", "private", L3, None),
    ("nautilus/kraken/ws_add_order", "kraken", "private", PRIVATE, None),
    ("nautilus/kraken/ws_amend_order", "kraken", "private", PRIVATE, None),
    ("nautilus/kraken/ws_batch_add", "kraken", "private", PRIVATE, None),
    ("nautilus/kraken/ws_cancel_order", "kraken", "private", PRIVATE, None),
    ("nautilus/kraken/ws_", "kraken", "public", "", _one("kraken", None)),
    ("nautilus/kraken/http_asset_pairs", "kraken", "public", "", _one("kraken", "instruments")),
    ("nautilus/kraken/http_ohlc", "kraken", "not collected", NOT_COLLECTED, None),
    ("nautilus/kraken/http_order_book", "kraken", "not collected", NOT_COLLECTED, None),
    ("nautilus/kraken/http_server_time", "kraken", "not collected", NOT_COLLECTED, None),
    ("nautilus/kraken/http_system_status", "kraken", "not collected", NOT_COLLECTED, None),
    ("nautilus/kraken/http_ticker", "kraken", "not collected", NOT_COLLECTED, None),
    ("nautilus/kraken/http_trades.json", "kraken", "not collected", NOT_COLLECTED, None),
    ("nautilus/kraken/http_", "kraken", "private", PRIVATE, None),
    # nautilus: OKX v5
    ("nautilus/okx/ws_account", "okx", "private", PRIVATE, None),
    ("nautilus/okx/ws_orders", "okx", "private", PRIVATE, None),
    ("nautilus/okx/ws_sprd_orders", "okx", "private", PRIVATE, None),
    (
        "nautilus/okx/ws_opt_summary",
        "okx",
        "public",
        "",
        lambda r: _one("okx", None, wrap=okx_opt_summary)(r),
    ),
    ("nautilus/okx/ws_", "okx", "public", "", _one("okx", None)),
    ("nautilus/okx/http_get_instruments_option", "okx", "public", "", _one("okx", "instruments")),
    ("nautilus/okx/http_get_instruments_", "okx", "public", "", _one("okx", "instruments")),
    ("nautilus/okx/http_get_candlesticks", "okx", "not collected", NOT_COLLECTED, None),
    ("nautilus/okx/http_get_funding_rate_history", "okx", "not collected", NOT_COLLECTED, None),
    ("nautilus/okx/http_get_index_price", "okx", "not collected", NOT_COLLECTED, None),
    ("nautilus/okx/http_get_mark_price", "okx", "not collected", NOT_COLLECTED, None),
    (
        "nautilus/okx/http_get_option_summary",
        "okx",
        "not collected",
        "public REST endpoint jetmarket does not collect (the same data comes over "
        "WebSocket: opt-summary)",
        None,
    ),
    ("nautilus/okx/http_get_order_book", "okx", "not collected", NOT_COLLECTED, None),
    ("nautilus/okx/http_get_position_tiers", "okx", "not collected", NOT_COLLECTED, None),
    ("nautilus/okx/http_get_spreads", "okx", "not collected", NOT_COLLECTED, None),
    ("nautilus/okx/http_get_trades", "okx", "not collected", NOT_COLLECTED, None),
    (
        "nautilus/okx/common_",
        "okx",
        "not collected",
        "a field-format sample, not a venue payload",
        None,
    ),
    ("nautilus/okx/", "okx", "private", PRIVATE, None),
]

# Instruments fed before a venue's nautilus frames, as the collector publishes them before
# it subscribes (OKX and inverse Bybit sizes need the contract specs).
PRIME = {
    "okx": (
        "nautilus/okx/http_get_instruments_swap.json",
        "nautilus/okx/http_get_instruments_futures.json",
        "nautilus/okx/http_get_instruments_spot.json",
    ),
    "okx-cryptofeed": ("cryptofeed/OKX.0",),
}


def files() -> list[str]:
    """Every file of the corpus, relative to SHARED, sorted; SOURCES.md files excluded."""
    return sorted(
        str(p.relative_to(SHARED))
        for p in SHARED.rglob("*")
        if p.is_file() and p.name not in ("SOURCES.md",)
    )


def classify(rel: str) -> Source:
    for prefix, venue, status, why, bind in RULES:
        if rel.startswith(prefix):
            prime: tuple[str, ...] = ()
            if status == "public" and venue == "okx":
                prime = PRIME["okx-cryptofeed" if rel.startswith("cryptofeed/") else "okx"]
            return Source(rel, venue, status, why, bind(rel) if bind else None, prime)
    raise LookupError(f"corpus file {rel!r} matches no rule: classify it in RULES")


# -- expectations ----------------------------------------------------------------------------
# Field-by-field meaning of single-document captures, from the venue's documentation:
# file -> the messages it must produce, in order, as (type, {field: value}). The fields
# listed must match exactly (floats to 1e-9 relative); unlisted fields are free.
Expected = list[tuple[str, dict[str, Any]]]
EXPECT: dict[str, Expected] = {}


def _load_expect() -> None:
    """Fill :data:`EXPECT` from tests/venues/*/test_real_frames.py (``EXPECT`` dicts),
    where each expectation sits next to the documentation it comes from."""
    for venue in ("binance", "bybit", "coinbase", "deribit", "kraken", "okx"):
        try:
            mod = importlib.import_module(f"tests.venues.{venue}.test_real_frames")
        except ModuleNotFoundError:
            continue
        EXPECT.update(getattr(mod, "EXPECT", {}))


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))
        except (TypeError, ValueError):
            return False
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def mismatch(outs: list[dict[str, Any]], expected: Expected) -> str | None:
    """Why ``outs`` (decoded messages, with their ``type``) differ from ``expected``."""
    if [o["type"] for o in outs] != [t for t, _ in expected]:
        return f"types {[o['type'] for o in outs]} != {[t for t, _ in expected]}"
    for i, (o, (_, fields)) in enumerate(zip(outs, expected, strict=True)):
        for k, v in fields.items():
            if not _close(o.get(k), v):
                return f"message {i} {k}={o.get(k)!r}, expected {v!r}"
    return None


# -- running ---------------------------------------------------------------------------------
def decoded(outs: list[Out]) -> list[dict[str, Any]]:
    """Messages as dicts, each checked against its jetmarket schema on the way."""
    res = []
    for o in outs:
        schemas.decode(o.data)  # raises on a message that breaks its schema
        res.append(orjson.loads(o.data))
    return res


def feed(n: Normalizer, item: Item, seq: int) -> list[Out] | Dead:
    return n.normalize(subjects.raw(item.venue, item.channel, item.native), item.data,
                       _HEADERS, seq)  # fmt: skip


def run_source(src: Source) -> Iterator[Row]:
    """Rows of one supported (or retired) file: per raw channel, its counts and verdicts."""
    assert src.items is not None
    n = Normalizer()
    seq = 0
    for p in src.prime:
        for item in classify(p).items():  # type: ignore[misc]
            seq += 1
            feed(n, item, seq)
    rows: dict[str, Row] = {}
    expected = EXPECT.get(src.rel)
    produced: list[dict[str, Any]] = []
    for item in src.items():
        seq += 1
        row = rows.setdefault(item.channel, Row(src.rel, item.venue, item.channel))
        row.frames += 1
        out = feed(n, item, seq)
        if isinstance(out, Dead):
            row.rejected[out.reason[:160]] += 1
            if src.status in ("public", "retired") and any(d in out.reason for d in DELIBERATE):
                row.deliberate += 1
            elif expected is not None and expected and expected[0][0] == "dead":
                why = expected[0][1].get("reason", "")
                if why and why in out.reason:
                    row.deliberate += 1
                else:
                    row.wrong += 1
                    row.wrong_why[f"dead letter {out.reason[:100]!r}"] += 1
            else:
                row.wrong += 1
                row.wrong_why[f"dead letter {out.reason[:100]!r}"] += 1
            continue
        if src.status == "retired":
            row.wrong += 1  # a retired API's frame must not turn into messages
            row.wrong_why["a retired API's frame was not rejected"] += 1
            continue
        try:
            msgs = decoded(out)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            row.wrong += 1
            row.wrong_why[f"invalid message: {exc}"[:120]] += 1
            continue
        for m in msgs:
            row.messages[m["type"]] += 1
        produced += msgs
        row.right += 1
    if expected is not None and expected and expected[0][0] != "dead":
        why = mismatch(produced, expected)
        if why is not None:  # the whole file is one document: all its frames are wrong
            for row in rows.values():
                row.wrong += row.right
                row.right = 0
                row.wrong_why[why[:160]] += 1
    yield from rows.values()


@dataclass
class Result:
    rows: list[Row]
    listed: list[Source]  # private, unsupported, not collected: with the reason
    status: dict[str, str] = field(default_factory=dict)  # file -> its Source.status

    def totals(self, status: str | None = None) -> dict[str, int]:
        """Frame counts, of the files with ``status`` ("public", "retired") or all."""
        rows = [r for r in self.rows if status is None or self.status[r.rel] == status]
        return {
            "frames": sum(r.frames for r in rows),
            "right": sum(r.right for r in rows),
            "rejected": sum(r.deliberate for r in rows),
            "wrong": sum(r.wrong for r in rows),
        }


def run() -> Result:
    _load_expect()
    out = Result([], [])
    for rel in files():
        src = classify(rel)
        out.status[rel] = src.status
        if src.items is None:
            out.listed.append(src)
            continue
        out.rows += run_source(src)
    return out


# -- the document ----------------------------------------------------------------------------
HEADER = """# Conformance: real venue payloads through jetmarket

Generated by `python -m tests.venues.conformance --write` from the corpus in
`../shared/frames` (recorded from the live venues by cryptofeed and nautilus_trader; see its
SOURCES.md; never copied into this repository). `make test` fails when this file is out of
date (tests/normalizer/test_conformance.py). Each frame is routed as the venue's collector
routes it, REST bodies go to the raw channel the collector publishes them on, and the
normalizer's output is checked: **right** (valid messages; field by field for the files
with expectations in tests/venues/*/test_real_frames.py), **rejected** (dead-lettered
with a deliberate, precise reason), **wrong** (anything else).
"""


def _cell(c: Counter[str], limit: int = 4) -> str:
    if not c:
        return "-"
    parts = [f"{k} ({v})" for k, v in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))]
    more = f"; +{len(parts) - limit} more" if len(parts) > limit else ""
    return "; ".join(parts[:limit]).replace("|", "\\|") + more


def document(result: Result, differences: list[tuple[str, str, str, str]] | None = None) -> str:
    t, old = result.totals("public"), result.totals("retired")
    lines = [HEADER, "## Totals", "",
             f"- Supported APIs: {t['frames']} frames: {t['right']} right, {t['rejected']} "
             f"rejected with a reason, {t['wrong']} wrong.",
             f"- Retired APIs (replayed old captures): {old['frames']} frames: {old['rejected']}"
             f" rejected naming the retired API, {old['wrong']} wrong.",
             f"- Listed without normalizing (private, unsupported, not collected): "
             f"{len(result.listed)} files.", "",
             "## Supported and retired APIs: venue x file x channel", "",
             "| venue | file | channel | frames | messages | rejected with reason | right "
             "| wrong |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in sorted(result.rows, key=lambda r: (r.venue, r.rel, r.channel)):
        msgs = ", ".join(f"{k} {v}" for k, v in sorted(r.messages.items())) or "-"
        wrong = f"{r.wrong}: {_cell(r.wrong_why, 2)}" if r.wrong else "0"
        lines.append(f"| {r.venue} | `{r.rel}` | {r.channel} | {r.frames} | {msgs} | "
                     f"{_cell(r.rejected)} | {r.right} | {wrong} |")  # fmt: skip
    lines += ["", "## Listed, not normalized (with the reason)", "",
              "| venue | file | status | why |", "|---|---|---|---|"]  # fmt: skip
    for s in sorted(result.listed, key=lambda s: (s.venue, s.rel)):
        lines.append(f"| {s.venue} | `{s.rel}` | {s.status} | {s.why} |")
    if differences is not None:
        lines += ["", "## ccxt differential: explained differences", "",
                  "ccxt's own WebSocket handlers parse the same frames offline "
                  "(tests/normalizer/test_ccxt_differential.py); every field where jetmarket "
                  "and ccxt disagree is listed here with the reason, or the test fails.", "",
                  "| venue | channel | field | why jetmarket differs from ccxt |",
                  "|---|---|---|---|"]  # fmt: skip
        for venue, channel, fld, why in sorted(differences):
            lines.append(f"| {venue} | {channel} | {fld} | {why} |")
    return "\n".join(lines) + "\n"


def ccxt_differences() -> list[tuple[str, str, str, str]]:
    """The explained differences table, from tests/normalizer/test_ccxt_differential.py."""
    try:
        mod = importlib.import_module("tests.normalizer.test_ccxt_differential")
    except ModuleNotFoundError:
        return []
    return [(v, c, f, why) for (v, c, f), why in mod.EXPLAINED.items()]


def main(argv: list[str]) -> int:
    if not SHARED.is_dir():
        print(f"no corpus at {SHARED} (set JETMARKET_SHARED_FRAMES)", file=sys.stderr)
        return 2
    text = document(run(), ccxt_differences())
    if argv[:1] == ["--write"]:
        Path(argv[1] if len(argv) > 1 else DOC).write_text(text)
    elif argv[:1] == ["--check"]:
        path = Path(argv[1] if len(argv) > 1 else DOC)
        if not path.exists() or path.read_text() != text:
            print(f"{path} is out of date: run python -m tests.venues.conformance --write",
                  file=sys.stderr)  # fmt: skip
            return 1
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
