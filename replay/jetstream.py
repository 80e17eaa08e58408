"""JetStream source: an ordered consumer per stream, from a start time or sequence.

An ordered consumer is ephemeral, unacked and flow-controlled, and the client recreates it
at the next sequence if a message goes missing; the fastest way nats-py reads a stream in
order (ARCHITECTURE.md: ~88k msg/s). Delivery starts ``window`` before ``start`` in store
time (a message is stored after it was received) and ends at the stream's last message
when the replay began (or the last one pending), so a replay of a past range never depends
on what is being appended meanwhile. It does not stop early at ``end`` by store time:
frames played back from a recording are stored long after their receive time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from replay.model import ReplayMsg, ReplayStats, parse_iso_ns
from replay.order import Reorder
from streams import schemas, subjects
from streams.provision import STREAM_RAW

log = logging.getLogger("replay")

HIGH_WATER = 50_000  # buffered messages before the delivery callback waits (paced replays)


async def stream_bounds(js: JetStreamContext, stream: str) -> tuple[int, int, int | None]:
    """(first_seq, last_seq, first message's store time in ns or None when empty).
    nats-py's StreamState drops ``first_ts``, so the API is asked directly."""
    try:
        reply = await js._nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=5.0)
    except Exception as exc:
        raise RuntimeError(f"stream {stream}: no answer from JetStream ({exc!r})") from None
    body = orjson.loads(reply.data)
    if "error" in body:
        if body["error"].get("err_code") == 10059:
            raise NotFoundError
        raise RuntimeError(f"stream {stream}: {body['error'].get('description')}")
    state = body["state"]
    first_ts = state.get("first_ts")
    empty = not state.get("messages")
    ts = None if empty or not first_ts else parse_iso_ns(first_ts)
    return int(state.get("first_seq", 0)), int(state.get("last_seq", 0)), ts


def unpartition(subject: str) -> str:
    """``raw.<v>.<c>.<sym>`` of a subject a partitioned RAW stored as ``raw.<v>.<c>.<sym>.<N>.<p>``
    (streams/subjects.py): replays show, and republish, the subject the collector used."""
    parts = subject.split(".")
    if len(parts) == 6 and parts[0] == "raw" and parts[4].isdigit() and parts[5].isdigit():
        return ".".join(parts[:4])
    return subject


def _decoder(subject: str) -> Callable[[bytes], Any] | None:
    if subject.startswith("market."):
        return schemas.decode
    if subject.startswith("exec."):
        return schemas.decode_exec
    return None


def to_replay(m: Msg, stream: str, seq: int, strip: int, stats: ReplayStats) -> ReplayMsg | None:
    """A delivered message as a ReplayMsg; None (counted) when a typed one is undecodable."""
    subject = m.subject[strip:] if strip else m.subject
    headers = m.headers
    decode = _decoder(subject)
    if decode is None:
        if subject.count(".") == 5:
            subject = unpartition(subject)
        recv = headers.get(subjects.H_RECV_NS, "") if headers else ""
        # a frame without a usable receive time sorts first (the sink stores 0 too)
        ts = int(recv) if recv.isdigit() and len(recv) < 20 else 0
        return ReplayMsg(subject, stream, seq, ts, m.data, headers)
    try:
        obj = decode(m.data)
    except msgspec.DecodeError as exc:
        stats.bad += 1
        if not stats.first_bad:
            stats.first_bad = f"{stream} seq {seq} {subject}: {exc}"
        return None
    return ReplayMsg(subject, stream, seq, obj.ts_recv, m.data, headers, obj)


class JetStreamSource:
    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        filters: list[str],
        *,
        start_ns: int | None,
        end_ns: int | None,
        window_ns: int,
        stats: ReplayStats,
        start_seq: int | None = None,
        strip: str = "",
        keep_order: bool = False,
    ) -> None:
        self.js = js
        self.stream = stream
        self.filters = filters
        self.start_ns, self.end_ns = start_ns, end_ns
        self.window_ns = window_ns
        self.start_seq = start_seq
        self.strip = len(strip)
        self.keep_order = keep_order
        self.stats = stats
        self.pending = 0
        self._buf: list[Msg] = []
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._sub: Any = None
        self._last_seq = 0
        self._high = 0

    async def open(self) -> int:
        """Create the consumer; returns how many messages it will go through (for ETA)."""
        try:
            _, self._last_seq, _ = await stream_bounds(self.js, self.stream)
        except NotFoundError:
            raise RuntimeError(f"no stream {self.stream} on this server") from None
        cfg = ConsumerConfig(inactive_threshold=60.0)
        if self.start_seq:
            cfg.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            cfg.opt_start_seq = self.start_seq
        elif self.start_ns is not None:
            at = max(0, self.start_ns - self.window_ns) / 1e9
            cfg.deliver_policy = DeliverPolicy.BY_START_TIME
            cfg.opt_start_time = datetime.fromtimestamp(at, UTC)
        else:
            cfg.deliver_policy = DeliverPolicy.ALL
        filters = self.filters
        if self.stream == STREAM_RAW:
            # a partitioned RAW appends .<N>.<p>; the 4- and 6-token forms never overlap
            filters = [*filters, *(f + ".>" for f in filters if not f.endswith(">"))]
        if len(filters) > 1:
            cfg.filter_subjects = filters
        self._sub = await self.js.subscribe(
            self.filters[0],
            stream=self.stream,
            ordered_consumer=True,
            config=cfg,
            cb=self._on_msg,
            pending_msgs_limit=4 * HIGH_WATER,
            pending_bytes_limit=1024 * 1024 * 1024,
        )
        info = await self._sub.consumer_info()
        # some may already be delivered (and no longer pending) by the time we ask
        delivered = info.delivered.consumer_seq if info.delivered else 0
        self.pending = int(info.num_pending or 0) + int(delivered or 0)
        return self.pending

    async def _on_msg(self, msg: Msg) -> None:
        self._buf.append(msg)
        self._arrived.set()
        if len(self._buf) >= HIGH_WATER:
            self._room.clear()
            await self._room.wait()

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            self._room.set()
            try:
                await sub.unsubscribe()
            except Exception:  # connection closing; the ephemeral consumer expires anyway
                pass

    async def chunks(self) -> AsyncIterator[list[ReplayMsg]]:
        """Messages of [start, end) in replay order (or stream order with ``keep_order``),
        chunk by chunk."""
        reorder = Reorder(self.window_ns)
        keep_order = self.keep_order
        done = self.pending == 0
        start = self.start_ns if self.start_ns is not None else -(2**63)
        end = self.end_ns if self.end_ns is not None else 2**63
        last_seq, stream, strip, stats = self._last_seq, self.stream, self.strip, self.stats
        try:
            while not done:
                if not self._buf:
                    self._arrived.clear()
                    try:
                        await asyncio.wait_for(self._arrived.wait(), 30.0)
                    except TimeoutError:
                        raise RuntimeError(
                            f"replay from {stream}: nothing delivered for 30 s "
                            f"(last sequence {self._high} of {last_seq})"
                        ) from None
                msgs, self._buf = self._buf, []
                self._room.set()
                out: list[ReplayMsg] = []
                for m in msgs:
                    tok = m.reply.split(".")
                    o = 0 if len(tok) == 9 else 2  # v2 ack subjects add domain and account
                    seq = int(tok[5 + o])
                    if seq <= self._high:
                        continue  # a redelivery after the client recreated the consumer
                    self._high = seq
                    if seq > last_seq:
                        done = True
                        break
                    r = to_replay(m, stream, seq, strip, stats)
                    if r is not None and start <= r.ts_recv < end:
                        out.append(r)
                    if tok[8 + o] == "0" or seq == last_seq:
                        done = True
                        break
                ready = out if keep_order else reorder.push(out)
                if ready:
                    yield ready
            rest = reorder.drain()
            if rest:
                yield rest
        finally:
            stats.late += reorder.late
            await self.close()
