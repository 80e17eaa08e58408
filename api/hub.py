"""WebSocket fan-out: one NATS subscription per subject pattern (a topic), shared by every
client that asked for it.

Each topic keeps one log of the lines it received; each client only holds a cursor into
the logs of its topics. So a NATS message costs one append whatever the number of clients
(no await, no task, no decode, no per-client work), and each client's sender reads up to
``batch`` lines per WebSocket frame from where its cursor stands. Clients are woken once
per event-loop pass, not once per message. A client more than ``max_queue`` lines behind on
a topic is dropped with a reason (close code 4008 and a last ``{"error": ...}`` frame when
it can still take one): a slow client never slows the bus or the other clients, and the
logs never grow past twice ``max_queue``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from prometheus_client import Counter

log = logging.getLogger("api.hub")
SENT = Counter("jetmarket_api_ws_messages_total", "messages sent to WebSocket clients")
DROPPED = Counter("jetmarket_api_ws_dropped_total", "WebSocket clients dropped", ["reason"])
CLOSE_SLOW = 4008  # application close code: dropped because it could not keep up


def line(subject: str, data: bytes) -> bytes:
    """``{"subject": ..., "data": <the message's JSON as published>}``: no re-encoding."""
    return b'{"subject":"' + subject.encode() + b'","data":' + (data or b"null") + b"}"


class Topic:
    """One pattern's lines: ``log[i]`` is line number ``base + i``."""

    def __init__(self, pattern: str, keep: int) -> None:
        self.pattern = pattern
        self.keep = keep
        self.log: list[bytes] = []
        self.base = 0
        self.clients: set[WsClient] = set()
        self.sub: Subscription | None = None
        self._wake_pending = False

    @property
    def head(self) -> int:
        return self.base + len(self.log)

    def append(self, text: bytes) -> None:
        self.log.append(text)
        if len(self.log) > 2 * self.keep:  # amortised: one slice per ``keep`` lines
            cut = len(self.log) - self.keep
            del self.log[:cut]
            self.base += cut
        if not self._wake_pending:
            self._wake_pending = True
            asyncio.get_running_loop().call_soon(self._wake)

    def _wake(self) -> None:
        self._wake_pending = False
        head = self.head
        for c in list(self.clients):
            cur = c.cursors.get(self)
            if cur is None:
                continue
            if head - cur > c.max_queue or cur < self.base:
                c.drop(f"slow consumer: {head - cur} messages behind on {self.pattern} "
                       "(api.ws_queue)")  # fmt: skip
            else:
                c.ready.set()


class WsClient:
    """One WebSocket connection: a cursor per topic. ``send`` writes one text frame."""

    def __init__(self, send: Callable[[str], Awaitable[None]], max_queue: int, batch: int):
        self.send = send
        self.max_queue = max_queue
        self.batch = batch
        self.cursors: dict[Topic, int] = {}
        self.ready = asyncio.Event()
        self.dropped: str = ""  # why it was dropped; "" while it is served
        # set on drop: the sender may be stuck writing to a client that does not read
        self.gone = asyncio.Event()
        self.sent = 0

    @property
    def patterns(self) -> set[str]:
        return {t.pattern for t in self.cursors}

    def drop(self, reason: str) -> None:
        if not self.dropped:
            self.dropped = reason
            DROPPED.labels("slow").inc()
            self.gone.set()
            self.ready.set()

    async def pump(self) -> str:
        """Send what the topics hold past each cursor, up to ``batch`` lines per frame
        (newline-separated JSON), until the client is dropped; returns the reason."""
        while True:
            await self.ready.wait()
            self.ready.clear()
            while not self.dropped:
                lines: list[bytes] = []
                for topic, cur in list(self.cursors.items()):
                    if cur < topic.base:
                        self.drop(f"slow consumer: fell behind on {topic.pattern} (api.ws_queue)")
                        break
                    room = self.batch - len(lines)
                    if room <= 0:
                        break
                    start = cur - topic.base
                    got = topic.log[start : start + room]
                    if got:
                        lines += got
                        self.cursors[topic] = cur + len(got)
                if not lines or self.dropped:
                    break
                await self.send(b"\n".join(lines).decode())
                self.sent += len(lines)
                SENT.inc(len(lines))
            if self.dropped:
                return self.dropped


class Hub:
    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.topics: dict[str, Topic] = {}
        self.lock = asyncio.Lock()

    async def add(self, client: WsClient, pattern: str) -> None:
        async with self.lock:
            topic = self.topics.get(pattern)
            if topic is None:
                topic = Topic(pattern, keep=max(client.max_queue, 1))

                async def on_msg(msg: Msg, topic: Topic = topic) -> None:
                    topic.append(line(msg.subject, msg.data))

                # generous pending limits: the callback is cheap, a burst must not be cut
                topic.sub = await self.nc.subscribe(
                    pattern, cb=on_msg, pending_msgs_limit=1_000_000,
                    pending_bytes_limit=512 * 1024 * 1024,
                )  # fmt: skip
                self.topics[pattern] = topic
            topic.keep = max(topic.keep, client.max_queue)
            topic.clients.add(client)
            client.cursors.setdefault(topic, topic.head)  # from now on

    async def remove(self, client: WsClient, pattern: str | None = None) -> None:
        async with self.lock:
            for p in [pattern] if pattern else list(client.patterns):
                topic = self.topics.get(p)
                if topic is None:
                    continue
                client.cursors.pop(topic, None)
                topic.clients.discard(client)
                if not topic.clients:
                    del self.topics[p]
                    if topic.sub is not None:
                        with contextlib.suppress(Exception):
                            await topic.sub.unsubscribe()

    def clients(self) -> int:
        return len({c for t in self.topics.values() for c in t.clients})
