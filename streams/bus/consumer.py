"""Durable consumers that deliver batches and resume in stream order after a crash.

Workers process one batch at a time and ack the batch's last message (AckAll).

Delivery is push, into a callback that only appends to a buffer; ``fetch()`` hands out
what has arrived. Measured on these machines with 100k stored messages: a pull
``fetch(5000)`` loop drains ~68k msg/s, because nats-py waits for every message of a
pull batch with its own ``wait_for`` (a task per message); the push callback drains
~287k msg/s. The messages reach the callback straight from the client's read loop
(streams/bus/delivery.py: no queue, no task, headers parsed when read), so the consumer has
no flow control or heartbeats; in-flight data stays bounded by ``max_ack_pending``.

After a kill -9, JetStream would redeliver the unacked tail only after ``ack_wait`` and
meanwhile hand out newer messages, breaking per-subject order and the sink's per-table
high-water mark. So every start re-creates the durable consumer at its own ack floor
(+1) with a fresh deliver subject: delivery resumes exactly after the last durable
batch, in order, and downstream dedup (Nats-Msg-Id, stream-sequence watermarks) absorbs
the part of the tail that had already been written. One process per durable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import (
    ConnectionClosedError,
    ConnectionDrainingError,
    MaxPayloadError,
    OutboundBufferLimitError,
)
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from streams.bus import delivery, wire
from streams.bus.delivery import Delivery
from streams.settings import ConsumerSettings

log = logging.getLogger("streams.bus.consumer")


@dataclass(eq=False)  # eq=False: a consumer is itself, compared and hashed by identity
class PushConsumer:
    """What ``BatchConsumer`` and ``SharedConsumer`` (streams/bus/shared_consumer.py) share:
    a durable push consumer on ``stream`` whose deliveries go straight to ``_on_msg``
    (streams/bus/delivery.py) and wait in a buffer for ``fetch()``."""

    # appended to ``cfg.durable``: a kind of consumer whose config differs keeps its own
    # durable, so two kinds are never bound to one durable at the same time
    durable_suffix: ClassVar[str] = ""

    js: JetStreamContext
    stream: str
    cfg: ConsumerSettings
    filter_subject: str | None = None

    def __post_init__(self) -> None:
        self.durable = self.cfg.durable + self.durable_suffix
        self.max_ack_pending = max(self.cfg.batch * 4, 10_000)
        self._sub: Any = None
        self._buffer: list[Delivery] = []
        self._seqs: list[int] = []  # stream sequence of each buffered message
        # stream sequences of the batch the last fetch() returned, in the same order: read
        # once on arrival (the redelivery check needs it) instead of again by every worker
        self.seqs: list[int] = []
        self._arrived = asyncio.Event()

    def _consumer_config(
        self, start_seq: int | None, deliver_subject: str, ack_policy: AckPolicy, **extra: Any
    ) -> ConsumerConfig:
        """The durable's config: never gives up redelivering (``max_deliver=-1``), starts at
        ``start_seq`` (all of the stream when None); ``extra`` adds the caller's own fields."""
        return ConsumerConfig(
            durable_name=self.durable,
            deliver_subject=deliver_subject,
            ack_policy=ack_policy,
            ack_wait=self.cfg.ack_wait_s,
            max_ack_pending=self.max_ack_pending,
            max_deliver=-1,
            filter_subject=self.filter_subject,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start_seq else DeliverPolicy.ALL,
            opt_start_seq=start_seq,
            **extra,
        )

    async def lag(self) -> int:
        info = await self.js.consumer_info(self.stream, self.durable)
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def _unsubscribe(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            delivery.detach(self.js._nc, sub._id)
            try:
                await sub.unsubscribe()
            except Exception:  # connection already closing
                pass


class BatchConsumer(PushConsumer):
    _high = 0  # highest stream sequence handed to this process since start()
    # Where the durable resumes, kept across a start() that deleted it and then failed
    # to re-add it (a cluster mid-election): the next start() must not begin at seq 1.
    _resume: int | None = None

    def _config(self, start_seq: int | None, deliver_subject: str) -> ConsumerConfig:
        return self._consumer_config(start_seq, deliver_subject, AckPolicy.ALL)

    def _on_msg(self, msg: Delivery) -> None:
        seq = stream_seq(msg)
        if seq <= self._high:
            # A redelivery after ack_wait of a message this process already holds (e.g.
            # while the worker retries a failing insert): the original is still being
            # handled, and AckAll of a later message covers this copy.
            return
        self._high = seq
        self._buffer.append(msg)
        self._seqs.append(seq)
        self._arrived.set()

    async def start(self) -> None:
        durable = self.durable
        start_seq = None
        try:
            info = await self.js.consumer_info(self.stream, durable)
        except NotFoundError:
            start_seq = self._resume
        else:
            floor = info.ack_floor.stream_seq if info.ack_floor else 0
            start_seq = floor + 1 if floor else None
            self._resume = start_seq
            await self.js.delete_consumer(self.stream, durable)
        nc = self.js._nc
        deliver = nc.new_inbox()
        cfg = self._config(start_seq, deliver)
        await self._unsubscribe()
        self._buffer = []
        self._seqs = []
        self.seqs = []
        self._high = 0
        self._arrived.clear()
        # subscribed before the consumer exists, so its first push has somewhere to go
        self._sub = await nc.subscribe(deliver, cb=status_only)
        delivery.attach(nc, self._sub._id, self._on_msg)
        await self.js.add_consumer(self.stream, cfg)
        if start_seq:
            log.info(
                "consumer resumed at ack floor",
                extra={"stream": self.stream, "durable": durable, "from_seq": start_seq},
            )

    @property
    def buffered(self) -> int:
        """Messages delivered and not yet fetched."""
        return len(self._buffer)

    async def arrival_or(self, other: asyncio.Future[object]) -> None:
        """Wait until a message is buffered or ``other`` is done, whichever comes first."""
        if self._buffer or other.done():
            return
        self._arrived.clear()
        arrived = asyncio.ensure_future(self._arrived.wait())
        try:
            await asyncio.wait((arrived, other), return_when=asyncio.FIRST_COMPLETED)
        finally:
            arrived.cancel()

    async def fetch(self, batch: int | None = None, timeout: float | None = None) -> list[Delivery]:
        """Up to ``batch`` delivered messages, waiting up to ``timeout`` for the first."""
        assert self._sub is not None, "start() first"
        if not self._buffer:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout or self.cfg.fetch_timeout_s)
            except TimeoutError:
                self.seqs = []
                return []
        n = batch or self.cfg.batch
        if len(self._buffer) <= n:  # the common case: hand over the lists, no copies
            out, self._buffer = self._buffer, []
            self.seqs, self._seqs = self._seqs, []
            return out
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        self.seqs, self._seqs = self._seqs[:n], self._seqs[n:]
        return out

    async def ack_through(self, last: Msg) -> None:
        """AckAll: acknowledges ``last`` and everything delivered before it.

        Sent without waiting for the server's reply: callers ack only what is already
        durable downstream, a lost ack means a redelivery that downstream dedup absorbs
        (the same outcome a timed-out ``ack_sync`` had), and the round trip it saved is
        one of two per batch on the latency path (recv -> market p99 in ``make bench``).
        Later requests on this connection (``lag()``, consumer re-creation) reach the
        server after the ack, so they see it."""
        try:
            await last.ack()
        except NatsError as exc:
            # closing, or no reply subject: the batch is durable; a redelivery is deduplicated
            log.warning("ack not sent", extra={"durable": self.durable, "error": repr(exc)})

    async def stop(self) -> None:
        await self._unsubscribe()


async def status_only(msg: Msg) -> None:
    """What nats-py still delivers on a consumer's subscription: status messages only."""


def stream_seq(msg: Msg) -> int:
    """The message's stream sequence, read straight from its ack subject: nats-py's
    ``msg.metadata`` builds several objects per call and showed up at ~9% of the sink's
    CPU in a py-spy profile. ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>...`` (9
    tokens) or, with a domain and account hash, 12+ tokens with sseq at index 7."""
    tokens = msg.reply.split(".")
    if len(tokens) >= 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
        try:
            return int(tokens[5] if len(tokens) == 9 else tokens[7])
        except ValueError:
            pass
    return int(msg.metadata.sequence.stream)


async def publish_batch(
    nc: Client, msgs: Sequence[tuple[str, str | None, bytes]], prefix: str = ""
) -> None:
    """Core-publish ``(subject, Nats-Msg-Id or None, payload)`` messages in order, as one
    write of protocol commands encoded by ``streams.bus.wire`` (why by hand: see there).
    Durability is still proven by the caller's acked publish after the batch on the same
    connection."""
    if not msgs:
        return
    limit = nc.max_payload
    parts: list[bytes] = []
    add = parts.append
    for subject, msg_id, data in msgs:
        size = len(data)
        if msg_id is None:
            add(wire.pub(prefix + subject, size))
            total = size
        else:
            head, total = wire.hpub_id(prefix + subject, msg_id, size)
            add(head)
        if total > limit:
            raise MaxPayloadError  # as nc.publish would; nats-server drops the link otherwise
        add(data)
        add(wire.CRLF)
    await send_commands(nc, b"".join(parts))


async def send_commands(nc: Client, blob: bytes) -> None:
    """Queue already-encoded PUB/HPUB commands as one write, with the checks ``nc.publish``
    makes first: closed or draining fails; while reconnecting the commands wait in nats-py's
    reconnect buffer, up to its limit (the whole write or nothing)."""
    if nc.is_closed:
        raise ConnectionClosedError
    if nc.is_draining_pubs:
        raise ConnectionDrainingError
    if not nc.is_connected:
        pending_max = nc._max_pending_size
        if pending_max <= 0 or len(blob) + nc._pending_data_size > pending_max:
            raise OutboundBufferLimitError
    await nc._send_command(blob)
    await nc._flush_pending()
