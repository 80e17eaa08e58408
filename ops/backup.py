"""``jetmarket backup`` / ``jetmarket restore``: ClickHouse tables and JetStream streams into a
directory (default ``backups/<UTC time>`` in the checkout, which `make clean` keeps) and back.

ClickHouse: one ``<table>.native.zst`` per MergeTree table (``SELECT *`` in the Native format,
zstd-compressed), which works the same on chdb and on a server through clickhouse-connect.
BACKUP/RESTORE SQL needs a backup disk configured on the server and is not available in chdb,
Parquet cannot carry AggregateFunction states (ohlcv_*); Native keeps every type exactly.
Restore applies the DDL first, refuses tables that hold rows (``--replace`` empties them), inserts
with deduplication and insert-time merging off (the rows come back as they were), and restores
the targets of materialized views after their sources, replacing what the views computed on
the way. Each table's row count and order-independent digest (sum of the hash of every row's
bytes) are kept in ``manifest.json`` and compared after restore.

JetStream: the server's own stream snapshot (``$JS.API.STREAM.SNAPSHOT``: the store files, with
every message, subject, header, Nats-Msg-Id and sequence as they are, plus the durable
consumers and their ack floors) into ``<stream>.snapshot``; restore sends it back through
``$JS.API.STREAM.RESTORE`` and checks the restored state (messages, bytes, first and last
sequence). Keeping sequences matters: the sink's per-table high-water marks are JetStream
sequences, so tables and streams restored together stay consistent.

chdb is one process per path: with the embedded ClickHouse, stop ``make up`` first. When nats.url
is the embedded server and nothing answers there, the embedded nats-server is started on its
store for the duration of the command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import msgspec
import orjson

from streams.bus.logs import redact_url
from streams.settings import Settings, SettingsError, load

# outside var/: `make clean` removes var/, and must not take the backups with it
BACKUP_ROOT = Path("backups")
MANIFEST = "manifest.json"
FORMAT_VERSION = 1
CHUNK = 128 * 1024  # snapshot chunk size (the server's default)
IDLE_S = 60.0  # a snapshot or restore with no progress for this long fails
SKIP_TABLES = {"schema_migrations"}  # rebuilt by the DDL on restore
_MV_TARGET = re.compile(r"\bTO\s+(?:`?\w+`?\.)?`?(\w+)`?")
_MV_SOURCE = re.compile(r"\bFROM\s+(?:`?\w+`?\.)?`?(\w+)`?")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


class BackupError(RuntimeError):
    """One line for the user: what failed and what to do."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    restore = parser.prog.split()[-1] == "restore"
    if restore:
        parser.add_argument(
            "dir", nargs="?",
            help=f"backup directory (default: the newest under {BACKUP_ROOT}/)",
        )  # fmt: skip
        parser.add_argument(
            "--replace", action="store_true",
            help="delete the streams and empty the tables that exist before restoring them "
            "(without it, restore refuses to touch a stream or table holding data)",
        )  # fmt: skip
    else:
        parser.add_argument(
            "dir", nargs="?",
            help=f"directory to write (default: {BACKUP_ROOT}/<UTC time>; must not exist)",
        )  # fmt: skip
    parser.add_argument(
        "--only", choices=["clickhouse", "streams"],
        help="only the ClickHouse tables or only the JetStream streams (default: both)",
    )  # fmt: skip
    parser.add_argument(
        "--streams", nargs="+", metavar="STREAM",
        help="streams to include (default: every stream of the account; on restore, every "
        "stream in the backup)",
    )  # fmt: skip
    parser.add_argument(
        "--tables", nargs="+", metavar="TABLE",
        help="ClickHouse tables to include (default: every table; on restore, every table in "
        "the backup)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    cmd = "restore" if hasattr(args, "replace") else "backup"
    try:
        settings = load()
    except SettingsError as exc:
        print(f"jetmarket {cmd}: bad configuration: {exc}", file=sys.stderr)
        return 2
    try:
        if cmd == "backup":
            out = backup(settings, args.dir, only=args.only, streams=args.streams,
                         tables=args.tables)  # fmt: skip
            print(f"backup written to {out}")
        else:
            src = Path(args.dir) if args.dir else newest()
            for line in restore(settings, src, only=args.only, streams=args.streams,
                                tables=args.tables, replace=args.replace):  # fmt: skip
                print(line)
    except BackupError as exc:
        print(f"jetmarket {cmd}: {exc}", file=sys.stderr)
        return 1
    return 0


def newest() -> Path:
    found = sorted(p for p in BACKUP_ROOT.glob("*") if (p / MANIFEST).is_file())
    if not found:
        raise BackupError(f"no backup under {BACKUP_ROOT}/: name the directory to restore")
    return found[-1]


# -- the two commands -----------------------------------------------------------------------
def backup(
    settings: Settings,
    dest: str | Path | None = None,
    *,
    only: str | None = None,
    streams: list[str] | None = None,
    tables: list[str] | None = None,
) -> Path:
    out = Path(dest) if dest else BACKUP_ROOT / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out} exists and is not empty: choose a new directory")
    out.mkdir(parents=True, exist_ok=True, mode=0o700)  # tables hold account data
    manifest: dict[str, Any] = {"version": FORMAT_VERSION, "created": time.time(),
                                "clickhouse": {}, "streams": {}}  # fmt: skip
    if only in (None, "clickhouse"):
        manifest["clickhouse"] = _ch_backup(settings, out, tables)
        manifest["dsn"] = redact_url(settings.clickhouse.dsn)
    if only in (None, "streams"):
        manifest["streams"] = asyncio.run(_js_backup(settings, out, streams))
    (out / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return out


def restore(
    settings: Settings,
    src: Path,
    *,
    only: str | None = None,
    streams: list[str] | None = None,
    tables: list[str] | None = None,
    replace: bool = False,
) -> list[str]:
    try:
        manifest = orjson.loads((src / MANIFEST).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise BackupError(f"{src}: not a backup ({MANIFEST} unreadable: {exc})") from None
    if manifest.get("version") != FORMAT_VERSION:
        raise BackupError(f"{src}: backup format {manifest.get('version')} is not supported")
    _check_manifest(manifest)
    lines: list[str] = []
    if only in (None, "streams") and manifest["streams"]:
        lines += asyncio.run(_js_restore(settings, src, manifest["streams"], streams, replace))
    if only in (None, "clickhouse") and manifest["clickhouse"]:
        lines += _ch_restore(settings, src, manifest["clickhouse"], tables, replace)
    return lines


# -- ClickHouse ----------------------------------------------------------------------------
def _client(settings: Settings) -> Any:
    from sinks.clickhouse.store import Store

    dsn = settings.clickhouse.dsn
    if dsn.startswith("chdb://") and _chdb_in_use(Path(dsn[len("chdb://") :].split("?")[0])):
        raise BackupError(
            f"ClickHouse {redact_url(dsn)} is open in another process (the sink of `make up`?):"
            " chdb allows one process per path; stop it first (`make down`)"
        )
    store = Store(dsn)
    try:
        store._client_()
    except Exception as exc:
        msg = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        if "lock" in msg.lower():
            msg = (f"{msg}: the embedded ClickHouse (chdb) is open in another process, the "
                   "sink of `make up`; stop it first (`make down`)")  # fmt: skip
        raise BackupError(f"ClickHouse {redact_url(settings.clickhouse.dsn)}: {msg}") from None
    return store


def _chdb_in_use(path: Path) -> bool:
    """Whether another process holds the chdb directory: ClickHouse keeps an exclusive
    flock on its ``status`` file while it runs. Asked first, because opening a held path
    prints the engine's own error lines on stderr besides raising."""
    import fcntl

    try:
        fd = os.open(path / "status", os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False


def digest(client: Any, table: str) -> tuple[int, int]:
    """(rows, order-independent digest): the sum of a 64-bit hash of every row's bytes."""
    rows = client.query(
        f"SELECT count(), sum(cityHash64(formatRow('RowBinary', *))) FROM `{table}`"
    ).result_rows
    return int(rows[0][0]), int(rows[0][1] or 0)


def file_digest(
    path: Path, types: list[tuple[str, str]], client: Any | None = None
) -> tuple[int, int]:
    """:func:`digest` of an exported ``.native.zst`` file of columns ``types`` (name, type),
    read by ClickHouse's ``file()``: through ``client`` when it is chdb, else by an in-memory
    chdb of this process (the structure is given: an empty file has none to read)."""
    structure = _quote(", ".join(f"`{n}` {t}" for n, t in types))
    q = (f"SELECT count(), sum(cityHash64(formatRow('RowBinary', *))) FROM "
         f"file('{_quote(str(path.resolve()))}', 'Native', '{structure}')")  # fmt: skip
    if client is not None:
        rows, dig = client.query(q).result_rows[0]
    else:
        import chdb

        rows, dig = str(chdb.query(q, "TSV")).split()
    return int(rows), int(dig or 0)


def _quote(s: str) -> str:
    return s.replace("\\", "\\\\").replace("'", "\\'")


def _tables(client: Any) -> list[tuple[str, str, str]]:
    """(name, engine, create query) of this database's tables, views included."""
    return [
        (n, e, q)
        for n, e, q in client.query(
            "SELECT name, engine, create_table_query FROM system.tables"
            " WHERE database = currentDatabase() ORDER BY name"
        ).result_rows
    ]


def _ch_backup(settings: Settings, out: Path, only: list[str] | None) -> dict[str, Any]:
    import pyarrow as pa

    store = _client(settings)
    c = store._client_()
    try:
        found = {n: (e, q) for n, e, q in _tables(c) if e.endswith("MergeTree")}
        names = only or [n for n in found if n not in SKIP_TABLES]
        if missing := [n for n in names if n not in found]:
            raise BackupError(f"no such ClickHouse table: {', '.join(missing)}")
        got: dict[str, Any] = {}
        chdb = settings.clickhouse.dsn.startswith("chdb://")
        for name in names:
            path = out / f"{name}.native.zst"
            types = [(n, t) for n, t in c.query(
                "SELECT name, type FROM system.columns WHERE database = currentDatabase()"
                " AND table = {t:String} ORDER BY position", parameters={"t": name},
            ).result_rows]  # fmt: skip
            if chdb:
                # the in-process engine writes the file itself: its streamed result comes in
                # ~1 KB pieces through Python (2M trades: 150 s), INTO OUTFILE takes 0.2 s
                c.command(f"SELECT * FROM `{name}` INTO OUTFILE '{_quote(str(path.resolve()))}'"
                          " COMPRESSION 'zstd' FORMAT Native")  # fmt: skip
            else:
                stream = c.raw_stream(f"SELECT * FROM `{name}`", fmt="Native")
                try:
                    with pa.CompressedOutputStream(str(path), "zstd") as f:
                        for chunk in stream:
                            f.write(chunk)
                finally:
                    stream.close()
            # counted from the file, not the table: on a server the sink may insert while
            # the export runs, and the manifest must describe exactly what the file holds
            rows, dig = file_digest(path, types, c if chdb else None)
            got[name] = {"rows": rows, "digest": str(dig), "columns": [n for n, _ in types],
                         "types": [t for _, t in types],
                         "create": found[name][1], "bytes": path.stat().st_size}  # fmt: skip
        return got
    finally:
        store.close()


def _ch_restore(
    settings: Settings, src: Path, saved: dict[str, Any], only: list[str] | None, replace: bool
) -> list[str]:
    store = _client(settings)
    c = store._client_()
    lines = []
    try:
        store.apply_ddl()
        names = only or list(saved)
        if missing := [n for n in names if n not in saved]:
            raise BackupError(f"table not in the backup: {', '.join(missing)}")
        have = {n: (e, q) for n, e, q in _tables(c)}
        # materialized views fill their target tables while their source is restored: the
        # targets go last and are emptied first, so they hold exactly the backed-up rows
        edges = _mv_edges(have)
        targets = {t for _, t in edges}
        # restoring a source re-aggregates into its views' targets: they must come back
        # from the backup too, or they would count the source's rows twice
        for src_table, target in edges:
            if src_table in names and target not in names:
                raise BackupError(
                    f"restoring {src_table} feeds the materialized view into {target}: restore "
                    f"them together (--tables {' '.join(sorted({*names, target}))})"
                )
        order = [n for n in names if n not in targets] + [n for n in names if n in targets]
        for name in names:
            if name not in have:
                c.command(saved[name]["create"])  # a table of the backup that the DDL lacks
            elif not replace and name not in targets and digest(c, name)[0]:
                raise BackupError(
                    f"table {name} holds {digest(c, name)[0]} rows: restore into empty tables,"
                    " or pass --replace to empty them first"
                )
        for name in order:
            if replace or name in targets:
                c.command(f"TRUNCATE TABLE `{name}`")
            _ch_insert(c, settings, src / f"{name}.native.zst", name, saved[name]["columns"])
        for name in names:
            rows, dig = digest(c, name)
            want = saved[name]
            if rows != want["rows"] or str(dig) != want["digest"]:
                raise BackupError(
                    f"table {name}: restored {rows} rows (digest {dig}), backup has "
                    f"{want['rows']} (digest {want['digest']}); a TTL may have expired old rows"
                )
            lines.append(f"clickhouse {name}: {rows} rows restored, digest matches")
    finally:
        store.close()
    return lines


def _mv_edges(have: dict[str, tuple[str, str]]) -> list[tuple[str, str]]:
    """(source table, target table) of every materialized view among ``have``."""
    edges = []
    for engine, query in have.values():
        if engine != "MaterializedView":
            continue
        head, _, body = query.partition(" AS ")
        to, src = _MV_TARGET.search(head), _MV_SOURCE.search(body)
        if to and src:
            edges.append((src.group(1), to.group(1)))
    return edges


def _check_manifest(manifest: dict[str, Any]) -> None:
    """Names from the manifest end up in SQL and file paths: only plain names pass, and a
    table definition must be a CREATE TABLE (a tampered manifest cannot run other SQL)."""
    for name, t in manifest.get("clickhouse", {}).items():
        if not _NAME.match(name) or not all(_NAME.match(c) for c in t.get("columns", [])):
            raise BackupError(f"manifest: bad table or column name in {name!r}")
        if not str(t.get("create", "")).startswith("CREATE TABLE "):
            raise BackupError(f"manifest: table {name} has no CREATE TABLE definition")
    for name, st in manifest.get("streams", {}).items():
        if not _NAME.match(name) or st.get("file") != f"{name}.snapshot":
            raise BackupError(f"manifest: bad stream entry {name!r}")


def _ch_insert(c: Any, settings: Settings, path: Path, table: str, cols: list[str]) -> None:
    # restored rows are inserted as they were: no block deduplication (a second restore
    # would otherwise be dropped as a repeat of the first) and no merging at insert time
    # (AggregatingMergeTree would combine rows the backup held apart)
    opts = {"insert_deduplicate": 0, "optimize_on_insert": 0}
    collist = ", ".join(f"`{n}`" for n in cols)
    if settings.clickhouse.dsn.startswith("chdb://"):
        # in-process engine: it reads the compressed file itself, no copy
        infile = _quote(str(path.resolve()))
        c.command(
            f"INSERT INTO `{table}` ({collist}) FROM INFILE '{infile}' COMPRESSION 'zstd'"
            " SETTINGS insert_deduplicate = 0, optimize_on_insert = 0 FORMAT Native"
        )
        return
    import pyarrow as pa

    with pa.CompressedInputStream(str(path), "zstd") as f:
        c.raw_insert(table, cols, f, settings=opts, fmt="Native")


# -- JetStream -----------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def _nats(settings: Settings) -> AsyncIterator[Any]:
    """An admin connection; starts the embedded nats-server for the duration when nats.url
    is the embedded one and nothing answers there (after `make down`)."""
    from streams.bus.connect import NatsUnreachable, connect

    cfg = settings.nats
    if not cfg.role and not cfg.user:
        cfg = msgspec.structs.replace(cfg, role="admin")  # snapshots are admin-only
    srv = None
    try:
        nc = await connect(cfg, "backup", max_reconnect_attempts=0)
    except NatsUnreachable as exc:
        if not _is_embedded(settings):
            raise BackupError(str(exc)) from None
        from streams.bus.server import NatsServer

        srv = NatsServer(settings.nats.server, credentials_dir=cfg.credentials_dir,
                         settings=settings).start()  # fmt: skip
        print(f"started the embedded nats-server on {settings.nats.server.store_dir} for this "
              "command", file=sys.stderr)  # fmt: skip
        nc = await connect(cfg, "backup", max_reconnect_attempts=0)
    try:
        yield nc
    finally:
        await nc.close()
        if srv is not None:
            srv.stop()


def _is_embedded(settings: Settings) -> bool:
    u = urlparse(settings.nats.url)
    srv = settings.nats.server
    return (u.hostname, u.port or 4222) == (srv.host, srv.port) and Path(srv.store_dir).is_dir()


async def _api(nc: Any, subject: str, body: dict[str, Any] | bytes, timeout: float = 10.0) -> Any:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    resp = await nc.request(subject, data, timeout=timeout)
    out = orjson.loads(resp.data) if resp.data else {}
    if isinstance(out, dict) and out.get("error"):
        err = out["error"]
        raise BackupError(f"{subject}: {err.get('description', err)} (code {err.get('code')})")
    return out


async def _stream_names(nc: Any) -> list[str]:
    names: list[str] = []
    while True:
        page = await _api(nc, "$JS.API.STREAM.NAMES", {"offset": len(names)})
        names += page.get("streams") or []
        if len(names) >= page.get("total", 0) or not page.get("streams"):
            return sorted(names)


async def _js_backup(settings: Settings, out: Path, only: list[str] | None) -> dict[str, Any]:
    async with _nats(settings) as nc:
        names = only or await _stream_names(nc)
        got = {}
        for name in names:
            got[name] = await _snapshot(nc, name, out / f"{name}.snapshot")
        return got


async def _snapshot(nc: Any, stream: str, path: Path) -> dict[str, Any]:
    """The server streams the snapshot to an inbox in chunks; each chunk carries a reply
    subject to acknowledge (the server's flow control window) and an empty message ends it."""
    inbox = nc.new_inbox()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    sha = hashlib.sha256()
    state = {"bytes": 0, "at": time.monotonic()}
    f = path.open("wb")

    async def chunk(msg: Any) -> None:
        state["at"] = time.monotonic()
        if not msg.data:
            status = (msg.headers or {}).get("Status", "")
            if status and status not in ("204",) and not done.done():
                desc = (msg.headers or {}).get("Description", "")
                done.set_exception(BackupError(f"snapshot of {stream}: {status} {desc}"))
            elif not done.done():
                done.set_result(None)
            return
        f.write(msg.data)
        sha.update(msg.data)
        state["bytes"] += len(msg.data)
        if msg.reply:
            await nc.publish(msg.reply, b"")

    sub = await nc.subscribe(inbox, cb=chunk, pending_bytes_limit=64 * 1024 * 1024)
    try:
        resp = await _api(nc, f"$JS.API.STREAM.SNAPSHOT.{stream}",
                          {"deliver_subject": inbox, "chunk_size": CHUNK})  # fmt: skip
        while not done.done():
            await asyncio.wait([done], timeout=1.0)
            if not done.done() and time.monotonic() - state["at"] > IDLE_S:
                raise BackupError(f"snapshot of {stream}: no data for {IDLE_S:.0f} s")
        done.result()
    finally:
        await sub.unsubscribe()
        f.close()
    st = resp.get("state") or {}
    return {"file": path.name, "bytes": state["bytes"], "sha256": sha.hexdigest(),
            "config": resp.get("config"), "state": st,
            "messages": st.get("messages", 0), "first_seq": st.get("first_seq", 0),
            "last_seq": st.get("last_seq", 0)}  # fmt: skip


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


async def _js_restore(
    settings: Settings, src: Path, saved: dict[str, Any], only: list[str] | None, replace: bool
) -> list[str]:
    names = only or list(saved)
    if missing := [n for n in names if n not in saved]:
        raise BackupError(f"stream not in the backup: {', '.join(missing)}")
    for name in names:  # a damaged file is found before anything is deleted
        sha = hashlib.sha256()
        for chunk in _chunks(src / saved[name]["file"]):
            sha.update(chunk)
        if sha.hexdigest() != saved[name]["sha256"]:
            raise BackupError(f"{src / saved[name]['file']}: checksum differs from the manifest")
    lines = []
    async with _nats(settings) as nc:
        existing = set(await _stream_names(nc))
        if not replace and (taken := [n for n in names if n in existing]):
            raise BackupError(
                f"stream {', '.join(taken)} exists: pass --replace to delete it and restore "
                "the backup (stop the workers first: `make down`)"
            )
        for name in names:
            if name in existing:
                await _api(nc, f"$JS.API.STREAM.DELETE.{name}", b"")
            want = saved[name]
            resp = await _api(nc, f"$JS.API.STREAM.RESTORE.{name}",
                              {"config": want["config"], "state": want["state"]})  # fmt: skip
            deliver = resp["deliver_subject"]
            for chunk in _chunks(src / want["file"]):
                await _api(nc, deliver, chunk, timeout=IDLE_S)
            info = await _api(nc, deliver, b"", timeout=600.0)  # the server checks and loads
            st, was = info.get("state") or {}, want["state"] or {}
            # an empty stream reports first_seq 0 or last_seq + 1 depending on its history
            keys = (
                "messages",
                "bytes",
                "last_seq",
                *(("first_seq",) if was.get("messages") else ()),
            )
            got = {k: st.get(k, 0) for k in keys}
            if got != {k: was.get(k, 0) for k in keys}:
                raise BackupError(f"stream {name}: restored {got}, backup has "
                                  f"{ {k: was.get(k, 0) for k in keys} }")  # fmt: skip
            first = st.get("first_seq", 0)
            lines.append(
                f"stream {name}: {got['messages']} messages restored "
                f"(seq {first}..{got['last_seq']})"
            )
    return lines
