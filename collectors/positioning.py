"""Period polls of a venue's positioning history (long/short ratios, taker volume, open
interest history): one loop per (endpoint, symbol), shared by the venue collectors.

Each answer is one raw frame, the venue's body untouched, on
``raw.<venue>.<endpoint>-<period>.<native>`` (the period is in the channel: the bodies do
not say it, and the normalizer needs it). Only answers holding rows newer than the cursor
are published, acked, with ``Nats-Msg-Id`` ``<venue>:<endpoint>:<native>:<period>:<first>:<last>``
and the cursor (the newest row's time, ms) in header ``Jm-Cursor``.

Cursor in RAW, like collectors/ccxt_poller.py: at start the loop reads the last frame of its
subject back and asks only for rows after its cursor, so a kill -9 at any point leaves
neither a gap (the window after the cursor is asked again) nor a duplicate (the window never
reaches back over a stored row; a frame whose ack was lost is re-sent with the same id and
JetStream drops the copy). Without a cursor (first start, or RAW expired) the loop backfills
``backfill_days`` (the venues keep 30 days) in windows of at most ``limit`` periods, at the
budget's BACKFILL priority, then polls every ``interval_s`` at POLL priority. An empty
window is stepped over only once it ended ``settle_periods`` periods ago (the venue had
time to publish it); a younger one is asked again, so a late row is never skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from nats.js.errors import NotFoundError

from collectors.ccxt_poller import H_CURSOR, publish_acked
from collectors.config import ReconnectSettings, VenueSettings
from collectors.conn import Backoff
from streams import subjects
from streams.bus import budget
from streams.bus.runtime import Worker
from streams.provision import STREAM_RAW

log = logging.getLogger("collectors.positioning")

PERIOD_MS = {
    "1s": 1_000, "1m": 60_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
    "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "12h": 43_200_000,
    "1d": 86_400_000,
}  # fmt: skip

# (start_ms, end_ms) -> (untouched body, receive ns)
Fetch = Callable[[int, int], Awaitable[tuple[bytes, int]]]
# body -> the times (ms) of its rows; raises on a body that is not the venue's answer
Times = Callable[[bytes], list[int]]


def channel_of(endpoint: str, period: str) -> str:
    return f"{endpoint}-{period}"


async def last_cursor(w: Worker, subject: str) -> int | None:
    """The cursor of the last frame on ``subject`` in RAW, or None."""
    assert w.js is not None
    try:
        last = await w.js.get_last_msg(STREAM_RAW, subject)
    except NotFoundError:
        return None
    if last.headers and H_CURSOR in last.headers:
        return int(last.headers[H_CURSOR])
    return None


async def poll_history(
    w: Worker,
    venue: str,
    endpoint: str,
    native: str,
    period: str,
    fetch: Fetch,
    times: Times,
    *,
    limit: int,
    backfill_days: float,
    interval_s: float,
    reconnect: ReconnectSettings,
    settle_periods: int = 2,
    lag_ms: int = 0,
) -> None:
    """Publish the history of one endpoint for one symbol, then keep up with it."""
    assert w.js is not None
    step = PERIOD_MS[period]
    channel = channel_of(endpoint, period)
    subject = subjects.raw(venue, channel, native)
    cursor = await last_cursor(w, subject)
    if cursor is None:
        log.info("no positioning cursor in RAW: backfilling",
                 extra={"venue": venue, "channel": channel, "symbol": native,
                        "days": backfill_days})  # fmt: skip
    # the window's start: after the cursor, else the oldest history we want
    start = cursor + 1 if cursor is not None else int(time.time() * 1000 - backfill_days * 86.4e6)
    backoff = Backoff(reconnect)
    conn = f"rest-{venue}-positioning"
    while not w.stop.is_set():
        # ``lag_ms``: a venue whose newest row is still changing (a candle in progress) is
        # asked only for rows that far in the past, so each row is stored once, final
        now = int(time.time() * 1000) - lag_ms
        end = min(now, start + step * limit - 1)  # at most ``limit`` periods: one page
        behind = end < now  # more history waits after this window: no sleep
        # a window the venue has surely published by now; an empty one is skipped (the venue
        # has nothing there), a younger empty one is asked again (a row may be late)
        settled = end < now - settle_periods * step
        try:
            with budget.priority(budget.BACKFILL if behind else budget.POLL):
                body, recv = await fetch(start, end)
            stamps = times(body)
        except Exception as exc:
            wait = backoff.next()
            log.warning("positioning poll failed",
                        extra={"venue": venue, "channel": channel, "symbol": native,
                               "error": str(exc)[:300], "retry_in_s": round(wait, 2)})  # fmt: skip
            if await w.sleep(wait):
                return
            continue
        backoff.reset()
        fresh = [t for t in stamps if t >= start]
        if len(fresh) != len(stamps):
            # a venue that ignores startTime: never store a row twice (logged per try)
            log.warning("venue answered rows before the window start; frame skipped",
                        extra={"venue": venue, "channel": channel, "symbol": native})  # fmt: skip
            if await w.sleep(interval_s):
                return
            continue
        if stamps:
            first, last = min(stamps), max(stamps)
            headers = {subjects.H_RECV_NS: str(recv), subjects.H_CONN: conn,
                       subjects.H_MSG_ID: f"{venue}:{endpoint}:{native}:{period}:{first}:{last}",
                       H_CURSOR: str(last)}  # fmt: skip
            await publish_acked(w.js, w.stop, subject, body, headers)
            start = last + 1
        elif settled:
            # past an empty window; from ``end`` itself, not end + 1, in case a venue reads
            # ``end`` as exclusive (then a row exactly there comes with the next window)
            start = max(end, start + 1)
        if (not behind or not (stamps or settled)) and await w.sleep(interval_s):
            return


def options_period(cfg: VenueSettings, venue: str, periods: Iterable[str]) -> str | None:
    """The period of a venue's ``positioning`` channel, from ``options.positioning_period``
    (default 5m); None when the channel is not asked for. ValueError naming the key when
    the venue has no such period."""
    if "positioning" not in cfg.channels:
        return None
    period = cfg.options.get("positioning_period", "5m")
    if period not in periods:
        raise ValueError(f"collector.{venue}.options.positioning_period must be one of "
                         f"{list(periods)}, not {period!r}")  # fmt: skip
    return period


def options_schedule(cfg: VenueSettings) -> dict[str, Any]:
    """``poll_history``'s schedule for a venue whose knobs are options (Bybit, OKX):
    ``positioning_backfill_days`` (30), ``positioning_interval_s`` (60),
    ``positioning_settle_periods`` (2), and the venue's reconnect backoff."""
    opts = cfg.options
    return {
        "backfill_days": float(opts.get("positioning_backfill_days", "30")),
        "interval_s": float(opts.get("positioning_interval_s", "60")),
        "reconnect": cfg.reconnect,
        "settle_periods": int(opts.get("positioning_settle_periods", "2")),
    }


def rows_times(body: bytes, key: str = "timestamp") -> list[int]:
    """The row times of a JSON list body (Binance's futures/data answers)."""
    rows: Any = orjson.loads(body)
    if not isinstance(rows, list):
        raise RuntimeError(f"not a list of rows: {body[:200]!r}")
    return [int(r[key]) for r in rows]
