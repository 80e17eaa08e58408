"""ClickHouse access for the sink's writes, on one dedicated thread.

chdb is an in-process engine bound to one path per process, and clickhouse-connect's
client is not thread-safe; so every call of the writer (DDL, inserts, watermarks) goes
through a single worker thread and the event loop never blocks on ClickHouse. User queries
(``sql.query``) never use this session: they run in read-only sessions of their own
(sinks/clickhouse/sqlservice.py), so nothing a query does can change how inserts run.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import clickhouse_connect

from sinks.clickhouse import ttl

DDL_DIR = Path(__file__).resolve().parents[2] / "infra" / "clickhouse"


class InsertFault(RuntimeError):
    """Raised while the test fault file exists (settings.sink.fail_inserts_file)."""


class Store:
    def __init__(self, dsn: str, *, fail_inserts_file: str | None = None) -> None:
        self.dsn = dsn
        self.fail_inserts_file = fail_inserts_file
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self._client: Any = None

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    # everything below runs on the ClickHouse thread -----------------------------------
    def _client_(self) -> Any:
        if self._client is None:
            if self.dsn.startswith("chdb://"):
                private_dir(Path(self.dsn[len("chdb://") :].split("?")[0]))
            self._client = connect(self.dsn)
        return self._client

    def apply_ddl(self) -> list[str]:
        """Apply ``infra/clickhouse/*.sql`` in name order; returns the files applied now.

        ``schema_migrations`` records (file, sha256). A file already recorded with the same
        content is skipped; a new or edited file is (re)applied, which is safe because every
        statement is ``IF NOT EXISTS``. Schema changes to existing tables go in a new file
        (``ALTER TABLE ... ADD COLUMN IF NOT EXISTS``), never in an edit of an old one."""
        c = self._client_()
        c.command(
            "CREATE TABLE IF NOT EXISTS schema_migrations (file String, applied DateTime64(3,"
            " 'UTC') DEFAULT now64(3)) ENGINE = ReplacingMergeTree ORDER BY file"
        )
        c.command("ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS sha256 String")
        done = set(c.query("SELECT file, sha256 FROM schema_migrations").result_rows)
        applied = []
        for f in sorted(DDL_DIR.glob("*.sql")):
            text = f.read_text()
            digest = hashlib.sha256(text.encode()).hexdigest()
            if (f.name, digest) in done:
                continue
            for stmt in split_sql(text):
                c.command(stmt)
            c.command(
                "INSERT INTO schema_migrations (file, sha256) VALUES ({f:String}, {h:String})",
                {"f": f.name, "h": digest},
            )
            applied.append(f.name)
        return applied

    def apply_ttl(self, days: dict[str, int]) -> tuple[list[str], list[str]]:
        """Bring each table's TTL to ``days`` (clickhouse.ttl_days; sinks/clickhouse/ttl.py).
        Idempotent: a table already at its setting gets no statement. Returns (changes made,
        warnings about TTLs the sink does not own)."""
        c = self._client_()
        rows = [
            ttl.TableRow(*r)
            for r in c.query(
                "SELECT name, engine, engine_full, partition_key FROM system.tables"
                " WHERE database = currentDatabase()"
            ).result_rows
        ]
        changes, warnings = [], []
        for table, d in days.items():
            # one table at a time: a TTL the server refuses (no ALTER grant, a table of
            # another shape) is a warning, and the sink still starts and stores data
            try:
                for p in ttl.plans(rows, {table: d}):
                    for stmt in p.statements:
                        c.command(stmt)
                    if p.change:
                        changes.append(p.change)
                    if p.warning:
                        warnings.append(p.warning)
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                warnings.append(f"{table}: TTL of {d} days not applied: {first}")
        return changes, warnings

    def watermark(self, table: str) -> int:
        rows = self._client_().query(f"SELECT max(stream_seq) FROM {table}").result_rows
        return int(rows[0][0] or 0)

    def stored_seqs(self, table: str, seqs: list[int]) -> set[int]:
        """Which of ``seqs`` already have a row in ``table``: the shared-durable sink's
        check for messages another instance may have inserted before it died. It reads the
        ``stream_seq`` column (delta-coded, cheap to scan) and runs only for redeliveries,
        which are rare, so no extra index is kept for it."""
        if not seqs:
            return set()
        rows = (
            self._client_()
            .query(
                f"SELECT DISTINCT stream_seq FROM {table} WHERE stream_seq BETWEEN"
                " {lo:UInt64} AND {hi:UInt64} AND has({seqs:Array(UInt64)}, stream_seq)",
                parameters={"lo": min(seqs), "hi": max(seqs), "seqs": seqs},
            )
            .result_rows
        )
        return {int(r[0]) for r in rows}

    def column_types(self, table: str) -> dict[str, str]:
        rows = (
            self._client_()
            .query(
                "SELECT name, type FROM system.columns WHERE database = currentDatabase()"
                " AND table = {t:String} ORDER BY position",
                parameters={"t": table},
            )
            .result_rows
        )
        return {name: typ for name, typ in rows}

    def insert(self, table: str, names: list[str], data: list[list], token: str) -> None:
        if self.fail_inserts_file and os.path.exists(self.fail_inserts_file):
            raise InsertFault(f"insert into {table} refused: {self.fail_inserts_file} exists")
        self._client_().insert(
            table,
            data,
            column_names=names,
            column_oriented=True,
            settings={"insert_deduplication_token": token},
        )

    def rows(self, sql: str) -> list[tuple]:
        """Trusted SQL of the sink's own code and tests on the writer's session (user SQL
        never comes here: it goes through the sandbox)."""
        return list(self._client_().query(sql).result_rows)

    def partition_keys(self) -> dict[str, str]:
        """Table -> partition key expression (``toYYYYMMDD(ts_event)``) of this database."""
        rows = (
            self._client_()
            .query(
                "SELECT name, partition_key FROM system.tables WHERE database = currentDatabase()"
            )
            .result_rows
        )
        return {name: key for name, key in rows}

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        await self.call(self.close)
        self._pool.shutdown(wait=True)


def without_pandas() -> None:
    """Tell clickhouse-connect that pandas is absent, as it is on a machine without it.

    At the first insert clickhouse-connect imports pandas only to ask whether the data is
    a DataFrame: 0.3 s of CPU on the writer thread in the middle of the stream (holding the
    GIL, so the event loop stalls too) and +83 MB of RSS, measured on this machine. The
    sink inserts column lists only. For the sink's own process (``python -m sinks``): a
    process that also uses clickhouse-connect's DataFrame calls must not call this."""
    from clickhouse_connect.driver import options

    if "pd" not in vars(options):  # not resolved yet (an import already done is kept)
        options.pd = None
        options.pd_time_test = None


def connect(dsn: str) -> Any:
    """A clickhouse-connect client for ``dsn``; the database the DSN names
    (``http://u:p@host:8123/jetmarket``, ``chdb:///path?database=jetmarket``) is created
    when it does not exist yet (clickhouse-connect only joins an existing one), so a fresh
    server needs nothing but a user allowed to CREATE DATABASE, or the database made once."""
    try:
        return clickhouse_connect.get_client(dsn=dsn)
    except Exception as exc:
        db, bare = dsn_database(dsn)
        if not db or "UNKNOWN_DATABASE" not in str(exc):
            raise
    admin = clickhouse_connect.get_client(dsn=bare)
    try:
        admin.command(f"CREATE DATABASE IF NOT EXISTS `{db.replace('`', '')}`")
    finally:
        if not dsn.startswith("chdb://"):  # chdb: one engine per process, kept for the next
            admin.close()
    return clickhouse_connect.get_client(dsn=dsn)


def dsn_database(dsn: str) -> tuple[str, str]:
    """(database named by ``dsn``, the same DSN without it); ("", dsn) when none is named."""
    u = urlsplit(dsn)
    query = parse_qsl(u.query, keep_blank_values=True)
    named = [v for k, v in query if k == "database"]
    if named:
        rest = urlencode([(k, v) for k, v in query if k != "database"])
        if u.scheme == "chdb" and not u.netloc:  # urlunsplit would drop the "//" of chdb:///
            return named[0], f"chdb://{u.path}" + (f"?{rest}" if rest else "")
        return named[0], urlunsplit(u._replace(query=rest))
    if u.scheme != "chdb" or u.netloc:  # http(s)://host/db, chdb://memory/db
        db = unquote(u.path.lstrip("/").split("/")[0])
        if db:
            return db, urlunsplit(u._replace(path=""))
    return "", dsn


def split_sql(text: str) -> list[str]:
    """Statements of a DDL file: comments dropped, split on ';' at line ends."""
    body = "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", body) if s.strip()]


def private_dir(path: Path) -> None:
    """Create the chdb directory readable by its owner only (tables hold account data), and
    tighten one left from an older run."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
