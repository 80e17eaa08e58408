"""Rows for the tables of ``streams.tables``: columns per message class.

Column names equal the msgspec field names of ``streams.schemas`` (checked by a test
against the live DDL), plus ``stream_seq`` (the JetStream sequence, used for dedup).
Rows are built column-oriented: one list per column per batch, no per-row dicts.
"""

from __future__ import annotations

import re
from operator import attrgetter

from streams.schemas import EXEC_TYPES, MARKET_TYPES, Base, ExecBase

# re-exported: the sink's code reads the whole table map through this module
from streams.tables import EXEC_TABLES as EXEC_TABLES
from streams.tables import RAW_COLUMNS as RAW_COLUMNS
from streams.tables import RAW_TABLE as RAW_TABLE
from streams.tables import SEQ as SEQ
from streams.tables import TABLES as TABLES

TABLE_OF_CLASS: dict[type, str] = {
    **{MARKET_TYPES[t]: name for t, name in TABLES.items()},
    **{EXEC_TYPES[t]: name for t, name in EXEC_TABLES.items()},
}


def fields(cls: type[Base] | type[ExecBase]) -> tuple[str, ...]:
    return cls.__struct_fields__


def columns(cls: type[Base] | type[ExecBase]) -> list[str]:
    return [*fields(cls), SEQ]


_getters: dict[type, list[attrgetter]] = {
    cls: [attrgetter(f) for f in fields(cls)] for cls in TABLE_OF_CLASS
}


def to_columns(cls: type, msgs: list, seqs: list[int]) -> list[list]:
    return [[g(m) for m in msgs] for g in _getters[cls]] + [seqs]


# Integer ranges of the ClickHouse types the DDL uses. A decodable message can still carry
# a value its column cannot hold (a venue sends seq 2**64-1, levels 70000); clickhouse-connect
# would then refuse the whole batch on every retry and stall the stream, so such rows are
# found before the insert and sent to dlq.sink instead.
_INT_RANGES: dict[str, tuple[int, int]] = {
    **{f"UInt{b}": (0, 2**b - 1) for b in (8, 16, 32, 64)},
    **{f"Int{b}": (-(2 ** (b - 1)), 2 ** (b - 1) - 1) for b in (8, 16, 32, 64)},
    "DateTime64": (-(2**63), 2**63 - 1),
}


def int_range(ch_type: str) -> tuple[int, int] | None:
    """Range of an integer-like ClickHouse type (through Nullable/LowCardinality), else None."""
    t = ch_type
    while t.startswith(("Nullable(", "LowCardinality(")):
        t = t[t.index("(") + 1 : -1]
    return _INT_RANGES.get(t.split("(")[0])


def bounds(column_types: dict[str, str]) -> dict[str, tuple[int, int]]:
    """Column -> (min, max) for the integer-like columns of one table (from system.columns)."""
    return {c: r for c, t in column_types.items() if c != SEQ and (r := int_range(t)) is not None}


def out_of_range(
    names: list[str], data: list[list], limits: dict[str, tuple[int, int]]
) -> dict[int, str]:
    """Row index -> reason, for rows holding a value outside its column's range.

    Cheap on good batches: one C-level min/max per integer column."""
    bad: dict[int, str] = {}
    for name, col in zip(names, data, strict=True):
        lim = limits.get(name)
        if lim is None or not col:
            continue
        lo, hi = lim
        vals = [v for v in col if v is not None] if None in col else col
        if not vals or (lo <= min(vals) and max(vals) <= hi):
            continue
        for i, v in enumerate(col):
            if v is not None and not lo <= v <= hi and i not in bad:
                bad[i] = f"{name}={v} outside [{lo}, {hi}]"
    return bad


def drop_rows(data: list[list], rows: set[int]) -> list[list]:
    return [[v for i, v in enumerate(col) if i not in rows] for col in data]


DAY_NS = 86_400 * 10**9
_PARTITION_KEY = re.compile(r"^toYYYYMM(?:DD)?\((\w+)\)$")


def partition_column(key: str) -> str | None:
    """The time column of a ``toYYYYMMDD(col)`` / ``toYYYYMM(col)`` partition key, else None."""
    m = _PARTITION_KEY.match(key.strip())
    return m.group(1) if m else None


def split_by_day(names: list[str], data: list[list], column: str, limit: int) -> list[list[list]]:
    """A column-oriented block cut into consecutive slices, each with rows of at most
    ``limit`` UTC days of ``column`` (nanosecond ints), which bounds the partitions one
    insert touches for daily and monthly keys alike. Slices keep row (= stream) order, so
    after a crash between two of them everything below the table's high-water mark is
    stored. A block within ``limit`` days, the usual case, is returned whole after one
    C-level min/max."""
    col = data[names.index(column)]
    if not col:
        return [data]
    try:
        if max(col) // DAY_NS - min(col) // DAY_NS < limit:
            return [data]
        days = [v // DAY_NS for v in col]
    except TypeError:  # not integer nanoseconds: leave it to ClickHouse
        return [data]
    cuts: list[tuple[int, int]] = []
    seen: set[int] = set()
    start = 0
    for i, d in enumerate(days):
        if d not in seen:
            if len(seen) == limit:
                cuts.append((start, i))
                start, seen = i, set()
            seen.add(d)
    cuts.append((start, len(days)))
    return [[c[a:b] for c in data] for a, b in cuts]
