"""NATS identities: who may publish and subscribe to what, and their generated credentials.

Every nats-server config in ``infra/nats/`` takes its users from ``$JM_NATS_USERS``, which
:func:`users_conf` builds from this module's roles and the settings (durable names, accounts):
without it the server does not start, so there is no unauthenticated way to run it.

Credentials: one random password per user in ``<credentials_dir>/<user>`` (mode 0600,
created once and kept, so restarts and several servers on one checkout agree); the server
gets only bcrypt hashes. Clients pick their file by role (streams/bus/connect.py).

Permissions are allow-lists. A worker gets its own data subjects, ``STREAM.INFO`` of the
streams it uses, and the consumer API subjects that carry its own durable names; no worker
may create, update, purge or delete a stream or touch another worker's consumers. Streams
and consumers' streams are provisioned by ``admin``, which only the supervisor and the
operator's ``jetmarket provision`` use. docs/security.md (section 2) has the table.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from streams import subjects
from streams.settings import Settings

API = "$JS.API"
# The object store the collector writes frames over max_payload into (streams/bus/bigframes.py).
FRAMES_BUCKET = "JM_FRAMES"
FRAMES_STREAM = f"OBJ_{FRAMES_BUCKET}"
# Workers (processes started by the supervisor) and the people/tools around them.
WORKER_ROLES = ("collector", "normalizer", "sink", "orderbook", "executor")
ROLES = (*WORKER_ROLES, "trader", "operator", "reader", "replay", "admin", "api", "browser")
# Who may connect over the nats-server WebSocket listener (browsers, nats.ws): the read-only
# identities. Workers, traders and admin connect over the client port only, so a password of
# theirs is no use on the browser-facing listener.
WEBSOCKET_ROLES = ("browser", "reader")
# The streams each worker checks at start (STREAM.INFO) before it runs.
STREAMS = {
    "collector": ("RAW", "DLQ"), "normalizer": ("RAW", "MARKET", "DLQ"),
    "sink": ("RAW", "MARKET", "EXEC", "DLQ"), "orderbook": ("MARKET",), "executor": ("EXEC",),
}  # fmt: skip
# Who calls venues over REST (collectors, backfill as collector or replay, executor): they
# share the per-venue budgets of streams/bus/budget.py.
BUDGET_BUCKET, BUDGET_STREAM = "JM_BUDGET", "KV_JM_BUDGET"
BUDGET_ROLES = ("collector", "executor", "replay")
ROUTE_USER = "route"  # cluster routes; not a client identity
# Partitioned normalizers' durables (normalizer-p<p>of<N>) are allowed up to this N unless
# settings ask for more: the server starts before any normalizer says how many it runs.
MAX_PARTITIONS = 8
BCRYPT_COST = 11  # nats-server's own default; the passwords are 256-bit random anyway


class CredentialsError(RuntimeError):
    """No credentials file for a role; the message says where it was looked for."""


@dataclass
class Perms:
    pub: list[str] = field(default_factory=list)
    sub: list[str] = field(default_factory=list)
    responses: bool = False  # may answer requests (status.query, sql.query, book.get ...)
    pub_deny: list[str] = field(default_factory=list)  # carved out of ``pub`` (deny wins)

    def to_conf(self) -> dict[str, object]:
        # an empty allow-list means "no restriction" to nats-server: deny all instead
        publish: dict[str, list[str]] = (
            {"allow": sorted(set(self.pub))} if self.pub else {"deny": [">"]}
        )
        if self.pub and self.pub_deny:
            publish["deny"] = sorted(set(self.pub_deny))
        out: dict[str, object] = {
            "publish": publish,
            "subscribe": {"allow": sorted(set(self.sub))} if self.sub else {"deny": [">"]},
        }
        if self.responses:
            out["allow_responses"] = True
        return out


def inbox_prefix(role: str) -> str:
    """Each identity's replies arrive under its own prefix, so no user can subscribe to
    another's replies (sql results, order acks, JetStream API answers) with ``_INBOX.>``."""
    return f"_INBOX_{role.replace('-', '_')}"


def stream_info(*streams: str) -> list[str]:
    return [f"{API}.STREAM.INFO.{s}" for s in streams]


def durable(stream: str, name: str) -> list[str]:
    """What a worker needs for its own durable ``name`` on ``stream``: look it up, re-create
    it at its ack floor (streams/bus/consumer.py deletes and adds it), pull from it, ack it."""
    return [
        f"{API}.CONSUMER.INFO.{stream}.{name}",
        f"{API}.CONSUMER.DELETE.{stream}.{name}",
        f"{API}.CONSUMER.DURABLE.CREATE.{stream}.{name}",
        f"{API}.CONSUMER.CREATE.{stream}.{name}",
        f"{API}.CONSUMER.CREATE.{stream}.{name}.>",
        f"{API}.CONSUMER.MSG.NEXT.{stream}.{name}",
        f"$JS.ACK.{stream}.{name}.>",
    ]


def ephemeral(stream: str) -> list[str]:
    """Ordered/ephemeral consumers, created without a name (``CONSUMER.CREATE.<stream>``:
    a named create could take another worker's durable name) and named by the server, so
    INFO and MSG.NEXT cannot be narrowed to them; flow control replies. Never DELETE:
    nats-py leaves ephemerals to expire once their subscription is gone."""
    return [
        f"{API}.CONSUMER.CREATE.{stream}",
        f"{API}.CONSUMER.INFO.{stream}.*",
        f"{API}.CONSUMER.MSG.NEXT.{stream}.*",
        f"$JS.FC.{stream}.>",
    ]


def msg_get(stream: str) -> list[str]:
    return [f"{API}.STREAM.MSG.GET.{stream}", f"{API}.DIRECT.GET.{stream}",
            f"{API}.DIRECT.GET.{stream}.>"]  # fmt: skip


def raw_last_by_subject(p: Perms) -> None:
    """The newest RAW frame of a market-data subject (feed freshness in `jetmarket status`
    and the API), and nothing else of RAW: the direct-get form that names the subject in
    the API subject, so the account frames under ``raw.private.>`` can be carved out. The
    request-body forms (STREAM.MSG.GET, DIRECT.GET.RAW) would reach any message."""
    p.pub.append(f"{API}.DIRECT.GET.RAW.raw.>")
    p.pub_deny.append(f"{API}.DIRECT.GET.RAW.{subjects.RAW_PRIVATE_ALL}")


def frames_read() -> list[str]:
    return [*stream_info(FRAMES_STREAM), *msg_get(FRAMES_STREAM), *ephemeral(FRAMES_STREAM)]


def _base(role: str) -> Perms:
    return Perms(sub=[f"{inbox_prefix(role)}.>"])


def _normalizer_durables(settings: Settings) -> list[str]:
    n = settings.normalizer
    base = n.consumer.durable
    out = [base]
    for parts in range(2, max(MAX_PARTITIONS, n.partitions) + 1):
        out += [f"{base}-p{p}of{parts}" for p in range(parts)]
    return out


def role_perms(role: str, settings: Settings) -> Perms:
    """The permissions of one role (``trader-<account>`` included)."""
    p = _base(role)
    status = subjects.STATUS_QUERY
    if role == "collector":
        # STREAM.INFO of every stream: its health reports how full the store is
        p.pub += ["raw.>", subjects.dlq("collector"), *msg_get("RAW"),
                  *stream_info("RAW", "MARKET", "EXEC", "DLQ"),
                  f"$O.{FRAMES_BUCKET}.>", *frames_read()]  # fmt: skip
        p.pub_deny.append(subjects.RAW_PRIVATE_ALL)  # the executor's alone to write
        p.sub += ["ctl.snapshot.>", status]
        p.responses = True
    elif role == "normalizer":
        p.pub += ["market.>", subjects.dlq("normalizer"), *stream_info("RAW", "MARKET", "DLQ"),
                  *frames_read()]  # fmt: skip
        for name in _normalizer_durables(settings):
            p.pub += durable("RAW", name)
        p.sub += [status]
        p.responses = True
    elif role == "sink":
        s = settings.sink
        p.pub += [subjects.dlq("sink"), *stream_info("RAW", "MARKET", "EXEC", "DLQ"),
                  *frames_read()]  # fmt: skip
        for stream, c in (("MARKET", s.market), ("RAW", s.raw), ("EXEC", s.exec)):
            shared = f"{c.durable}-shared"  # streams/bus/shared_consumer.py
            p.pub += durable(stream, c.durable) + durable(stream, shared)
            p.sub.append(f"_INBOX.jm.{stream}.{shared}")
        p.sub += [subjects.SQL_QUERY, status]
        p.responses = True
    elif role == "orderbook":
        p.pub += ["market.depth.>", "market.bbo.>", "market.gap.>", "ctl.snapshot.>",
                  subjects.dlq("orderbook"), *stream_info("MARKET"),
                  *ephemeral("MARKET")]  # fmt: skip
        p.sub += [subjects.BOOK_GET_ALL, status]
        p.responses = True
    elif role == "executor":
        # exec.cmd.>: it records each request's command itself (subjects.exec_req); never
        # exec.ctl.>: resuming a halt is the operator's alone
        # sql.query: the VWAP volume profile from ClickHouse history (executor/algo)
        p.pub += ["exec.cmd.>", "exec.evt.>", "exec.pos.>", subjects.dlq("executor"),
                  subjects.SQL_QUERY,
                  # live account streams: the venue's private frames to RAW, drift events
                  subjects.RAW_PRIVATE_ALL, subjects.ACCOUNT_DRIFT_ALL,
                  *stream_info("EXEC", "MARKET"), *msg_get("EXEC"),
                  *durable("EXEC", settings.executor.consumer.durable),
                  # EXEC: history and the kill switch's ordered consumer; MARKET: the last
                  # instrument of each symbol at start (executor/worker.py read_instruments)
                  *ephemeral("EXEC"), *ephemeral("MARKET")]  # fmt: skip
        p.sub += ["ctl.exec.>", "market.>", "replay.*.market.>", status]
        p.responses = True
    elif role == "trader":
        p.pub += ["exec.cmd.>", "ctl.exec.>", subjects.EXEC_HALT, subjects.BOOK_GET_ALL,
                  subjects.SQL_QUERY]  # fmt: skip
        p.sub += ["market.>", "exec.evt.>", "exec.pos.>", subjects.ACCOUNT_DRIFT_ALL]
    elif role.startswith("trader-"):
        account = subjects.token(role.removeprefix("trader-"))
        p.pub += [subjects.exec_cmd(account), subjects.exec_req(account), subjects.EXEC_HALT,
                  subjects.BOOK_GET_ALL]  # fmt: skip
        p.sub += [
            "market.>",
            subjects.exec_evt_filter(account),
            subjects.exec_pos(account),
            subjects.account_drift(account),
        ]
    elif role == "operator":
        p.pub += [subjects.EXEC_HALT, subjects.EXEC_RESUME, subjects.SQL_QUERY,
                  subjects.BOOK_GET_ALL, status,
                  # `jetmarket status`: durable consumers' lag, RAW's newest frame per subject
                  f"{API}.CONSUMER.INFO.RAW.*", f"{API}.CONSUMER.INFO.MARKET.*",
                  *stream_info("RAW")]  # fmt: skip
        raw_last_by_subject(p)
        p.sub += ["market.>", "exec.evt.>", "exec.pos.>", subjects.ACCOUNT_DRIFT_ALL]
    elif role == "reader":
        p.pub += [subjects.SQL_QUERY, subjects.BOOK_GET_ALL, status]
        p.sub += ["market.>"]
    elif role == "replay":
        # reads history from any stream through ephemeral ordered consumers; republishes
        # under replay.> or, for a recording played back, onto raw.>; creates no stream
        # (`replay --stream` and renormalize run as admin)
        p.pub += ["replay.>", "raw.>", subjects.SQL_QUERY, f"{API}.STREAM.INFO.*",
                  f"{API}.CONSUMER.CREATE.*", f"{API}.CONSUMER.INFO.*.*",
                  f"{API}.CONSUMER.MSG.NEXT.*.*", "$JS.FC.>"]  # fmt: skip
    elif role == "api":
        # the HTTP/WebSocket API (api/): asks the services (sql, book, status, the executor's
        # request path), reads RAW's subject counts for feed health, follows market and exec
        p.pub += [subjects.SQL_QUERY, subjects.BOOK_GET_ALL, status, "ctl.exec.>",
                  *stream_info("RAW")]  # fmt: skip
        raw_last_by_subject(p)
        p.sub += ["market.>", "exec.evt.>", "exec.pos.>", status]
        p.responses = True  # its own status line
    elif role == "browser":
        # handed to browser pages (nats.ws): market data only, no requests, no inbox
        return Perms(sub=["market.>"])
    elif role == "admin":
        p.pub, p.sub, p.responses = [">"], [">"], True
    else:
        raise ValueError(f"unknown NATS role {role!r}")
    if role in BUDGET_ROLES:  # shared REST budgets: KV JM_BUDGET + ban broadcasts
        p.pub += [*stream_info(BUDGET_STREAM), *msg_get(BUDGET_STREAM),
                  f"$KV.{BUDGET_BUCKET}.>", subjects.BUDGET_BAN_ALL]  # fmt: skip
        p.sub.append(subjects.BUDGET_BAN_ALL)
    elif role == "operator":  # `jetmarket status` reads bans and windows
        p.pub += [*stream_info(BUDGET_STREAM), *msg_get(BUDGET_STREAM),
                  *ephemeral(BUDGET_STREAM)]  # fmt: skip
    return p


def users(settings: Settings) -> list[str]:
    """Every client identity of this deployment: the roles plus one ``trader-<account>``
    per configured executor account (commands, requests and results of that account only)."""
    accounts = [f"trader-{subjects.token(a)}" for a in settings.executor.active_accounts()]
    return [*ROLES, *accounts]


def _write_new(path: Path, value: str) -> None:
    """Create ``path`` 0600 with ``value`` unless it exists (then keep it: another process
    created it first, and everyone must agree on one password)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")


def ensure_credentials(directory: str | os.PathLike[str], names: list[str]) -> dict[str, str]:
    """Each name's password, generated on first use and kept; the directory is 0700."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(d, 0o700)
    out = {}
    for name in names:
        path = d / name
        _write_new(path, secrets.token_urlsafe(32))
        os.chmod(path, 0o600)
        out[name] = path.read_text().strip()
    return out


_HASHED: dict[tuple[str, int], str] = {}


def bcrypt_hash(password: str, cost: int | None = None) -> str:
    """bcrypt of ``password`` (cost ``BCRYPT_COST`` by default), once per process: a server
    restart or a second server on the same credentials does not pay ~0.2 s per user again."""
    import bcrypt

    cost = BCRYPT_COST if cost is None else cost
    if (password, cost) not in _HASHED:
        _HASHED[password, cost] = bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()
    return _HASHED[password, cost]


def users_conf(
    settings: Settings, directory: str | os.PathLike[str], *, cost: int | None = None
) -> str:
    """``$JM_NATS_USERS``: the users array in nats-server config syntax (JSON is valid
    there), passwords as bcrypt hashes. Quoted strings keep ``$2b$...`` from being read
    as a variable reference."""
    names = users(settings)
    passwords = ensure_credentials(directory, names)
    entries = [
        {"user": n, "password": bcrypt_hash(passwords[n], cost),
         "permissions": role_perms(n, settings).to_conf(),
         "allowed_connection_types": connection_types(n)}
        for n in names
    ]  # fmt: skip
    return json.dumps(entries)


def connection_types(role: str) -> list[str]:
    """The listeners ``role`` may log in on: STANDARD (the client port) for every role, and
    WEBSOCKET for the read-only ones in ``WEBSOCKET_ROLES``."""
    return ["STANDARD", "WEBSOCKET"] if role in WEBSOCKET_ROLES else ["STANDARD"]


def route_credentials(directory: str | os.PathLike[str]) -> tuple[str, str]:
    """(user, password) that cluster nodes present to each other on their routes."""
    return ROUTE_USER, ensure_credentials(directory, [ROUTE_USER])[ROUTE_USER]


def password_file(directory: str | os.PathLike[str], role: str) -> Path:
    """The credentials file of ``role``, or a one-line error saying what to do."""
    path = Path(directory) / role
    if not path.is_file():
        raise CredentialsError(
            f"no NATS credentials for {role!r} in {directory}: is `make up` running?"
        )
    return path
