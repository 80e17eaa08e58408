"""One way to connect to NATS, shared by every worker."""

from __future__ import annotations

import logging
import ssl
from typing import Any

import nats
from nats.aio.client import Client
from nats.errors import NoServersError

from streams.bus import auth as natsauth
from streams.bus import headers as natsheaders
from streams.bus import secrets
from streams.settings import NatsSettings

log = logging.getLogger("streams.bus.connect")


class NatsUnreachable(ConnectionError):
    """A command could not reach NATS; the message is one line saying what to start."""


def unreachable_hint(url: str) -> str:
    """The one line a command prints when nothing answers at ``url``."""
    local = any(h in url for h in ("127.0.0.1", "localhost", "[::1]"))
    start = "start the pipeline with `make up` (or `jetmarket up`)" if local else "check nats.url"
    return f"nothing answers at {url}: {start}"


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
    line, before any connection attempt).

    ``max_reconnect_attempts=0`` (what commands pass) means fail fast: nats-py itself reads
    0 as "forever" for the first connection, so it becomes one retry, and a server that
    does not answer raises :class:`NatsUnreachable` (one line, nothing logged) within about
    a second instead of hanging. Once connected, reconnects are unlimited as before."""
    auth = credentials(cfg, name, role)
    fail_fast = extra.get("max_reconnect_attempts") == 0
    if fail_fast:
        extra["max_reconnect_attempts"] = 1

    # nats-py calls error_cb on every failed reconnect attempt; one line per outage is enough.
    last_error: list[str] = []
    connected: list[Client] = []  # the client, once the first connection is up

    async def on_error(exc: Exception) -> None:
        if fail_fast and not connected:
            return  # the caller gets NatsUnreachable: one line, not a warning per attempt
        text = repr(exc)
        if last_error != [text]:
            last_error[:] = [text]
            log.warning("nats error (repeats suppressed)", extra={"client": name, "error": text})

    async def on_disconnect() -> None:
        # nats-py calls this on a normal close() too: only a lost connection is news
        if connected and not connected[0].is_closed:
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
    try:
        nc = await nats.connect(**opts)
    except (NoServersError, OSError, TimeoutError) as exc:
        if not fail_fast:
            raise
        raise NatsUnreachable(unreachable_hint(cfg.url)) from exc
    if fail_fast:
        # what nats-py did with 0 once connected (retry forever): a command survives a NATS
        # restart as before; only the first connection fails fast
        nc.options["max_reconnect_attempts"] = -1
    connected.append(nc)
    natsheaders.install(nc)
    return nc
