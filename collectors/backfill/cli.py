"""History from any ccxt exchange into RAW:
``python -m collectors.backfill --venue V --symbol S --since T [--until T] --timeframe 1m
[--trades] [--checkpoint PATH]`` (also ``jetmarket backfill ...``, ``make backfill``).

Candles (default) or trades (``--trades``) in exactly ``[since, until)`` become raw frames on
``raw.<venue>.ccxt-hist-ohlcv-<tf>.<unified>`` / ``raw.<venue>.ccxt-hist-trades.<unified>``,
the same ccxt unified JSON the poller publishes, so the normalizer and sink need nothing new.

The range end is fixed when a job first starts (``--until`` or now, never past the last
closed candle) and stored in a checkpoint file, rewritten atomically after each page that
JetStream acked; a kill -9 loses at most the page in flight. Re-running a page is harmless:

- candle pages lie on a fixed grid from ``since`` (``limit`` candles each) and trade pages
  follow the venue's own paging from a cursor (time + ids seen at that ms), so the same page
  has the same bytes and the same ``Nats-Msg-Id`` and RAW drops the copy (duplicate window);
- each frame carries the job (``Jm-Backfill``) and its position before and after
  (``Jm-Backfill-From``, ``Jm-Cursor``); at start, when the newest frame in RAW on the job's
  subject starts where the checkpoint stands, the checkpoint moves past it, so a page acked
  just before a kill is not sent again even after the duplicate window;
- downstream, closed candles and trades keep their natural ids (``1m:<open>:c``, trade id)
  whichever process published them.
A job whose checkpoint says done publishes nothing; delete the checkpoint to fetch again.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import ccxt.async_support as ccxt_async
import msgspec
import orjson
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from tqdm import tqdm

from collectors.base import new_conn_id
from collectors.ccxt_poller import (
    CH_MARKET,
    H_CURSOR,
    Cursor,
    content_id,
    make_exchange,
    market_frame,
    ohlcv_channel,
    publish_acked,
    timeframe_ms,
)
from streams import subjects
from streams.bus import logs
from streams.bus.connect import connect
from streams.provision import STREAM_RAW, provision
from streams.settings import CcxtExchangeSettings, Settings, SettingsError, load

log = logging.getLogger("collectors.backfill")

H_JOB = "Jm-Backfill"
H_FROM = "Jm-Backfill-From"  # the job's position before the frame (H_CURSOR: after it)
CH_HIST_TRADES = "ccxt-hist-trades"
DEFAULT_DIR = Path("var/backfill")
MINUTE_MS = 60_000
# failures of these are the caller's fault: retrying cannot help
FATAL = (
    ccxt_async.BadSymbol,
    ccxt_async.BadRequest,
    ccxt_async.AuthenticationError,
    ccxt_async.PermissionDenied,
    ccxt_async.NotSupported,
    ccxt_async.AccountSuspended,
)
T = TypeVar("T")
Kind = Literal["ohlcv", "trades"]


class BadArgs(Exception):
    """The command line asks for something impossible (exit status 2)."""


class Failed(Exception):
    """The job stopped before its end; the checkpoint holds what is done (exit status 1)."""


# -- arguments ---------------------------------------------------------------------------
def parse_time(text: str) -> int:
    """Unix milliseconds or ISO-8601 (naive means UTC) -> unix ms."""
    t = text.strip()
    if t.isdigit():
        ms = int(t)
        if ms < 100_000_000_000:  # before 1973: almost surely seconds, not ms
            raise argparse.ArgumentTypeError(f"{text!r} looks like unix seconds; give unix ms")
        return ms
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither unix ms nor ISO-8601 (e.g. 2024-05-01T00:00:00Z)"
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
    p.add_argument("--since", required=True, type=parse_time, help="start (inclusive)")
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


# -- checkpoint --------------------------------------------------------------------------
class Checkpoint(msgspec.Struct, kw_only=True):
    """One job's progress. ``next_ms`` is the next candle page's start, or the trades
    cursor's time with ``ids`` the trade ids already taken at exactly that ms."""

    version: int = 1
    venue: str
    symbol: str  # ccxt unified
    kind: str
    timeframe: str
    since: int
    until_arg: int | None  # as asked; None = "now" at first start
    until: int  # the fixed end
    next_ms: int
    ids: list[str] = msgspec.field(default_factory=list)
    pages: int = 0
    rows: int = 0
    done: bool = False

    def first(self) -> int:
        """Where the job starts: ``since``, or the first candle opening at or after it."""
        step = timeframe_ms(self.timeframe) if self.kind == "ohlcv" else 1
        return -(-self.since // step) * step

    def job(self) -> str:
        return f"{self.kind}-{self.timeframe}:{self.since}:{self.until}"

    def same_job(self, other: Checkpoint) -> bool:
        mine = (self.venue, self.symbol, self.kind, self.timeframe, self.since, self.until_arg)
        return mine == (
            other.venue,
            other.symbol,
            other.kind,
            other.timeframe,
            other.since,
            other.until_arg,
        )

    def save(self, path: Path) -> None:
        # write, fsync, rename: after a kill -9 the file is the old page or the new one
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as f:
            f.write(msgspec.json.encode(self))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def load_checkpoint(path: Path) -> Checkpoint | None:
    try:
        return msgspec.json.decode(path.read_bytes(), type=Checkpoint)
    except FileNotFoundError:
        return None
    except (OSError, msgspec.DecodeError) as exc:
        raise BadArgs(f"checkpoint {path} unreadable ({exc}); delete it to start over") from None


def default_path(
    venue: str, unified: str, kind: str, tf: str, since: int, until: int | None
) -> Path:
    sym = unified.replace("/", "_").replace(":", "_")
    return DEFAULT_DIR / f"{venue}-{sym}-{kind}-{tf}-{since}-{until or 'now'}.json"


# -- symbols -----------------------------------------------------------------------------
def resolve_symbol(markets: dict[str, Any], symbol: str) -> str:
    """A ccxt unified symbol as given, or the market a jetmarket symbol names
    (``BTC-USDT``, ``BTC-USDT-PERP``, ``BTC-USDT-20251226``, ``BTC-USD-20251226-100000-C``),
    matched on the market's own base/quote/type/expiry fields."""
    if symbol in markets:
        return symbol
    base, _, rest = symbol.partition("-")
    quote, _, tail = rest.partition("-")
    parts = tail.split("-") if tail else []

    def fits(m: dict[str, Any]) -> bool:
        if m.get("base") != base or m.get("quote") != quote:
            return False
        if not parts:
            return bool(m.get("spot"))
        if parts == ["PERP"]:
            return bool(m.get("swap"))
        expiry = str(m.get("expiryDatetime") or "")[:10].replace("-", "")
        if expiry != parts[0]:
            return False
        if len(parts) == 1:
            return bool(m.get("future"))
        kind = {"C": "call", "P": "put"}.get(parts[2]) if len(parts) == 3 else None
        return (
            bool(m.get("option"))
            and m.get("optionType") == kind
            and str(m.get("strike")).removesuffix(".0") == parts[1]
        )

    found = sorted(u for u, m in markets.items() if fits(m))
    if len(found) > 1:  # the same pair settled in two currencies: the usual one, else ask
        usual = base if quote == "USD" else quote
        found = [u for u in found if markets[u].get("settle") == usual] or found
    if len(found) == 1:
        return found[0]
    if found:
        raise BadArgs(f"{symbol!r} is ambiguous here: one of {found}")
    close = sorted(u for u in markets if base in u)[:8]
    raise BadArgs(f"no market {symbol!r}" + (f" (similar: {close})" if close else ""))


# -- the job -----------------------------------------------------------------------------
class Fetcher:
    """ccxt calls (each through ccxt's own rate limiter), retried with backoff when the
    failure may be transient; counts requests for the summary."""

    def __init__(self, stop: asyncio.Event, max_retries: int) -> None:
        self.stop, self.max_retries, self.requests = stop, max_retries, 0

    async def __call__(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        delay = 0.5
        for attempt in range(1, self.max_retries + 1):
            if self.stop.is_set():
                raise Failed("interrupted")
            self.requests += 1
            try:
                return await call()
            except FATAL as exc:
                raise Failed(f"{what}: {type(exc).__name__}: {exc}") from None
            except Exception as exc:  # network, rate limit, malformed body: try again
                if attempt == self.max_retries:
                    raise Failed(f"{what} failed {attempt} times, last: {exc!r:.300}") from None
                log.warning(
                    "request failed, retrying",
                    extra={"what": what, "attempt": attempt, "error": repr(exc)[:300]},
                )
                try:
                    await asyncio.wait_for(self.stop.wait(), delay)
                except TimeoutError:
                    pass
                delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")


class Backfill:
    def __init__(
        self,
        ex: Any,
        js: JetStreamContext,
        fetch: Fetcher,
        ck: Checkpoint,
        path: Path,
        limit: int,
        bar: tqdm,
        partitioned: bool = False,
    ) -> None:
        self.ex, self.js, self.fetch, self.ck, self.path = ex, js, fetch, ck, path
        self.stop, self.limit, self.bar = fetch.stop, limit, bar
        self.conn = new_conn_id(f"backfill-{ck.venue}")
        self.channel = CH_HIST_TRADES if ck.kind == "trades" else ohlcv_channel(ck.timeframe, True)
        self.last_subject = subjects.raw(ck.venue, self.channel, ck.symbol)
        if partitioned:  # RAW stores the subject with its partition appended
            self.last_subject += ".*.*"
        self.stored = self.duplicates = 0

    async def publish(self, channel: str, data: bytes, msg_id: str, **extra: str) -> None:
        headers = {
            subjects.H_RECV_NS: str(time.time_ns()),
            subjects.H_CONN: self.conn,
            subjects.H_MSG_ID: f"ccxt:{self.ck.venue}:{msg_id}",
            **extra,
        }
        subject = subjects.raw(self.ck.venue, channel, self.ck.symbol)
        if await publish_acked(self.js, self.stop, subject, data, headers):
            self.stored += 1
        else:
            self.duplicates += 1

    def advance(self, next_ms: int, ids: list[str], rows: int, page: bool = True) -> None:
        ck = self.ck
        covered = next_ms - ck.next_ms
        ck.next_ms, ck.ids = next_ms, ids
        ck.pages += int(page)
        ck.rows += rows
        ck.save(self.path)
        self.bar.update(covered / MINUTE_MS)
        self.bar.set_postfix(pages=ck.pages, rows=ck.rows, refresh=False)

    async def catch_up_with_raw(self) -> None:
        """Move the checkpoint past a page RAW holds but the checkpoint missed (kill -9
        between the ack and the checkpoint write)."""
        try:
            last = await self.js.get_last_msg(STREAM_RAW, self.last_subject)
        except NotFoundError:
            return
        h = last.headers or {}
        if h.get(H_JOB) != self.ck.job() or h.get(H_FROM) != self.position() or H_CURSOR not in h:
            return
        if self.ck.kind == "trades":
            c = Cursor.parse(h[H_CURSOR])
            pos, ids = c.ms, sorted(c.ids)
        else:
            pos, ids = int(h[H_CURSOR]), []
        log.warning(
            "checkpoint one page behind RAW (killed between ack and checkpoint); skipping it",
            extra={"checkpoint": str(self.path), "position": pos},
        )
        self.advance(pos, ids, len(orjson.loads(last.data)))

    def position(self) -> str:
        """Where the job stands, as the frame headers spell it."""
        if self.ck.kind == "trades":
            return Cursor(self.ck.next_ms, frozenset(self.ck.ids)).header()
        return str(self.ck.next_ms)

    async def run(self) -> None:
        data = market_frame(self.ex, self.ck.symbol)  # instrument first: contract sizes
        await self.publish(CH_MARKET, data, content_id(data))
        await self.catch_up_with_raw()
        if self.ck.kind == "trades":
            await self.trades()
        else:
            await self.ohlcv()
        self.ck.done = True
        self.ck.save(self.path)

    async def ohlcv(self) -> None:
        ck, tf = self.ck, self.ck.timeframe
        step = timeframe_ms(tf)
        while ck.next_ms < ck.until:
            if self.stop.is_set():
                raise Failed("interrupted")
            start = ck.next_ms
            end = min(start + self.limit * step, ck.until)
            rows = await self.ohlcv_page(start, end, step)
            if rows:
                data = orjson.dumps(rows)
                await self.publish(
                    self.channel,
                    data,
                    f"hist-ohlcv-{tf}:{content_id(ck.symbol, start, data)}",
                    **{H_JOB: ck.job(), H_FROM: str(start), H_CURSOR: str(end)},
                )
            self.advance(end, [], len(rows))

    async def ohlcv_page(self, start: int, end: int, step: int) -> list[list[Any]]:
        """Candles opening in [start, end): usually one request; more only when the venue
        returned fewer than asked, all inside the page (it may cap ``limit`` lower)."""
        out: list[list[Any]] = []
        cursor = start
        while cursor < end:
            want = -(-(end - cursor) // step)
            got = await self.fetch(
                "fetch_ohlcv",
                lambda c=cursor, n=want: self.ex.fetch_ohlcv(
                    self.ck.symbol, self.ck.timeframe, c, n
                ),
            )
            fresh = [c for c in got if isinstance(c[0], int) and cursor <= c[0] < end]
            out.extend(fresh)
            if not fresh or len(got) >= want or any(c[0] >= end for c in got):
                break
            cursor = fresh[-1][0] + step
        return out

    async def trades(self) -> None:
        ck = self.ck
        cursor = Cursor(ck.next_ms, frozenset(ck.ids))
        while True:
            if self.stop.is_set():
                raise Failed("interrupted")
            got = await self.fetch(
                "fetch_trades", lambda c=cursor.ms: self.ex.fetch_trades(ck.symbol, c, self.limit)
            )
            new = cursor.new(got)
            inside = [t for t in new if t["timestamp"] < ck.until]
            if inside:
                nxt = cursor.advance(inside)
                data = orjson.dumps(inside)
                msg_id = f"hist-trades:{content_id(ck.symbol, cursor.header(), data)}"
                hdrs = {H_JOB: ck.job(), H_FROM: cursor.header(), H_CURSOR: nxt.header()}
                await self.publish(self.channel, data, msg_id, **hdrs)
                cursor = nxt
                self.advance(cursor.ms, sorted(cursor.ids), len(inside))
            elif new or len(got) < self.limit:
                return  # the next trade is past the end, or the venue has no more
            else:
                # a whole page inside one millisecond already taken: step past it, loudly
                log.warning(
                    "more trades in one ms than a page; skipping the rest of it",
                    extra={"symbol": ck.symbol, "ms": cursor.ms},
                )
                cursor = Cursor(cursor.ms + 1, frozenset())
                self.advance(cursor.ms, [], 0, page=False)
            if len(inside) < len(new):
                return


# -- entry point -------------------------------------------------------------------------
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
    path: Path,
) -> int:  # fmt: skip
    try:
        nc = await connect(settings.nats, f"backfill-{ck.venue}", max_reconnect_attempts=5)
    except Exception as exc:
        raise Failed(f"cannot reach NATS at {settings.nats.url} ({exc!r:.200})") from None
    try:
        js = nc.jetstream(timeout=10.0)
        await provision(js, settings)
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
    cfg = settings.collector.ccxt.exchanges.get(args.venue)
    ex = make_exchange(args.venue, cfg or CcxtExchangeSettings(symbols=[args.symbol]))
    try:
        fetch = Fetcher(stop, args.max_retries)
        await fetch("load_markets", ex.load_markets)
        ck, path = _plan(args, ex)
        if ck.done:
            print(summary(ck, f"already complete (checkpoint {path}); nothing to do"))
            return 0
        if ck.pages:
            print(f"resuming at {iso(ck.next_ms)} from {path}", file=sys.stderr)
        return await _run(args, settings, ex, fetch, ck, path)
    except Failed as exc:
        print(f"jetmarket backfill: {exc}", file=sys.stderr)
        return 1
    finally:
        await ex.close()


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


if __name__ == "__main__":
    sys.exit(main())
