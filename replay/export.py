"""``jetmarket export``: ClickHouse tables of a time range (and venues/symbols) to Parquet or
CSV files, one file per table, ``<out>/<table>.parquet``.

    jetmarket export --out var/export/day1 --table trades --table depth \\
        --start 2025-01-01T00:00:00Z --end 2025-01-02T00:00:00Z --symbol BTC-USDT

Rows are written in replay order (ts_recv, stream_seq), timestamps as integer ns, so
``replay.columnar`` replays a Parquet export exactly as it replays ClickHouse (row groups
outside a range are skipped by their statistics). CSV is for other tools: the nested
(price, size) levels become JSON text there, and the replay reads Parquet only.
Reads ClickHouse directly: with chdb, stop the sink that owns the path first.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from tqdm import tqdm

from replay.columnar import ClickHouseTables, ColumnarError, _cond, _lit, _where
from replay.model import parse_time
from streams.tables import EXEC_TABLES, RAW_TABLE, TABLES

ROW_GROUP = 128 * 1024  # rows per Parquet row group: the unit a time range can skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="directory for <table>.parquet / .csv")
    p.add_argument("--table", action="append", required=True,
                   help="table or market type (trades, trade, depth, raw_frames, fills...); "
                   "repeat for several")  # fmt: skip
    p.add_argument("--start", help="ISO-8601, epoch s/ns, or a duration before now (2h)")
    p.add_argument("--end", help="same forms as --start (exclusive)")
    p.add_argument("--venue", action="append", help="repeat for several")
    p.add_argument("--symbol", action="append", help="repeat for several")
    p.add_argument("--format", choices=["parquet", "csv"], default="parquet", help="file format")
    p.add_argument("--page-rows", type=int, default=200_000, help="rows per ClickHouse read")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: when stderr is a terminal)")  # fmt: skip


def table_name(name: str) -> str:
    known = {RAW_TABLE, *TABLES.values(), *EXEC_TABLES.values()}
    name = TABLES.get(name, EXEC_TABLES.get(name, name))
    if name not in known:
        raise ColumnarError(f"unknown table {name!r}: one of {', '.join(sorted(known))}")
    return name


def export(
    dsn: str,
    out: str | os.PathLike[str],
    tables: list[str],
    *,
    start: Any = None,
    end: Any = None,
    venues: list[str] | None = None,
    symbols: list[str] | None = None,
    fmt: str = "parquet",
    page_rows: int = 200_000,
    progress: bool = False,
) -> dict[str, int]:
    """Rows written per table file."""
    start_ns, end_ns = parse_time(start), parse_time(end)
    if start_ns is not None and end_ns is not None and end_ns <= start_ns:
        raise ValueError("end must be after start")
    names = [table_name(t) for t in tables]
    pairs = [(v, s) for v in (venues or [None]) for s in (symbols or [None])]
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    ch = ClickHouseTables(dsn, page_rows)
    written: dict[str, int] = {}
    try:
        for table in names:
            cols = [r[0] for r in ch.rows(
                "SELECT name FROM system.columns WHERE database = currentDatabase() "
                f"AND table = {_lit(table)} ORDER BY position")]  # fmt: skip
            if not cols:
                raise ColumnarError(f"no table {table} in ClickHouse")
            if "ts_recv" not in cols or "stream_seq" not in cols:
                raise ColumnarError(f"{table} has no ts_recv/stream_seq: not exportable")
            if (venues and "venue" not in cols) or (symbols and "symbol" not in cols):
                raise ColumnarError(f"{table} has no venue/symbol column to filter on")
            where = _where(pairs)
            path = outdir / f"{table}.{fmt}"
            tmp = path.with_suffix(path.suffix + ".part")  # a cut-short export is not a file
            cond = _cond(where, start_ns, end_ns)
            total = int(ch.rows(f"SELECT count() FROM {table} WHERE {cond}")[0][0])
            bar = tqdm(total=total, unit="row", unit_scale=True, desc=table, disable=not progress,
                       mininterval=0.5)  # fmt: skip
            n = 0
            writer: Any = None
            try:
                for tb in ch.chunks(table, cols, where, start_ns, end_ns):
                    if fmt == "csv":
                        tb = _flat(tb)
                    if writer is None:
                        schema = tb.schema.with_metadata({b"jetmarket.table": table.encode()})
                        if fmt == "parquet":
                            writer = pq.ParquetWriter(tmp, schema, compression="zstd")
                        else:
                            writer = pacsv.CSVWriter(tmp, tb.schema)
                    if fmt == "parquet":
                        writer.write_table(tb.replace_schema_metadata(schema.metadata),
                                           row_group_size=ROW_GROUP)  # fmt: skip
                    else:
                        writer.write_table(tb)
                    n += tb.num_rows
                    bar.update(tb.num_rows)
                if writer is not None:
                    writer.close()
            except BaseException:  # a full disk, Ctrl-C: the cut-short part is removed
                if writer is not None:
                    with contextlib.suppress(Exception):  # its footer may not fit either
                        writer.close()
                tmp.unlink(missing_ok=True)
                raise
            finally:
                bar.close()
            if writer is None:  # nothing in range: no file (an old one would mislead)
                path.unlink(missing_ok=True)
            else:
                tmp.replace(path)
            written[table] = n
    finally:
        ch.close()
    return written


def _flat(tb: pa.Table) -> pa.Table:
    """CSV has no nested or dictionary columns: levels as JSON text, dictionaries decoded."""
    cols = []
    for name in tb.column_names:
        col = tb.column(name)
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        elif pa.types.is_list(col.type):
            col = pa.array([orjson.dumps([list(v.values()) if isinstance(v, dict) else v
                                         for v in row]).decode() if row is not None else None
                            for row in col.to_pylist()], pa.string())  # fmt: skip
        cols.append(col)
    return pa.table(cols, names=tb.column_names)


def run(args: argparse.Namespace, dsn: str) -> int:
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    try:
        done = export(dsn, args.out, args.table, start=args.start, end=args.end,
                      venues=args.venue, symbols=args.symbol, fmt=args.format,
                      page_rows=args.page_rows, progress=progress)  # fmt: skip
    except (ColumnarError, ValueError) as exc:
        print(f"jetmarket export: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # --out is a file, not writable, the disk is full: one line
        print(f"jetmarket export: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for table, n in done.items():
        where = Path(args.out) / f"{table}.{args.format}"
        print(f"{table:16s} {n:>12,d} rows -> {where if n else '(none in range, no file)'}")
    return 0
