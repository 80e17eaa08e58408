"""The collector's Prometheus metrics (one registry per process, shared by every venue)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

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
