"""Venue-agnostic collector parts: reconnect backoff, connection ids, raw publishing, and
the pieces every venue module uses the same way (REST bodies through ccxt, instruments
retried before the first frame, ctl.snapshot answers, connection events, health).

Raw frames are published with core NATS publishes (a JetStream ack per frame would cap a
collector at the ~28k msg/s of acked publishes); every ``flush_every`` frames, and at
least once a second while frames flow, one frame goes out as an acked JetStream publish.
NATS keeps per-connection order, so that ack proves the stream stored everything before
it; a failed ack shows up in health within a second instead of never.

Frames not yet covered by a good ack are kept. When the NATS client has reconnected, the
frames written to the dead socket (or still in the dead server's ingest queue) are gone
without an error - a kill -9 of nats-server in the middle of a 20k-frame burst lost all of
them (tests/test_faults.py) - so the first ack after the reconnect is followed by a read of
RAW from the last good ack to it, and every kept frame missing there (matched on connection
id and receive time) is published again. A frame RAW holds is not sent twice; a re-sent
frame arrives after newer ones, which the order book sees as a sequence gap.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import websockets
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import Counter, Gauge
from websockets.asyncio.client import ClientConnection

from streams import subjects
from streams.bus.bigframes import FRAMES_STREAM, H_FRAME_REF, FrameStore
from streams.bus.runtime import Worker
from streams.provision import STREAM_DLQ, STREAM_RAW, stream_fill, stream_limits
from streams.settings import CollectorSettings, ReconnectSettings

log = logging.getLogger("collectors")

FRAMES = Counter("jetmarket_collector_frames_total", "raw frames published", ["venue", "channel"])
RECONNECTS = Counter(
    "jetmarket_collector_reconnects_total", "WebSocket (re)connections lost", ["venue", "reason"]
)
REST = Counter(
    "jetmarket_collector_rest_requests_total", "REST requests", ["venue", "endpoint", "status"]
)
LAST_FRAME = Gauge(
    "jetmarket_collector_last_frame_timestamp_seconds",
    "unix time of the newest raw frame published (updated once a second)",
    ["venue", "channel"],
)
BARRIER_FAILURES = Counter(
    "jetmarket_collector_unconfirmed_total", "acked raw publishes that failed", ["venue"]
)
LOST = Counter(
    "jetmarket_collector_lost_frames_total",
    "raw frames lost (buffer overflow, not restorable, too big), each recorded as a gap",
    ["venue", "reason"],
)
LARGE = Counter(
    "jetmarket_collector_large_frames_total",
    "frames over NATS max_payload stored whole in the JM_FRAMES object store",
    ["venue"],
)
DLQ = Counter("jetmarket_collector_dlq_total", "frames sent to dlq.collector")
STREAM_BYTES = Gauge("jetmarket_stream_bytes", "bytes a JetStream stream holds", ["stream"])
STREAM_MAX = Gauge("jetmarket_stream_max_bytes", "a JetStream stream's max_bytes", ["stream"])
STREAM_FILL = Gauge(
    "jetmarket_stream_fill_ratio", "bytes held / max_bytes of a JetStream stream", ["stream"]
)


class Backoff:
    """Exponential backoff with jitter; ``reset()`` after a connection proved healthy."""

    def __init__(self, cfg: ReconnectSettings, rnd: random.Random | None = None) -> None:
        self.cfg = cfg
        self.rnd = rnd or random.Random()
        self.current = cfg.min_s

    def next(self) -> float:
        delay = self.current * (1 + self.rnd.uniform(-self.cfg.jitter, self.cfg.jitter))
        self.current = min(self.current * 2, self.cfg.max_s)
        return max(0.0, delay)

    def reset(self) -> None:
        self.current = self.cfg.min_s


_START_NS = time.time_ns()
_EPOCH = 0


def new_conn_id(venue: str) -> str:
    """Unique per process start and per connection: ``<venue>-<pid>-<start ns>-<epoch>``;
    the epoch counts connections in this process, so a change of id marks a possible gap."""
    global _EPOCH
    _EPOCH += 1
    return f"{venue}-{os.getpid()}-{_START_NS}-{_EPOCH}"


MAX_KEPT = 200_000  # default of collector.buffer_frames
MAX_SCAN = 50_000  # RAW messages read back to find the lost ones (one request each, ~0.2 ms)
MAX_FRAME = 64 * 1024 * 1024  # default of collector.max_frame_bytes
COLLECTOR_STREAMS = (STREAM_RAW, STREAM_DLQ, FRAMES_STREAM)
LOSS_HOLD_S = 60.0  # health stays degraded this long after the last recorded loss
DLQ_KEEP = 64 * 1024  # bytes of an oversized frame kept in its dead letter

# one (channel, native symbol) of a loss record: [frames, first receive ns, last receive ns]
_Span = list[int]
# a kept frame: (number, subject, data, headers, channel, native symbol)
_Kept = tuple[int, str, bytes, dict[str, str], str, str]


class _Loss:
    """Frames lost for one reason on one channel, until recorded on RAW as a ``lost``
    event (the normalizer turns it into one ``gap`` per symbol with the counts)."""

    __slots__ = ("detail", "spans")

    def __init__(self, detail: str) -> None:
        self.detail = detail
        self.spans: dict[str, _Span] = {}


class RawPublisher:
    """Core publishes of raw frames with an acked barrier every ``flush_every`` frames or
    second; ``durable=True`` makes one publish acked (snapshots, conn events, the last).

    Nothing is dropped silently: a frame pushed out of the buffer of unconfirmed frames, a
    frame a re-send after an outage could not restore, and a frame too big to store are
    each counted in ``jetmarket_collector_lost_frames_total`` and recorded as a ``lost``
    event on ``raw.<venue>.conn.ALL`` as soon as JetStream confirms a publish again (the
    record waits in memory meanwhile); health says ``degraded`` while any of it lasts."""

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        venue: str,
        flush_every: int,
        ack_timeout_s: float = 5.0,
        *,
        settings: CollectorSettings | None = None,
    ) -> None:
        self.nc = nc
        self.js = js
        self.venue = venue
        self.flush_every = flush_every
        self.max_kept = settings.buffer_frames if settings else MAX_KEPT
        self.max_frame = settings.max_frame_bytes if settings else MAX_FRAME
        self.since_barrier = 0
        self.last_barrier = time.monotonic()
        self.published = 0
        self.counts: dict[str, int] = {}
        self.unconfirmed = False
        self.confirmed = 0  # frames known stored (all published before the last good ack)
        self.ack_timeout_s = ack_timeout_s
        # frames after the last good ack, oldest first
        self._kept: deque[_Kept] = deque()
        self._acked_seq: int | None = None  # RAW stream sequence of the last good ack
        # set by a NATS reconnect: the last good ack's sequence, until the first ack after
        # the reconnect shows what RAW holds and the missing kept frames are sent again
        self._recover_after: int | None = None
        self._epoch = self.nats_epoch()
        self.recovered = 0  # frames published again after a NATS reconnect
        self._subjects: dict[str, dict[str, str]] = {}  # channel -> native symbol -> subject
        # frames up to this size go inline; bigger ones by reference (streams/bus/bigframes.py)
        self.inline_max = self._inline_max()
        self.frames = FrameStore(js)
        self.large = 0  # frames stored by reference
        self.lost = 0  # frames lost, each in a loss record
        self.recorded = 0  # lost frames whose record is on RAW
        self._losses: dict[tuple[str, str], _Loss] = {}  # (kind, channel) -> record
        self._loss_ids = 0
        self.last_loss = 0.0  # monotonic time of the last loss
        self.loss_hold_s = LOSS_HOLD_S
        self.last_error = ""  # why the last acked publish failed
        self.store_warning = ""  # set by watch_store: a stream nearly full

    def _inline_max(self) -> int:
        # headers (recv ns, conn id, msg id) and the HPUB line stay well under 1 KB
        return max(1024, int(self.nc.max_payload or 1024 * 1024) - 1024)

    def _subject(self, channel: str, native_symbol: str) -> str:
        subject = subjects.raw(self.venue, channel, native_symbol)  # ValueError if empty
        by_symbol = self._subjects.setdefault(channel, {})
        if len(by_symbol) >= 100_000:  # only junk symbols grow it this far
            by_symbol.clear()
        by_symbol[native_symbol] = subject
        return subject

    async def publish(
        self,
        channel: str,
        native_symbol: str,
        data: bytes,
        recv_ns: int,
        conn: str,
        *,
        msg_id: str | None = None,
        durable: bool = False,
        ref: str | None = None,
    ) -> None:
        if len(data) > self.inline_max:  # the hot path's one size check
            await self._publish_large(channel, native_symbol, data, recv_ns, conn, msg_id)
            return
        # a venue sends a few hundred (channel, symbol) pairs: subjects built once each
        # (three token translations and a format per frame were ~8% of a collector)
        by_symbol = self._subjects.get(channel)
        subject = by_symbol.get(native_symbol) if by_symbol is not None else None
        if subject is None:
            subject = self._subject(channel, native_symbol)
        headers = {subjects.H_RECV_NS: str(recv_ns), subjects.H_CONN: conn}
        if msg_id:
            headers[subjects.H_MSG_ID] = msg_id
        if ref:
            headers[H_FRAME_REF] = ref
        self.published += 1
        self.counts[channel] = self.counts.get(channel, 0) + 1
        self.since_barrier += 1
        reconnected = self.nats_epoch() != self._epoch
        if reconnected:
            self._epoch = self.nats_epoch()
            self.inline_max = self._inline_max()
            if self._recover_after is None:  # kept from an earlier reconnect otherwise
                self._recover_after = self._acked_seq or 0
        kept = self._kept
        if len(kept) >= self.max_kept:
            # an outage longer than the buffer: the oldest unconfirmed frame goes, recorded
            self._lose(kept.popleft(), "buffer",
                       f"collector buffer of {self.max_kept} unconfirmed frames full "
                       f"({self.last_error or 'publishes not confirmed'})")  # fmt: skip
        kept.append((self.published, subject, data, headers, channel, native_symbol))
        if (
            reconnected
            or durable
            or self.since_barrier >= self.flush_every
            or time.monotonic() - self.last_barrier >= 1.0
        ):
            await self._acked(subject, data, headers)
        elif msg_id or ref or not await self._write(subject, data, recv_ns, conn):
            await self._core(subject, data, headers)

    async def _core(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        """``nc.publish``, but never into nats-py's reconnect buffer: while NATS is away the
        frame waits in ``_kept`` only (bounded by ``buffer_frames``, each frame dropped from
        it recorded), and the first good ack after the reconnect sends it again."""
        if not self.nc.is_connected:
            if self._recover_after is None:
                self._recover_after = self._acked_seq or 0
            return
        try:
            await self.nc.publish(subject, data, headers=headers)
        except Exception as exc:  # kept: re-sent by the recovery after the next good ack
            self.last_error = repr(exc)[:300]
            if self._recover_after is None:
                self._recover_after = self._acked_seq or 0

    async def _write(self, subject: str, data: bytes, recv_ns: int, conn: str) -> bool:
        """Queue the frame as one HPUB command with its two headers written directly; False
        when ``nc.publish`` must do it (not connected; a header value that needs
        escaping). ``nc.publish`` with a headers dict (a regex per key, bytes built
        piecewise) was the collector's largest cost per frame in a py-spy profile.
        Subjects come from ``subjects.raw`` (tokens already sanitised); the size was
        checked in ``publish``."""
        nc = self.nc
        if not nc.is_connected or nc.is_draining_pubs or "\r" in conn or "\n" in conn:
            return False
        if not conn.isascii():
            return False
        hdr = f"NATS/1.0\r\nJm-Recv-Ns: {recv_ns}\r\nJm-Conn: {conn}\r\n\r\n"
        size = len(hdr)  # ASCII: characters are bytes
        cmd = f"HPUB {subject} {size} {size + len(data)}\r\n{hdr}".encode()
        # the same two steps nc.publish ends with: queue the command, wake the flusher
        await nc._send_command(b"".join((cmd, data, b"\r\n")))
        if nc._flush_queue is not None and nc._flush_queue.empty():
            await nc._flush_pending()
        return True

    async def _publish_large(
        self, channel: str, native: str, data: bytes, recv_ns: int, conn: str, msg_id: str | None
    ) -> None:
        """A frame over NATS max_payload: whole into the JM_FRAMES object store, and a RAW
        message with an empty body referencing it (streams/bus/bigframes.py), acked."""
        if len(data) > self.max_frame:
            why = f"frame of {len(data)} bytes over collector.max_frame_bytes {self.max_frame}"
            await self._oversized(channel, native, data, recv_ns, conn, why)
            return
        name = f"{subjects.token(self.venue)}.{subjects.token(channel)}.{recv_ns}.{self.large}"
        try:
            await self.frames.put(name, data)
        except Exception as exc:
            why = f"frame of {len(data)} bytes not stored by reference: {exc!r}"[:500]
            await self._oversized(channel, native, data, recv_ns, conn, why)
            return
        self.large += 1
        LARGE.labels(self.venue).inc()
        await self.publish(
            channel, native, b"", recv_ns, conn, msg_id=msg_id, durable=True, ref=name
        )

    async def _oversized(
        self, channel: str, native: str, data: bytes, recv_ns: int, conn: str, why: str
    ) -> None:
        """A frame that cannot reach RAW: a loss record (gap) and a dead letter with the
        frame's first bytes and the reason."""
        subject = subjects.raw(self.venue, channel, native)
        headers = {subjects.H_RECV_NS: str(recv_ns), subjects.H_CONN: conn}
        self._lose((0, subject, data, headers, channel, native), "oversized", why)
        log.warning("raw frame lost: too big", extra={"venue": self.venue, "error": why})
        await dead_letter(self.js, subject, data[:DLQ_KEEP], why, recv_ns)

    def _lose(self, entry: _Kept, kind: str, detail: str) -> None:
        """Count one lost frame into the loss record of its kind and channel."""
        _, _, data, headers, channel, native = entry
        try:
            ns = int(headers[subjects.H_RECV_NS])
        except (KeyError, ValueError):
            ns = time.time_ns()
        natives = [native]
        if channel == "conn":  # a lost connection event: the symbols it spoke for
            try:
                natives = [str(x) for x in orjson.loads(data).get("symbols", [])] or natives
            except (orjson.JSONDecodeError, AttributeError):
                pass
        key = (kind, channel)
        record = self._losses.get(key)
        if record is None:
            record = self._losses[key] = _Loss(detail)
        for n in natives:
            span = record.spans.get(n)
            if span is None:
                record.spans[n] = [1, ns, ns]
            else:
                span[0] += 1
                span[1] = min(span[1], ns)
                span[2] = max(span[2], ns)
        self.lost += 1
        self.last_loss = time.monotonic()
        LOST.labels(self.venue, kind).inc()

    async def _record_losses(self) -> None:
        """Publish each pending loss record (acked); one that fails waits for the next
        good ack. Called right after a good ack, so RAW takes writes again."""
        for key in list(self._losses):
            kind, channel = key
            record = self._losses[key]
            total = sum(s[0] for s in record.spans.values())
            first = min(s[1] for s in record.spans.values())
            now = time.time_ns()
            self._loss_ids += 1
            body = orjson.dumps({
                "event": "lost", "conn": f"{self.venue}-{os.getpid()}-{_START_NS}",
                "ts": first, "symbols": sorted(record.spans), "channel": channel,
                "lost": record.spans, "count": total, "reason": f"{kind}: {record.detail}",
            })  # fmt: skip
            headers = {
                subjects.H_RECV_NS: str(now), subjects.H_CONN: "collector",
                subjects.H_MSG_ID: f"{self.venue}:lost:{os.getpid()}:{_START_NS}:{self._loss_ids}",
            }  # fmt: skip
            try:
                await self.js.publish(self._subject("conn", "ALL"), body, headers=headers,
                                      stream=STREAM_RAW, timeout=self.ack_timeout_s)  # fmt: skip
            except Exception as exc:
                self._loss_ids -= 1  # the same id next time: JetStream drops a repeat
                log.warning("loss record not stored yet, kept for the next try",
                            extra={"venue": self.venue, "error": repr(exc)[:300]})  # fmt: skip
                return
            del self._losses[key]
            self.recorded += total
            log.warning(
                "raw frames lost, recorded as gaps",
                extra={"venue": self.venue, "channel": channel, "count": total,
                       "symbols": len(record.spans), "reason": f"{kind}: {record.detail}"},
            )  # fmt: skip

    def trouble(self) -> str:
        """Why health is degraded, or "" when nothing is."""
        if self._losses:
            n = sum(s[0] for r in self._losses.values() for s in r.spans.values())
            return f"{n} lost frames not yet recorded (RAW refuses writes)"
        if self.unconfirmed:
            return f"raw publishes not confirmed: {self.last_error}"[:300]
        if self.lost and time.monotonic() - self.last_loss < self.loss_hold_s:
            return f"{self.lost} frames lost (recorded as gaps) in the last {self.loss_hold_s:.0f}s"
        if len(self._kept) > self.max_kept // 2:
            return f"{len(self._kept)} unconfirmed frames buffered (limit {self.max_kept})"
        return self.store_warning

    def nats_epoch(self) -> int:
        """Changes whenever the NATS client reconnected. The acked barrier proves only what
        was sent on the current server connection: frames written to a socket that then
        died are lost without an error, so a collector ends its venue connection on a
        change (the "disconnected" event marks the gap and the book is resynced)."""
        return int(self.nc.stats["reconnects"])

    async def _recover(self, kept: list[_Kept], after: int, upto: int) -> None:
        """Publish again the kept frames RAW does not hold between ``after`` and ``upto``;
        what cannot be checked or restored is recorded as lost."""
        try:
            present = await self._stored_between(after, upto)
        except Exception as exc:  # cannot tell what RAW holds: all of them count as lost
            for k in kept:
                self._lose(k, "unverified", f"RAW not readable after an outage: {exc!r}"[:300])
            return
        missing = [k for k in kept if (k[3][subjects.H_CONN], k[3][subjects.H_RECV_NS])
                   not in present]  # fmt: skip
        done = 0  # missing frames confirmed stored
        try:
            for i, (_, subject, data, headers, _, _) in enumerate(missing, 1):
                if i % 500 == 0 or i == len(missing):  # bounded bursts, the last one acked
                    await self.js.publish(subject, data, headers=headers, stream=STREAM_RAW,
                                          timeout=self.ack_timeout_s)  # fmt: skip
                    done = i
                else:
                    await self.nc.publish(subject, data, headers=headers)
        except Exception as exc:
            for k in missing[done:]:
                self._lose(k, "unverified", f"re-send after an outage failed: {exc!r}"[:300])
        self.recovered += done
        if missing:
            log.warning(
                "raw frames missing from RAW after an outage re-sent",
                extra={"venue": self.venue, "missing": len(missing), "confirmed": done,
                       "lost": len(missing) - done, "kept": len(kept)},
            )  # fmt: skip

    async def _stored_between(self, after: int, upto: int) -> set[tuple[str, str]]:
        """(connection id, receive ns) of this venue's frames in RAW after ``after``."""
        present: set[tuple[str, str]] = set()
        filt = f"raw.{subjects.token(self.venue)}.>"
        if upto - after > MAX_SCAN:
            raise RuntimeError(f"{upto - after} messages to scan, more than {MAX_SCAN}")
        seq = after + 1
        while seq < upto:
            try:
                m = await self.js.get_msg(STREAM_RAW, seq=seq, subject=filt, next=True)
            except NotFoundError:
                break
            if m.seq is None or m.seq >= upto:
                break
            h = m.headers or {}
            present.add((h.get(subjects.H_CONN, ""), h.get(subjects.H_RECV_NS, "")))
            seq = m.seq + 1
        return present

    def _unconfirmed(self, error: str) -> None:
        BARRIER_FAILURES.labels(self.venue).inc()
        self.last_error = error[:300]
        # No reconnect, yet frames may be gone: a stream leader election behind the node
        # we are connected to drops core publishes without an error, and a full store
        # refuses them. The next good ack checks RAW for the kept frames, as after a
        # reconnect.
        if self._recover_after is None:
            self._recover_after = self._acked_seq or 0
        if not self.unconfirmed:  # one line per outage, not per barrier
            log.warning(
                "raw publish not confirmed by JetStream; frames kept for re-sending",
                extra={"venue": self.venue, "error": self.last_error,
                       "kept": len(self._kept), "buffer_frames": self.max_kept},
            )  # fmt: skip
        self.unconfirmed = True

    async def _acked(self, subject: str, data: bytes, headers: dict[str, str]) -> int | None:
        """One acked publish; its stream sequence, or None when it was not confirmed."""
        # The counters restart whether or not the ack came: after a failure the next barrier
        # is again flush_every frames or a second away, so an outage costs one timeout per
        # second rather than one per frame.
        self.since_barrier = 0
        number = self.published
        if not self.nc.is_connected:  # no waiting for a timeout while NATS is away
            self._unconfirmed("nats not connected")
            self.last_barrier = time.monotonic()
            return None
        try:
            ack = await self.js.publish(
                subject, data, headers=headers, stream=STREAM_RAW, timeout=self.ack_timeout_s
            )
        except Exception as exc:
            # e.g. 503 "insufficient resources" (err 10023, the store is full), a timeout
            self._unconfirmed(repr(exc))
            return None
        else:
            if self.unconfirmed:
                log.info("raw publishes confirmed again", extra={"venue": self.venue})
            self.unconfirmed = False
            self.confirmed = self.published
            if self.nats_epoch() != self._epoch:
                # reconnected while this ack was awaited: it came over the new connection
                # and proves nothing about frames written to the old one
                self._epoch = self.nats_epoch()
                if self._recover_after is None:
                    self._recover_after = self._acked_seq or 0
            self._acked_seq = ack.seq
            kept = self._kept
            if self._recover_after is None:
                while kept and kept[0][0] <= number:
                    kept.popleft()
            else:
                after, self._recover_after = self._recover_after, None
                unproven: list[_Kept] = []
                while kept and kept[0][0] <= number:
                    entry = kept.popleft()
                    if entry[0] < number:
                        unproven.append(entry)
                if unproven:
                    await self._recover(unproven, after, ack.seq)
            if self._losses:
                await self._record_losses()
            return ack.seq
        finally:
            self.last_barrier = time.monotonic()

    def flush_metrics(self) -> None:
        now = time.time()
        for channel, n in self.counts.items():
            FRAMES.labels(self.venue, channel).inc(n)
            LAST_FRAME.labels(self.venue, channel).set(now)
        self.counts.clear()


async def dead_letter(
    js: JetStreamContext | None, source: str, data: bytes, reason: str, recv_ns: int
) -> None:
    """A frame the collector could not publish, on ``dlq.collector`` with the reason."""
    if js is None:
        return
    headers = {subjects.H_REASON: reason.replace("\r", " ").replace("\n", " ")[:1000],
               subjects.H_SOURCE: source, subjects.H_RECV_NS: str(recv_ns)}  # fmt: skip
    try:
        await js.publish(subjects.dlq("collector"), data, headers=headers, stream=STREAM_DLQ,
                         timeout=5.0)  # fmt: skip
    except Exception as exc:  # the loss record (gap) still tells
        log.warning("dead letter not stored", extra={"reason": reason[:200], "error": repr(exc)})
    else:
        DLQ.inc()


def health_of(pubs: list[RawPublisher]) -> tuple[str, dict[str, Any]]:
    """("ok" or "degraded", fields) of a collector's publishers."""
    why = [t for t in (p.trouble() for p in pubs) if t]
    fields: dict[str, Any] = {
        "lost": sum(p.lost for p in pubs),
        "large": sum(p.large for p in pubs),
        "buffered": sum(len(p._kept) for p in pubs),
    }
    if why:
        fields["trouble"] = "; ".join(dict.fromkeys(why))[:500]
        return "degraded", fields
    fields["trouble"] = ""
    return "ok", fields


async def watch_store(w: Worker, pubs: list[RawPublisher], every_s: float = 5.0) -> None:
    """Every ``every_s``: each stream's bytes against its max_bytes into the fill gauge,
    and a warning into the publishers' health once one passes its ``warn_fraction``."""
    assert w.js is not None
    # the streams a collector writes; MARKET and EXEC are watched by their writers or by
    # nats-server's own monitoring (/jsz), which a collector's user may not read
    limits = {k: v for k, v in stream_limits(w.settings).items() if k in COLLECTOR_STREAMS}
    while True:
        try:
            fill = await stream_fill(w.js, list(limits))
        except Exception:  # server away: unconfirmed publishes already say so
            fill = {}
        warn = []
        for name, (held, limit) in fill.items():
            STREAM_BYTES.labels(name).set(held)
            if limit > 0:
                STREAM_MAX.labels(name).set(limit)
                ratio = held / limit
                STREAM_FILL.labels(name).set(ratio)
                if ratio >= limits[name].warn_fraction:
                    warn.append(f"stream {name} at {ratio:.0%} of max_bytes {limit}")
        for p in pubs:
            p.store_warning = "; ".join(warn)
        if await w.sleep(every_s):
            return


@dataclass(kw_only=True)
class Link:
    """One WebSocket connection's lifecycle state; venues add their own fields."""

    url: str
    backoff: Backoff
    conn: str = ""
    connected: bool = False
    last_frame: float = 0.0
    reconnects: int = 0
    ws: ClientConnection | None = None
    ended: list[str] = field(default_factory=list)  # why our watchdog closed it


L = Any  # a Link subclass; the callbacks below take the venue's own type


async def keep_connected(
    w: Worker,
    venue: str,
    link: L,
    session: Callable[[ClientConnection, L], Awaitable[str]],
    conn_event: Callable[[L, str, str], Awaitable[None]],
    total_reconnects: Callable[[], int],
    *,
    conn_prefix: str | None = None,
    ping_interval: float | None = None,
) -> None:
    """Connect, run ``session`` until the connection ends, and reconnect with backoff until
    the worker stops. Offline: one log line per retry. Each lost connection is counted and
    recorded as a ``disconnected`` event (the normalizer turns it into gaps). The venue's
    ping format decides ``ping_interval``: None when the venue wants its own ping message."""
    while not w.stop.is_set():
        link.conn = new_conn_id(conn_prefix or venue)
        link.ended.clear()
        try:
            async with websockets.connect(
                link.url,
                ping_interval=ping_interval,
                ping_timeout=ping_interval,
                # a bigger frame ends the connection (close 1009): dead-lettered below
                max_size=w.settings.collector.max_frame_bytes,
                max_queue=4096,
                compression=None,
                proxy=None,
                open_timeout=10,
            ) as ws:
                link.connected = True
                reason = await session(ws, link)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"[:300]
            if not link.connected:  # never got in: one line per retry, keep going
                delay = link.backoff.next()
                log.warning(
                    f"{venue} connect failed, retrying",
                    extra={"url": link.url, "error": reason, "retry_in_s": round(delay, 2)},
                )
                w.health.set("retrying", error=reason, reconnects=total_reconnects())
                if await w.sleep(delay):
                    return
                continue
        link.connected = False
        link.ws = None
        link.reconnects += 1
        if "1009" in reason or "too big" in reason:
            # a frame over max_frame_bytes: the "disconnected" gap below covers the symbols
            # it carried; the dead letter says why (the frame itself was not read)
            await dead_letter(w.js, f"ws:{link.url}"[:300], b"", reason, time.time_ns())
        RECONNECTS.labels(venue, reason.split(":")[0][:40]).inc()
        try:
            await conn_event(link, "disconnected", reason)
        except Exception as exc:
            log.warning("cannot record disconnect", extra={"error": repr(exc)})
        if w.stop.is_set():
            return
        delay = 0.0 if reason.startswith("rollover") else link.backoff.next()
        log.warning(
            f"{venue} connection lost, reconnecting",
            extra={"conn": link.conn, "reason": reason, "retry_in_s": round(delay, 2)},
        )
        w.health.set("reconnecting", reason=reason, reconnects=total_reconnects())
        if await w.sleep(delay):
            return


# -- pieces every venue collector shares ----------------------------------------------------
async def rest_body(
    exchange: Any,
    lock: asyncio.Lock,
    venue: str,
    endpoint: str,
    call: Callable[[dict[str, Any]], Awaitable[Any]],
    params: dict[str, Any] | None = None,
) -> tuple[bytes, int]:
    """One REST call through ccxt (so through its rate limiter); returns the untouched body
    and its receive time. ccxt keeps only the last response's body, so ``lock`` (one per
    ccxt client) pairs each call with its own. A failure is counted and raised as a
    RuntimeError naming the endpoint."""
    async with lock:
        try:
            await call(params or {})
        except Exception as exc:
            REST.labels(venue, endpoint, "error").inc()
            raise RuntimeError(f"{endpoint}: {type(exc).__name__}: {exc}") from None
        body = exchange.last_http_response
        recv = time.time_ns()
    REST.labels(venue, endpoint, "ok").inc()
    return (body.encode() if isinstance(body, str) else body), recv


async def retry_until_ok(
    w: Worker, cfg: ReconnectSettings, what: str, attempt: Callable[[], Awaitable[object]]
) -> bool:
    """Run ``attempt`` until it succeeds (True) or the worker stops (False), backing off
    between tries with one log line each and ``retrying`` health meanwhile."""
    backoff = Backoff(cfg)
    while not w.stop.is_set():
        try:
            await attempt()
            return True
        except Exception as exc:
            wait = backoff.next()
            log.warning(
                f"{what} failed, retrying",
                extra={"error": str(exc)[:300], "retry_in_s": round(wait, 2)},
            )
            w.health.set("retrying", error=str(exc)[:300])
            if await w.sleep(wait):
                return False
    return False


async def instruments_first(
    w: Worker,
    cfg: ReconnectSettings,
    what: str,
    fetch: Callable[[], Awaitable[object]],
    then: Callable[[], Awaitable[None]],
    refresh_s: float,
) -> None:
    """Instruments (contract sizes, ticks) must be on RAW before the first data frame:
    retry ``fetch`` until it works, then run ``then`` while it is repeated every
    ``refresh_s``."""
    if not await retry_until_ok(w, cfg, what, fetch):
        return

    async def refresh() -> None:
        while not await w.sleep(refresh_s):
            await retry_until_ok(w, cfg, what, fetch)

    refresher = asyncio.create_task(refresh())
    try:
        await then()
    finally:
        refresher.cancel()


# the answer to a resync request while the venue connection is down
NOT_CONNECTED = {"ok": False, "error": "not connected (a snapshot follows connecting)"}


async def ctl_reply(msg: Msg, body: dict[str, Any]) -> None:
    """Answer a ``ctl.snapshot`` request when it wants an answer."""
    if msg.reply:
        try:
            await msg.respond(orjson.dumps(body))
        except Exception as exc:  # the requester went away; nothing to undo
            log.debug("ctl reply failed", extra={"error": repr(exc)})


async def resubscribe(
    msg: Msg, ws: ClientConnection | None, requests: list[str], ok: dict[str, Any]
) -> None:
    """A resync where the venue sends a fresh book snapshot on subscribe: send
    ``requests`` (an unsubscribe and a subscribe) and answer ``msg`` with ``ok`` or why not."""
    if ws is None:
        await ctl_reply(msg, NOT_CONNECTED)
        return
    try:
        for text in requests:
            await ws.send(text)
    except Exception as exc:
        await ctl_reply(msg, {"ok": False, "error": str(exc)[:300]})
        return
    await ctl_reply(msg, ok)


async def publish_conn_event(
    pub: RawPublisher, conn: str, event: str, reason: str, **fields: Any
) -> None:
    """A ``connected``/``disconnected`` event on ``raw.<venue>.conn.ALL``, acked: the
    normalizer turns a disconnect into gaps. ``fields`` say what the connection carried."""
    now = time.time_ns()
    body = orjson.dumps({"event": event, "conn": conn, **fields, "reason": reason, "ts": now})
    await pub.publish("conn", "ALL", body, now, conn, durable=True)


def conn_events(pub: RawPublisher, **fields: Any) -> Callable[..., Awaitable[None]]:
    """``keep_connected``'s ``conn_event`` for a venue whose events carry fixed ``fields``."""

    async def conn_event(link: Link, event: str, reason: str = "") -> None:
        await publish_conn_event(pub, link.conn, event, reason, **fields)

    return conn_event


async def report_link(w: Worker, pub: RawPublisher, link: Link, fresh_s: float) -> None:
    """Once a second: metrics; and while frames flow on the one connection (the newest
    within ``fresh_s``), a backoff reset and ``ok`` health."""
    while not await w.sleep(1.0):
        pub.flush_metrics()
        if link.connected and time.monotonic() - link.last_frame < fresh_s:
            link.backoff.reset()
            state, fields = health_of([pub])
            w.health.set(
                state, frames=pub.published, confirmed=pub.confirmed,
                reconnects=link.reconnects, unconfirmed=pub.unconfirmed, **fields,
            )  # fmt: skip
        elif pub.trouble():  # not flowing: keep_connected's state, and the loss on top
            w.health.set("degraded", **health_of([pub])[1])


@asynccontextmanager
async def collector_running(
    w: Worker,
    venue: str,
    on_ctl_snapshot: Callable[[Msg], Awaitable[None]],
    report: Callable[[], Coroutine[Any, Any, None]],
    pubs: list[RawPublisher],
    exchange: Any,
) -> AsyncIterator[None]:
    """Around a collector's body: answer ``ctl.snapshot.<venue>.*`` and run ``report``;
    on the way out stop both, flush the last metrics and close the ccxt client."""
    assert w.nc is not None
    sub = await w.nc.subscribe(subjects.ctl_snapshot_filter(venue), cb=on_ctl_snapshot)
    reporter = asyncio.create_task(report())
    store = asyncio.create_task(watch_store(w, pubs))
    try:
        yield
    finally:
        reporter.cancel()
        store.cancel()
        try:
            await sub.unsubscribe()
        except Exception:  # connection already closing
            pass
        for pub in pubs:
            pub.flush_metrics()
        await exchange.close()
