"""One way to connect to NATS, shared by every worker."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from streams.settings import NatsSettings

log = logging.getLogger("streams.connect")


def _secret(path: str) -> str:
    p = Path(path)
    if p.stat().st_mode & 0o077:
        raise PermissionError(f"{p}: secrets file must not be readable by group/others (chmod 600)")
    return p.read_text().strip()


async def connect(cfg: NatsSettings, name: str, **extra: Any) -> Client:
    """Connect with unlimited reconnects; errors are logged once per event, not per attempt."""

    # nats-py calls error_cb on every failed reconnect attempt; one line per outage is enough.
    last_error: list[str] = []

    async def on_error(exc: Exception) -> None:
        text = repr(exc)
        if last_error != [text]:
            last_error[:] = [text]
            log.warning("nats error (repeats suppressed)", extra={"client": name, "error": text})

    async def on_disconnect() -> None:
        log.warning("nats disconnected", extra={"client": name})

    async def on_reconnect() -> None:
        last_error.clear()
        log.info("nats reconnected", extra={"client": name})

    opts: dict[str, Any] = {
        "servers": [u.strip() for u in cfg.url.split(",")],
        "name": name,
        "connect_timeout": cfg.connect_timeout_s,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "error_cb": on_error,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": on_reconnect,
        "pending_size": 64 * 1024 * 1024,
        "flusher_queue_size": 4096,
    }
    if cfg.user:
        opts["user"] = cfg.user
        if cfg.password_file:
            opts["password"] = _secret(cfg.password_file)
    if cfg.creds_file:
        opts["user_credentials"] = cfg.creds_file
    opts.update(extra)
    return await nats.connect(**opts)
