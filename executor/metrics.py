"""Executor metrics (documented in docs/metrics.md). Commands are a low-rate path, so
counters move per command; market data never touches a metric."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

COMMANDS = Counter(
    "jetmarket_executor_commands_total", "order commands handled",
    ["account", "action", "result"],
)  # fmt: skip
COMMAND_SECONDS = Histogram(
    "jetmarket_executor_command_seconds", "command received to answer (checks + venue)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
)  # fmt: skip
RISK_REJECTS = Counter(
    "jetmarket_executor_risk_rejections_total", "new orders refused by risk checks", ["account"]
)
FILLS = Counter("jetmarket_executor_fills_total", "fills recorded", ["account"])
OPEN = Gauge("jetmarket_executor_open_orders", "orders not yet in a final state", ["account"])
UNKNOWN = Counter(
    "jetmarket_executor_unknown_total", "submissions whose outcome was unknown", ["account"]
)
STALE = Counter(
    "jetmarket_executor_stale_reports_total",
    "venue reports ignored because they would move an order backwards", ["account"],
)  # fmt: skip
DLQ = Counter("jetmarket_executor_dlq_total", "commands sent to dlq.executor", [])
RECORD_FAILURES = Counter(
    "jetmarket_executor_record_failures_total",
    "request-path commands whose record on exec.cmd was not stored", [],
)  # fmt: skip
ADOPTED = Counter(
    "jetmarket_executor_adopted_orders_total",
    "venue orders under our client-id prefix that reconciliation found unrecorded and adopted",
    ["account"],
)  # fmt: skip
FOREIGN = Gauge(
    "jetmarket_executor_foreign_orders",
    "orders at the venue with another client's id, seen by reconciliation and left alone",
    ["account"],
)  # fmt: skip
# live account streams and account truth (executor/venues/private)
PRIVATE_FRAMES = Counter(
    "jetmarket_executor_private_frames_total", "private (account) frames received", ["account"]
)
PRIVATE_DROPS = Counter(
    "jetmarket_executor_private_disconnects_total",
    "private stream connections lost (each is reconciled by polling)", ["account"],
)  # fmt: skip
PRIVATE_UP = Gauge(
    "jetmarket_executor_private_up", "1 while the account's private stream is connected",
    ["account"],
)  # fmt: skip
DRIFT = Gauge(
    "jetmarket_executor_account_drift", "venue minus ours, last comparison (balance or position)",
    ["account", "kind", "name"],
)  # fmt: skip
DRIFT_EVENTS = Counter(
    "jetmarket_executor_account_drift_events_total", "drifts beyond tolerance", ["account", "kind"]
)
