"""``python -m executor.backtest`` (``jetmarket backtest``): run a strategy over replayed data,
store the results on EXEC under ``bt-<run_id>`` and print the summary."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import msgspec
import orjson
from nats.js.errors import NotFoundError

from executor.backtest.runner import DEFAULT_TYPES, Backtest, BacktestError, load_strategy
from streams.bus import logs
from streams.bus.auth import CredentialsError
from streams.bus.connect import connect
from streams.provision import STREAM_EXEC
from streams.settings import Settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jetmarket backtest", description=__doc__.splitlines()[0])
    p.add_argument("--strategy", required=True, help="FILE.py:Class or module:Class")
    p.add_argument("--venue", required=True, help="market venue, e.g. binance")
    p.add_argument("--symbol", action="append", required=True, help="repeat for several")
    p.add_argument("--start", help="ISO-8601, epoch s/ns, or a duration before now (2h)")
    p.add_argument("--end", help="same forms as --start (exclusive)")
    p.add_argument("--source", choices=["auto", "jetstream", "clickhouse"], default="auto")
    p.add_argument("--types", default=",".join(DEFAULT_TYPES), help="market types to replay")
    p.add_argument("--run-id", help="default: a random id; results go to account bt-<run_id>")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="strategy parameter (typed like the class default)")  # fmt: skip
    p.add_argument("--curve-interval-s", type=float, help="PnL curve step (replayed seconds)")
    p.add_argument("--no-store", action="store_true", help="do not publish results on EXEC")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    r = p.add_argument_group(
        "research path (executor/backtest/sim.py on the columnar replay; "
        "no NATS; results in ClickHouse backtest_results + HTML report)"
    )
    r.add_argument(
        "--columnar",
        metavar="SOURCE",
        help="'clickhouse' (clickhouse.dsn, read directly) or a Parquet export dir",
    )
    r.add_argument(
        "--grid",
        help="sweep, e.g. 'fast=5,10,20 slow=50,100' (implies --columnar "
        "clickhouse unless given); runs share passes over the data, in --workers processes",
    )
    r.add_argument("--workers", type=int,
                   help="sweep processes (default: the idle cores by the load average, at "
                   "least 1: one process and one pass on a busy machine)")  # fmt: skip
    r.add_argument("--latency-ms", type=float, default=0.0, help="order/cancel latency")
    r.add_argument(
        "--tier",
        action="append",
        default=[],
        metavar="VENUE=TIER",
        help="fee tier of a venue (fees in SimSettings.fees['<venue>:<tier>'])",
    )
    r.add_argument(
        "--initial-cash",
        type=float,
        default=100_000.0,
        help="quote currency; returns are relative to it",
    )
    r.add_argument("--report-dir", default="var/backtest/reports", help="HTML reports here")
    r.add_argument("--metric", default="sharpe", help="the sweep heat map's metric")
    r.add_argument(
        "--cache-dir",
        default="var/backtest/cache",
        help="a sweep's data from ClickHouse is exported to Parquet here once",
    )
    return p  # fmt: skip


def research(settings: Settings, args: argparse.Namespace) -> int:
    """The research path: one run or a sweep, stored in backtest_results, with reports."""
    import uuid

    from executor.backtest import report
    from executor.backtest.research import (
        METRICS,
        parse_grid,
        run_one,
        store_results,
        sweep,
    )  # fmt: skip
    from executor.backtest.runner import RUN_ID
    from executor.backtest.sim import SimSettings

    if args.run_id is not None and not RUN_ID.match(args.run_id):
        # it names the report file: nothing but a plain name
        raise BacktestError(f"run id {args.run_id!r}: use 1-40 of A-Z a-z 0-9 _ -")
    cls = load_strategy(args.strategy)
    tiers = {}
    for item in args.tier:
        venue, sep, tier = item.partition("=")
        if not sep or not venue or not tier:
            raise BacktestError(f"--tier {item!r}: expected VENUE=TIER")
        tiers[venue] = tier
    cfg = SimSettings(
        latency_ms=args.latency_ms,
        tiers=tiers,
        initial_cash=args.initial_cash,
        curve_interval_s=args.curve_interval_s or settings.backtest.curve_interval_s,
    )
    source = args.columnar or "clickhouse"
    dsn = settings.clickhouse.dsn
    params = parse_params(cls, args.param)
    types = [t for t in args.types.split(",") if t and t != "instrument"]
    kw = {
        "dsn": dsn,
        "venue": args.venue,
        "symbols": args.symbol,
        "start": args.start,
        "end": args.end,
        "types": types,
        "cfg": cfg,
    }
    if args.grid:
        if args.metric not in METRICS:
            raise BacktestError(f"--metric {args.metric!r}: one of {', '.join(METRICS)}")
        grid = parse_grid(args.grid, cls)
        sweep_id = args.run_id or uuid.uuid4().hex[:12]
        results = sweep(args.strategy, grid, params, source=source, workers=args.workers,
                        cache_dir=args.cache_dir, **kw)  # fmt: skip
    else:
        grid = []
        sweep_id = ""
        results = [run_one(args.strategy, params, source=source, run_id=args.run_id, **kw)]
    for r in results:
        r.sweep_id = sweep_id
        r.report = str(report.run_report(r, args.report_dir))
    store_results(dsn, results)
    if results and all(r.messages == 0 for r in results):  # a typo'd symbol, a wrong range
        rng = f"from {args.start or 'the start'} to {args.end or 'now'}"
        print(f"jetmarket backtest: warning: no market data for {args.venue} "
              f"{','.join(args.symbol)} {rng} in {source}: nothing was replayed",
              file=sys.stderr)  # fmt: skip
    for r in results:
        ps = " ".join(f"{k}={v}" for k, v in sorted(r.params.items()))
        ms = "  ".join(f"{k} {report.fmt(k, r.metrics[k])}" for k in METRICS)
        print(
            f"run {r.run_id}  {ps}\n  {r.messages:,} events in {r.seconds:.2f} s "
            f"({r.events_per_s:,.0f}/s)  digest {r.digest[:16]}\n  {ms}"
        )
    if grid:
        page = report.sweep_report(results, grid, args.report_dir, sweep_id, args.metric)
        print(f"sweep {sweep_id}: {len(results)} runs in backtest_results")
        print(f"report {page.resolve()}")
    else:
        print(f"report {Path(results[0].report).resolve()}")
    return 0


def parse_params(cls: Any, items: list[str]) -> dict[str, Any]:
    defaults = cls.parameters()
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or name not in defaults:
            known = ", ".join(sorted(defaults)) or "none"
            raise BacktestError(f"--param {item!r}: expected NAME=VALUE, NAME one of: {known}")
        kind = type(defaults[name])
        try:
            if kind is bool:
                if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(text)
                out[name] = text.lower() in ("1", "true", "yes")
            else:
                out[name] = kind(text)
        except ValueError:
            raise BacktestError(f"--param {name}: {text!r} is not a {kind.__name__}") from None
    return out


async def run(settings: Settings, args: argparse.Namespace) -> int:
    cls = load_strategy(args.strategy)
    cfg = settings.backtest
    if args.curve_interval_s is not None:
        cfg = msgspec.structs.replace(cfg, curve_interval_s=args.curve_interval_s)
    bt = Backtest(cls, venue=args.venue, symbols=args.symbol, run_id=args.run_id,
                  params=parse_params(cls, args.param), cfg=cfg)  # fmt: skip
    nc = await connect(settings.nats, "backtest", max_reconnect_attempts=0)  # fail fast
    try:
        types = [t for t in args.types.split(",") if t]
        summary = await bt.run_replay(settings, start=args.start, end=args.end,
                                      source=args.source, types=types, nc=nc)  # fmt: skip
        if not args.no_store:
            js = nc.jetstream(timeout=10.0)
            try:
                await js.stream_info(STREAM_EXEC)
            except NotFoundError:
                raise BacktestError("no EXEC stream: run `jetmarket provision` first") from None
            await bt.store(js)
    finally:
        await nc.close()
    if args.json:
        print(orjson.dumps(summary.as_dict()).decode())
    else:
        print(summary.text())
        if summary.stored:
            print(f"  query        jetmarket sql \"SELECT * FROM fills WHERE account = "
                  f"'{summary.account}' ORDER BY ts_event\"")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = logs.command_settings("jetmarket backtest")
    if settings is None:
        return 2
    try:
        if args.columnar or args.grid:
            from replay.columnar import ColumnarError  # pyarrow: the research path's only

            try:
                return research(settings, args)
            except ColumnarError as exc:  # a missing export, a locked chdb path: one line
                raise BacktestError(str(exc)) from None
        return asyncio.run(run(settings, args))
    except (BacktestError, ValueError, ConnectionError, CredentialsError) as exc:  # one line
        print(f"jetmarket backtest: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
