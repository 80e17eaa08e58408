"""``jetmarket status``: every live worker's health, consumer lag, and how fresh each
venue/channel of raw data is."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from streams import subjects
from streams.bus.budget import render_shared, shared_state  # REST budgets
from streams.provision import STREAM_MARKET, STREAM_RAW
from streams.settings import Settings


async def workers(nc: Client, wait: float = 0.5) -> list[dict[str, Any]]:
    """Scatter-gather: one request on status.query, every worker answers."""
    inbox = nc.new_inbox()
    replies: list[dict[str, Any]] = []
    sub = await nc.subscribe(inbox, cb=None)
    await nc.publish(subjects.STATUS_QUERY, b"", reply=inbox)
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg = await sub.next_msg(timeout=left)
        except Exception:  # nats TimeoutError: nobody else answers
            break
        replies.append(orjson.loads(msg.data))
    await sub.unsubscribe()
    return sorted(replies, key=lambda r: (r.get("worker", ""), r.get("pid", 0)))


async def lags(js: JetStreamContext, settings: Settings) -> list[tuple[str, str, int, int]]:
    """(stream, durable, pending, ack_pending) for the pipeline's durable consumers."""
    out = []
    norm = settings.normalizer
    for stream, durable in (
        *((STREAM_RAW, norm.partition_durable(p)) for p in range(norm.partitions)),
        (STREAM_MARKET, settings.sink.market.durable),
        (STREAM_RAW, settings.sink.raw.durable),
    ):
        try:
            info = await js.consumer_info(stream, durable)
        except NotFoundError:
            continue
        out.append((stream, durable, int(info.num_pending or 0), int(info.num_ack_pending or 0)))
    return out


async def freshness(js: JetStreamContext, limit: int = 500) -> dict[str, tuple[int, float]]:
    """venue.channel -> (messages in RAW, seconds since the newest frame was received)."""
    info = await js.stream_info(STREAM_RAW, subjects_filter=subjects.RAW_ALL)
    per: dict[str, tuple[int, float]] = {}
    now = time.time_ns()
    feeds = (
        (s, n)
        for s, n in (info.state.subjects or {}).items()
        if not s.startswith(subjects.RAW_PRIVATE_PREFIX)
    )  # account frames: not a feed
    for subject, count in sorted(feeds)[:limit]:
        _, venue, channel, _ = subject.split(".", 3)
        key = f"{venue}.{channel}"
        try:
            last = await js.get_last_msg(STREAM_RAW, subject, direct=True)
            recv = int((last.headers or {}).get(subjects.H_RECV_NS, "0"))
        except Exception:  # purged meanwhile
            recv = 0
        age = (now - recv) / 1e9 if recv else float("inf")
        n, best = per.get(key, (0, float("inf")))
        per[key] = (n + count, min(best, age))
    return per


def render(ws: list[dict[str, Any]], lag: list[tuple[str, str, int, int]],
           fresh: dict[str, tuple[int, float]]) -> str:  # fmt: skip
    lines = ["workers"]
    if not ws:
        lines.append("  (none answered: is `make up` running?)")
    for w in ws:
        extra = {k: v for k, v in w.items() if k not in ("worker", "state", "pid", "ts")}
        shown = " ".join(
            f"{k}={','.join(f'{a}:{b}' for a, b in v.items()) if isinstance(v, dict) else v}"
            for k, v in extra.items()
        )
        lines.append(f"  {w.get('worker', '?'):<12} {w.get('state', '?'):<12} "
                     f"pid {w.get('pid', '?'):<8} {shown}"[:200])  # fmt: skip
    lines.append("consumers (pending / unacked)")
    for stream, durable, pending, acks in lag:
        lines.append(f"  {stream:<7} {durable:<14} {pending:>10} / {acks}")
    lines.append("raw data (frames in RAW, age of the newest)")
    for key, (n, age) in sorted(fresh.items()):
        shown = "never" if age == float("inf") else f"{age:.1f}s ago"
        lines.append(f"  {key:<28} {n:>10}  {shown}")
    return "\n".join(lines)


async def status(nc: Client, settings: Settings) -> str:
    js = nc.jetstream(timeout=3.0)
    ws, lag, fresh = await asyncio.gather(
        workers(nc), lags(js, settings), freshness(js), return_exceptions=True
    )
    # a part that cannot be read (no permission, stream missing) is one line, not a traceback
    notes = [f"  ({what} unavailable: {type(r).__name__} {r})".rstrip()
             for what, r in (("workers", ws), ("consumer lag", lag), ("raw data", fresh))
             if isinstance(r, BaseException)]  # fmt: skip
    text = render(
        ws if isinstance(ws, list) else [],
        lag if isinstance(lag, list) else [],
        fresh if isinstance(fresh, dict) else {},
    )
    return "\n".join([text, *notes, *render_shared(await shared_state(nc))])
