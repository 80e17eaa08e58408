"""WebSocket fan-out: one NATS subscription per subject pattern, shared by every client
that asked for it; each client has a bounded queue and its own sender.

The NATS callback only appends the message's line to each client's queue (no await, no
task, no decode): a slow client never slows the bus or the other clients. A client whose
queue is full is dropped with a reason (close code 4008 and a last ``{"error": ...}``
frame when it can still take one), and its queue is freed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from prometheus_client import Counter

log = logging.getLogger("api.hub")
SENT = Counter("jetmarket_api_ws_messages_total", "messages sent to WebSocket clients")
DROPPED = Counter("jetmarket_api_ws_dropped_total", "WebSocket clients dropped", ["reason"])
CLOSE_SLOW = 4008  # application close code: dropped because it could not keep up


class WsClient:
    """One WebSocket connection's queue. ``send`` writes one text frame."""

    def __init__(self, send: Callable[[str], Awaitable[None]], max_queue: int, batch: int):
        self.send = send
        self.max_queue = max_queue
        self.batch = batch
        self.queue: deque[bytes] = deque()
        self.ready = asyncio.Event()
        self.dropped: str = ""  # why it was dropped; "" while it is served
        self.patterns: set[str] = set()
        self.sent = 0
        # set on drop: the sender may be stuck writing to a client that does not read
        self.gone = asyncio.Event()

    def push(self, line: bytes) -> None:
        """From the NATS callback: never blocks."""
        if self.dropped:
            return
        if len(self.queue) >= self.max_queue:
            self.dropped = f"slow consumer: {len(self.queue)} messages queued (api.ws_queue)"
            self.queue.clear()
            self.gone.set()
            DROPPED.labels("slow").inc()
        else:
            self.queue.append(line)
        self.ready.set()

    async def pump(self) -> str:
        """Send queued lines, up to ``batch`` per frame (newline-separated JSON), until the
        client is dropped; returns the reason."""
        while True:
            await self.ready.wait()
            self.ready.clear()
            while self.queue and not self.dropped:
                n = min(len(self.queue), self.batch)
                lines = [self.queue.popleft() for _ in range(n)]
                await self.send(b"\n".join(lines).decode())
                self.sent += n
                SENT.inc(n)
            if self.dropped:
                return self.dropped


def line(subject: str, data: bytes) -> bytes:
    """``{"subject": ..., "data": <the message's JSON as published>}``: no re-encoding."""
    return b'{"subject":"' + subject.encode() + b'","data":' + (data or b"null") + b"}"


class Hub:
    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.subs: dict[str, tuple[Subscription, set[WsClient]]] = {}
        self.lock = asyncio.Lock()

    async def add(self, client: WsClient, pattern: str) -> None:
        async with self.lock:
            if pattern not in self.subs:
                clients: set[WsClient] = set()

                async def on_msg(msg: Msg, clients: set[WsClient] = clients) -> None:
                    text = line(msg.subject, msg.data)
                    for c in list(clients):
                        c.push(text)

                # generous pending limits: the callback is cheap, a burst must not be cut
                sub = await self.nc.subscribe(
                    pattern, cb=on_msg, pending_msgs_limit=1_000_000,
                    pending_bytes_limit=512 * 1024 * 1024,
                )  # fmt: skip
                self.subs[pattern] = (sub, clients)
            self.subs[pattern][1].add(client)
            client.patterns.add(pattern)

    async def remove(self, client: WsClient, pattern: str | None = None) -> None:
        async with self.lock:
            for p in [pattern] if pattern else list(client.patterns):
                client.patterns.discard(p)
                entry = self.subs.get(p)
                if entry is None:
                    continue
                entry[1].discard(client)
                if not entry[1]:
                    del self.subs[p]
                    with contextlib.suppress(Exception):
                        await entry[0].unsubscribe()

    def clients(self) -> int:
        return len({c for _, cs in self.subs.values() for c in cs})
