"""In-process parse rate per venue and channel: the venue's parser (typed decode, validate,
normalize, encode) next to ``orjson.loads`` of the same frames, in the same run.

Binance, OKX and Bybit frames are built here (their emulators' book/trade models plus
docs-shaped templates for the other channels); Deribit, Coinbase and Kraken bring their own
``benchmarks/bench_<venue>.py`` with the same ``bench()`` shape, collected by ``all_venues()``."""

from __future__ import annotations

import importlib
import random
from collections.abc import Iterator

import orjson

from benchmarks.bench_parse import Row, parser_vs_orjson
from normalizer.registry import parsers
from normalizer.venues.base import Frame
from tests.venues.binance.emulator_usdm import FuturesSim
from tests.venues.bybit.emulator import SymbolSim as BybitSim
from tests.venues.okx.emulator import DEFAULT_SPECS, InstrumentSim, OkxEmulator

N = 20_000
T0 = 1_700_000_000_000


def _measure(venue: str, frames: dict[str, list[Frame]]) -> list[Row]:
    out = []
    for channel, fs in frames.items():
        new_parser = type(parsers()[venue])  # a fresh parser per pass: no shared caches
        assert new_parser().parse(fs[0]), f"{venue}/{channel}: the bench frame does not parse"
        out.append((channel, *parser_vs_orjson(new_parser, fs)))
    return out


def _binance(venue: str) -> dict[str, list[Frame]]:
    sim = FuturesSim("BTCUSDT", random.Random(3), 6_500_000)
    sim.mark_ms = T0  # not the wall clock: the same frames on every run
    out: dict[str, list[Frame]] = {}

    def add(channel: str, stream: str, data: dict, i: int) -> None:
        body = orjson.dumps({"stream": f"btcusdt@{stream}", "data": data})
        out.setdefault(channel, []).append(Frame(channel, "BTCUSDT", body, T0 * 10**6, i))

    for i in range(N):
        now = T0 + i
        trade, _ = sim.trade(now)
        add("trade", "trade", trade, i)
        if venue == "binanceusdm":
            add("aggTrade", "aggTrade", sim.agg_trade(now), i)
            add("markPrice", "markPrice@1s", sim.mark(), i)
            add("forceOrder", "forceOrder", sim.liquidation(now), i)
        d = sim.depth(now)
        if venue == "binance":
            d.pop("pu")
        add("depth", "depth@100ms", d, i)
        bb, ba = max(sim.bids), min(sim.asks)
        add("bookTicker", "bookTicker", {"u": sim.u, "s": "BTCUSDT", "b": f"{bb / 100:.2f}",
            "B": "1.5", "a": f"{ba / 100:.2f}", "A": "0.25"}, i)  # fmt: skip
        add("kline", "kline_1m", {"e": "kline", "E": now, "s": "BTCUSDT", "k": {
            "t": now // 60000 * 60000, "T": now // 60000 * 60000 + 59999, "s": "BTCUSDT",
            "i": "1m", "f": 1, "L": i + 1, "o": "65000.10", "c": f"{bb / 100:.2f}",
            "h": "65100.00", "l": "64900.00", "v": "12.5", "n": i + 1, "x": False,
            "q": "812345.6", "V": "6.1", "Q": "400000.1", "B": "0"}}, i)  # fmt: skip
    return out


def _okx() -> dict[str, list[Frame]]:
    sims = {i: InstrumentSim(DEFAULT_SPECS[i], random.Random(4), 650_000)
            for i in ("BTC-USDT", "BTC-USDT-SWAP")}  # fmt: skip
    out: dict[str, list[Frame]] = {}

    def add(channel: str, inst: str, data: list, i: int, action: str | None = None) -> None:
        body = OkxEmulator._frame(channel, inst, data, action)
        out.setdefault(channel, []).append(Frame(channel, inst, body, T0 * 10**6, i))

    spot = sims["BTC-USDT"]
    add("books", "BTC-USDT", [spot.snapshot(T0)], 0, "snapshot")
    for i in range(1, N):
        now = T0 + i
        add("trades", "BTC-USDT", [spot.trade(now)], i)
        add("books", "BTC-USDT", [spot.update(now)], i, "update")
        (bp, bs), (ap, asz) = spot.true_book()[0][0], spot.true_book()[1][0]
        add("bbo-tbt", "BTC-USDT", [{"asks": [[ap, asz, "0", "1"]], "bids": [[bp, bs, "0", "1"]],
            "ts": str(now), "seqId": i}], i)  # fmt: skip
        add("tickers", "BTC-USDT", [{"instType": "SPOT", "instId": "BTC-USDT", "last": bp,
            "lastSz": "0.1", "askPx": ap, "askSz": asz, "bidPx": bp, "bidSz": bs,
            "open24h": "64000.1", "high24h": "66000", "low24h": "63000", "volCcy24h": "1e8",
            "vol24h": "1500.2", "sodUtc0": "64000", "sodUtc8": "64100",
            "ts": str(now)}], i)  # fmt: skip
    return out


def _bybit() -> dict[str, list[Frame]]:
    sim = BybitSim("linear", "BTCUSDT", random.Random(5), 6_500_000)
    out: dict[str, list[Frame]] = {}

    def add(channel: str, body: dict, i: int) -> None:
        out.setdefault(channel, []).append(Frame(channel, "BTCUSDT", orjson.dumps(body),
                                                 T0 * 10**6, i))  # fmt: skip

    add("orderbook", sim.snapshot(50, T0), 0)
    for i in range(1, N):
        now = T0 + i
        add("publicTrade", {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": now,
                            "data": [sim.trade(now)]}, i)  # fmt: skip
        add("orderbook", sim.deltas(now)[50], i)
        add("tickers", {"topic": "tickers.BTCUSDT", "type": "snapshot", "cs": i, "ts": now,
            "data": {"symbol": "BTCUSDT", "lastPrice": "65000.1", "markPrice": "65000.3",
                     "indexPrice": "64999.9", "openInterest": f"{50000 + i}.5",
                     "fundingRate": "0.0001", "nextFundingTime": str(T0 + 3_600_000),
                     "bid1Price": "65000", "bid1Size": "1.2", "ask1Price": "65000.2",
                     "ask1Size": "0.8", "volume24h": "12345.6", "turnover24h": "8e8",
                     "price24hPcnt": "0.01", "highPrice24h": "66000",
                     "lowPrice24h": "64000", "prevPrice24h": "64500.5",
                     "openInterestValue": f"{(50000 + i) * 65000.3:.2f}"}}, i)  # fmt: skip
    return {("bybit_linear", k): v for k, v in out.items()}  # type: ignore[misc]


def native() -> Iterator[tuple[str, list[Row]]]:
    yield "binance (spot)", _measure("binance", _binance("binance"))
    yield "binance (usdm)", _measure("binanceusdm", _binance("binanceusdm"))
    yield "okx", _measure("okx", _okx())
    bybit = _bybit()
    yield "bybit (linear)", _measure("bybit_linear", {k[1]: v for k, v in bybit.items()})


def all_venues() -> Iterator[tuple[str, list[Row]]]:
    yield from native()
    for venue in ("deribit", "coinbase", "kraken"):
        try:
            mod = importlib.import_module(f"benchmarks.bench_{venue}")
        except ModuleNotFoundError:
            continue
        yield venue, mod.bench()


if __name__ == "__main__":
    for venue, rows in all_venues():
        for channel, ours, base in rows:
            print(f"{venue:16s} {channel:14s} {ours:>10,.0f}/s  orjson {base:>10,.0f}/s"
                  f"  {ours / base:.2f}")  # fmt: skip
