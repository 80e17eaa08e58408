"""Venue-agnostic collector parts: reconnect backoff, connection ids, raw publishing.

Raw frames are published with core NATS publishes (a JetStream ack per frame would cap a
collector at the ~28k msg/s of acked publishes); every ``flush_every`` frames, and at
least once a second while frames flow, one frame goes out as an acked JetStream publish.
NATS keeps per-connection order, so that ack proves the stream stored everything before
it; a failed ack shows up in health within a second instead of never.
"""

from __future__ import annotations

import logging
import os
import random
import time

from nats.aio.client import Client
from nats.js import JetStreamContext
from prometheus_client import Counter

from streams import subjects
from streams.provision import STREAM_RAW
from streams.settings import ReconnectSettings

log = logging.getLogger("collectors")

FRAMES = Counter("jetmarket_collector_frames_total", "raw frames published", ["venue", "channel"])
RECONNECTS = Counter(
    "jetmarket_collector_reconnects_total", "WebSocket (re)connections lost", ["venue", "reason"]
)
REST = Counter(
    "jetmarket_collector_rest_requests_total", "REST requests", ["venue", "endpoint", "status"]
)
BARRIER_FAILURES = Counter(
    "jetmarket_collector_unconfirmed_total", "acked raw publishes that failed", ["venue"]
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


class RawPublisher:
    """Core publishes of raw frames with an acked barrier every ``flush_every`` frames or
    second; ``durable=True`` makes one publish acked (snapshots, conn events, the last)."""

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        venue: str,
        flush_every: int,
        ack_timeout_s: float = 5.0,
    ) -> None:
        self.nc = nc
        self.js = js
        self.venue = venue
        self.flush_every = flush_every
        self.since_barrier = 0
        self.last_barrier = time.monotonic()
        self.published = 0
        self.counts: dict[str, int] = {}
        self.unconfirmed = False
        self.confirmed = 0  # frames known stored (all published before the last good ack)
        self.ack_timeout_s = ack_timeout_s

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
    ) -> None:
        subject = subjects.raw(self.venue, channel, native_symbol)
        headers = {subjects.H_RECV_NS: str(recv_ns), subjects.H_CONN: conn}
        if msg_id:
            headers[subjects.H_MSG_ID] = msg_id
        self.published += 1
        self.counts[channel] = self.counts.get(channel, 0) + 1
        self.since_barrier += 1
        if (
            durable
            or self.since_barrier >= self.flush_every
            or time.monotonic() - self.last_barrier >= 1.0
        ):
            await self._acked(subject, data, headers)
        else:
            await self.nc.publish(subject, data, headers=headers)

    def nats_epoch(self) -> int:
        """Changes whenever the NATS client reconnected. The acked barrier proves only what
        was sent on the current server connection: frames written to a socket that then
        died are lost without an error, so a collector ends its venue connection on a
        change (the "disconnected" event marks the gap and the book is resynced)."""
        return int(self.nc.stats["reconnects"])

    async def _acked(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        # The counters restart whether or not the ack came: after a failure the next barrier
        # is again flush_every frames or a second away, so an outage costs one timeout per
        # second rather than one per frame.
        self.since_barrier = 0
        try:
            await self.js.publish(
                subject, data, headers=headers, stream=STREAM_RAW, timeout=self.ack_timeout_s
            )
        except Exception as exc:
            BARRIER_FAILURES.labels(self.venue).inc()
            if not self.unconfirmed:  # one line per outage, not per barrier
                log.warning(
                    "raw publish not confirmed by JetStream; frames are buffered by the client",
                    extra={"venue": self.venue, "error": repr(exc)},
                )
            self.unconfirmed = True
        else:
            if self.unconfirmed:
                log.info("raw publishes confirmed again", extra={"venue": self.venue})
            self.unconfirmed = False
            self.confirmed = self.published
        finally:
            self.last_barrier = time.monotonic()

    def flush_metrics(self) -> None:
        for channel, n in self.counts.items():
            FRAMES.labels(self.venue, channel).inc(n)
        self.counts.clear()
