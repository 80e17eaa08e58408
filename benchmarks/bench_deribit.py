"""Deribit in-process parse rate per channel: our parser (typed decode + normalize + encode)
next to ``orjson.loads`` of the same frames. Frames come from the emulator's generator."""

from __future__ import annotations

import random

from benchmarks.bench_parse import Row, per_channel
from normalizer.venues.base import Frame
from normalizer.venues.deribit import DeribitParser
from tests.venues.deribit.emulator import DEFAULT_SPECS, DeribitEmulator, InstrumentSim

N = 20_000
START = 1_700_000_000_000


def _frames(n: int) -> dict[str, list[Frame]]:
    sim = InstrumentSim(DEFAULT_SPECS["BTC-PERPETUAL"], random.Random(7))
    name = sim.spec.name
    out: dict[str, list[Frame]] = {k: [] for k in ("trades", "book", "quote", "ticker",
                                                   "chart_trades")}  # fmt: skip

    def add(channel: str, sub: str, data: object, i: int) -> None:
        out[channel].append(Frame(channel, name, DeribitEmulator.frame(sub, data), 1, i))

    add("book", f"book.{name}.100ms", sim.snapshot(START), 0)
    for i in range(n):
        now = START + i * 100
        add("trades", f"trades.{name}.100ms", [sim.trade(now)], i)
        add("book", f"book.{name}.100ms", sim.change(now), i + 1)
        add("quote", f"quote.{name}", sim.quote(now), i)
        add("ticker", f"ticker.{name}.100ms", sim.ticker(now), i)
        add("chart_trades", f"chart.trades.{name}.1", dict(sim.candle or {}), i)
    return out


def bench() -> list[Row]:
    """(channel, parser msgs/s, orjson.loads msgs/s) per Deribit channel."""
    return per_channel(DeribitParser, _frames(N))


if __name__ == "__main__":
    for channel, ours, base in bench():
        print(f"deribit {channel:13s} parser {ours:>10,.0f}/s   orjson.loads {base:>10,.0f}/s")
