"""``RawPublisher``: venue frames onto RAW, acked in batches, nothing lost silently.

Raw frames are published with core NATS publishes (a JetStream ack per frame would cap a
collector at the ~28k msg/s of acked publishes); every ``flush_every`` frames, and at
least once a second while frames flow, one frame goes out as an acked JetStream publish.
NATS keeps per-connection order, so that ack proves the stream stored everything before
it; a failed ack shows up in health within a second instead of never. Frames not yet
covered by a good ack are kept, re-sent after an outage and, when they cannot be, recorded
as lost (collectors/losses.py).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import KW_ONLY, dataclass

from nats.aio.client import Client
from nats.js import JetStreamContext

from collectors.losses import LossRecords, _Kept, _Loss, kept_headers
from collectors.metrics import BARRIER_FAILURES, DLQ, FRAMES, LARGE, LAST_FRAME
from streams import subjects
from streams.bus import wire
from streams.bus.bigframes import H_FRAME_REF, FrameStore
from streams.provision import STREAM_DLQ, STREAM_RAW
from streams.settings import CollectorSettings

log = logging.getLogger("collectors")

H_RECV_NS, H_CONN = subjects.H_RECV_NS, subjects.H_CONN
MAX_KEPT = 200_000  # default of collector.buffer_frames
MAX_FRAME = 64 * 1024 * 1024  # default of collector.max_frame_bytes
LOSS_HOLD_S = 60.0  # health stays degraded this long after the last recorded loss
DLQ_KEEP = 64 * 1024  # bytes of an oversized frame kept in its dead letter


@dataclass(eq=False)  # eq=False: a publisher is itself, compared by identity
class RawPublisher(LossRecords):
    """Core publishes of raw frames with an acked barrier every ``flush_every`` frames or
    second; ``durable=True`` makes one publish acked (snapshots, conn events, the last).

    Nothing is dropped silently: a frame pushed out of the buffer of unconfirmed frames, a
    frame a re-send after an outage could not restore, and a frame too big to store are
    each counted in ``jetmarket_collector_lost_frames_total`` and recorded as a ``lost``
    event on ``raw.<venue>.conn.ALL`` as soon as JetStream confirms a publish again (the
    record waits in memory meanwhile); health says ``degraded`` while any of it lasts."""

    nc: Client
    js: JetStreamContext
    venue: str
    flush_every: int
    ack_timeout_s: float = 5.0
    _: KW_ONLY
    settings: CollectorSettings | None = None  # None: the collector section's defaults

    def __post_init__(self) -> None:
        settings = self.settings
        self.max_kept = settings.buffer_frames if settings else MAX_KEPT
        self.max_frame = settings.max_frame_bytes if settings else MAX_FRAME
        self.since_barrier = 0
        self.last_barrier = time.monotonic()
        self.published = 0
        self.counts: dict[str, int] = {}
        self.unconfirmed = False
        self.confirmed = 0  # frames known stored (all published before the last good ack)
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
        self.frames = FrameStore(self.js)
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
        # headers beyond the two every frame has (receive time, connection): rare
        extra: dict[str, str] | None = None
        if msg_id or ref:
            extra = {subjects.H_MSG_ID: msg_id} if msg_id else {}
            if ref:
                extra[H_FRAME_REF] = ref
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
        # kept until an acked publish covers it; the per-frame values as they are, no
        # headers dict (the hot path writes its HPUB from them: streams.bus.wire)
        entry = (self.published, subject, data, recv_ns, conn, extra, channel, native_symbol)
        kept.append(entry)
        if (
            reconnected
            or durable
            or self.since_barrier >= self.flush_every
            or time.monotonic() - self.last_barrier >= 1.0
        ):
            await self._acked(subject, data, kept_headers(entry))
        elif extra is not None or not await self._write(subject, data, recv_ns, conn):
            await self._core(subject, data, kept_headers(entry))

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
        """Queue the frame as one HPUB command built by ``streams.bus.wire`` (the one
        encoder); False when ``nc.publish`` must do it (not connected, or draining).
        ``nc.publish`` with a headers dict (a regex per key, bytes built piecewise) was the
        collector's largest cost per frame in a py-spy profile. Subjects come from
        ``subjects.raw`` (tokens already sanitised); the size was checked in ``publish``."""
        nc = self.nc
        if not nc.is_connected or nc.is_draining_pubs:
            return False
        cmd = b"".join((wire.hpub_raw(subject, recv_ns, conn, len(data)), data, wire.CRLF))
        # the same two steps nc.publish ends with: queue the command, wake the flusher.
        # Below nats-py's pending limit queueing is what its _send_command does, done here
        # without a coroutine per frame; over it, _send_command flushes first.
        size = nc._pending_data_size + len(cmd)
        if 0 < nc._max_pending_size < size:
            await nc._send_command(cmd)
        else:
            nc._pending.append(cmd)
            nc._pending_data_size = size
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
        self._lose((0, subject, data, recv_ns, conn, None, channel, native), "oversized", why)
        log.warning("raw frame lost: too big", extra={"venue": self.venue, "error": why})
        await dead_letter(self.js, subject, data[:DLQ_KEEP], why, recv_ns)

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
    headers = {subjects.H_REASON: subjects.one_line(reason),
               subjects.H_SOURCE: source, subjects.H_RECV_NS: str(recv_ns)}  # fmt: skip
    try:
        await js.publish(subjects.dlq("collector"), data, headers=headers, stream=STREAM_DLQ,
                         timeout=5.0)  # fmt: skip
    except Exception as exc:  # the loss record (gap) still tells
        log.warning("dead letter not stored", extra={"reason": reason[:200], "error": repr(exc)})
    else:
        DLQ.inc()
