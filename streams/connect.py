"""One way to connect to NATS, shared by every worker."""

from __future__ import annotations

import logging
import ssl
from typing import Any

import nats
from nats.aio.client import Client

from streams import natsheaders, secrets
from streams.settings import NatsSettings

log = logging.getLogger("streams.connect")


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
            opts["password"] = secrets.read_file(cfg.password_file)
    if cfg.creds_file:
        opts["user_credentials"] = cfg.creds_file
    if cfg.tls_ca:
        # verify the server against our CA; a client certificate when the server asks for one
        tls = ssl.create_default_context(cafile=cfg.tls_ca)
        if cfg.tls_cert and cfg.tls_key:
            tls.load_cert_chain(cfg.tls_cert, cfg.tls_key)
        opts["tls"] = tls
        opts["tls_hostname"] = cfg.tls_hostname or None
    opts.update(extra)
    nc = await nats.connect(**opts)
    natsheaders.install(nc)
    return nc
