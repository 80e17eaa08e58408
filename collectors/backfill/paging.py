"""The backfill job: pages of candles on a fixed grid, or of trades from the venue's own
cursor, each published acked with its position in headers, then checkpointed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import ccxt.async_support as ccxt_async
import orjson
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from tqdm import tqdm

from collectors.backfill.checkpoint import Checkpoint
from collectors.backfill.errors import Failed
from collectors.ccxt_poller import (
    CH_MARKET,
    H_CURSOR,
    Cursor,
    content_id,
    market_frame,
    ohlcv_channel,
    publish_acked,
    timeframe_ms,
)
from collectors.conn import new_conn_id
from streams import subjects
from streams.provision import STREAM_RAW

log = logging.getLogger("collectors.backfill")

H_JOB = "Jm-Backfill"
H_FROM = "Jm-Backfill-From"  # the job's position before the frame (H_CURSOR: after it)
CH_HIST_TRADES = "ccxt-hist-trades"
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
