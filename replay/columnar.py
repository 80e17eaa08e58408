"""Columnar replay for research: market tables from ClickHouse or Parquet as Arrow, merged in
replay order, typed messages built column by column (no JSON per row).

    for batch in replay_batches(settings, start=..., end=..., types=["trade", "depth"]):
        batch.ts_recv, batch.seq, batch.kind   # numpy arrays, in replay order
        batch.tables["trade"]                  # pyarrow.Table of this batch's trades
        for msg in batch.messages(): ...       # streams.schemas objects, in replay order

    for msg in replay_typed(settings, source="var/export/day1"): ...   # Parquet export

Order: the order of ``replay()`` exactly. MARKET is one stream, so its messages sort by
(ts_recv, stream_seq) — ``ReplayMsg.key`` with the stream rank constant; ``stream_seq`` is
unique within MARKET, so the order never depends on how the data was chunked. Every table
source yields chunks sorted by (ts_recv, stream_seq); ``merge_tables`` releases
everything up to the smallest last key any unfinished source has buffered (the same rule as
``order.merge``) and orders it with one ``numpy.lexsort``.

Typed messages are built by ``Builder``, in C where ``replay/_build.c`` is built: one loop
reads the Arrow buffers (``c_column`` says how) and calls the msgspec Struct's constructor with
keywords. Without it, in Python: per column, one Arrow -> Python list conversion (dictionary
columns through their dictionary, numbers through numpy, levels through the flattened struct
children), then one generated comprehension calling the constructor. Both give the values
``replay()`` gets from ClickHouse (float64 columns, ns integers), so the messages compare equal
and encode to the same bytes (tests/replay/test_build.py runs both).

chdb is in-process and one process owns a path: the ClickHouse source reads directly (a
chdb path no sink holds, or a ClickHouse server over HTTP). With a running sink on the chdb
path, stop it or read an export (``jetmarket export``) instead.
"""

from __future__ import annotations

import gc
import itertools
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from replay.model import ReplayMsg, parse_time
from replay.selection import select
from streams import schemas, subjects
from streams.provision import STREAM_MARKET
from streams.settings import Settings
from streams.tables import TABLES

try:  # the C builder (replay/_build.c, built by pip install -e .); Python builds the same
    from replay import _build
except ImportError:  # pragma: no cover - a machine without a C compiler
    _build = None  # type: ignore[assignment]

TS = "ts_recv"
SEQ = "stream_seq"
TYPE_OF_TABLE = {t: k for k, t in TABLES.items()}
# ClickHouse writes LowCardinality columns as Arrow dictionaries with this: the Python list
# of a million venue names is then a million references to one string, built by numpy
ARROW_SETTINGS = {"output_format_arrow_low_cardinality_as_dictionary": 1}
ARROW_SETTINGS_SQL = ", ".join(f"{k} = {v}" for k, v in ARROW_SETTINGS.items())
# Batches of about this many rows of a table: the memory a batch's messages take is then
# reused by the next batch's, where 200k-row batches took fresh pages each time (measured on
# 1M trades + 200k depth from Parquet: 2.07 -> 1.69 s CPU, peak RSS 357 -> 231 MiB)
BATCH_ROWS = 16_384


class ColumnarError(RuntimeError):
    pass


# -- Arrow -> Python, one column at a time ---------------------------------------------------
def column_list(col: pa.Array | pa.ChunkedArray) -> list[Any]:
    """The column's values as Python objects, equal to what ``to_pylist`` gives except that
    (price, size) structs become tuples (``schemas.Level``)."""
    if isinstance(col, pa.ChunkedArray):
        if col.num_chunks == 1:
            col = col.chunk(0)
        else:  # chunk by chunk: no copy into one buffer, no dictionary unification
            out: list[Any] = []
            for chunk in col.chunks:
                out += column_list(chunk)
            return out
    t = col.type
    if pa.types.is_dictionary(t):
        values = np.array([*column_list(col.dictionary), None], dtype=object)
        idx = col.indices
        if idx.null_count:  # rare; nulls point at the None appended to the values (in Python:
            # pc.fill_null with a Python int imports pandas, see _numpy)
            none = len(values) - 1
            return values[[none if i is None else i for i in idx.to_pylist()]].tolist()  # type: ignore[no-any-return]
        return values[_numpy(idx)].tolist()  # type: ignore[no-any-return]
    if col.null_count == 0 and (
        pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
    ):
        return _numpy(col).tolist()  # type: ignore[no-any-return]
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        vt = t.value_type
        if pa.types.is_struct(vt) and vt.num_fields == 2 and col.null_count == 0:
            flat = col.flatten()
            off = _numpy(col.offsets)
            # (a numpy record array's tolist() makes these tuples in C, but measured in a whole
            # replay it was 6 % slower than zip: not used)
            pairs = list(zip(column_list(flat.field(0)), column_list(flat.field(1)), strict=True))
            off = (off - off[0]).tolist()  # a slice's offsets start where the slice does
            return [pairs[a:b] for a, b in itertools.pairwise(off)]
    return col.to_pylist()


def c_column(arr: pa.Array) -> Any:
    """How ``_build.build`` reads ``arr``: its buffers, zero-copy, for the types the schemas'
    columns have without nulls; anything else as ``column_list`` (objects, read as they are)."""
    t = arr.type
    if arr.null_count:
        return column_list(arr)
    if pa.types.is_dictionary(t):
        return (_build.DICT, column_list(arr.dictionary), _numpy(arr.indices))
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return (_build.NUM, _numpy(arr))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        _, offsets, data = arr.buffers()
        if data is None:  # only empty strings
            return column_list(arr)
        width = np.int64 if pa.types.is_large_string(t) else np.int32
        offsets = np.frombuffer(offsets, width)[arr.offset : arr.offset + len(arr) + 1]
        return (_build.STR, offsets, data)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        values = arr.values  # the whole child: the slice's offsets point into it
        vt = values.type
        if pa.types.is_struct(vt) and vt.num_fields == 2 and values.null_count == 0:
            price, size = values.field(0), values.field(1)
            if (pa.types.is_floating(price.type) and pa.types.is_floating(size.type)
                    and price.null_count == 0 and size.null_count == 0):  # fmt: skip
                return (_build.LEVELS, _numpy(price), _numpy(size), _numpy(arr.offsets))
    return column_list(arr)


def _numpy(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numeric (or boolean) column without nulls as numpy, zero-copy where Arrow allows.
    Not ``to_numpy``: its conversion (ConvertArrayToPandas) imports pandas on first use,
    0.3-1.5 s per process measured here, paid again by every sweep worker."""
    if isinstance(arr, pa.ChunkedArray):
        if arr.num_chunks != 1:
            return np.concatenate([_numpy(c) for c in arr.chunks])
        arr = arr.chunk(0)
    if pa.types.is_boolean(arr.type):  # bit-packed: DLPack cannot view it
        return np.from_dlpack(pc.cast(arr, pa.uint8())).astype(bool)
    return np.from_dlpack(arr)


class Builder:
    """Typed messages of one ``streams.schemas`` class from Arrow columns named like its
    fields. ``build(table)`` -> list of messages in row order."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.fields: tuple[str, ...] = cls.__struct_fields__  # type: ignore[attr-defined]
        args = ", ".join(f"a{i}" for i in range(len(self.fields)))
        kws = ", ".join(f"{f}=a{i}" for i, f in enumerate(self.fields))
        # one comprehension with the keywords spelled out: the Struct constructor in C,
        # no per-row dict or argument unpacking (the generated text has only field names)
        src = f"def make(cls, cols):\n    return [cls({kws}) for {args} in zip(*cols)]\n"
        ns: dict[str, Any] = {}
        exec(src, ns)  # the text is built from the schema's own field names
        self._make: Callable[[type, list[list[Any]]], list[Any]] = ns["make"]

    def build(self, table: pa.Table, compiled: bool | None = None) -> list[Any]:
        """The messages of ``table``'s rows; ``compiled``: in C (``_build``), in Python
        (False), or in C when it is built (None). Both give equal messages."""
        missing = [f for f in self.fields if f not in table.column_names]
        if missing:
            raise ColumnarError(f"{self.cls.__name__}: no column {missing[0]} in the data")
        if compiled is None:
            compiled = _build is not None
        elif compiled and _build is None:
            raise ColumnarError("replay/_build.c is not built (pip install -e .)")
        # millions of fresh lists and level tuples would set off the cyclic collector again
        # and again (each pass walking everything still alive); nothing built here can form
        # a cycle, so it stays off while building
        enabled = gc.isenabled()
        gc.disable()
        try:
            if not compiled:
                return self._make(self.cls, [column_list(table.column(f)) for f in self.fields])
            out: list[Any] = []
            for rb in table.to_batches():  # one array per column (a table's may be chunked)
                cols = [c_column(rb.column(f)) for f in self.fields]
                got = _build.build(self.cls, self.fields, cols, rb.num_rows)
                if out:
                    out += got
                else:
                    out = got
            return out
        finally:
            if enabled:
                gc.enable()


_BUILDERS: dict[str, Builder] = {}


def builder(msg_type: str) -> Builder:
    b = _BUILDERS.get(msg_type)
    if b is None:
        b = _BUILDERS[msg_type] = Builder(schemas.MARKET_TYPES[msg_type])
    return b


# -- batches ---------------------------------------------------------------------------------
@dataclass
class Batch:
    """Messages of several tables in replay order. ``kind[i]`` indexes ``types``; ``row[i]``
    is the row of ``tables[types[kind[i]]]`` that message ``i`` is."""

    types: list[str]
    tables: dict[str, pa.Table]
    ts_recv: np.ndarray
    seq: np.ndarray
    kind: np.ndarray
    row: np.ndarray
    _msgs: list[Any] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ts_recv)

    def messages(self) -> list[Any]:
        """Typed messages (``streams.schemas``) in replay order; built once, on first call."""
        if self._msgs is None:
            parts = [builder(t).build(self.tables[t]) for t in self.types]
            if len(parts) == 1:
                self._msgs = parts[0]  # one table: its own order is the replay order
            else:
                if _build is not None:
                    self._msgs = _build.take(parts, self.kind, self.row)
                    return self._msgs
                base = np.cumsum([0] + [len(p) for p in parts[:-1]])
                # the parts in one object array (fromiter: no per-item shape discovery, which
                # slice assignment does), gathered by one fancy index: 98 -> 56 ns/message
                # measured against a flat list and map(list.__getitem__)
                n = len(self.kind)
                flat = np.fromiter(itertools.chain.from_iterable(parts), dtype=object, count=n)
                self._msgs = flat[base[self.kind] + self.row].tolist()
        return self._msgs

    def replay_msgs(self) -> list[ReplayMsg]:
        """As ``replay()`` yields them (subject, stream sequence, JSON bytes): for comparing
        with it; slower than ``messages()``."""
        market, encode = subjects.market, schemas.encode
        return [
            ReplayMsg(market(type(m).__struct_config__.tag, m.venue, m.symbol),  # type: ignore[attr-defined]
                      STREAM_MARKET, s, m.ts_recv, encode(m), None, m)
            for m, s in zip(self.messages(), self.seq.tolist(), strict=True)
        ]  # fmt: skip


def _cut(ts: np.ndarray, seq: np.ndarray, h_ts: int, h_seq: int) -> int:
    """Rows of a (ts, seq)-sorted chunk with key <= (h_ts, h_seq)."""
    lo = int(np.searchsorted(ts, h_ts, "left"))
    hi = int(np.searchsorted(ts, h_ts, "right"))
    return lo + int(np.searchsorted(seq[lo:hi], h_seq, "right"))


def merge_tables(sources: dict[str, Iterator[pa.Table]]) -> Iterator[Batch]:
    """Merge per-table chunk streams, each sorted by (ts_recv, stream_seq), into batches in
    that order. Raises ColumnarError when a source breaks its promise to be sorted."""
    types = list(sources)
    its = [sources[t] for t in types]
    bufs: list[pa.Table | None] = [None] * len(its)
    keys: list[tuple[np.ndarray, np.ndarray]] = [(np.empty(0, np.int64),) * 2] * len(its)  # type: ignore[list-item]
    live = [True] * len(its)
    last: tuple[int, int] = (-(2**63), -1)

    def refill(i: int) -> None:
        while live[i] and (bufs[i] is None or bufs[i].num_rows == 0):  # type: ignore[union-attr]
            try:
                tb = next(its[i])
            except StopIteration:
                live[i] = False
                bufs[i] = None
                return
            if tb.num_rows == 0:
                continue
            ts = _numpy(tb.column(TS))
            seq = _numpy(tb.column(SEQ)).astype(np.int64, copy=False)
            bad = np.flatnonzero((ts[1:] < ts[:-1]) | ((ts[1:] == ts[:-1]) & (seq[1:] <= seq[:-1])))
            if bad.size:
                raise ColumnarError(f"{types[i]}: rows not sorted by (ts_recv, stream_seq)")
            bufs[i], keys[i] = tb, (ts, seq)

    while True:
        for i in range(len(its)):
            refill(i)
        limits = [(int(keys[i][0][-1]), int(keys[i][1][-1])) for i in range(len(its)) if live[i]]
        if not limits:
            return
        h_ts, h_seq = min(limits)
        parts: list[tuple[int, pa.Table, np.ndarray, np.ndarray]] = []
        for i, tb in enumerate(bufs):
            if tb is None or not live[i]:
                continue
            ts, seq = keys[i]
            n = _cut(ts, seq, h_ts, h_seq)
            if n:
                if (int(ts[0]), int(seq[0])) <= last:
                    raise ColumnarError(f"{types[i]}: chunk starts before what was released")
                parts.append((i, tb.slice(0, n), ts[:n], seq[:n]))
                bufs[i] = tb.slice(n)
                keys[i] = (ts[n:], seq[n:])
        yield _batch(types, parts)
        last = (h_ts, h_seq)


def _batch(types: list[str], parts: list[tuple[int, pa.Table, np.ndarray, np.ndarray]]) -> Batch:
    names = [types[i] for i, *_ in parts]
    tables = {types[i]: tb for i, tb, _, _ in parts}
    if len(parts) == 1:
        _, _, ts, seq = parts[0]
        n = len(ts)
        return Batch(names, tables, ts, seq, np.zeros(n, np.int16), np.arange(n))
    ts = np.concatenate([p[2] for p in parts])
    seq = np.concatenate([p[3] for p in parts])
    kind = np.concatenate([np.full(len(p[2]), k, np.int16) for k, p in enumerate(parts)])
    row = np.concatenate([np.arange(len(p[2])) for p in parts])
    order = np.lexsort((seq, ts))
    return Batch(names, tables, ts[order], seq[order], kind[order], row[order])


# -- sources ---------------------------------------------------------------------------------
def _market_filters(
    venues: Sequence[str] | None, symbols: Sequence[str] | None, types: Sequence[str] | None
) -> dict[str, list[tuple[str | None, str | None]]]:
    """type -> OR list of (venue, symbol), None = any; the same selection ``replay()`` makes."""
    sel = select("market.>", venues, symbols, types)
    out: dict[str, list[tuple[str | None, str | None]]] = {}
    for f in sel.filters.get(STREAM_MARKET, ()):
        kinds = list(TABLES) if f[1] == "*" else [f[1]]
        for k in kinds:
            if k not in TABLES:
                raise ValueError(f"unknown market type {k!r}")
            out.setdefault(k, []).append(
                (None if f[2] == "*" else f[2], None if f[3] == "*" else f[3])
            )
    return out


def _lit(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ns(ts: int) -> str:
    return f"fromUnixTimestamp64Nano(toInt64({int(ts)}), 'UTC')"


# DateTime64(9)'s range, 1900-01-01 to 2262-04-11, in ns since the epoch
DT64_MIN_NS = -2_208_988_800 * 10**9
DT64_MAX_NS = 9_223_372_036 * 10**9


class ClickHouseTables:
    """Market tables straight from ClickHouse (chdb path or server), as Arrow, in windows of
    receive time sized to about ``page_rows`` rows, each sorted by (ts_recv, stream_seq)."""

    def __init__(self, dsn: str, page_rows: int = 200_000) -> None:
        import clickhouse_connect

        self.dsn = dsn
        self.page_rows = page_rows
        try:
            self.client: Any = clickhouse_connect.get_client(dsn=dsn)
        except Exception as exc:
            hint = " (a running sink owns the chdb path: stop it or replay an export)"
            hint = hint if dsn.startswith("chdb://") else ""
            raise ColumnarError(f"cannot open ClickHouse {dsn}: {exc}{hint}") from None
        self.bytes = 0
        self._types: dict[str, dict[str, str]] = {}
        # the client is not thread-safe; the windows are fetched ahead on another thread
        self.lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    def column_types(self, table: str) -> dict[str, str]:
        if table in self._types:  # asked again by select_list for every table: one query
            return self._types[table]
        rows = self.rows(
            "SELECT name, type FROM system.columns WHERE database = currentDatabase() "
            f"AND table = {_lit(table)}"
        )
        types = {r[0]: r[1] for r in rows}
        if not types:
            raise ColumnarError(f"no table {table} in ClickHouse {self.dsn}")
        self._types[table] = types
        return types

    def select_list(self, table: str, names: Sequence[str]) -> str:
        types = self.column_types(table)
        out = []
        for i, f in enumerate(names):
            if f not in types:
                raise ColumnarError(f"table {table} has no column {f} (DDL behind the schema?)")
            # aliased apart from the column names: ClickHouse would read an alias named
            # ts_recv in the WHERE as the converted value (renamed back after the query)
            out.append(f"toUnixTimestamp64Nano({f}) AS _c{i}" if "DateTime64" in types[f] else f)
        return ", ".join(out)

    def query(self, q: str) -> pa.Table:
        # the settings in the query's own SETTINGS clause: passed as query settings, the chdb
        # backend SETs and restores them around every query (~4 ms CPU a window, measured)
        with self.lock:
            return self.client.query_arrow(f"{q} SETTINGS {ARROW_SETTINGS_SQL}")

    def rows(self, q: str) -> list[Any]:
        with self.lock:
            return list(self.client.query(q).result_rows)

    def chunks(
        self,
        table: str,
        names: Sequence[str],
        where: str,
        start_ns: int | None,
        end_ns: int | None,
    ) -> Iterator[pa.Table]:
        cond = _cond(where, start_ns, end_ns)
        recv, event = "toUnixTimestamp64Nano(ts_recv)", "toUnixTimestamp64Nano(ts_event)"
        # how far ts_event strays from ts_recv in the selection, where the table has one
        # not Nullable: a bound on ts_event would drop the rows where it is NULL
        has_event = self.column_types(table).get("ts_event", "").startswith("DateTime64")
        d = f"toInt128({recv}) - {event}"  # Int128: 1900 to 2262 does not fit Int64
        skew = f"min({d}), max({d})" if has_event else "NULL, NULL"
        n, lo, hi, d_lo, d_hi = self.rows(
            f"SELECT count(), min({recv}), max({recv}), {skew} FROM {table} WHERE {cond}"
        )[0]
        if not n:
            return
        cols = self.select_list(table, names)
        lo, hi, n = int(lo), int(hi), int(n)
        # windows of receive time: every window is one query, sorted here; windows partition
        # time, so the concatenation is sorted whatever their sizes. The size adapts to the
        # rows a window returned (data is rarely uniform in time); the first is an eighth of
        # a page, so that building messages starts early.
        step = max(1, (hi - lo + 1) * self.page_rows // n // 8)
        a = lo
        while a <= hi:
            b = a + step
            tb = self.query(f"SELECT {cols} FROM {table} WHERE {cond} AND ts_recv >= {_ns(a)} "
                            f"AND ts_recv < {_ns(b)}{_event_range(a, b, d_lo, d_hi)}")  # fmt: skip
            tb = sort_rows(tb.rename_columns(list(names)))
            self.bytes += tb.nbytes
            if tb.num_rows > 2 * self.page_rows and step > 1:
                step //= 2
            elif tb.num_rows < self.page_rows // 2:
                step *= 2
            a = b
            if tb.num_rows:
                yield tb


def sort_rows(tb: pa.Table) -> pa.Table:
    """``tb`` in (ts_recv, stream_seq) order. Here rather than by ClickHouse's ORDER BY, which
    permutes every column in its own threads: numpy's lexsort of the two keys and one Arrow
    take cost 8 ms CPU for a window of 200k trades where the ORDER BY cost 33 ms (measured
    on chdb; both off the thread that builds messages). Rows with equal keys keep the order
    ClickHouse returned them in (stream_seq is unique within a stream)."""
    if tb.num_rows < 2:
        return tb
    ts = _numpy(tb.column(TS))
    seq = _numpy(tb.column(SEQ))
    ts_up, ts_eq = ts[1:] > ts[:-1], ts[1:] == ts[:-1]
    if (ts_up | (ts_eq & (seq[1:] >= seq[:-1]))).all():
        return tb  # already in order (one symbol, one part)
    order = np.lexsort((seq, ts))
    return tb.take(pa.Array.from_buffers(pa.int64(), len(order), [None, pa.py_buffer(order)]))


def _event_range(a: int, b: int, d_lo: int | None, d_hi: int | None) -> str:
    """The ts_event range of the rows whose ts_recv is in [a, b), given that every selected
    row has d_lo <= ts_recv - ts_event <= d_hi: redundant, exact, and what the tables are
    partitioned and keyed by, so a window's query reads its own parts and granules instead
    of the ts_recv column of the whole range again (a window a page: quadratic in the range
    without it). A side whose bound falls outside DateTime64's range is left out."""
    if d_lo is None or d_hi is None:  # no ts_event column
        return ""
    e_lo, e_hi = a - int(d_hi), b - 1 - int(d_lo)
    out = ""
    if DT64_MIN_NS <= e_lo <= DT64_MAX_NS:
        out += f" AND ts_event >= {_ns(e_lo)}"
    if DT64_MIN_NS <= e_hi <= DT64_MAX_NS:
        out += f" AND ts_event <= {_ns(e_hi)}"
    return out


def _cond(where: str, start_ns: int | None, end_ns: int | None) -> str:
    rng = ["1"]
    if start_ns is not None:
        rng.append(f"ts_recv >= {_ns(start_ns)}")
    if end_ns is not None:
        rng.append(f"ts_recv < {_ns(end_ns)}")
    return f"{' AND '.join(rng)} AND ({where})"


def _where(pairs: list[tuple[str | None, str | None]]) -> str:
    ors = []
    for venue, symbol in pairs:
        ands = [f"{c} = {_lit(v)}" for c, v in (("venue", venue), ("symbol", symbol)) if v]
        if not ands:
            return "1"
        ors.append("(" + " AND ".join(ands) + ")")
    return " OR ".join(ors) or "0"


def _equal(col: pa.ChunkedArray, value: str) -> np.ndarray:
    """``col == value`` as numpy bools; a dictionary column compares its few distinct values
    once and then the indices."""
    out = []
    for c in col.chunks:
        if pa.types.is_dictionary(c.type) and c.indices.null_count == 0:
            hits = [i for i, v in enumerate(column_list(c.dictionary)) if v == value]
            out.append(np.isin(_numpy(c.indices), hits))
        else:
            out.append(np.array(c.to_pylist(), dtype=object) == value)
    return np.concatenate(out) if len(out) != 1 else out[0]


def _mask(tb: pa.Table, pairs: list[tuple[str | None, str | None]]) -> np.ndarray | None:
    """The same filter as ``_where``, on an Arrow table; None = keep every row. In numpy:
    ``pc.equal(col, "binance")`` converts the Python string to an Arrow scalar, which
    imports pandas (see ``_numpy``)."""
    out = None
    for venue, symbol in pairs:
        conds = [_equal(tb.column(c), v) for c, v in (("venue", venue), ("symbol", symbol)) if v]
        if not conds:
            return None
        m = conds[0] if len(conds) == 1 else conds[0] & conds[1]
        out = m if out is None else out | m
    return out


def _bool_array(mask: np.ndarray) -> pa.Array:
    """numpy bools as an Arrow boolean array, from its packed bits (``pa.array`` would import
    pandas, see ``_numpy``)."""
    bits = pa.py_buffer(np.packbits(mask, bitorder="little"))
    return pa.Array.from_buffers(pa.bool_(), len(mask), [None, bits])


def parquet_files(path: str | os.PathLike[str]) -> dict[str, Path]:
    """Market type -> file of an export directory (``<table>.parquet``, or ``<table>.arrow``
    as ``arrow_copy`` writes them) or one file."""
    p = Path(path)
    files = sorted([*p.glob("*.parquet"), *p.glob("*.arrow")]) if p.is_dir() else [p]
    if not files or not files[0].is_file():
        raise ColumnarError(f"no Parquet files at {path}")
    out: dict[str, Path] = {}
    for f in files:
        meta = _schema(f).metadata or {}
        table = meta.get(b"jetmarket.table", f.stem.encode()).decode()
        if table in TYPE_OF_TABLE:
            out[TYPE_OF_TABLE[table]] = f
    return out


def _schema(f: Path) -> pa.Schema:
    if f.suffix == ".arrow":
        with pa.memory_map(str(f)) as m:
            return pa.ipc.open_stream(m).schema
    return pq.read_schema(f)


def arrow_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> str:
    """The Parquet files of ``src`` as uncompressed Arrow IPC files in ``dst`` (same names,
    ``.arrow``), for many processes to read at once: memory-mapped, a batch is the file's own
    pages, shared by every reader through the page cache, with no decompression or decoding
    (measured: 0.75 -> 0.53 s CPU and 285 -> 125 MiB peak RSS for one process reading and
    merging 1.2M rows). Written once; ``dst/done`` marks a complete copy."""
    out = Path(dst)
    if (out / "done").exists():
        return str(out)
    out.mkdir(parents=True, exist_ok=True)
    for f in parquet_files(src).values():
        if f.suffix == ".arrow":
            raise ColumnarError(f"{src}: already Arrow files")
        pf = pq.ParquetFile(f)
        tmp = out / (f.stem + ".arrow.tmp")
        # the stream format: Parquet's dictionaries change from row group to row group,
        # which the IPC file format refuses
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, pf.schema_arrow) as w:
            for rb in pf.iter_batches(batch_size=100_000):
                w.write_batch(rb)
        tmp.rename(out / (f.stem + ".arrow"))
    (out / "done").write_text("")
    return str(out)


def parquet_chunks(
    path: Path,
    pairs: list[tuple[str | None, str | None]],
    start_ns: int | None,
    end_ns: int | None,
    page_rows: int,
) -> Iterator[pa.Table]:
    """Rows of an exported file (sorted by ts_recv, stream_seq), skipping row groups outside
    the range by their statistics (Parquet) or by their first and last rows (Arrow)."""
    if path.suffix == ".arrow":
        yield from _arrow_chunks(path, pairs, start_ns, end_ns)
        return
    f = pq.ParquetFile(path)
    names = f.schema_arrow.names
    if TS not in names or SEQ not in names:
        raise ColumnarError(f"{path}: no {TS}/{SEQ} columns (not a jetmarket export)")
    ts_i = names.index(TS)
    groups = []
    for g in range(f.metadata.num_row_groups):
        st = f.metadata.row_group(g).column(ts_i).statistics
        if (
            st is not None
            and st.has_min_max
            and (
                (end_ns is not None and st.min >= end_ns)
                or (start_ns is not None and st.max < start_ns)
            )
        ):
            continue
        groups.append(g)
    if not groups:
        return
    for rb in f.iter_batches(batch_size=page_rows, row_groups=groups):
        tb = _select(pa.Table.from_batches([rb]), pairs, start_ns, end_ns)
        if tb.num_rows:
            yield tb


def _arrow_chunks(
    path: Path,
    pairs: list[tuple[str | None, str | None]],
    start_ns: int | None,
    end_ns: int | None,
) -> Iterator[pa.Table]:
    # not closed here: the batches are views of the map, which stays mapped while any is alive
    r = pa.ipc.open_stream(pa.memory_map(str(path)))
    if TS not in r.schema.names or SEQ not in r.schema.names:
        raise ColumnarError(f"{path}: no {TS}/{SEQ} columns (not a jetmarket export)")
    for rb in r:
        ts = _numpy(rb.column(TS))
        if not len(ts) or (end_ns is not None and ts.min() >= end_ns):
            continue
        if start_ns is not None and ts.max() < start_ns:
            continue
        tb = _select(pa.Table.from_batches([rb]), pairs, start_ns, end_ns)
        if tb.num_rows:
            yield tb


def _select(
    tb: pa.Table,
    pairs: list[tuple[str | None, str | None]],
    start_ns: int | None,
    end_ns: int | None,
) -> pa.Table:
    """The rows of ``tb`` in the range and the selection."""
    ts = _numpy(tb.column(TS))
    conds = []
    if start_ns is not None:
        conds.append(ts >= start_ns)
    if end_ns is not None:
        conds.append(ts < end_ns)
    m = _mask(tb, pairs)
    if m is not None:
        conds.append(m)
    if conds:
        mask = conds[0]
        for c in conds[1:]:
            mask = mask & c
        if not mask.all():
            tb = tb.filter(_bool_array(mask))
    return tb


def ahead(it: Iterator[pa.Table], depth: int = 2) -> Iterator[pa.Table]:
    """The next ``depth`` items of ``it`` fetched on a thread while the caller works: the
    query runs in ClickHouse's C++ without the GIL, beside the Python that builds messages.
    Items and their order are ``it``'s own; an error is raised here, in order."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(depth)
    stop = threading.Event()

    def put(what: str, item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put((what, item), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False  # the consumer has gone

    def pump() -> None:
        try:
            for item in it:
                if not put("item", item):
                    return
            put("end", None)
        except BaseException as exc:  # handed to the consumer, raised there
            put("error", exc)

    t = threading.Thread(target=pump, name="columnar-ahead", daemon=True)
    t.start()
    try:
        while True:
            what, item = q.get()
            if what == "item":
                yield item
            elif what == "end":
                return
            else:
                raise item
    finally:
        stop.set()
        t.join(5)


class Shared:
    """Several table streams that share one connection (ClickHouse: one client, one query at
    a time) fetched ahead by one thread: next for the stream whose fetched rows end earliest
    in receive time, as long as fewer than ``depth`` of its tables wait. The merge releases
    nothing past the smallest of those ends, so that is the stream it waits for; with a
    thread a stream, the first to take the connection fetched its ``depth`` windows before
    any other stream had its first (measured: first batch after 270 ms, 60 ms after the
    connection here). ``streams[k]`` yields ``its[k]``'s items in order; an error is raised
    in the stream it came from."""

    def __init__(self, its: dict[str, Iterator[pa.Table]], depth: int = 2) -> None:
        self.its = its
        self.depth = depth
        self.queues: dict[str, queue.Queue[tuple[str, Any]]] = {k: queue.Queue() for k in its}
        self.ends = dict.fromkeys(its, -(2**63))  # last ts_recv fetched, per stream
        self.room = threading.Condition()  # a consumer took an item (or left)
        self.stop = False
        self.thread = threading.Thread(target=self._pump, name="columnar-ahead", daemon=True)
        self.streams = {k: self._stream(k) for k in its}
        self.started = False

    def _pump(self) -> None:
        live = list(self.its)
        while live:
            with self.room:
                while not self.stop and all(self.queues[k].qsize() >= self.depth for k in live):
                    self.room.wait(0.1)
                if self.stop:
                    return
                k = min((k for k in live if self.queues[k].qsize() < self.depth),
                        key=self.ends.__getitem__)  # fmt: skip
            try:
                tb = next(self.its[k])
            except StopIteration:
                self.queues[k].put(("end", None))
                live.remove(k)
                continue
            except BaseException as exc:  # handed to the consumer, raised there
                self.queues[k].put(("error", exc))
                live.remove(k)
                continue
            if tb.num_rows:
                self.ends[k] = int(_numpy(tb.column(TS))[-1])
            self.queues[k].put(("item", tb))

    def _stream(self, k: str) -> Iterator[pa.Table]:
        if not self.started:
            self.started = True
            self.thread.start()
        ended = False
        try:
            while True:
                what, item = self.queues[k].get()
                with self.room:
                    self.room.notify()
                if what == "item":
                    yield item
                elif what == "end":
                    ended = True
                    return
                else:
                    raise item
        finally:
            if not ended:  # left early (closed, or an error): nothing more is wanted
                self.close()

    def close(self) -> None:
        """Stops the thread (idempotent); called when any stream is closed."""
        with self.room:
            self.stop = True
            self.room.notify()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(5)


def _sliced(it: Iterator[pa.Table], rows: int) -> Iterator[pa.Table]:
    """``it``'s tables in slices of at most ``rows`` (zero-copy)."""
    for tb in it:
        for a in range(0, tb.num_rows, rows):
            yield tb.slice(a, rows)


class Columnar:
    """One columnar replay. ``source``: ``"clickhouse"`` (settings.clickhouse.dsn, read
    directly) or the path of a Parquet export (directory or file). ``page_rows``: rows per
    read (a ClickHouse query, a Parquet batch); ``batch_rows``: about the most rows of one
    table in a ``Batch``."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        source: str | os.PathLike[str] = "clickhouse",
        start: Any = None,
        end: Any = None,
        venues: Sequence[str] | None = None,
        symbols: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        page_rows: int | None = None,
        dsn: str | None = None,
        batch_rows: int = BATCH_ROWS,
    ) -> None:
        self.start_ns = parse_time(start)
        self.end_ns = parse_time(end)
        if self.start_ns is not None and self.end_ns is not None and self.end_ns <= self.start_ns:
            raise ValueError("end must be after start")
        self.filters = _market_filters(venues, symbols, types)
        self.page_rows = page_rows or (settings.replay.page_rows if settings else 100_000)
        self.source = str(source)
        self.dsn = dsn or (settings.clickhouse.dsn if settings else None)
        self.batch_rows = batch_rows
        self.messages = 0

    def _sources(self) -> tuple[dict[str, Iterator[pa.Table]], Callable[[], None]]:
        if self.source == "clickhouse":
            if not self.dsn:
                raise ColumnarError("no ClickHouse DSN (settings.clickhouse.dsn)")
            ch = ClickHouseTables(self.dsn, self.page_rows)
            its = {}
            for k, pairs in self.filters.items():
                names = [*schemas.MARKET_TYPES[k].__struct_fields__, SEQ]
                table = TABLES[k]
                if not ch.rows(f"EXISTS TABLE {table}")[0][0]:
                    continue
                its[k] = ch.chunks(table, names, _where(pairs), self.start_ns, self.end_ns)
            shared = Shared(its)

            def close() -> None:
                shared.close()  # stops the fetch thread before the client goes
                for it in shared.streams.values():
                    it.close()  # type: ignore[attr-defined]
                ch.close()

            return shared.streams, close
        files = parquet_files(self.source)
        out = {
            k: ahead(parquet_chunks(files[k], pairs, self.start_ns, self.end_ns, self.page_rows))
            for k, pairs in self.filters.items()
            if k in files
        }

        def close_files() -> None:
            for it in out.values():
                it.close()  # type: ignore[attr-defined]

        return out, close_files

    def batches(self) -> Iterator[Batch]:
        sources, close = self._sources()
        sliced = {k: _sliced(it, self.batch_rows) for k, it in sources.items()}
        try:
            for batch in merge_tables(sliced):
                self.messages += len(batch)
                yield batch
        finally:
            close()

    def __iter__(self) -> Iterator[Any]:
        for batch in self.batches():
            yield from batch.messages()


def replay_batches(settings: Settings | None = None, **kwargs: Any) -> Iterator[Batch]:
    """``for batch in replay_batches(settings, start=..., types=[...])``; see ``Columnar``."""
    return Columnar(settings, **kwargs).batches()


def replay_typed(settings: Settings | None = None, **kwargs: Any) -> Iterable[Any]:
    """Typed messages in replay order; see ``Columnar``."""
    return Columnar(settings, **kwargs)
