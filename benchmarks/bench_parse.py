"""How every venue's parser is timed against ``orjson.loads`` on the same frames.

Best of ``PASSES`` passes for both sides, their passes interleaved (parser, orjson,
parser, ...) so a burst of load on this shared 2-core box hits both alike, and a fresh
parser per pass so no state (book sequences, caches, candles) carries from one to the
next."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

from normalizer.venues.base import Frame, VenueParser

PASSES = 3
Row = tuple[str, float, float]  # (channel, parser frames/s, orjson.loads frames/s)


def _timed(run: Callable[[], None]) -> float:
    t = time.perf_counter()
    run()
    return time.perf_counter() - t


def parser_vs_orjson(
    new_parser: Callable[[], VenueParser], frames: list[Frame]
) -> tuple[float, float]:
    """(parser frames/s, ``orjson.loads`` frames/s) over ``frames``."""
    datas = [f.data for f in frames]

    def parser_pass() -> None:
        parse = new_parser().parse
        for f in frames:
            parse(f)

    def orjson_pass() -> None:
        loads = orjson.loads
        for d in datas:
            loads(d)

    ours = base = float("inf")
    for _ in range(PASSES):
        ours = min(ours, _timed(parser_pass))
        base = min(base, _timed(orjson_pass))
    return len(frames) / ours, len(frames) / base


def per_channel(new_parser: Callable[[], VenueParser], frames: dict[str, list[Frame]]) -> list[Row]:
    return [(channel, *parser_vs_orjson(new_parser, fs)) for channel, fs in frames.items()]
