"""Our Binance parsers against cryptofeed's own Binance handlers, on the real frames cryptofeed
recorded (``../shared/frames/cryptofeed``): spot and USDⓈ-M, channel by channel.

cryptofeed is never a dependency and never imported here: its ``order_book`` dependency is
GPL. It lives in a throwaway virtualenv, ``var/bench-cryptofeed/`` (``make bench-cryptofeed``
creates it), and its side runs in a subprocess of that venv's Python, which receives the very
frames we parse and times them on command. Passes are interleaved (their pass, ours, their
``json.loads`` pass, ours) and the best of ``PASSES`` is kept for each, so a burst of load on
a shared machine hits both sides alike. Both processes also time stdlib ``json.loads`` on the
same frames: its two rates should agree, which shows the two processes run at the same speed.

What each side's timed loop does per frame (checked against both sources, issue 24):
- ours: ``parser.parse(Frame)`` of a parser primed with the capture's exchangeInfo: route by
  channel, decode and validate (types, bounds, event type, the symbol against the subject's),
  name the market, build the typed message and **encode it to the exact bytes the normalizer
  publishes**, returned as ``Out(subject, msg_id, bytes)``. Column "jetmarket" runs the C
  handlers of aggTrade/trade/bookTicker/kline (normalizer/venues/binance/_speedups.c) as the
  normalizer does when they are built; "pure Python" is the same parser with
  ``compiled=False`` (what runs on a machine without a C compiler). The ``Frame`` is built
  before timing: the normalizer builds it from the NATS message, as cryptofeed's side gets the
  frame's text from its WebSocket library, neither timed.
- cryptofeed: ``await feed.message_handler(text, conn, ts)`` of a feed whose symbols come
  from the same exchangeInfo: ``json.loads`` (yapic, prices as Decimal), route by the event
  type, build its typed object (Cython ``Trade``/``Ticker``/``Candle``; for depth it applies
  the deltas to its order book, ours leaves the book to the orderbook service), and await a
  do-nothing callback. It serializes nothing (its backends would, after the callback), so per
  frame ours does strictly more: the encoding to bytes. Its spot bookTicker ``Ticker`` holds
  bid and ask only; our ``bbo`` also carries both sizes and the update id.

Usage: ``python -m benchmarks.bench_cryptofeed [--passes N]`` (prints a markdown table; more
passes find quieter moments on a busy machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from normalizer.registry import parsers
from normalizer.venues.base import Frame
from tests.recorded import read
from tests.venues.conformance import router

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "var" / "bench-cryptofeed"
VENV_PY = VENV / "bin" / "python"
CAPTURES = ROOT.parent / "shared" / "frames" / "cryptofeed"
PASSES = 5
N = 20_000  # frames per timed pass (a channel's frames cycled, or depth's replayed in order)

# (label, capture name, our venue token, cryptofeed feed class)
VENUES = [
    ("spot", "BINANCE", "binance", "Binance"),
    ("USDⓈ-M", "BINANCE_FUTURES", "binanceusdm", "BinanceFutures"),
]
CHANNELS = ("aggTrade", "trade", "bookTicker", "depth", "kline")
# label, frames, ours, theirs, json ours/theirs, ours in pure Python
Row = tuple[str, int, float, float, float, float, float]


class Absent(RuntimeError):
    """No cryptofeed venv: the comparison cannot run."""


# The cryptofeed side, run by the throwaway venv's Python. Reads one JSON line (the frames,
# the exchangeInfo bodies, the recorded depth snapshots), then answers commands
# "feed <key>" / "json <key>" with the seconds one pass took.
CHILD = r"""
import asyncio, json, sys, time
from decimal import Decimal
from cryptofeed.defines import CANDLES, L2_BOOK, TICKER, TRADES
from cryptofeed.exchanges import Binance, BinanceFutures
from cryptofeed.symbols import Symbols

spec = json.loads(sys.stdin.readline())
N = spec["n"]
CLASSES = {"Binance": Binance, "BinanceFutures": BinanceFutures}
for name, body in spec["symbols"].items():
    cls = CLASSES[name]
    Symbols.set(cls.id, *cls._parse_symbol_data(json.loads(body)))

async def nothing(obj, ts):
    pass

def done(coro):
    # the handlers never suspend on these frames: run them without an event loop's overhead
    try:
        coro.send(None)
    except StopIteration:
        return
    raise RuntimeError("cryptofeed handler suspended")

def feed(name):
    cls = CLASSES[name]
    cbs = {k: nothing for k in (TRADES, TICKER, L2_BOOK, CANDLES)}
    f = cls(symbols=[], channels=[], callbacks=cbs, candle_closed_only=False)
    snaps = spec["snapshots"].get(name, {})

    async def read(url, *a, **k):  # the recorded REST depth answer, no network
        sym = url.split("symbol=")[1].split("&")[0]
        return snaps[sym]

    f.http_conn.read = read
    for sym in snaps:  # books start from the recorded snapshots, untimed (ours has no book)
        done(f._snapshot(sym))
    return f

def feed_pass(key):
    c = spec["channels"][key]
    frames = c["frames"]
    t = 0.0
    if c["stateful"]:
        reps = max(1, N // len(frames))
        for _ in range(reps):
            f = feed(c["feed"])
            handle = f.message_handler
            t0 = time.perf_counter()
            for i, x in enumerate(frames):
                done(handle(x, None, 1.0))
            t += time.perf_counter() - t0
        return t, reps * len(frames)
    f = feed(c["feed"])
    handle = f.message_handler
    seq = (frames * (N // len(frames) + 1))[:N]
    t0 = time.perf_counter()
    for x in seq:
        done(handle(x, None, 1.0))
    return time.perf_counter() - t0, len(seq)

def json_pass(key):
    c = spec["channels"][key]
    seq = (c["frames"] * (N // len(c["frames"]) + 1))[:N]
    loads = json.loads
    t0 = time.perf_counter()
    for x in seq:
        loads(x)
    return time.perf_counter() - t0, len(seq)

import logging
logging.disable(logging.CRITICAL)  # a reset book logs a warning; not part of the timing
print("ready", flush=True)
for line in sys.stdin:
    cmd, key = line.split()
    secs, n = (feed_pass if cmd == "feed" else json_pass)(key)
    print(secs, n, flush=True)
"""


def _capture(name: str, venue: str) -> tuple[str, dict[str, str], dict[str, list[bytes]]]:
    """(exchangeInfo body, {symbol: recorded REST depth body}, {channel: frames})."""
    info = ""
    for r in read(CAPTURES / f"{name}.0"):
        if r.kind == "rest" and r.url.endswith("/exchangeInfo"):
            info = r.payload
    snaps = {
        r.url.split("symbol=")[1].split("&")[0]: r.payload
        for r in read(CAPTURES / f"{name}.http.0.0")
        if r.kind == "rest" and "/depth" in r.url
    }
    route = router(venue)
    frames: dict[str, list[bytes]] = {}
    for r in read(CAPTURES / f"{name}.ws.1.0"):
        if r.kind == "recv":
            data = r.payload.encode()
            channel, _ = route(data)
            frames.setdefault(channel, []).append(data)
    return info, snaps, frames


def _our_parser(
    venue: str, info: str, compiled: bool | None = None
) -> Callable[[], Callable[[Frame], object]]:
    """A fresh parser's ``parse``, primed with the exchangeInfo (contract sizes, names);
    ``compiled=False``: Python handlers only (None: as the normalizer runs it)."""
    cls = type(parsers()[venue])

    def new() -> Callable[[Frame], object]:
        p = cls(compiled=compiled) if compiled is not None else cls()
        p.parse(Frame("instruments", "ALL", info.encode(), 1, 0))
        return p.parse

    return new


class Theirs:
    """The cryptofeed subprocess."""

    def __init__(self, spec: dict[str, Any]) -> None:
        if not VENV_PY.exists():
            where = VENV.relative_to(ROOT)
            raise Absent(f"no cryptofeed venv at {where}: `make bench-cryptofeed` creates it")
        self.p = subprocess.Popen(
            [str(VENV_PY), "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.p.stdin and self.p.stdout
        self.p.stdin.write(json.dumps(spec) + "\n")
        self.p.stdin.flush()
        if self.p.stdout.readline().strip() != "ready":
            raise RuntimeError("cryptofeed side did not start (see its error above)")

    def rate(self, cmd: str, key: str) -> float:
        assert self.p.stdin and self.p.stdout
        self.p.stdin.write(f"{cmd} {key}\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"cryptofeed side died on {cmd} {key}")
        secs, n = line.split()
        return int(n) / float(secs)

    def close(self) -> None:
        if self.p.stdin:
            self.p.stdin.close()
        self.p.wait(10)


def run(passes: int = PASSES) -> list[Row]:
    spec: dict[str, Any] = {"n": N, "symbols": {}, "snapshots": {}, "channels": {}}
    ours: dict[str, Callable[[], float]] = {}
    pure: dict[str, Callable[[], float]] = {}
    ours_json: dict[str, Callable[[], float]] = {}
    counts: dict[str, int] = {}
    for label, name, venue, feed in VENUES:
        info, snaps, frames = _capture(name, venue)
        spec["symbols"][feed] = info
        spec["snapshots"][feed] = snaps
        new = _our_parser(venue, info)
        for channel in CHANNELS:
            fs = frames.get(channel)
            if not fs:
                continue
            key = f"{label} {channel}"
            stateful = channel == "depth"
            spec["channels"][key.replace(" ", "_")] = {
                "feed": feed, "stateful": stateful, "frames": [f.decode() for f in fs],
            }  # fmt: skip
            counts[key] = len(fs)
            ours[key] = _our_pass(new, router(venue), fs, stateful)
            pure[key] = _our_pass(_our_parser(venue, info, False), router(venue), fs, stateful)
            ours_json[key] = _json_pass([f.decode() for f in fs])
    theirs = Theirs(spec)
    rows: list[Row] = []
    try:
        for key in ours:
            k = key.replace(" ", "_")
            best = [0.0, 0.0, 0.0, 0.0, 0.0]
            for _ in range(passes):
                best[1] = max(best[1], theirs.rate("feed", k))
                best[0] = max(best[0], ours[key]())
                best[3] = max(best[3], theirs.rate("json", k))
                best[2] = max(best[2], ours_json[key]())
                best[4] = max(best[4], pure[key]())
            rows.append((key, counts[key], *best))
    finally:
        theirs.close()
    return rows


def _our_pass(
    new: Callable[[], Callable[[Frame], object]],
    route: Callable[[bytes], tuple[str, str]],
    frames: list[bytes],
    stateful: bool,
) -> Callable[[], float]:
    """One timed pass of ours, frames/s. Frames are built before timing (the collector
    routes a frame and the normalizer builds its Frame; neither is the parser's work)."""
    fs = [Frame(*route(d), d, 1_700_000_000_000_000_000 + i, i + 1) for i, d in enumerate(frames)]

    def one() -> float:
        if stateful:  # as theirs: a fresh parser per replay of the frames in order
            t, reps = 0.0, max(1, N // len(fs))
            for _ in range(reps):
                parse = new()
                t0 = time.perf_counter()
                for f in fs:
                    parse(f)
                t += time.perf_counter() - t0
            return reps * len(fs) / t
        seq = (fs * (N // len(fs) + 1))[:N]
        parse = new()
        t0 = time.perf_counter()
        for f in seq:
            parse(f)
        return len(seq) / (time.perf_counter() - t0)

    return one


def _json_pass(texts: list[str]) -> Callable[[], float]:
    seq = (texts * (N // len(texts) + 1))[:N]

    def one() -> float:
        loads = json.loads
        t0 = time.perf_counter()
        for x in seq:
            loads(x)
        return len(seq) / (time.perf_counter() - t0)

    return one


def table(rows: list[Row]) -> list[str]:
    out = [
        "| channel (real frames) | frames | jetmarket | cryptofeed | ratio |"
        " pure Python (ratio) | json.loads ours / theirs |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, n, o, t, jo, jt, po in rows:
        out.append(
            f"| {key} | {n} | {o / 1e3:.0f}k/s | {t / 1e3:.0f}k/s | {o / t:.2f}x |"
            f" {po / 1e3:.0f}k/s ({po / t:.2f}x) | {jo / 1e3:.0f}k / {jt / 1e3:.0f}k |"
        )
    return out


def measure() -> list[Row] | None:
    """The rows, or None when the venv or the captures are absent (``make bench``)."""
    if not CAPTURES.is_dir() or not VENV_PY.exists():
        return None
    return run()


def lines(rows: list[Row] | None) -> list[str]:
    """The BENCHMARKS.md section."""
    out = [
        "",
        "## Parsers next to cryptofeed's handlers, real recorded frames (bench_cryptofeed.py)",
        "",
    ]
    if rows is None:
        return [*out, "Not run: no cryptofeed venv (`make bench-cryptofeed` creates it).", ""]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    out += [
        "cryptofeed's own Binance handlers (`message_handler`: decode with Decimal prices,",
        "typed object, a do-nothing callback; for depth also its order book) in a subprocess",
        "of a throwaway venv (its `order_book` is GPL: never imported here), ours",
        "(`parser.parse`: typed decode, checks, the encoded message; C handlers for",
        "aggTrade/trade/bookTicker/kline when built, and the pure-Python path beside) here,",
        "on the frames of",
        "cryptofeed's own recordings. Passes interleaved, best of"
        f" {PASSES} of {N} frames each; load average at the end {load}. stdlib `json.loads`",
        "is timed in both processes on the same frames: equal rates mean equal footing.",
        "Goal (issue 24): >= 3x on every channel.",
        "",
        *table(rows),
        "",
    ]
    return out


def main() -> int:
    if not CAPTURES.is_dir():
        print(f"bench_cryptofeed: no captures at {CAPTURES}", file=sys.stderr)
        return 2
    passes = int(sys.argv[sys.argv.index("--passes") + 1]) if "--passes" in sys.argv else PASSES
    try:
        rows = run(passes)
    except Absent as exc:
        print(f"bench_cryptofeed: {exc}", file=sys.stderr)
        return 2
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average {load}; best of {passes} interleaved passes of {N} frames")
    print("\n".join(table(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
