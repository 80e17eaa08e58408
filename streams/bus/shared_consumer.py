"""One durable consumer shared by several processes: a push consumer with a deliver group.

``BatchConsumer`` (streams/bus/consumer.py) is one process per durable: it re-creates the
durable at its ack floor on every start and acks with AckAll, which is what keeps
redelivery in order for the sink's per-table high-water mark. Several sink processes
cannot work that way (each start would delete the others' consumer, and AckAll of one
process would ack what another still holds). This consumer is for them:

- the durable is created once, with a fixed deliver subject and a deliver group; every
  instance binds to it with a queue subscription, and the server spreads messages across
  the group (``docs/scaling.md``);
- acks are explicit, one per message, sent in one write per batch;
- each message's delivery count comes with it (``delivered``), so the caller knows what
  may already have been handled by an instance that died before acking;
- ``progress()`` sends ``+WPI`` for everything held, so a batch waiting for a slow or
  failing insert is not handed to another instance after ``ack_wait``.

No flow control or idle heartbeats: nats-server refuses them on a consumer with a deliver
group. In-flight data stays bounded by ``max_ack_pending`` (shared by the group).
"""

from __future__ import annotations

import asyncio
import logging

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo
from nats.js.errors import NotFoundError

from streams.bus import delivery
from streams.bus.consumer import PushConsumer, publish_batch, status_only
from streams.bus.delivery import Delivery

log = logging.getLogger("streams.bus.shared_consumer")


def ack_position(reply: str) -> tuple[int, int]:
    """(stream sequence, delivery count) from a JetStream ack subject:
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`` or, with a
    domain and account hash, ``$JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>...``.
    Read by hand for the same reason as ``stream_seq``: ``msg.metadata`` is costly."""
    tokens = reply.split(".")
    if len(tokens) == 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
        return int(tokens[5]), int(tokens[4])
    if len(tokens) >= 12 and tokens[0] == "$JS" and tokens[1] == "ACK":
        return int(tokens[7]), int(tokens[6])
    raise ValueError(f"not a JetStream ack subject: {reply!r}")


class SharedConsumer(PushConsumer):
    """``fetch()`` hands out batches; ``seqs`` and ``delivered`` describe the last one."""

    # a separate durable from the single-process one: its config (explicit acks, a
    # deliver group) differs, and the two must never be bound at the same time
    durable_suffix = "-shared"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.deliver_subject = f"_INBOX.jm.{self.stream}.{self.durable}"
        self.metadata: dict[str, str] = {}
        self._delivered: list[int] = []
        self.delivered: list[int] = []
        # stream sequences this process holds (buffered or handed out, not yet acked): a
        # copy redelivered to this same process is dropped, not handled twice
        self._held: set[int] = set()

    def _config(self, start_seq: int | None, metadata: dict[str, str]) -> ConsumerConfig:
        return self._consumer_config(
            start_seq,
            self.deliver_subject,
            AckPolicy.EXPLICIT,
            deliver_group=self.durable,
            metadata=metadata or None,
        )

    async def _info(self) -> ConsumerInfo | None:
        try:
            return await self.js.consumer_info(self.stream, self.durable)
        except NotFoundError:
            return None

    async def start(
        self, start_seq: int | None = None, metadata: dict[str, str] | None = None
    ) -> bool:
        """Bind to the shared durable, creating it (at ``start_seq``, with ``metadata``) if
        no instance has yet. Returns whether this call created it. ``self.metadata`` is the
        durable's metadata as stored: the first creator's, whoever that was."""
        info = await self._info()
        created = False
        if info is None:
            try:
                info = await self.js.add_consumer(
                    self.stream, self._config(start_seq, metadata or {})
                )
                created = True
            except NatsError:
                # another instance created it first (with its own start point): use theirs
                info = await self._info()
                if info is None:
                    raise
        if info.config.deliver_group != self.durable:
            raise RuntimeError(
                f"consumer {self.stream}/{self.durable} exists without deliver group"
                f" {self.durable!r}: not created by a shared sink"
            )
        self.metadata = dict(info.config.metadata or {})
        if created:
            log.info(
                "shared consumer created",
                extra={"stream": self.stream, "durable": self.durable, "from_seq": start_seq},
            )
        self._buffer, self._seqs, self._delivered = [], [], []
        self.seqs, self.delivered = [], []
        self._held = set()
        self._arrived.clear()
        nc = self.js._nc
        # deliveries go straight to _on_msg (streams/bus/delivery.py), as for BatchConsumer;
        # what this process holds is bounded by max_ack_pending
        self._sub = await nc.subscribe(self.deliver_subject, queue=self.durable, cb=status_only)
        delivery.attach(nc, self._sub._id, self._on_msg)
        return created

    def _on_msg(self, msg: Delivery) -> None:
        if not msg.reply:
            return  # not a stream message (no heartbeats are configured; defensive)
        seq, delivered = ack_position(msg.reply)
        if seq in self._held:
            return  # ack_wait ran out while this process still holds it: one copy is enough
        self._held.add(seq)
        self._buffer.append(msg)
        self._seqs.append(seq)
        self._delivered.append(delivered)
        self._arrived.set()

    async def fetch(self, batch: int | None = None, timeout: float | None = None) -> list[Delivery]:
        """Up to ``batch`` delivered messages, waiting up to ``timeout`` for the first."""
        if not self._buffer:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout or self.cfg.fetch_timeout_s)
            except TimeoutError:
                self.seqs, self.delivered = [], []
                return []
        n = batch or self.cfg.batch
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        self.seqs, self._seqs = self._seqs[:n], self._seqs[n:]
        self.delivered, self._delivered = self._delivered[:n], self._delivered[n:]
        return out

    async def ack(self, msgs: list[Msg], seqs: list[int]) -> None:
        """Explicit acks for ``msgs``, one protocol write. Not awaited for a reply: a lost
        ack is a redelivery with ``delivered > 1``, which the caller checks."""
        try:
            await publish_batch(self.js._nc, [(m.reply, None, b"") for m in msgs])
        except NatsError as exc:
            log.warning("acks not sent", extra={"durable": self.durable, "error": repr(exc)})
        self._held.difference_update(seqs)

    async def progress(self, msgs: list[Msg]) -> None:
        """``+WPI`` for ``msgs`` and everything still buffered: restarts their ``ack_wait``."""
        held = [*msgs, *self._buffer]
        if held:
            try:
                await publish_batch(self.js._nc, [(m.reply, None, b"+WPI") for m in held])
            except NatsError:
                pass  # disconnected: the server redelivers after ack_wait; checked downstream

    async def stop(self) -> None:
        """Leave the group; the durable stays for the other instances."""
        await self._unsubscribe()
