"""Research backtests: events/s of the example strategy on the columnar replay, and a 4-run
sweep's wall time beside the same 4 runs one after another.

``python -m benchmarks.bench_backtest [N [ROUNDS]]`` prints the section; ``measure(n)`` runs
each mode in child processes (chdb binds one path per process; the peak RSS is then the
mode's own) and returns the numbers; ``lines(r)`` makes the BENCHMARKS.md section. Goal:
>= 300k events/s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000_000_000_000
STRATEGY = f"{ROOT / 'examples' / 'sma_cross.py'}:SmaCross"
PARAMS = {"fast": 5, "slow": 20, "bar_s": 0.1, "size": 0.01}
GRID = "fast=3,5 slow=20,40"
DEPTH_EVERY = 5


def fill(dsn: str, n: int) -> None:
    """n trades (a seeded random walk, 100 µs apart) and n/5 depth updates of BTC-USDT."""
    from sinks.clickhouse.store import Store
    from sinks.clickhouse.ttl import KEEP_ALL

    rnd = np.random.default_rng(11)
    px = np.round(65000.0 + np.cumsum(rnd.choice([-0.5, 0.0, 0.5], n)), 1)
    ts = T0 + np.arange(n, dtype=np.int64) * 100_000
    store = Store(dsn)
    store.apply_ddl()
    store.apply_ttl(KEEP_ALL)  # historic timestamps: no table TTL (depth keeps 7 days)
    store.insert("trades", ["venue", "symbol", "ts_event", "ts_recv", "id", "price", "size",
                            "side", "aggregated", "stream_seq"],
                 [["binance"] * n, ["BTC-USDT"] * n, ts.tolist(), ts.tolist(),
                  [str(i) for i in range(n)], px.tolist(), rnd.random(n).round(4).tolist(),
                  rnd.choice(["buy", "sell"], n).tolist(), [False] * n,
                  list(range(1, 2 * n, 2))], "bench-trades")  # fmt: skip
    m = n // DEPTH_EVERY
    idx = np.arange(m) * DEPTH_EVERY
    dts = (ts[idx] + 50_000).tolist()
    mid = px[idx].tolist()
    store.insert("depth", ["venue", "symbol", "ts_event", "ts_recv", "bids", "asks", "seq",
                           "levels", "stream_seq"],
                 [["binance"] * m, ["BTC-USDT"] * m, dts, dts,
                  [[(p - 0.5 - k, 1.0 + k) for k in range(5)] for p in mid],
                  [[(p + 0.5 + k, 1.0 + k) for k in range(5)] for p in mid],
                  list(range(m)), [5] * m, list(range(2, 2 * m + 1, 2))],
                 "bench-depth")  # fmt: skip
    store.close()


MODES = ("clickhouse", "parquet", "four", "sequential", "parallel")


def child(mode: str, tmp: str, n: int) -> dict[str, Any]:
    """One measurement in this (child) process: chdb binds one path per process, and the
    peak RSS is then this mode's alone. ``fill``: the data, its Parquet export and the Arrow
    copy sweeps map (made before any sweep is timed: a sweep reuses it from its cache)."""
    import os
    import resource

    from benchmarks.proc import peak_rss_bytes
    from executor.backtest.research import arrow_for_sweep, parse_grid, run_one, sweep
    from executor.backtest.runner import load_strategy
    from replay.export import export

    root = Path(tmp)
    dsn = f"chdb://{root / 'ch'}"
    pq = root / "pq"
    kw: dict[str, Any] = {"dsn": dsn, "venue": "binance", "symbols": ["BTC-USDT"],
                          "types": ["trade", "depth"]}  # fmt: skip
    out: dict[str, Any] = {"load": os.getloadavg()[0]}
    t, c = time.perf_counter(), _cpu()
    if mode == "fill":
        fill(dsn, n)
        t = time.perf_counter()
        export(dsn, pq, ["trades", "depth"])
        out["export_s"] = time.perf_counter() - t
        t = time.perf_counter()
        arrow_for_sweep(str(pq), root / "c")
        out["arrow_s"] = time.perf_counter() - t
        return out
    if mode in ("clickhouse", "parquet"):
        res = [run_one(STRATEGY, PARAMS, source=str(pq) if mode == "parquet" else "clickhouse",
                       keep=False, **kw)]  # fmt: skip
    else:
        grid = parse_grid(GRID, load_strategy(STRATEGY))
        if mode == "four":  # one after another, a pass over the data each
            res = [run_one(STRATEGY, {**PARAMS, **g}, source=str(pq), keep=False, **kw)
                   for g in grid]  # fmt: skip
        else:  # one process, one pass (every run fed each batch); or parallel processes
            workers = 1 if mode == "sequential" else (os.cpu_count() or 2)
            res = sweep(STRATEGY, grid, PARAMS, source=str(pq), workers=workers,
                        cache_dir=root / "c", **kw)  # fmt: skip
    out["seconds"], out["cpu"] = time.perf_counter() - t, _cpu() - c
    out["events"] = sum(r.messages for r in res)
    out["run_seconds"] = res[0].seconds
    out["fills"] = res[0].metrics["fills"]
    out["digests"] = [r.digest for r in res]
    out["rss"] = peak_rss_bytes()
    # the largest worker process (parallel sweep); forked from this one, so at least its size
    # at the fork
    out["worker_rss"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return out


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the sweep's workers)."""
    import resource

    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _run(mode: str, tmp: Path, n: int) -> dict[str, Any]:
    code = (f"import json; from benchmarks.bench_backtest import child; "
            f"print(json.dumps(child({mode!r}, {str(tmp)!r}, {n})))")  # fmt: skip
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=900, cwd=ROOT)  # fmt: skip
    if res.returncode != 0:
        raise RuntimeError(f"bench_backtest {mode} failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def measure(n: int = 1_000_000, rounds: int = 2) -> dict[str, Any]:
    """Every mode ``rounds`` times (rounds one after another), each run in a child process
    of its own; a mode's figure is its fastest run. Checks that every run of the same
    parameters gave the same digest, whatever the source and the mode."""
    import shutil

    tmp = Path(tempfile.mkdtemp(prefix="jm-bench-backtest-"))
    try:
        out: dict[str, Any] = {"trades": n, "rounds": rounds, **_run("fill", tmp, n)}
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
        for _ in range(rounds):
            for m in MODES:
                runs[m].append(_run(m, tmp, n))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # chdb, Parquet and its Arrow copy: ~150 MB
    single = {r["digests"][0] for m in ("clickhouse", "parquet") for r in runs[m]}
    assert len(single) == 1, "ClickHouse and Parquet runs differ"
    grids = {tuple(r["digests"]) for m in ("four", "sequential", "parallel") for r in runs[m]}
    assert len(grids) == 1, "sweep runs differ from the same runs one after another"
    for m in MODES:
        out[m] = min(runs[m], key=lambda r: r["seconds"])
        out[m]["all_s"] = [r["seconds"] for r in runs[m]]
    out["runs"] = len(out["four"]["digests"])
    return out


def lines(r: dict[str, Any]) -> list[str]:
    def mib(x: float) -> str:
        return f"{x / 2**20:,.0f} MiB"

    def row(name: str, x: dict[str, Any]) -> str:
        events, secs = x["events"] // len(x["digests"]), x["run_seconds"]
        return (f"| {name} | {events:,} | {secs:.2f} | {events / secs:,.0f} | {x['fills']:,.0f}"
                f" | {mib(x['rss'])} | {x['load']:.1f} |")  # fmt: skip

    single = r["parquet"]["seconds"]
    k = r["rounds"]
    out = [
        f"## Research backtest ({r['trades']:,} trades + {r['trades'] // DEPTH_EVERY:,} depth "
        "updates; benchmarks/bench_backtest.py)",
        "",
        "executor/backtest/sim.py with examples/sma_cross.py (fast=5 slow=20 bar_s=0.1) on the",
        "columnar replay; events/s counts every market message through book, fills and the",
        f"strategy, replay included. Goal: >= 300k events/s. Every row: the fastest of {k} "
        "runs, each in a child process of its own (peak RSS: that process; load: the 1-minute "
        "load average when the run started, 2 cores).",
        "",
        "| run | events | seconds | events/s | fills | peak RSS | load |",
        "|---|---:|---:|---:|---:|---:|---:|",
        row("from ClickHouse", r["clickhouse"]),
        row(f"from Parquet (export took {r['export_s']:.2f} s)", r["parquet"]),
        "",
        f"Sweep `--grid '{GRID}'` ({r['runs']} runs over the Parquet export; the Arrow copy "
        f"a sweep of several passes maps was made beforehand, {r['arrow_s']:.2f} s, as a "
        "sweep's cache keeps it; 4 x single run: 4 x the Parquet run above, its wall time in "
        f"its process, {single:.2f} s; CPU s: the process and its workers; in brackets: the "
        f"wall times of all {k} runs):",
        "",
        "| the 4 runs | wall time | vs 4 x single run | CPU s | peak RSS | load |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, m in (("one after another (`run_one`, a pass each)", "four"),
                    ("sweep in one process (one pass, `--workers 1`)", "sequential"),
                    ("sweep in parallel processes (a pass per process, `--workers 2`)",
                     "parallel")):  # fmt: skip
        x = r[m]
        rss = mib(x["rss"]) + (f" + {mib(x['worker_rss'])} a worker" if x["worker_rss"] and
                               m == "parallel" else "")  # fmt: skip
        alls = ", ".join(f"{v:.2f}" for v in x["all_s"])
        out.append(f"| {name} | {x['seconds']:.2f} s ({alls}) | {x['seconds'] / (4 * single):.2f}"
                   f" | {x['cpu']:.2f} | {rss} | {x['load']:.1f} |")  # fmt: skip
    out += [
        "",
        "`jetmarket backtest --grid` without `--workers`: as many processes as the load "
        "average leaves cores idle, at least one (`research.default_workers`).",
        "",
    ]
    return out


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    print("\n".join(lines(measure(n, int(sys.argv[2]) if len(sys.argv) > 2 else 2))))
