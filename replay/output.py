"""Putting replayed messages back on the bus.

Core publishes, as the collectors and the normalizer do, because an acked publish per
message runs at a quarter of the speed (ARCHITECTURE.md). Into a stream, every
``BURST``-th message and the last one are published with an acked JetStream publish:
NATS keeps one connection's order, so that ack proves everything before it was stored,
and the server's ingest queue never overflows (it drops core publishes past it silently).
"""

from __future__ import annotations

from nats.aio.client import Client
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from replay.model import ReplayMsg
from streams import subjects
from streams.provision import replay_stream

BURST = 4000
# Stored with a message that was published with expectations (``js.publish(stream=...)``
# sets Nats-Expected-Stream): sent again they would make the server refuse the copy, and a
# refused core publish is dropped without a word.
EXPECT_HEADERS = (
    "Nats-Expected-Stream",
    "Nats-Expected-Last-Sequence",
    "Nats-Expected-Last-Subject-Sequence",
    "Nats-Expected-Last-Msg-Id",
)


async def ensure_stream(nc: Client, name: str, *, max_age_s: float = 7 * 86400) -> str:
    """Create the stream for ``replay.<name>.>`` (file storage, dedup by Nats-Msg-Id as in
    MARKET); fails if it already holds messages, so a prefix is always fresh."""
    js = nc.jetstream(timeout=10.0)
    stream = replay_stream(name)
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=stream,
                subjects=[subjects.replay_prefix(name) + ">"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                max_age=max_age_s,
                duplicate_window=120.0,
            )
        )
        return stream
    if info.state.messages:
        raise RuntimeError(
            f"stream {stream} already holds {info.state.messages} messages: "
            f"choose a fresh name (or delete it: nats stream rm {stream})"
        )
    return stream


class Republisher:
    """``prefix + original subject``; headers kept, plus the original sequence."""

    def __init__(
        self,
        nc: Client,
        prefix: str,
        *,
        stream: str | None = None,
        add_seq: bool = True,
        keep_msg_id: bool = True,
        acked: bool = False,
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=10.0)
        self.prefix = prefix
        self.stream = stream
        # confirm in bursts: into ``stream``, or (acked) into whichever stream holds each subject
        self.acked = acked or stream is not None
        self.add_seq = add_seq
        # without: raw frames and the market messages made from them share one stream's
        # dedup window in re-normalization, and an id may well be spelled the same
        self.drop = EXPECT_HEADERS if keep_msg_id else (*EXPECT_HEADERS, subjects.H_MSG_ID)
        self.sent = 0
        self.last_seq = 0  # stream sequence of the last message, once confirmed
        self._held: tuple[str, bytes, dict[str, str] | None] | None = None

    def _wire(self, m: ReplayMsg) -> tuple[str, bytes, dict[str, str] | None]:
        headers = dict(m.headers) if m.headers else {}
        for k in self.drop:
            headers.pop(k, None)
        if self.add_seq:
            headers[subjects.H_REPLAY_SEQ] = str(m.seq)
        return self.prefix + m.subject, m.data, headers or None

    async def send(self, msgs: list[ReplayMsg]) -> None:
        publish = self.nc.publish
        for m in msgs:
            held = self._held
            self._held = self._wire(m)
            if held is None:
                continue
            self.sent += 1
            subject, data, headers = held
            if self.acked and self.sent % BURST == 0:
                await self.js.publish(subject, data, headers=headers, stream=self.stream)
            else:
                await publish(subject, data, headers=headers)

    async def close(self) -> None:
        """Send the held message and confirm: acked into a stream, else a flush."""
        held, self._held = self._held, None
        if held is not None:
            self.sent += 1
            subject, data, headers = held
            if self.acked:
                ack = await self.js.publish(subject, data, headers=headers, stream=self.stream)
                self.last_seq = ack.seq
            else:
                await self.nc.publish(subject, data, headers=headers)
        await self.nc.flush(timeout=30)
