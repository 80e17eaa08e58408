"""A second opinion on every frame: ccxt pro's own WebSocket handlers parse the same frames
offline (driven as benchmarks/bench_ccxt.py drives them: the client's per-message entry
point, no socket), and our messages must agree with what ccxt keeps, field by field: price,
size, side, exchange timestamp, id and symbol (and, for quotes and tickers, bid/ask and
their sizes, last, high, low, volume). A field where the two differ must be listed in
:data:`EXPLAINED` with the reason (units, conventions, a ccxt bug); that table is printed in
docs/conformance.md. An explanation that no longer matches any difference fails too, so
the table stays true.

Frames: the benchmark generators' (emulator-shaped, every compared channel), the real
captures in ../shared/frames/nautilus for the same instruments, and the cryptofeed captures
of Binance spot, USDⓈ-M and OKX with markets built from the capture's own REST answers
(when ../shared is there).
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from normalizer.registry import parsers
from normalizer.venues.base import Frame

# (ccxt venue label as in benchmarks/bench_ccxt.VENUES, raw channel, field) -> why ours differs
EXPLAINED: dict[tuple[str, str, str], str] = {
    ("binance (spot)", "bookTicker", "ts"): (
        "convention: spot bookTicker carries no event time `E`; jetmarket stamps the receive "
        "time (ts_event is never empty), ccxt leaves the timestamp None"
    ),
    ("binance (usdm)", "bookTicker", "ts"): (
        "convention: a bookTicker without `E` (the generated frame is spot-shaped): jetmarket "
        "stamps the receive time, ccxt leaves the timestamp None; with `E` both use it"
    ),
    ("binance (usdm)", "aggTrade", "id"): (
        "convention: jetmarket prefixes aggregate trade ids with `a` (`a5933014`) so they never "
        "collide with the `trade` stream's ids of the same symbol; ccxt keeps the bare number"
    ),
    ("coinbase", "market_trades", "side"): (
        "convention: Coinbase's `side` on market_trades is the maker's (as on the Exchange "
        "`matches` feed); jetmarket stores the taker side, ccxt passes Coinbase's through"
    ),
    ("deribit", "trades", "size"): (
        "units: Deribit's `amount` on inverse contracts is USD; jetmarket publishes base units "
        "(amount / price, like every inverse venue), ccxt keeps the USD amount"
    ),
    ("deribit", "quote", "bid_size"): (
        "units: inverse quote sizes are USD; jetmarket publishes base units (size / price)"
    ),
    ("deribit", "quote", "ask_size"): (
        "units: inverse quote sizes are USD; jetmarket publishes base units (size / price)"
    ),
    ("deribit", "trades", "liquidation count"): (
        "coverage: a Deribit fill flagged `liquidation` (M/T/MT) is also published as a "
        "liquidation by jetmarket; ccxt's trades handler keeps no liquidation for it"
    ),
    ("deribit", "chart_trades", "candle"): (
        "convention: Deribit never marks a candle final; when a later one starts jetmarket "
        "re-sends the previous one closed, while ccxt keeps only the newest row"
    ),
    ("okx", "trades", "size"): (
        "units: OKX sizes swaps and futures in contracts; jetmarket publishes base units "
        "(contracts x ctVal, / price for inverse contracts), ccxt keeps contracts"
    ),
    ("okx", "tickers", "volume_24h"): (
        "units: on swaps and futures OKX's vol24h counts contracts and volCcy24h the base coin; "
        "jetmarket publishes base units (volCcy24h), ccxt takes vol24h as its baseVolume"
    ),
    ("kraken", "ticker", "ts"): (
        "ccxt gap: the v2 ticker's RFC 3339 `timestamp` is read by jetmarket; ccxt's handler "
        "leaves the ticker's timestamp None"
    ),
}

FRAMES_PER_CHANNEL = 40
# ccxt venue label -> our raw venue token whose nautilus captures join the comparison
REAL_VENUES = {
    "binance (usdm)": "binanceusdm", "okx": "okx", "bybit (linear)": "bybit_linear",
    "deribit": "deribit", "coinbase": "coinbase", "kraken": "kraken",
}  # fmt: skip
REAL = "../shared/frames/nautilus"


def _num(x: Any) -> float | None:
    return None if x is None else float(x)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) or isinstance(b, (int, float)):
        if a is None or b is None:
            return a is None and b is None
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def _ms(ns: int | None) -> int | None:
    return None if ns is None else ns // 1_000_000


class Seen:
    """What ccxt keeps, read after each frame: the newest entries of its caches."""

    def __init__(self, ex: Any) -> None:
        self.ex = ex

    def trades(self, symbol: str, k: int) -> list[dict[str, Any]]:
        cache = (self.ex.trades or {}).get(symbol)
        return list(cache)[-k:] if cache else []

    def liquidations(self, symbol: str, k: int) -> list[dict[str, Any]]:
        cache = self.ex.liquidations
        if isinstance(cache, dict):
            cache = cache.get(symbol)
        return list(cache)[-k:] if cache else []

    def quote(self, symbol: str) -> dict[str, Any] | None:
        for store in (self.ex.bidsasks, self.ex.tickers):
            if store and symbol in store:
                return store[symbol]  # type: ignore[no-any-return]
        return None

    def ticker(self, symbol: str) -> dict[str, Any] | None:
        return (self.ex.tickers or {}).get(symbol)

    def candle(self, symbol: str, interval: str, ts_ms: int) -> list[Any] | None:
        """ccxt's row of the candle opening at ``ts_ms`` (ours may re-send a closed one)."""
        by_tf = (self.ex.ohlcvs or {}).get(symbol) or {}
        rows = [r for r in by_tf.get(interval) or () if r[0] == ts_ms]
        return rows[-1] if rows else None


Diff = tuple[str, str, str]  # (venue label, channel, field)


def compare(label: str, channel: str, ours: list[dict[str, Any]], seen: Seen, ccxt_symbol: str,
            diffs: dict[Diff, list[str]]) -> None:  # fmt: skip
    """Record every field where our messages and ccxt's state disagree."""

    def check(fld: str, mine: Any, theirs: Any) -> None:
        if not _same(mine, theirs):
            diffs[(label, channel, fld)].append(f"ours {mine!r} ccxt {theirs!r}")

    trades = [m for m in ours if m["type"] == "trade"]
    if trades:
        got = seen.trades(ccxt_symbol, len(trades))
        check("count", len(trades), len(got))
        # paired by id where the ids agree (a venue's list order is not a convention)
        by_id = {t["id"]: t for t in got}
        if all(m["id"] in by_id for m in trades):
            got = [by_id[m["id"]] for m in trades]
        for m, t in zip(trades, got, strict=False):
            check("price", m["price"], t["price"])
            check("size", m["size"], t["amount"])
            check("side", m["side"], t["side"])
            check("ts", _ms(m["ts_event"]), t["timestamp"])
            check("id", m["id"], t["id"])
            check("symbol", ccxt_symbol, t["symbol"])
    liqs = [m for m in ours if m["type"] == "liquidation"]
    if liqs:
        got = seen.liquidations(ccxt_symbol, len(liqs))
        check("liquidation count", len(liqs), len(got))
        for m, t in zip(liqs, got, strict=False):
            check("price", m["price"], t["price"])
            check("size", m["size"], t.get("baseValue") or t.get("contracts"))
            check("side", m["side"], t.get("side"))
            check("ts", _ms(m["ts_event"]), t["timestamp"])
    for m in ours:
        if m["type"] == "bbo":
            q = seen.quote(ccxt_symbol)
            if q is None:
                check("bbo", "a quote", None)
                continue
            check("bid", m["bid_price"], _num(q.get("bid")))
            check("bid_size", m["bid_size"], _num(q.get("bidVolume")))
            check("ask", m["ask_price"], _num(q.get("ask")))
            check("ask_size", m["ask_size"], _num(q.get("askVolume")))
            check("ts", _ms(m["ts_event"]), q.get("timestamp"))
        elif m["type"] == "ticker":
            t = seen.ticker(ccxt_symbol)
            if t is None:
                check("ticker", "a ticker", None)
                continue
            for fld, theirs in (("last", "last"), ("bid", "bid"), ("ask", "ask"),
                                ("high_24h", "high"), ("low_24h", "low"),
                                ("volume_24h", "baseVolume")):  # fmt: skip
                check(fld, m[fld], _num(t.get(theirs)))
            check("ts", _ms(m["ts_event"]), t.get("timestamp"))
        elif m["type"] == "mark":
            t = seen.ticker(ccxt_symbol)
            if t is not None and t.get("markPrice") is not None:
                check("mark_price", m["mark_price"], _num(t.get("markPrice")))
        elif m["type"] == "candle":
            row = seen.candle(ccxt_symbol, m["interval"], _ms(m["ts_open"]))  # type: ignore[arg-type]
            if row is None:
                check("candle", m["interval"], None)
                continue
            check("ts", _ms(m["ts_open"]), row[0])
            for i, fld in enumerate(("open", "high", "low", "close", "volume"), 1):
                check(fld, m[fld], row[i])


def _real_frames(label: str) -> dict[str, list[Frame]]:
    """Nautilus captures for the benchmark's instruments, as the collector would route them."""
    from pathlib import Path

    from tests.venues import conformance

    base = Path(__file__).resolve().parents[2] / REAL
    if not base.is_dir():
        return {}
    parser = REAL_VENUES.get(label)
    if parser is None:
        return {}
    out: dict[str, list[Frame]] = defaultdict(list)
    for rel in conformance.files():
        src = conformance.classify(rel)
        if not rel.startswith("nautilus/") or src.items is None or src.venue != parser:
            continue
        for i, item in enumerate(src.items()):
            out[item.channel].append(Frame(item.channel, item.native, item.data, 1, i + 1))
    return out


def _generated(label: str) -> dict[str, list[Frame]]:
    """The benchmark's frames, but only a few hundred per channel (the benchmark makes
    20 000): built with the same generators, so the same shapes."""
    from benchmarks import bench_coinbase, bench_deribit, bench_kraken, bench_venues

    n = 4 * FRAMES_PER_CHANNEL
    if label == "deribit":
        return bench_deribit._frames(n)
    if label in ("coinbase", "kraken"):
        mod = bench_coinbase if label == "coinbase" else bench_kraken
        saved, mod.N = mod.N, n
        try:
            return mod.frames()
        finally:
            mod.N = saved
    if label.startswith(("binance", "okx", "bybit")):
        saved, bench_venues.N = bench_venues.N, n
        try:
            if label.startswith("binance"):
                return bench_venues._binance("binanceusdm" if "usdm" in label else "binance")
            if label == "okx":
                return bench_venues._okx()
            return {k[1]: v for k, v in bench_venues._bybit().items()}  # type: ignore[misc]
        finally:
            bench_venues.N = saved
    return {}


async def _differences() -> tuple[dict[Diff, list[str]], int]:
    from benchmarks import bench_ccxt as bc

    diffs: dict[Diff, list[str]] = defaultdict(list)
    compared = 0
    for v in bc.VENUES:
        generated = _generated(v.label) or v.frames()
        real = _real_frames(v.label)
        for channel in sorted(v.channels):
            ex, handle = await bc._ccxt(v)
            by_id = {m["id"]: m["symbol"] for m in ex.markets.values()}
            by_id.update({s: s for s in ex.markets})  # Kraken v2 names pairs by symbol
            parse: Callable[[Frame], list[Any]] = type(parsers()[v.parser])().parse
            frames = generated.get(channel, [])[:FRAMES_PER_CHANNEL]
            frames += [f for f in real.get(channel, []) if f.native_symbol in by_id]
            seen = Seen(ex)
            for f in frames:
                try:
                    handle(f.data)
                except Exception as exc:  # ccxt's handler failed on a frame we parse
                    diffs[(v.label, channel, "ccxt handler")].append(repr(exc)[:80])
                    continue
                ours = [orjson.loads(o.data) for o in parse(f)]
                if not ours:
                    continue
                compare(v.label, channel, ours, seen, by_id.get(f.native_symbol, "?"), diffs)
                compared += 1
            await ex.close()
        compared += await _recorded(v, diffs)
    return diffs, compared


# ccxt venue label -> (cryptofeed capture with the venue's REST instruments, its WebSocket
# capture): real frames of many instruments, compared with markets built from the same REST
# bodies the capture holds
RECORDED = {
    "binance (spot)": ("cryptofeed/BINANCE.0", "cryptofeed/BINANCE.ws.1.0"),
    "binance (usdm)": ("cryptofeed/BINANCE_FUTURES.0", "cryptofeed/BINANCE_FUTURES.ws.1.0"),
    "okx": ("cryptofeed/OKX.0", "cryptofeed/OKX.ws.1.0"),
}
RECORDED_PER_CHANNEL = 60


async def _recorded(v: Any, diffs: dict[Diff, list[str]]) -> int:
    """The venue's cryptofeed capture through both parsers, ccxt's markets and our
    instruments from the capture's own REST answers. Returns the frames compared."""
    from ccxt.async_support.base.ws.client import Client

    from tests.recorded import read
    from tests.venues import conformance

    if v.label not in RECORDED or not conformance.SHARED.is_dir():
        return 0
    rest, ws = RECORDED[v.label]
    rows: list[dict[str, Any]] = []
    for r in read(conformance.SHARED / rest):
        if r.kind == "rest":
            body = orjson.loads(r.payload)
            if isinstance(body, dict) and isinstance(body.get("symbols"), list):
                rows += body["symbols"]  # Binance exchangeInfo
            elif "instruments" in r.url:
                rows += body.get("data") or []  # OKX
    # one row per instrument: a capture may list one in several answers (OKX), and ccxt
    # refuses two markets with one id
    rows = list({r.get("symbol") or r.get("instId") or r.get("instrument_name"): r
                 for r in rows}.values())  # fmt: skip
    instruments = conformance.classify(rest).items()  # type: ignore[misc]
    items = conformance.classify(ws).items()  # type: ignore[misc]
    compared = 0
    for channel in sorted(v.channels):
        ex = v.exchange()
        ex.options["crossMarginPairsData"] = ex.options["isolatedMarginPairsData"] = []
        ex.set_markets([ex.parse_market(r) for r in rows])
        handle = Client(v.url, ex.handle_message, None, None, None).handle_text_or_binary_message
        parse = type(parsers()[v.parser])().parse
        for i, it in enumerate(instruments):
            parse(Frame(it.channel, it.native, it.data, 1, i + 1))
        by_id = {m["id"]: m["symbol"] for m in ex.markets.values()}
        seen, n = Seen(ex), 0
        for i, it in enumerate(items):
            if it.channel != channel or it.native not in by_id:
                continue
            f = Frame(it.channel, it.native, it.data, 1, 10_000 + i)
            try:
                handle(f.data)
            except Exception as exc:  # ccxt's handler failed on a frame we parse
                diffs[(v.label, channel, "ccxt handler")].append(repr(exc)[:80])
                continue
            ours = [orjson.loads(o.data) for o in parse(f)]
            if ours:
                compare(v.label, channel, ours, seen, by_id[it.native], diffs)
                n += 1
            if n >= RECORDED_PER_CHANNEL:
                break
        compared += n
        await ex.close()
    return compared


@pytest.fixture(scope="module")
def differences() -> tuple[dict[Diff, list[str]], int]:
    return asyncio.run(_differences())


def test_every_difference_from_ccxt_is_explained(differences) -> None:  # type: ignore[no-untyped-def]
    diffs, compared = differences
    assert compared > 300, f"only {compared} frames compared with ccxt"
    unexplained = {k: v[:2] for k, v in diffs.items() if k not in EXPLAINED}
    assert not unexplained, f"differences from ccxt without an explanation: {unexplained}"


def test_every_explanation_still_matches_a_difference(differences) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    if not (Path(__file__).resolve().parents[2] / REAL).is_dir():
        pytest.skip("../shared/frames absent: some explained differences show only on real frames")
    diffs, _ = differences
    stale = sorted(set(EXPLAINED) - set(diffs))
    assert not stale, f"EXPLAINED lists differences that no longer occur: {stale}"
