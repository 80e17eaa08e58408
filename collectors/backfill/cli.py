"""``jetmarket backfill`` / ``python -m collectors.backfill``: the arguments, the job's plan
(its checkpoint, loaded or new) and the run with its summary line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import ccxt.async_support as ccxt_async
from tqdm import tqdm

from collectors.backfill.checkpoint import DEFAULT_DIR, Checkpoint, default_path, load_checkpoint
from collectors.backfill.errors import BadArgs, Failed
from collectors.backfill.markets import resolve_symbol
from collectors.backfill.paging import MINUTE_MS, Backfill, Fetcher
from collectors.ccxt_poller import CcxtExchangeSettings, ccxt_settings, make_exchange, timeframe_ms
from streams.bus import logs
from streams.bus.budget import BACKFILL, VenueBudget, open_budget
from streams.bus.connect import connect
from streams.provision import STREAM_RAW
from streams.settings import Settings, SettingsError, load

Kind = Literal["ohlcv", "trades"]


_AGO = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_time(text: str) -> int:
    """-> unix ms. The forms replay and backtest take: ISO-8601 (naive means UTC), unix
    seconds, milliseconds or nanoseconds (told apart by size), or a duration before now
    (``90s``, ``15m``, ``2h``, ``1d``: resolved at start, so to resume a job give the same
    absolute time again)."""
    t = text.strip()
    if t.isdigit():
        n = int(t)
        if n < 100_000_000_000:  # seconds (ms this small would be 1973)
            return n * 1000
        if n < 100_000_000_000_000:
            return n
        if n >= 10**17:
            return n // 1_000_000
        raise argparse.ArgumentTypeError(f"{text!r}: give unix seconds, ms or ns")
    ago = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", t)
    if ago:
        return int(time.time() * 1000) - int(float(ago.group(1)) * _AGO[ago.group(2)])
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: ISO-8601 (2024-05-01T00:00:00Z), unix s/ms/ns, or a "
            "duration before now (2h)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _timeframe(text: str) -> str:
    try:
        timeframe_ms(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unsupported timeframe {text!r} (a number and one of s m h d w, e.g. 1m)"
        ) from None
    return text


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jetmarket backfill",
        description="Backfill candles (default) or trades from a ccxt exchange into RAW, "
        "resumable and idempotent.",
    )
    p.add_argument("--venue", required=True, help="ccxt exchange id, e.g. binance, bitfinex")
    p.add_argument("--symbol", required=True, help="BTC-USDT / BTC-USDT-PERP or ccxt BTC/USDT")
    p.add_argument(
        "--since",
        required=True,
        type=parse_time,
        help="start (inclusive): ISO-8601, unix s/ms/ns or a duration ago (2h)",
    )
    p.add_argument("--until", type=parse_time, help="end (exclusive); default: now")
    p.add_argument("--timeframe", default="1m", type=_timeframe, help="candle size (1m)")
    p.add_argument("--trades", action="store_true", help="trade history instead of candles")
    p.add_argument("--checkpoint", type=Path, help=f"progress file (default under {DEFAULT_DIR})")
    p.add_argument("--limit", type=_positive, help="rows per request (default: up to 1000)")
    p.add_argument("--max-retries", type=_positive, default=8, help="per request (8)")
    p.add_argument(
        "--progress",
        choices=["auto", "always", "never"],
        default="auto",
        help="progress bar on stderr (auto: when it is a terminal)",
    )
    return p


def summary(ck: Checkpoint, tail: str) -> str:
    what = "trades" if ck.kind == "trades" else f"ohlcv {ck.timeframe}"
    return (
        f"backfill {ck.venue} {ck.symbol} {what} [{iso(ck.since)}, {iso(ck.until)}): "
        f"{ck.pages} pages, {ck.rows} rows; {tail}"
    )


def _plan(args: argparse.Namespace, ex: Any) -> tuple[Checkpoint, Path]:
    """The job's checkpoint (loaded, or new with the range end fixed now) and its path."""
    kind: Kind = "trades" if args.trades else "ohlcv"
    unified = resolve_symbol(ex.markets, args.symbol)
    need = "fetchTrades" if args.trades else "fetchOHLCV"
    if not ex.has.get(need):
        raise BadArgs(f"ccxt's {args.venue} has no {need}")
    tfs = ex.timeframes or {}
    if kind == "ohlcv" and tfs and args.timeframe not in tfs:
        raise BadArgs(f"{args.venue} has no timeframe {args.timeframe!r}: {sorted(tfs)}")
    tf = args.timeframe if kind == "ohlcv" else "tick"
    step = timeframe_ms(tf) if kind == "ohlcv" else 1
    now = ex.milliseconds()
    until = now - now % step  # only closed candles; trades up to the start of the job
    if args.until is not None:
        until = min(until, args.until)
    path = args.checkpoint or default_path(args.venue, unified, kind, tf, args.since, args.until)
    fresh = Checkpoint(
        venue=args.venue, symbol=unified, kind=kind, timeframe=tf, since=args.since,
        until_arg=args.until, until=until, next_ms=0,
    )  # fmt: skip
    since = fresh.next_ms = fresh.first()
    ck = load_checkpoint(path)
    if ck is None:
        if since >= until:
            why = " (the last closed candle)" if kind == "ohlcv" else " (now)"
            raise BadArgs(f"nothing to fetch: {iso(since)} is not before {iso(until)}{why}")
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh.save(path)
        return fresh, path
    if not ck.same_job(fresh):
        raise BadArgs(
            f"checkpoint {path} belongs to another job ({ck.venue} {ck.symbol} {ck.kind} "
            f"{ck.timeframe} since {ck.since} until {ck.until_arg}); use another --checkpoint"
        )
    return ck, path


async def _run(
    args: argparse.Namespace, settings: Settings, ex: Any, fetch: Fetcher, ck: Checkpoint,
    path: Path, budget: VenueBudget,
) -> int:  # fmt: skip
    try:
        nc = await connect(settings.nats, f"backfill-{ck.venue}", max_reconnect_attempts=5)
    except Exception as exc:
        raise Failed(f"cannot reach NATS at {settings.nats.url} ({exc!r:.200})") from None
    try:
        js = nc.jetstream(timeout=10.0)
        if budget.nc is None:  # NATS came back since: the shared budget from now on
            await budget.bind(nc)
        # RAW is provisioned by the admin identity (`make up`, `jetmarket provision`); the
        # backfill publishes as the collector, which may not create or update streams
        try:
            await js.stream_info(STREAM_RAW)
        except Exception as exc:
            raise Failed(
                f"stream {STREAM_RAW} not available ({exc!r:.120}): is `make up` running?"
            ) from None
        first = ck.first()
        bar = tqdm(
            total=(ck.until - first) / MINUTE_MS, initial=(ck.next_ms - first) / MINUTE_MS,
            unit="min", desc=f"{ck.venue} {ck.symbol} {ck.kind}", file=sys.stderr,
            disable={"auto": None, "always": False, "never": True}[args.progress],
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} min of history "
            "[{elapsed}<{remaining}{postfix}]",
        )  # fmt: skip
        limit = args.limit or _default_limit(ex, ck.kind)
        job = Backfill(ex, js, fetch, ck, path, limit, bar, settings.normalizer.partitions > 1)
        t0 = time.monotonic()
        try:
            await job.run()
        except Failed as exc:
            bar.close()
            tail = f"STOPPED at {iso(ck.next_ms)}: {exc}; run the same command to resume"
            print(summary(ck, tail), file=sys.stderr)
            return 1
        bar.close()
        took = time.monotonic() - t0
        print(summary(ck, f"this run: {job.stored} frames stored, {job.duplicates} already in "
                          f"RAW, {fetch.requests} requests in {took:.1f}s"))  # fmt: skip
        return 0
    finally:
        await nc.drain()


async def _job(args: argparse.Namespace, settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    cfg = ccxt_settings(settings).exchanges.get(args.venue)
    cfg = cfg or CcxtExchangeSettings(symbols=[args.symbol])
    ex = make_exchange(args.venue, cfg)
    # the lowest priority: collectors' resyncs, polls and orders on this IP go first. Its
    # own connection, so load_markets counts in the shared budget too; without NATS the
    # budget is this process's local share (and the job stops at _run's connect anyway)
    budget_nc = None
    with contextlib.suppress(Exception):
        budget_nc = await connect(settings.nats, f"backfill-{args.venue}:budget",
                                  max_reconnect_attempts=0)  # fmt: skip
    budget = await open_budget(budget_nc, args.venue, cfg.limits, ex, default_priority=BACKFILL)
    try:
        fetch = Fetcher(stop, args.max_retries)
        await fetch("load_markets", ex.load_markets)
        ck, path = _plan(args, ex)
        if ck.done:
            print(summary(ck, f"already complete (checkpoint {path}); nothing to do"))
            return 0
        if ck.pages:
            print(f"resuming at {iso(ck.next_ms)} from {path}", file=sys.stderr)
        return await _run(args, settings, ex, fetch, ck, path, budget)
    except Failed as exc:
        print(f"jetmarket backfill: {exc}", file=sys.stderr)
        return 1
    finally:
        await budget.close()
        await ex.close()
        if budget_nc is not None:
            await budget_nc.close()


def _default_limit(ex: Any, kind: Kind) -> int:
    """1000 rows per request, or less where ccxt knows the venue allows less."""
    method = "fetchTrades" if kind == "trades" else "fetchOHLCV"
    for market_type in ("spot", "swap"):
        feat = ((ex.features or {}).get(market_type) or {}).get(method) or {}
        if isinstance(feat.get("limit"), int):
            return min(1000, feat["limit"])
    return 1000


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.venue not in ccxt_async.exchanges:
        p.error(f"ccxt has no exchange {args.venue!r} (ids like binance, bitfinex, kraken)")
    if args.until is not None and args.since >= args.until:
        p.error(f"--since {iso(args.since)} must be before --until {iso(args.until)}")
    try:
        settings = load()
    except SettingsError as exc:
        p.error(f"bad configuration: {exc}")
    logs.setup(settings.log.level)
    try:
        return asyncio.run(_job(args, settings))
    except BadArgs as exc:
        p.error(str(exc))
    return 2  # not reached: p.error exits
