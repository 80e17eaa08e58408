"""Research backtests: the ``sim`` engine over the columnar replay, metrics, a results table
in ClickHouse (one row per run), parameter sweeps in parallel processes.

    jetmarket backtest --strategy examples/sma_cross.py:SmaCross --venue binance \\
        --symbol BTC-USDT --columnar clickhouse --grid 'fast=5,10,20 slow=50,100'

A sweep reads the range once: with ClickHouse as the source it is exported to Parquet under
``var/backtest/cache/`` first (chdb belongs to one process; files can be read by every
worker at once). The combinations are split into groups, at least one per worker process;
a group runs over one pass of the data, every batch's messages built once and handed to
each of its runs (``run_many``). With several passes the export is copied once to
uncompressed Arrow IPC, which every pass memory-maps instead of decoding Parquet again.
Every run is deterministic (``sim``), so a row's digest identifies its fills and PnL curve.

Results go to ``backtest_results`` (created here if missing), written directly to
``clickhouse.dsn``, like the columnar replay reads it: with chdb, the sink must not be
running on that path (research runs offline).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from executor.backtest.sim import Sim, SimSettings
from executor.backtest.strategy import Strategy

DEFAULT_TYPES = ("trade", "depth", "funding", "mark")
RESULTS_TABLE = "backtest_results"
MAX_GRID = 10_000  # combinations in one sweep: a typo like fast=1,...,1000 stops here
GROUP = 16  # runs sharing one pass of the data in a sweep (each holds its curve and fills)
YEAR_S = 365 * 86400
METRICS = ("total_return", "sharpe", "sortino", "max_drawdown", "turnover", "fees",
           "hit_rate", "pnl", "funding", "fills")  # fmt: skip

RESULTS_DDL = f"""CREATE TABLE IF NOT EXISTS {RESULTS_TABLE} (
    run_id String,
    sweep_id String,
    created DateTime64(3, 'UTC') DEFAULT now64(3),
    strategy String,
    params String,
    venue LowCardinality(String),
    symbols Array(String),
    source String,
    start_ns Int64,
    end_ns Int64,
    messages UInt64,
    seconds Float64,
    events_per_s Float64,
    total_return Float64,
    sharpe Float64,
    sortino Float64,
    max_drawdown Float64,
    turnover Float64,
    fees Float64,
    hit_rate Float64,
    pnl Float64,
    funding Float64,
    fills UInt64,
    digest String,
    report String
) ENGINE = MergeTree ORDER BY (sweep_id, run_id)"""


@dataclass
class RunResult:
    run_id: str
    strategy: str
    params: dict[str, Any]
    venue: str
    symbols: list[str]
    source: str
    messages: int
    seconds: float
    first_ns: int
    last_ns: int
    metrics: dict[str, float]
    digest: str
    curve: dict[str, list[Any]] = field(default_factory=dict)
    fills: list[dict[str, Any]] = field(default_factory=list)
    sweep_id: str = ""
    report: str = ""

    @property
    def events_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def row(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "sweep_id": self.sweep_id, "strategy": self.strategy,
            "params": orjson.dumps(self.params, option=orjson.OPT_SORT_KEYS).decode(),
            "venue": self.venue, "symbols": self.symbols, "source": self.source,
            "start_ns": self.first_ns, "end_ns": self.last_ns, "messages": self.messages,
            "seconds": self.seconds, "events_per_s": self.events_per_s,
            **{k: self.metrics[k] for k in METRICS}, "digest": self.digest,
            "report": self.report,
        }  # fmt: skip


def metrics(sim: Sim) -> dict[str, float]:
    """Return, Sharpe and Sortino (annualised from the curve's step), max drawdown (of
    peak equity), turnover (traded notional / initial cash), fees, hit rate (closing fills
    that made money), PnL, funding paid, fills."""
    c = sim.curve
    cash = sim.cfg.initial_cash
    eq = c.equity
    # returns between the regular grid points (curve_interval_s apart; the points after
    # fills would make the steps uneven), annualised by that step
    on_grid = [e for e, g in zip(eq, c.grid, strict=True) if g]
    rets = [b / a - 1.0 for a, b in itertools.pairwise(on_grid) if a > 0]
    per_year = YEAR_S / sim.cfg.curve_interval_s
    mean = sum(rets) / len(rets) if rets else 0.0
    sd = math.sqrt(sum((r - mean) ** 2 for r in rets) / (len(rets) - 1)) if len(rets) > 1 else 0.0
    down = math.sqrt(sum(min(r, 0.0) ** 2 for r in rets) / len(rets)) if rets else 0.0
    peak, mdd = -math.inf, 0.0
    for e in eq:
        peak = max(peak, e)
        if peak > 0:
            mdd = max(mdd, (peak - e) / peak)
    closing = [f for f in sim.fills if f.realized != 0.0]
    notional = sum(f.price * f.size for f in sim.fills)
    pos = sim.positions.values()
    return {
        "total_return": (eq[-1] / cash - 1.0) if eq else 0.0,
        "sharpe": mean / sd * math.sqrt(per_year) if sd > 0 else 0.0,
        "sortino": mean / down * math.sqrt(per_year) if down > 0 else 0.0,
        "max_drawdown": mdd,
        "turnover": notional / cash,
        "fees": sum(p.fees for p in pos),
        "hit_rate": sum(1 for f in closing if f.realized > 0) / len(closing) if closing else 0.0,
        "pnl": (eq[-1] - cash) if eq else 0.0,
        "funding": sum(p.funding for p in pos),
        "fills": float(len(sim.fills)),
    }


def load(spec: str) -> type[Strategy]:
    from executor.backtest.strategy import load_strategy

    return load_strategy(spec)


def run_id_for(strategy: str, params: dict[str, Any], extra: str = "") -> str:
    text = orjson.dumps([strategy, params, extra], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(text).hexdigest()[:12]


def run_one(
    strategy_spec: str,
    params: dict[str, Any],
    *,
    run_id: str | None = None,
    **kw: Any,
) -> RunResult:
    """One run over the columnar replay (``run_many``'s keywords). ``keep``: the curve and
    fills for the report."""
    return run_many(strategy_spec, [params], run_ids=[run_id], **kw)[0]


def run_many(
    strategy_spec: str,
    params_list: list[dict[str, Any]],
    *,
    source: str,
    dsn: str | None,
    venue: str,
    symbols: list[str],
    start: Any = None,
    end: Any = None,
    types: tuple[str, ...] | list[str] = DEFAULT_TYPES,
    cfg: SimSettings | None = None,
    run_ids: list[str | None] | None = None,
    keep: bool = True,
) -> list[RunResult]:
    """Several runs over ONE pass of the data: each batch's messages are built once and
    handed to every run's ``Sim`` in turn (building them is most of a run's cost). The runs
    share nothing but the messages, which the engine only reads, so each result is the one
    ``run_one`` gives alone (a strategy must not modify the messages it is given). A run's
    ``seconds``: its own engine time plus an equal share of reading and building."""
    from replay.columnar import Columnar

    cls = load(strategy_spec)
    sims = [Sim(cls, venue=venue, symbols=symbols, params=p, cfg=cfg) for p in params_list]
    col = Columnar(source=source, dsn=dsn, start=start, end=end, venues=[venue],
                   symbols=symbols, types=list(types))  # fmt: skip
    own = [0.0] * len(sims)
    clock = time.perf_counter
    t0 = clock()
    for sim in sims:
        sim.start()
    for batch in col.batches():
        msgs = batch.messages()
        for i, sim in enumerate(sims):
            t = clock()
            sim.run(msgs)
            own[i] += clock() - t
    for i, sim in enumerate(sims):
        t = clock()
        sim.finish()
        own[i] += clock() - t
    shared = (clock() - t0 - sum(own)) / len(sims)
    out = []
    for sim, dt, rid in zip(sims, own, run_ids or [None] * len(sims), strict=True):
        c = sim.curve
        res = RunResult(
            run_id=rid or run_id_for(strategy_spec, sim.params, f"{source}|{start}|{end}"),
            strategy=cls.__name__, params=sim.params, venue=venue, symbols=list(symbols),
            source=str(source), messages=sim.messages, seconds=dt + shared,
            first_ns=sim.first_ns or 0, last_ns=sim.now, metrics=metrics(sim),
            digest=sim.digest(),
        )  # fmt: skip
        if keep:
            res.curve = {"ts": c.ts, "equity": c.equity, "position": c.position, "mark": c.mark}
            res.fills = [
                {"ts": f.ts, "side": f.side, "price": f.price, "size": f.size, "fee": f.fee,
                 "symbol": f.symbol, "liquidity": f.liquidity, "realized": f.realized}
                for f in sim.fills
            ]  # fmt: skip
        out.append(res)
    return out


# -- sweeps ----------------------------------------------------------------------------------
def parse_grid(text: str, cls: type[Strategy]) -> list[dict[str, Any]]:
    """``'fast=5,10,20 slow=50,100'`` -> every combination, typed like the class defaults,
    in a fixed order (the names as given, values as given)."""
    defaults = cls.parameters()
    axes: list[tuple[str, list[Any]]] = []
    for item in text.split():
        name, sep, values = item.partition("=")
        if not sep or not values or name not in defaults:
            known = ", ".join(sorted(defaults)) or "none"
            raise ValueError(f"--grid {item!r}: expected NAME=V1,V2,..., NAME one of: {known}")
        kind = type(defaults[name])
        try:
            vals = [kind(v) if kind is not bool else v.lower() in ("1", "true", "yes")
                    for v in values.split(",")]  # fmt: skip
        except ValueError:
            raise ValueError(f"--grid {name}: values must be {kind.__name__}") from None
        axes.append((name, vals))
    if not axes:
        raise ValueError("--grid: no parameters")
    total = math.prod(len(v) for _, v in axes)
    if total > MAX_GRID:
        raise ValueError(f"--grid: {total} combinations, at most {MAX_GRID}")
    return [dict(zip([a[0] for a in axes], combo, strict=True))
            for combo in itertools.product(*(a[1] for a in axes))]  # fmt: skip


def _init_worker() -> None:
    # the parallelism is the processes': Arrow's own thread pool in each would only
    # oversubscribe the cores
    import pyarrow as pa

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)


def _sweep_worker(args: tuple[str, list[dict[str, Any]], dict[str, Any]]) -> list[RunResult]:
    spec, params_list, kw = args
    return run_many(spec, params_list, **kw)


def sweep(
    strategy_spec: str,
    grid: list[dict[str, Any]],
    base: dict[str, Any],
    *,
    source: str,
    dsn: str | None,
    workers: int | None = None,
    cache_dir: str | os.PathLike[str] = "var/backtest/cache",
    **kw: Any,
) -> list[RunResult]:
    """Every combination of ``grid`` (over ``base`` parameters), in ``workers`` processes
    (default: ``default_workers()``) over the same data; results in grid order, the same
    whatever the number of processes. Each process takes its combinations in groups of at
    most ``GROUP`` and runs a group over one pass of the data (``run_many``)."""
    from replay.model import parse_time

    # one absolute range for every run and for the cache: "--start 1d" read by each run at
    # its own moment would give the runs different data, and kept as text it would key a
    # later sweep to an older day's export. From ClickHouse, an open end is "now", once.
    now = time.time_ns()
    kw["start"] = parse_time(kw.get("start"), now)
    kw["end"] = parse_time(kw.get("end"), now)
    used: set[str] = set()
    if source == "clickhouse":
        if kw["end"] is None:
            kw["end"] = now
        source = export_for_sweep(dsn, cache_dir, kw)
        used.add(source)
    n = max(1, min(workers or default_workers(), len(grid)))
    # at least a group per process, at most GROUP runs in one; round-robin, so neighbouring
    # combinations (often alike in cost) go to different processes
    k = max(n, -(-len(grid) // GROUP))
    groups = [list(range(i, len(grid), k)) for i in range(k)]
    if k > 1:  # several passes over the same data
        source = arrow_for_sweep(source, cache_dir)
    used.add(source)
    prune_cache(cache_dir, keep=used)
    common = {"source": source, "dsn": dsn, **kw}
    jobs = [(strategy_spec, [{**base, **grid[i]} for i in g], common) for g in groups]
    if n <= 1:
        done = [_sweep_worker(j) for j in jobs]
    else:
        import multiprocessing

        # spawn: a child must not inherit a parent's chdb engine or threads
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker) as pool:
            done = list(pool.map(_sweep_worker, jobs))
    out: list[RunResult | None] = [None] * len(grid)
    for g, results in zip(groups, done, strict=True):
        for i, r in zip(g, results, strict=True):
            out[i] = r
    return out  # type: ignore[return-value]


def default_workers() -> int:
    """Sweep processes when none are asked for: the cores the machine leaves idle (the CPU
    count minus the 1-minute load average, rounded), at least one. A process of its own
    costs a run its own pass over the data, which pays only on a core nobody else uses:
    4 runs over 1.2M events on 2 cores at load 7-8 took 4.0 s and 3.1 CPU s in one process
    and one pass, 7.0 s and 5.0 CPU s in two processes (benchmarks/bench_backtest.py)."""
    n = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:  # no load average on this platform
        return n
    return max(1, min(n, round(n - load)))


def export_for_sweep(dsn: str | None, cache_dir: str | os.PathLike[str], kw: dict[str, Any]) -> str:
    """The sweep's data as Parquet, exported once per range, selection and content: the key
    holds each table's row count and last stream sequence in the selection, so rows added
    to the range since (a backfill, late inserts) make a new export instead of a stale one."""
    from replay.columnar import ClickHouseTables, _cond, _where
    from replay.export import export
    from streams.tables import TABLES

    if not dsn:
        raise ValueError("no ClickHouse DSN to export the sweep's data from")
    types = list(kw.get("types") or DEFAULT_TYPES)
    start, end = kw.get("start"), kw.get("end")
    cond = _cond(_where([(kw["venue"], s) for s in kw["symbols"]]), start, end)
    ch = ClickHouseTables(dsn)
    try:
        content = [ch.rows(f"SELECT count(), max(stream_seq) FROM {TABLES[t]} WHERE {cond}")[0]
                   if ch.rows(f"EXISTS TABLE {TABLES[t]}")[0][0] else None
                   for t in types]  # fmt: skip
    finally:
        ch.close()
    key = orjson.dumps([dsn, start, end, kw.get("venue"), kw.get("symbols"), types,
                        [list(map(int, c)) if c else None for c in content]],
                       option=orjson.OPT_SORT_KEYS)  # fmt: skip
    out = Path(cache_dir) / hashlib.sha256(key).hexdigest()[:16]
    done = out / "done"
    if not done.exists():
        export(dsn, out, [TABLES[t] for t in types], start=start, end=end,
               venues=[kw["venue"]], symbols=kw["symbols"])  # fmt: skip
        done.write_text("")
    os.utime(out)  # used now: the cache keeps the most recently used (prune_cache)
    return str(out)


CACHE_KEEP = 8  # exports (and Arrow copies) a cache directory keeps, the newest


def prune_cache(cache_dir: str | os.PathLike[str], keep: set[str], most: int = CACHE_KEEP) -> None:
    """Bound the sweep cache: every sweep of an open or relative range ("--start 1d") makes
    a new export, so only the ``most`` newest entries stay, and always those in ``keep``
    (the current sweep's). Another sweep reading an older entry at this moment could lose
    it: run concurrent sweeps with their own --cache-dir."""
    import shutil

    root = Path(cache_dir)
    if not root.is_dir():
        return
    entries = sorted((p for p in root.iterdir() if p.is_dir()),
                     key=lambda p: p.stat().st_mtime_ns, reverse=True)  # fmt: skip
    kept = {str(Path(k).resolve()) for k in keep}
    for old in entries[most:]:
        if str(old.resolve()) not in kept:
            shutil.rmtree(old, ignore_errors=True)


def arrow_for_sweep(source: str, cache_dir: str | os.PathLike[str]) -> str:
    """A Parquet export as Arrow IPC files (``replay.columnar.arrow_copy``): every run of the
    sweep maps the same pages instead of decoding the Parquet again. Keyed by the files'
    paths, sizes and modification times; a source already in Arrow is used as it is."""
    from replay.columnar import arrow_copy, parquet_files

    files = sorted(parquet_files(source).values())
    if any(f.suffix == ".arrow" for f in files):
        return source
    stats = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    key = hashlib.sha256(orjson.dumps(stats)).hexdigest()[:16]
    out = arrow_copy(source, Path(cache_dir) / f"arrow-{key}")
    os.utime(out)  # used now: the cache keeps the most recently used (prune_cache)
    return out


# -- the results table -----------------------------------------------------------------------
def store_results(dsn: str, results: list[RunResult]) -> int:
    """One row per run in ``backtest_results`` (created if missing)."""
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=dsn)
    try:
        client.command(RESULTS_DDL)
        rows = [r.row() for r in results]
        if rows:
            names = list(rows[0])
            client.insert(RESULTS_TABLE, [[row[n] for n in names] for row in rows],
                          column_names=names)  # fmt: skip
    finally:
        client.close()
    return len(results)


def read_results(dsn: str, sweep_id: str | None = None, run_id: str | None = None) -> list[dict]:
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=dsn)
    try:
        where = []
        params: dict[str, str] = {}
        if sweep_id is not None:
            where.append("sweep_id = {s:String}")
            params["s"] = sweep_id
        if run_id is not None:
            where.append("run_id = {r:String}")
            params["r"] = run_id
        q = (f"SELECT * FROM {RESULTS_TABLE} WHERE {' AND '.join(where) or '1'} "
             "ORDER BY created, run_id")  # fmt: skip
        res = client.query(q, parameters=params)
        return [dict(zip(res.column_names, r, strict=True)) for r in res.result_rows]
    finally:
        client.close()
