"""ClickHouse source: history past the streams' retention, from the sink's tables.

chdb is in-process and one process owns a path, so with a ``chdb://`` DSN a running sink
owns it and this source asks the sink over ``sql.query``; without a running sink (offline,
tests) or with a ClickHouse server it queries directly with clickhouse-connect. Both ways
run the same SQL and get the same values: timestamps as integer ns
(``toUnixTimestamp64Nano``), raw payloads as base64 (the JSON reply of ``sql.query`` has
no bytes type), floats as float64 (orjson writes the shortest repr, which parses back to
the same double).

Each table is read in (ts_recv, stream_seq) order with keyset pagination and the tables
are merged by ``order.merge``. The rows carry their JetStream sequence (the sink's
watermark column), so the order equals the JetStream source's exactly.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
from nats.aio.client import Client

from replay.jetstream import unpartition
from replay.model import ReplayMsg
from replay.order import merge
from replay.selection import Selection
from streams import schemas, sql, subjects
from streams.provision import STREAM_MARKET, STREAM_RAW
from streams.tables import RAW_TABLE, TABLES

# query -> (rows, complete): complete is False when a reply was cut short (sql.query caps
# replies in bytes), so a short page does not mean the end
Fetch = Callable[[str], Awaitable[tuple[list[list[Any]], bool]]]


def _lit(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ns(ts: int) -> str:
    return f"fromUnixTimestamp64Nano(toInt64({int(ts)}), 'UTC')"


class NatsFetch:
    """Through the sink's ``sql.query`` service (chdb owned by the sink)."""

    def __init__(self, nc: Client, max_rows: int, timeout: float = 60.0) -> None:
        self.nc, self.max_rows, self.timeout = nc, max_rows, timeout

    async def __call__(self, query: str) -> tuple[list[list[Any]], bool]:
        res = await sql.query(self.nc, query, timeout=self.timeout, max_rows=self.max_rows)
        return res.rows, not res.truncated


class DirectFetch:
    """clickhouse-connect on one thread (the client is not thread-safe)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay-ch")
        self._client: Any = None

    def _query(self, query: str) -> tuple[list[list[Any]], bool]:
        if self._client is None:
            import clickhouse_connect

            self._client = clickhouse_connect.get_client(dsn=self.dsn)
        res = self._client.query(query)
        return res.result_rows, True

    async def __call__(self, query: str) -> tuple[list[list[Any]], bool]:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._query, query)
        except Exception as exc:
            raise sql.SqlError(str(exc)) from None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self._pool.shutdown(wait=False)


def _where(sel_tokens: Sequence[tuple[str, ...]], columns: dict[int, str]) -> str:
    """OR of the selection's filters, as column conditions (token index -> column)."""
    ors = []
    for f in sel_tokens:
        ands = [f"{col} = {_lit(f[i])}" for i, col in columns.items() if f[i] not in ("*", ">")]
        if not ands:
            return "1"
        ors.append("(" + " AND ".join(ands) + ")")
    return " OR ".join(ors) if ors else "0"


class ClickHouseSource:
    def __init__(
        self,
        fetch: Fetch,
        selection: Selection,
        *,
        start_ns: int | None,
        end_ns: int | None,
        page_rows: int,
        by_seq: bool = False,
    ) -> None:
        self.fetch = fetch
        self.selection = selection
        self.start_ns, self.end_ns = start_ns, end_ns
        self.page_rows = page_rows
        self.by_seq = by_seq
        self._plans: list[tuple[str, str, str, type | None]] = []  # table, where, stream, cls

    async def open(self) -> int:
        """Plan one query per table; returns the number of rows selected (for ETA)."""
        filters = self.selection.filters
        plans = []
        if STREAM_RAW in filters:
            where = _where(filters[STREAM_RAW], {1: "venue", 2: "channel", 3: "symbol"})
            plans.append((RAW_TABLE, where, STREAM_RAW, None))
        if STREAM_MARKET in filters:
            for msg_type, table in TABLES.items():
                toks = [f for f in filters[STREAM_MARKET] if f[1] in ("*", msg_type)]
                if toks:
                    where = _where(toks, {2: "venue", 3: "symbol"})
                    plans.append((table, where, STREAM_MARKET, schemas.MARKET_TYPES[msg_type]))
        if set(filters) - {STREAM_RAW, STREAM_MARKET}:
            raise ValueError("the ClickHouse source replays raw and market subjects only")
        total = 0
        for table, where, _, _ in plans:
            rows, _ = await self.fetch(f"SELECT count() FROM {table} WHERE {self._range()} "
                                       f"AND ({where})")  # fmt: skip
            n = int(rows[0][0])
            if n:
                self._plans.append(next(p for p in plans if p[0] == table))
                total += n
        return total

    def _range(self) -> str:
        conds = ["1"]
        if self.start_ns is not None:
            conds.append(f"ts_recv >= {_ns(self.start_ns)}")
        if self.end_ns is not None:
            conds.append(f"ts_recv < {_ns(self.end_ns)}")
        return " AND ".join(conds)

    async def _select_list(self, table: str, cls: type | None) -> list[str]:
        if cls is None:
            return [
                "subject",
                "toUnixTimestamp64Nano(ts_recv)",
                "conn",
                "base64Encode(payload)",
                "stream_seq",
            ]
        rows, _ = await self.fetch(
            "SELECT name, type FROM system.columns WHERE database = currentDatabase() "
            f"AND table = {_lit(table)}"
        )
        types = {r[0]: r[1] for r in rows}
        out = []
        for f in cls.__struct_fields__:
            if f not in types:
                raise RuntimeError(f"table {table} has no column {f} (DDL behind the schema?)")
            out.append(f"toUnixTimestamp64Nano({f})" if "DateTime64" in types[f] else f)
        return [*out, "stream_seq"]

    async def _table(
        self, table: str, where: str, stream: str, cls: type | None
    ) -> AsyncIterator[list[ReplayMsg]]:
        cols = ", ".join(await self._select_list(table, cls))
        last: tuple[int, int] | None = None
        conv = list[cls] if cls is not None else None  # type: ignore[valid-type]
        fields = cls.__struct_fields__ if cls is not None else ()
        encode, market = schemas.encode, subjects.market
        H_RECV, H_CONN = subjects.H_RECV_NS, subjects.H_CONN
        while True:
            after = ""
            if last is not None:
                ts, seq = last
                t = _ns(ts)
                if self.by_seq:
                    after = f" AND stream_seq > {seq}"
                else:
                    after = f" AND (ts_recv > {t} OR (ts_recv = {t} AND stream_seq > {seq}))"
            order = "stream_seq" if self.by_seq else "ts_recv, stream_seq"
            q = (f"SELECT {cols} FROM {table} WHERE {self._range()} AND ({where}){after} "
                 f"ORDER BY {order} LIMIT {self.page_rows}")  # fmt: skip
            rows, complete = await self.fetch(q)
            if not rows:
                return
            if conv is None:
                out = [
                    ReplayMsg(
                        unpartition(r[0]), stream, int(r[4]), int(r[1]), base64.b64decode(r[3]),
                        {H_RECV: str(r[1]), H_CONN: r[2]} if r[2] else {H_RECV: str(r[1])},
                    )
                    for r in rows
                ]  # fmt: skip
            else:
                objs = msgspec.convert([dict(zip(fields, r, strict=False)) for r in rows], conv)
                tag = cls.__struct_config__.tag  # type: ignore[union-attr]
                out = [
                    ReplayMsg(market(tag, o.venue, o.symbol), stream, int(r[-1]),
                              o.ts_recv, encode(o), None, o)
                    for o, r in zip(objs, rows, strict=True)
                ]  # fmt: skip
            yield out
            last = (out[-1].ts_recv, out[-1].seq)
            if complete and len(rows) < self.page_rows:
                return

    def chunks(self) -> AsyncIterator[list[ReplayMsg]]:
        key = (lambda m: (m.seq,)) if self.by_seq else None
        return merge([self._table(*p) for p in self._plans], key=key)
