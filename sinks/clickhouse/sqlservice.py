"""The ``sql.query`` request/reply service (core NATS), served by the sink.

chdb lives inside the sink process, so everyone else reads ClickHouse by asking the sink:
request ``{"sql": "...", "max_rows": 10000, "timeout_s": 30}``, reply
``{"columns": [..], "types": [..], "rows": [[..], ..], "truncated": bool}`` or
``{"error": "..."}``.

Queries never touch the inserts' session. chdb allows one engine path per process (a second
process cannot open the directory: "Another server instance in same directory is already
running"), but each chdb connection in the process is its own session with its own
settings. So the ``Sandbox`` keeps separate connections, on its own threads: each gets the
limits (``sink.sql``: time, memory, rows and bytes read and returned, one thread) and then
``readonly=1``, after which neither a query nor a ``SETTINGS`` clause can change any setting.
What runs is only what ``sqlguard`` accepts (one read statement, allowed table functions and
tables). A query still running when the requester's timeout passes is killed (``KILL
QUERY`` from a control session), and a requester that asks for more time than
``max_execution_s`` gets that. A reply never exceeds the server's max_payload: rows are cut
(``truncated: true``) until it fits.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

from streams import sqlguard
from streams.settings import SqlSettings

log = logging.getLogger("sinks.clickhouse.sql")

_OPTS = orjson.OPT_SERIALIZE_NUMPY
_HEADROOM = 4096  # protocol framing around the reply body
_QUEUE_PER_SLOT = 8  # requests waiting per query slot before "busy"


def encode_reply(res: dict[str, Any], limit: int) -> bytes:
    """JSON reply no larger than ``limit`` bytes, dropping trailing rows if needed."""
    body = orjson.dumps(res, default=str, option=_OPTS)
    rows = res["rows"]
    while len(body) > limit and rows:
        # shrink proportionally (a bit more, so it converges in a step or two)
        keep = min(len(rows) - 1, int(len(rows) * limit / len(body) * 0.9))
        rows = rows[: max(keep, 0)]
        body = orjson.dumps({**res, "rows": rows, "truncated": True}, default=str, option=_OPTS)
    return body


def session_settings(cfg: SqlSettings) -> dict[str, str]:
    """What the query session is set to before ``readonly=1`` locks it."""
    return {
        "max_execution_time": str(cfg.max_execution_s),
        "timeout_overflow_mode": "'throw'",
        "max_memory_usage": str(cfg.max_memory_bytes),
        # one more row than a request may get, so "truncated" can be told; "break" stops
        # reading there (whole blocks, so possibly a few more rows)
        "max_result_rows": str(cfg.max_result_rows + 1),
        "max_result_bytes": str(cfg.max_result_bytes),
        "result_overflow_mode": "'break'",
        "max_rows_to_read": str(cfg.max_rows_to_read),
        "max_bytes_to_read": str(cfg.max_bytes_to_read),
        "read_overflow_mode": "'throw'",
        "max_threads": str(cfg.max_threads),
        "allow_introspection_functions": "0",
    }


def result_dict(res: Any, max_rows: int) -> dict[str, Any]:
    rows = res.result_rows
    return {
        "columns": list(res.column_names),
        "types": [t.name for t in res.column_types],
        "rows": [list(r) for r in rows[:max_rows]],
        "truncated": len(rows) > max_rows,
    }


class QueryTimeout(RuntimeError):
    pass


class Sandbox:
    """Read-only chdb sessions for user queries, apart from the inserts' session."""

    def __init__(self, dsn: str, cfg: SqlSettings) -> None:
        self.dsn = dsn
        self.cfg = cfg
        self._pool = ThreadPoolExecutor(cfg.concurrency, thread_name_prefix="clickhouse-sql")
        self._control_pool = ThreadPoolExecutor(1, thread_name_prefix="clickhouse-sql-kill")
        self._local = threading.local()
        self._sessions: list[Any] = []
        self._lock = threading.Lock()
        self._control: Any = None
        self._names: tuple[frozenset[str], str] | None = None
        self.waiting = 0
        self.killed = 0

    def _open(self) -> Any:
        import clickhouse_connect

        c = clickhouse_connect.get_client(dsn=self.dsn)
        ro = c.query("SELECT value FROM system.settings WHERE name = 'readonly'").result_rows
        if not ro or ro[0][0] == "0":
            for k, v in session_settings(self.cfg).items():
                c.command(f"SET {k} = {v}")
            c.command("SET readonly = 1")
        # else: a server's read-only user (sink.sql.query_dsn), whose profile sets the limits
        with self._lock:
            self._sessions.append(c)
        return c

    def _session(self) -> Any:
        c = getattr(self._local, "client", None)
        if c is None:
            c = self._local.client = self._open()
        return c

    def _known(self, c: Any) -> tuple[frozenset[str], str]:
        if self._names is None:
            q = "SELECT lower(name) FROM system.table_functions"
            tfs = frozenset(r[0] for r in c.query(q).result_rows)
            self._names = (tfs, str(c.query("SELECT currentDatabase()").result_rows[0][0]))
        return self._names

    def run(self, sql: str, max_rows: int, tag: str, deadline: float) -> dict[str, Any]:
        """On a sandbox thread: check, then run the canonical statement tagged for KILL."""
        if time.monotonic() >= deadline:
            raise QueryTimeout("timed out waiting for a free query slot")
        c = self._session()
        tfs, db = self._known(c)
        text = sqlguard.canonical(lambda q: [r[0] for r in c.query(q).result_rows], sql, tfs, db)
        return result_dict(c.query(f"/* {tag} */ {text}"), max_rows)

    def _kill(self, tag: str) -> int:
        if self._control is None:
            self._control = self._open()
        res = self._control.query(
            f"KILL QUERY WHERE startsWith(query, {sqlguard.literal(f'/* {tag} */')}) ASYNC"
        )
        return len(res.result_rows)

    async def query(self, sql: str, max_rows: int, timeout_s: float) -> dict[str, Any]:
        if self.waiting >= self.cfg.concurrency * _QUEUE_PER_SLOT:
            raise QueryTimeout("busy: too many queries waiting; try again")
        loop = asyncio.get_running_loop()
        timeout = min(max(timeout_s, 0.05), self.cfg.max_execution_s)
        deadline = time.monotonic() + timeout
        tag = f"jm-sql:{uuid.uuid4().hex}"
        max_rows = min(max(max_rows, 0), self.cfg.max_result_rows)
        self.waiting += 1
        fut = loop.run_in_executor(self._pool, self.run, sql, max_rows, tag, deadline)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            # the requester has given up: stop the query (it may be starting right now, so
            # try again until its thread is free)
            while not fut.done():
                try:
                    self.killed += await loop.run_in_executor(self._control_pool, self._kill, tag)
                except Exception as exc:
                    log.warning("sql kill failed", extra={"error": str(exc)[:200]})
                try:
                    await asyncio.wait_for(asyncio.shield(fut), 0.25)
                except (TimeoutError, Exception):
                    pass
            raise QueryTimeout(f"query cancelled after {timeout:g} s (requester's timeout"
                               f" or sink.sql.max_execution_s)") from None  # fmt: skip
        finally:
            self.waiting -= 1

    def _close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for c in sessions:
            try:
                c.close()
            except Exception:
                pass

    async def aclose(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._control_pool.shutdown(wait=True)
        await asyncio.to_thread(self._close)


class SqlService:
    def __init__(self, nc: Client, sandbox: Sandbox) -> None:
        self.nc = nc
        self.sandbox = sandbox
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, msg: Msg) -> None:
        """Subscription callback: nats-py runs these one at a time, so each request gets its
        own task and a slow query does not hold up the next one (Sandbox bounds the queue)."""
        t = asyncio.create_task(self._handle(msg))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _handle(self, msg: Msg) -> None:
        try:
            req = orjson.loads(msg.data)
            sql, max_rows = str(req["sql"]), int(req.get("max_rows", 10_000))
            timeout_s = float(req.get("timeout_s", self.sandbox.cfg.max_execution_s))
        except Exception:
            await msg.respond(orjson.dumps({"error": 'request must be JSON {"sql": "..."}'}))
            return
        try:
            res = await self.sandbox.query(sql, max_rows, timeout_s)
            body = encode_reply(res, max(self.nc.max_payload - _HEADROOM, 1024))
        except sqlguard.Refused as exc:
            body = orjson.dumps({"error": str(exc)})
        except Exception as exc:
            body = orjson.dumps({"error": sqlguard.first_line(exc)[:2000]})
        try:
            await msg.respond(body)
        except Exception as exc:  # requester gone or connection closing
            log.warning("sql reply not sent", extra={"error": str(exc)[:200]})
