"""One way to connect to NATS, shared by every worker."""

from __future__ import annotations

import logging
import ssl
from typing import Any

import nats
from nats.aio.client import Client

from streams.bus import auth as natsauth
from streams.bus import headers as natsheaders
from streams.bus import secrets
from streams.settings import NatsSettings

log = logging.getLogger("streams.bus.connect")

# Client names that are not a role themselves: the CLI's commands and tools.
ALIASES = {
    "status": "reader", "book": "reader", "sql": "reader", "demo": "reader",
    "provision": "admin", "backtest": "admin", "renormalize": "admin",
    "replay": "replay", "record": "replay", "backfill": "collector",
    "bench": "admin",  # make bench starts its own server and provisions it
}  # fmt: skip


def role_of(cfg: NatsSettings, name: str, role: str | None = None) -> str:
    """Which identity a client named ``name`` connects as (see NatsSettings)."""
    if role:
        return role
    if cfg.role:
        return cfg.role
    head = name.split(":")[0]
    if head in natsauth.ROLES or head.startswith("trader-"):
        return head
    alias = ALIASES.get(head.split("-")[0])
    if alias:
        return alias
    if cfg.default_role:
        return cfg.default_role
    raise natsauth.CredentialsError(
        f"NATS client {name!r} has no role: pass role=, or set nats.role or nats.user"
    )


def credentials(cfg: NatsSettings, name: str, role: str | None = None) -> dict[str, Any]:
    """user/password (or JWT creds) options for nats.connect; {} for an open server
    (``credentials_dir = ""`` and no user)."""
    if cfg.user:
        opts: dict[str, Any] = {"user": cfg.user}
        if cfg.password_file:
            opts["password"] = secrets.read_file(cfg.password_file)
        return opts
    if cfg.creds_file:
        return {"user_credentials": cfg.creds_file}
    if not cfg.credentials_dir:
        return {}
    who = role_of(cfg, name, role)
    path = natsauth.password_file(cfg.credentials_dir, who)
    return {"user": who, "password": secrets.read_file(path),
            "inbox_prefix": natsauth.inbox_prefix(who)}  # fmt: skip


async def connect(cfg: NatsSettings, name: str, *, role: str | None = None, **extra: Any) -> Client:
    """Connect with unlimited reconnects; errors are logged once per event, not per attempt.
    The identity: see :func:`credentials` (a missing credentials file fails here, in one
    line, before any connection attempt)."""
    auth = credentials(cfg, name, role)

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
    opts.update(auth)
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
