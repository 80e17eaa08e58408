"""SQL on ClickHouse from anywhere: through the sink's ``sql.query`` service when the
engine is chdb (in-process in the sink), straight to the server otherwise.

Both paths run only what ``streams.sqlguard`` accepts (one read statement, no
outside table functions, no SETTINGS/FORMAT/INTO OUTFILE), checked by ClickHouse's parser.
On a server the limits come from the read-only user's settings profile
(docs/clickhouse.md), whose DSN is ``sink.sql.query_dsn``."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

import msgspec
import orjson
from nats.aio.client import Client

from streams import subjects
from streams.settings import Settings


class SqlError(RuntimeError):
    """The query failed; the message is ClickHouse's (or why nobody answered)."""


class SqlResult(msgspec.Struct):
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    truncated: bool = False


async def query(
    nc: Client, sql: str, *, timeout: float = 30.0, max_rows: int = 10_000
) -> SqlResult:
    """Ask the sink (chdb DSN). Raises SqlError on a ClickHouse error or no answer."""
    # the service kills the query when this passes: nobody waits for the answer after it
    req = orjson.dumps({"sql": sql, "max_rows": max_rows, "timeout_s": timeout})
    try:
        msg = await nc.request(subjects.SQL_QUERY, req, timeout=timeout + 1.0)
    except Exception as exc:
        raise SqlError(
            f"no answer on {subjects.SQL_QUERY} ({type(exc).__name__}); is the sink running?"
        ) from None
    body = orjson.loads(msg.data)
    if "error" in body:
        raise SqlError(body["error"])
    return msgspec.convert(body, SqlResult)


def query_direct(dsn: str, sql: str, *, max_rows: int = 10_000) -> SqlResult:
    """Query a ClickHouse server (``http(s)://`` DSN) with clickhouse-connect, after the
    same checks as the sink's sandbox. No per-query settings are sent: the read-only
    user's profile fixes them (and a ``readonly=1`` user could not change them anyway)."""
    import clickhouse_connect

    from streams import sqlguard

    client = None
    try:
        client = clickhouse_connect.get_client(dsn=dsn)
        c = client

        def run(q: str) -> list[Any]:
            return [r[0] for r in c.query(q).result_rows]

        tfs = frozenset(run("SELECT lower(name) FROM system.table_functions"))
        text = sqlguard.canonical(run, sql, tfs, str(run("SELECT currentDatabase()")[0]))
        res = client.query(text)
    except Exception as exc:
        raise SqlError(sqlguard.first_line(exc)) from None
    finally:
        if client is not None:
            client.close()
    rows = [list(r) for r in res.result_rows]
    return SqlResult(
        columns=list(res.column_names),
        types=[t.name for t in res.column_types],
        rows=rows[:max_rows],
        truncated=len(rows) > max_rows,
    )


async def query_any(
    dsn: str,
    sql: str,
    *,
    nc: Client | None = None,
    timeout: float = 30.0,
    max_rows: int = 10_000,
) -> SqlResult:
    """Either path by DSN: ``chdb://`` asks the sink over ``nc``; ``http(s)://`` goes straight
    to the server (in a thread, so the event loop is not blocked)."""
    if dsn.startswith("chdb://"):
        if nc is None:
            raise SqlError("a chdb DSN is only reachable through the sink: pass a NATS client")
        return await query(nc, sql, timeout=timeout, max_rows=max_rows)
    return await asyncio.to_thread(query_direct, dsn, sql, max_rows=max_rows)


def query_dsn(settings: Settings) -> str:
    """The DSN ``jetmarket sql`` uses: the read-only user's (``sink.sql.query_dsn``) when
    set, else ``clickhouse.dsn``."""
    return settings.sink.sql.query_dsn or settings.clickhouse.dsn


def _cell(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def format_table(r: SqlResult) -> str:
    cells = [[_cell(v) for v in row] for row in r.rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(r.columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(r.columns, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    for row in cells:
        out.append("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))
    plural = "s" if len(r.rows) != 1 else ""
    out.append(f"({len(r.rows)} row{plural}{', truncated' if r.truncated else ''})")
    return "\n".join(out)


def format_csv(r: SqlResult) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(r.columns)
    w.writerows(
        [[_cell(v) if v is None or isinstance(v, float) else v for v in row] for row in r.rows]
    )
    return buf.getvalue().rstrip("\n")


def format_json(r: SqlResult) -> str:
    return orjson.dumps(
        [dict(zip(r.columns, row, strict=True)) for row in r.rows], default=str
    ).decode()


def to_arrow(r: SqlResult):  # type: ignore[no-untyped-def]  # -> pyarrow.Table
    import pyarrow as pa

    cols = list(zip(*r.rows, strict=True)) if r.rows else [[] for _ in r.columns]
    return pa.table({name: list(col) for name, col in zip(r.columns, cols, strict=True)})


def to_pandas(r: SqlResult):  # type: ignore[no-untyped-def]  # -> pandas.DataFrame
    return to_arrow(r).to_pandas()


def to_polars(r: SqlResult):  # type: ignore[no-untyped-def]  # -> polars.DataFrame
    import polars as pl  # optional: pip install polars

    return pl.from_arrow(to_arrow(r))
