"""The throwaway nats-server a benchmark runs against: free loopback ports, its store and
its own generated credentials under ``tmp`` (never the checkout's ``var/nats``)."""

from __future__ import annotations

from pathlib import Path

from streams.bus.server import NatsServer, free_port
from streams.settings import NatsServerSettings


def temp_nats(tmp: Path) -> NatsServer:
    """A started nats-server with auth as in `make up`; its users' passwords are in
    ``tmp / "creds"`` (pass that as ``nats.credentials_dir``)."""
    return NatsServer(
        NatsServerSettings(port=free_port(), monitor_port=free_port(), store_dir=str(tmp / "nats")),
        log_file=tmp / "nats.log", credentials_dir=tmp / "creds",
    ).start()  # fmt: skip
