"""Research backtests: events/s of the example strategy on the columnar replay, and a 4-run
sweep's wall time beside the same 4 runs one after another.

``python -m benchmarks.bench_backtest [N]`` prints the section; ``measure(n)`` runs it in a
child process (chdb binds one path per process) and returns the numbers; ``lines(r)`` makes
the BENCHMARKS.md section. Goal: >= 300k events/s.
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


def child(n: int) -> dict[str, Any]:
    import shutil

    tmp = Path(tempfile.mkdtemp(prefix="jm-bench-backtest-"))
    try:
        return _measure(n, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # chdb, Parquet and its Arrow copy: ~150 MB


def _measure(n: int, tmp: Path) -> dict[str, Any]:
    from executor.backtest.research import parse_grid, run_one, sweep
    from executor.backtest.runner import load_strategy
    from replay.export import export

    dsn = f"chdb://{tmp / 'ch'}"
    fill(dsn, n)
    kw: dict[str, Any] = {"dsn": dsn, "venue": "binance", "symbols": ["BTC-USDT"],
                          "types": ["trade", "depth"]}  # fmt: skip
    out: dict[str, Any] = {"trades": n}
    ch = run_one(STRATEGY, PARAMS, source="clickhouse", keep=False, **kw)
    out["clickhouse"] = [ch.messages, ch.seconds, ch.metrics["fills"]]
    t = time.perf_counter()
    pq = tmp / "pq"
    export(dsn, pq, ["trades", "depth"])
    out["export_s"] = time.perf_counter() - t
    one = run_one(STRATEGY, PARAMS, source=str(pq), keep=False, **kw)
    out["parquet"] = [one.messages, one.seconds, one.metrics["fills"]]
    assert one.digest == ch.digest, "Parquet and ClickHouse runs differ"
    grid = parse_grid(GRID, load_strategy(STRATEGY))
    # the same 4 runs three ways: one after another (a pass over the data each), a sweep in
    # one process (one pass, every run fed each batch), a sweep in parallel processes
    t, c = time.perf_counter(), _cpu()
    four = [run_one(STRATEGY, {**PARAMS, **g}, source=str(pq), keep=False, **kw) for g in grid]
    out["four_s"], out["four_cpu"] = time.perf_counter() - t, _cpu() - c
    t, c = time.perf_counter(), _cpu()
    seq = sweep(STRATEGY, grid, PARAMS, source=str(pq), workers=1, cache_dir=tmp / "c", **kw)
    out["sequential_s"], out["sequential_cpu"] = time.perf_counter() - t, _cpu() - c
    t, c = time.perf_counter(), _cpu()
    par = sweep(STRATEGY, grid, PARAMS, source=str(pq), cache_dir=tmp / "c", **kw)
    out["parallel_s"], out["parallel_cpu"] = time.perf_counter() - t, _cpu() - c
    digests = [r.digest for r in four]
    assert digests == [r.digest for r in seq] == [r.digest for r in par], "runs differ"
    out["runs"] = len(grid)
    return out


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the sweep's workers)."""
    import resource

    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure(n: int = 1_000_000) -> dict[str, Any]:
    code = (
        f"import json; from benchmarks.bench_backtest import child; print(json.dumps(child({n})))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=900, cwd=ROOT)  # fmt: skip
    if res.returncode != 0:
        raise RuntimeError(f"bench_backtest failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def lines(r: dict[str, Any]) -> list[str]:
    def rate(x: list[float]) -> str:
        return f"{x[0] / x[1]:,.0f}"

    ch, pq = r["clickhouse"], r["parquet"]
    single = pq[1]
    return [
        f"## Research backtest ({r['trades']:,} trades + {r['trades'] // DEPTH_EVERY:,} depth "
        "updates; benchmarks/bench_backtest.py)",
        "",
        "executor/backtest/sim.py with examples/sma_cross.py (fast=5 slow=20 bar_s=0.1) on the",
        "columnar replay; events/s counts every market message through book, fills and the",
        "strategy, replay included. Goal: >= 300k events/s.",
        "",
        "| run | events | seconds | events/s | fills |",
        "|---|---:|---:|---:|---:|",
        f"| from ClickHouse | {ch[0]:,} | {ch[1]:.2f} | {rate(ch)} | {ch[2]:,.0f} |",
        f"| from Parquet (export took {r['export_s']:.2f} s) | {pq[0]:,} | {pq[1]:.2f} |"
        f" {rate(pq)} | {pq[2]:,.0f} |",
        "",
        f"Sweep `--grid '{GRID}'` ({r['runs']} runs over the Parquet export, 2 cores shared "
        "with the machine's other work; CPU s: this process and its workers):",
        "",
        "| the 4 runs | wall time | vs 4 x single run | CPU s |",
        "|---|---:|---:|---:|",
        f"| one after another (`run_one`, a pass each) | {r['four_s']:.2f} s |"
        f" {r['four_s'] / (4 * single):.2f} | {r['four_cpu']:.2f} |",
        f"| sweep in one process (one pass, `--workers 1`) | {r['sequential_s']:.2f} s |"
        f" {r['sequential_s'] / (4 * single):.2f} | {r['sequential_cpu']:.2f} |",
        f"| sweep in parallel processes (a pass per process) | {r['parallel_s']:.2f} s |"
        f" {r['parallel_s'] / (4 * single):.2f} | {r['parallel_cpu']:.2f} |",
        "",
    ]


if __name__ == "__main__":
    print("\n".join(lines(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000))))
