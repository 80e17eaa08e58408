"""The normalizer worker: RAW (durable pull consumer) -> MARKET, bad frames -> dlq.normalizer.

Per batch: parse every frame, core-publish the typed messages, then publish the batch's
last message with an acked JetStream publish. NATS keeps per-connection order, so that
ack proves the stream stored everything before it; only then is the raw batch acked
(AckAll). A crash anywhere re-delivers from the ack floor and ``Nats-Msg-Id`` makes the
re-published messages duplicates that JetStream drops.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections import Counter, deque

import msgspec
from nats.aio.msg import Msg
from nats.errors import MaxPayloadError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, PubAck
from nats.js.errors import BadObjectMetaError, NotFoundError, ObjectNotFoundError
from prometheus_client import Counter as PCounter
from prometheus_client import Gauge, Histogram

from normalizer.core import ROUTES_MAX, Dead, Normalizer, Route, venue_of
from normalizer.venues.base import Out
from streams import subjects
from streams.bus.bigframes import H_FRAME_REF, FrameStore
from streams.bus.consumer import BatchConsumer, send_commands
from streams.bus.delivery import Delivery
from streams.bus.runtime import Worker, collect_young_every
from streams.bus.wire import CRLF, hpub_id
from streams.provision import STREAM_DLQ, STREAM_MARKET, STREAM_RAW, replay_stream
from streams.settings import ConsumerSettings, NormalizerSettings

log = logging.getLogger("normalizer")

FRAMES = PCounter("jetmarket_normalizer_frames_total", "raw frames consumed", ["venue"])
OUT = PCounter("jetmarket_normalizer_messages_total", "typed messages published", ["venue"])
DLQ = PCounter("jetmarket_normalizer_dlq_total", "frames sent to dlq.normalizer", ["venue"])
BATCH = Histogram(
    "jetmarket_normalizer_batch_frames",
    "raw frames per processed batch",
    buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000),
)
BATCH_SECONDS = Histogram(
    "jetmarket_normalizer_batch_seconds", "time to normalize, publish and ack one batch"
)
LAG = Gauge("jetmarket_normalizer_lag", "raw messages not yet normalized (consumer pending)")
LATENCY = Histogram(
    "jetmarket_normalizer_latency_seconds",
    "collector receive -> market message confirmed, for the last frame of each batch",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
PUBLISH_FAILURES = PCounter(
    "jetmarket_normalizer_publish_failures_total", "batches whose publish was not confirmed"
)

DLQ_SUBJECT = subjects.dlq("normalizer")
CONFIRM_TIMEOUT_S = 10.0  # an acked publish not confirmed by then: redeliver the batch
BURST = 4000  # core publishes between acked ones; nats-server's ingest queue holds 10k+
H_RECV = subjects.H_RECV_NS
RECV_LINE = f"\r\n{H_RECV}:".encode()

# delivered subject -> (raw subject, its route or why it has none, owned by this partition)
_Entry = tuple[str, Route | str, bool]


def _replayed_seq(m: Msg, default: int) -> int:
    value = (m.headers or {}).get(subjects.H_REPLAY_SEQ, "")
    return int(value) if value.isdigit() else default


class PartitionConsumer(BatchConsumer):
    """A durable consumer with several filter subjects (one partition of RAW)."""

    def __init__(
        self, js: JetStreamContext, stream: str, cfg: ConsumerSettings, filters: list[str]
    ) -> None:
        super().__init__(js, stream, cfg)
        self.filters = filters

    def _config(self, start_seq: int | None, deliver_subject: str) -> ConsumerConfig:
        cfg = super()._config(start_seq, deliver_subject)
        cfg.filter_subjects = self.filters
        return cfg


def raw_consumer(js: JetStreamContext, cfg: NormalizerSettings) -> tuple[BatchConsumer, str]:
    """RAW consumer of this instance and the subject suffix of the frames it publishes for
    ("" = all). Partitioned (docs/scaling.md): its own partition, plus the venue-wide
    frames of the others, which it parses only to keep parser state (e.g. contract sizes)."""
    if cfg.replay_name:
        # re-normalization: frames replayed under replay.<name>.raw.> into that replay's stream
        durable = msgspec.structs.replace(cfg.consumer, durable=f"renormalize-{cfg.replay_name}")
        raw_all = subjects.replay(cfg.replay_name, subjects.RAW_ALL)
        return BatchConsumer(js, replay_stream(cfg.replay_name), durable, raw_all), ""
    if cfg.partitions <= 1:
        return BatchConsumer(js, STREAM_RAW, cfg.consumer, subjects.RAW_ALL), ""
    consumer_cfg = msgspec.structs.replace(cfg.consumer, durable=cfg.partition_durable())
    filters = subjects.raw_partition_filters(cfg.partitions, cfg.partition)
    suffix = subjects.raw_partition_suffix(cfg.partitions, cfg.partition)
    return PartitionConsumer(js, STREAM_RAW, consumer_cfg, filters), suffix


class NormalizerWorker:
    def __init__(self, w: Worker, *, freeze_gc: bool = False) -> None:
        self.w = w
        self.freeze_gc = freeze_gc
        self.cfg = w.settings.normalizer
        self.core = Normalizer()
        self.consumer, self.own_suffix = raw_consumer(w.js, self.cfg)  # type: ignore[arg-type]
        # re-normalization writes everything under replay.<name>. into that replay's stream
        name = self.cfg.replay_name
        self.prefix = subjects.replay_prefix(name) if name else ""
        self.out_stream = replay_stream(name) if name else STREAM_MARKET
        self.totals: Counter[str] = Counter()
        self.frames = FrameStore(w.js)  # type: ignore[arg-type]
        self._entries: dict[str, _Entry] = {}
        # (confirmation of its outputs or None, its last raw message) per unacked batch
        self._inflight: deque[tuple[asyncio.Future[PubAck] | None, Delivery]] = deque()

    async def run(self) -> None:
        w = self.w
        backoff = 0.5
        while not w.stop.is_set():
            try:
                await self.consumer.start()
                break
            except Exception as exc:
                log.warning("cannot start consumer, retrying", extra={"error": repr(exc)})
                w.health.set("retrying", error=repr(exc))
                if await w.sleep(backoff):
                    return
                backoff = min(backoff * 2, 10.0)
        if self.freeze_gc:
            # Everything alive now (modules, parsers, their tables: ~200k objects with every
            # venue package imported) lives as long as the process: frozen, the cyclic GC's
            # full collections stop walking them. Measured on the bench's 200k-frame run:
            # GC time in the normalizer 0.21-0.33 s -> 0.09-0.14 s (one full collection
            # each, 1.5-1.7 s of CPU in all). Only in a process of its own: in a shared one
            # (tests) whatever cyclic garbage exists now would never be collected.
            gc.freeze()
            collect_young_every()  # ~255 young collections per 200k frames at Python's 700
        lag_task = asyncio.create_task(self._lag_loop())
        try:
            await self._loop()
            try:
                await self._settle(0)  # a clean stop acks what is confirmed
            except Exception as exc:
                log.warning("stopping with unconfirmed batches", extra={"error": repr(exc)})
        finally:
            lag_task.cancel()
            self._inflight.clear()  # unconfirmed: left unacked, redelivered on restart
            await self.consumer.stop()

    async def _loop(self) -> None:
        w = self.w
        w.health.set("ok", frames=0, published=0, dlq=0)
        backoff = 0.5
        while not w.stop.is_set():
            try:
                if self._inflight and not self.consumer.buffered:
                    # caught up: ack the batch in flight once confirmed, unless new frames
                    # arrive first (they are not kept waiting behind a round trip)
                    confirmed = self._inflight[-1][0]
                    if confirmed is not None:
                        await self.consumer.arrival_or(confirmed)
                    if not self.consumer.buffered:
                        await self._settle(0)
                msgs = await self.consumer.fetch()
                if not msgs:
                    continue
                await self.process(msgs)
                backoff = 0.5
            except Exception as exc:
                # Not acked: restart the consumer at its ack floor and go again.
                PUBLISH_FAILURES.inc()
                log.warning("batch not confirmed, redelivering", extra={"error": repr(exc)})
                w.health.set("degraded", error=repr(exc))
                if await w.sleep(backoff):
                    return
                backoff = min(backoff * 2, 10.0)
                if not await self._restart_consumer():
                    return

    async def _restart_consumer(self) -> bool:
        """Re-create the consumer at its ack floor, retrying while JetStream cannot (e.g.
        during a stream leader election in a cluster); False when asked to stop."""
        backoff = 0.5
        self._inflight.clear()  # unconfirmed batches: redelivered from the ack floor
        while True:
            try:
                await self.consumer.stop()
                await self.consumer.start()
                return True
            except Exception as exc:
                log.warning("consumer restart failed, retrying", extra={"error": repr(exc)})
            if await self.w.sleep(backoff):
                return False
            backoff = min(backoff * 2, 10.0)

    def _entry(self, delivered: str) -> _Entry:
        """The hot loop's view of a delivered subject, cached per subject."""
        subject = delivered[len(self.prefix) :]
        own = not self.own_suffix or subject.endswith(self.own_suffix)
        # an account's private frames (executor/venues/private): no market data, no dead letter
        own = own and not subject.startswith(subjects.RAW_PRIVATE_PREFIX)
        if len(self._entries) >= ROUTES_MAX:
            self._entries.clear()
        entry = self._entries[delivered] = (subject, self.core.route(subject), own)
        return entry

    async def process(self, msgs: list[Delivery]) -> None:
        """Normalize a batch, publish it, confirm it, then ack the raw batch.

        Each output is encoded into its HPUB command as soon as its frame is parsed (no
        list of outputs held to the end of the batch: fewer objects for the cyclic GC to
        walk, which costs the consumer's buffered messages dearly), and the batch goes
        out as one write (``streams.bus.wire``). The per-frame work (route, receive time,
        parse, dead letter) is ``core.Normalizer.frame``'s alone; here are only the
        transport's parts: the receive-time header read from the raw block, big frames
        fetched by reference, partition ownership, publishing and acks.
        """
        t0 = time.perf_counter()
        entries, entry_of = self._entries, self._entry
        frame, cut, pre = self.core.frame, len(self.prefix), self.prefix
        limit = self.w.nc.max_payload  # type: ignore[union-attr]
        parts: list[bytes] = []
        add = parts.append
        cap = 3 * BURST  # three parts per message
        dead: list[tuple[Dead, int]] = []
        last: Out | None = None
        sent = 0  # messages already published by bursts
        for m, seq in zip(msgs, self.consumer.seqs, strict=True):
            subject, route, own = entries.get(m.subject) or entry_of(m.subject)
            if cut:  # a replayed frame: its RAW sequence is part of some messages' identity
                seq = _replayed_seq(m, seq)
            try:
                ts_recv: int | None = m.int_header(RECV_LINE)  # no dict of every header
            except (KeyError, ValueError):
                try:
                    ts_recv = int(m.headers[H_RECV])  # type: ignore[index]
                except (TypeError, KeyError, ValueError):  # no headers / no such header / junk
                    ts_recv = None
            data = m.data
            if not data:  # a frame stored by reference (streams/bus/bigframes.py), or empty
                data, missing = await self._resolve(m)
                if missing:
                    if own:
                        dead.append((Dead(subject, data, missing, str(ts_recv or "")), seq))
                    continue
            res = frame(subject, route, data, ts_recv, seq, m)
            if not own:
                continue  # another partition's venue-wide frame: its owner publishes this
            if res.__class__ is not list:
                dead.append((res, seq))  # type: ignore[arg-type]
                continue
            for o in res:
                osubj, msg_id, data = o
                head, total = hpub_id(pre + osubj, msg_id, len(data))
                add(head)
                if total > limit:
                    raise MaxPayloadError  # as nc.publish would; nats-server drops the link
                add(data)
                add(CRLF)
                last = o
                if len(parts) >= cap:
                    # an acked publish inside long bursts (an instrument list can expand to
                    # thousands of messages) keeps the stream's ingest queue from
                    # overflowing: nats-server drops core publishes beyond it silently
                    await asyncio.wait_for(await self._send(parts, o), 5.0)
                    sent += BURST
                    parts.clear()
        published = sent + len(parts) // 3
        confirmed = await self._send(parts, last) if parts else None  # type: ignore[arg-type]
        await self._dead_letters(dead)
        # The raw batch is acked once its last output is confirmed; meanwhile the next
        # batch is parsed (this process's CPU) while nats-server stores this one (its own).
        await self._settle(1)
        self._inflight.append((confirmed, msgs[-1]))
        self._count(msgs)
        if published:
            OUT.labels("all").inc(published)
        self.totals.update(frames=len(msgs), published=published, dlq=len(dead))
        BATCH.observe(len(msgs))
        # one sample per batch (the newest frame) keeps this off the per-message path
        recv = (msgs[-1].headers or {}).get(H_RECV)
        if recv and recv.isdigit():
            LATENCY.observe(max(0.0, time.time_ns() - int(recv)) / 1e9)
        BATCH_SECONDS.observe(time.perf_counter() - t0)
        self.w.health.set("ok", **self.totals)

    async def _resolve(self, m: Delivery) -> tuple[bytes, str]:
        """(the frame, "") of a RAW message referencing JM_FRAMES, or (b"", why not) when
        the object is gone; an empty message without a reference stays empty (its parser
        says why). Other errors raise: the batch is redelivered."""
        ref = (m.headers or {}).get(H_FRAME_REF)
        if not ref:
            return m.data, ""
        try:
            return await self.frames.get(ref), ""
        except (ObjectNotFoundError, NotFoundError, BadObjectMetaError) as exc:
            return b"", f"frame stored by reference {ref!r} not found: {type(exc).__name__}"
        except RuntimeError as exc:  # corrupt object, bucket missing: redelivery cannot help
            return b"", f"frame stored by reference {ref!r} unreadable: {exc}"

    def _count(self, msgs: list[Msg]) -> None:
        # counted per distinct subject after the loop (Counter counts in C): a per-frame
        # venue split and counter update was ~10% of ``process`` in a profile
        per_venue: Counter[str] = Counter()
        entries, entry_of = self._entries, self._entry
        for delivered, n in Counter([m.subject for m in msgs]).items():
            _, route, own = entries.get(delivered) or entry_of(delivered)
            if own:
                per_venue[venue_of(route)] += n
        for venue, n in per_venue.items():
            FRAMES.labels(venue).inc(n)

    async def _settle(self, keep: int) -> None:
        """Ack raw batches, oldest first, until ``keep`` are in flight: each once the acked
        publish of its last output is confirmed (a batch that had no output: at once). A
        failed or late confirmation raises, and nothing from it on is acked."""
        inflight = self._inflight
        while len(inflight) > keep:
            confirmed, last_raw = inflight[0]
            if confirmed is not None:
                await asyncio.wait_for(confirmed, CONFIRM_TIMEOUT_S)
            inflight.popleft()
            await self.consumer.ack_through(last_raw)

    async def _send(self, parts: list[bytes], last: Out) -> asyncio.Future[PubAck]:
        """Core-publish ``parts`` but their final message (the three parts of ``last``),
        then ``last`` with an acked JetStream publish, whose confirmation is returned to
        await: NATS keeps per-connection order, so it proves the stream stored everything
        before it."""
        nc, js = self.w.nc, self.w.js
        assert nc is not None and js is not None
        del parts[-3:]
        if parts:
            await send_commands(nc, b"".join(parts))
        return await js.publish_async(
            self.prefix + last.subject,
            last.data,
            headers={subjects.H_MSG_ID: last.msg_id},
            stream=self.out_stream,
        )

    async def _dead_letters(self, dead: list[tuple[Dead, int]]) -> None:
        js = self.w.js
        assert js is not None
        for d, seq in dead:
            DLQ.labels(venue_of(self.core.route(d.subject))).inc()
            headers = {
                subjects.H_REASON: subjects.one_line(d.reason),
                subjects.H_SOURCE: d.subject,
                subjects.H_MSG_ID: f"normalizer:raw:{seq}",
            }
            if d.recv_ns:
                headers[subjects.H_RECV_NS] = subjects.one_line(d.recv_ns)
            # Dead letters are rare: one acked publish each keeps the code obvious.
            if self.prefix:  # re-normalization keeps its dead letters with its output
                await js.publish(self.prefix + DLQ_SUBJECT, d.data, headers=headers,
                                 stream=self.out_stream, timeout=10.0)  # fmt: skip
                continue
            await js.publish(DLQ_SUBJECT, d.data, headers=headers, stream=STREAM_DLQ, timeout=10.0)
        if dead:
            log.warning(
                "frames sent to dlq",
                extra={"count": len(dead), "first_reason": dead[0][0].reason[:200]},
            )

    async def _lag_loop(self) -> None:
        while not self.w.stop.is_set():
            try:
                lag = await self.consumer.lag()
                LAG.set(lag)
                self.w.health.set(lag=lag)
            except Exception:  # server briefly unavailable; the next poll will tell
                pass
            if await self.w.sleep(5.0):
                return


def _own_process() -> bool:
    """True in ``python -m normalizer`` (the worker's own process), not in tests or tools
    that run the worker beside other code."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    return getattr(spec, "name", "") == "normalizer.__main__"


async def main(w: Worker) -> None:
    await NormalizerWorker(w, freeze_gc=_own_process()).run()
