"""Table TTLs from settings (``clickhouse.ttl_days``): the statements that bring a table's TTL
to the configured number of days, and nothing when it is already there.

The TTL is ``toDateTime(<partition column>) + INTERVAL N DAY`` with ``ttl_only_drop_parts = 1``:
tables are partitioned by day on that column, so an expired day is a set of whole parts that
ClickHouse drops without rewriting anything. The single-node DDL (infra/clickhouse/) creates
tables with the default days; the sink calls :func:`plan` at every start for each table, so a
changed setting (or a table created before TTLs existed) is altered once and then left alone.

Pure functions over ``system.tables`` rows; the sink's Store runs the statements.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from streams.settings import TtlDays

# every configurable table kept forever: for tests and benchmarks that seed historic rows
KEEP_ALL: dict[str, int] = dict.fromkeys(TtlDays.__struct_fields__, 0)

_OURS = re.compile(r"\bTTL toDateTime\((\w+)\) \+ toIntervalDay\((\d+)\)(?= SETTINGS |$)")
_ANY = re.compile(r"\bTTL\b")
_DROP_PARTS = re.compile(r"\bttl_only_drop_parts = 1\b")
_PARTITION = re.compile(r"^toYYYYMM(?:DD)?\((\w+)\)$")
# Distributed('cluster', db, local_table, sharding key): printed with or without quotes
_DISTRIBUTED = re.compile(r"^Distributed\('?([^',]+)'?,\s*[^,]+,\s*'?(\w+)'?")


class TableRow(NamedTuple):
    """What ``system.tables`` says about one table."""

    name: str
    engine: str
    engine_full: str
    partition_key: str


class Plan(NamedTuple):
    table: str
    statements: list[str]
    change: str  # "raw_frames: 30 -> 7 days", "" when nothing changes
    warning: str = ""  # a TTL someone else wrote, left as it is


def current_days(engine_full: str) -> int | None:
    """Days of a TTL this module wrote, 0 when the table has no TTL, None for another TTL."""
    if m := _OURS.search(engine_full):
        return int(m.group(2))
    return None if _ANY.search(engine_full) else 0


def distributed_target(engine_full: str) -> tuple[str, str] | None:
    """(cluster, local table) of a Distributed table's engine, else None."""
    m = _DISTRIBUTED.match(engine_full)
    return (m.group(1), m.group(2)) if m else None


def plan(row: TableRow, days: int, cluster: str = "") -> Plan:
    """Statements that give ``row`` (a MergeTree table) a TTL of ``days`` (0: none).

    ``cluster``: the table is the ``<name>_local`` of a Distributed table and is altered on
    every node (ON CLUSTER). A TTL of another form (moves to a volume, a WHERE clause ...) is
    replaced when days > 0, since the setting is what the operator asked for, but never
    removed by days = 0: that would delete a rule the sink does not own."""
    on = f" ON CLUSTER '{cluster}'" if cluster else ""
    have = current_days(row.engine_full)
    if days == 0:
        if have is None:
            return Plan(row.name, [], "", f"{row.name}: TTL not written by jetmarket, left as is")
        if have == 0:
            return Plan(row.name, [], "")
        return Plan(row.name, [f"ALTER TABLE {row.name}{on} REMOVE TTL"], f"{row.name}: "
                    f"{have} days -> kept forever")  # fmt: skip
    m = _PARTITION.match(row.partition_key.strip())
    if m is None:
        raise ValueError(f"{row.name}: no daily/monthly time partition key to expire by")
    stmts = []
    if not _DROP_PARTS.search(row.engine_full):
        stmts.append(f"ALTER TABLE {row.name}{on} MODIFY SETTING ttl_only_drop_parts = 1")
    ours = _OURS.search(row.engine_full)
    if not (ours and int(ours.group(2)) == days and ours.group(1) == m.group(1)):
        stmts.append(
            f"ALTER TABLE {row.name}{on} MODIFY TTL toDateTime({m.group(1)}) + INTERVAL {days} DAY"
        )
    was = "forever" if have == 0 else ("another TTL" if have is None else f"{have} days")
    change = f"{row.name}: {was} -> {days} days" if stmts else ""
    return Plan(row.name, stmts, change)


def plans(rows: list[TableRow], days: dict[str, int]) -> list[Plan]:
    """One plan per configured table present in ``rows``; a Distributed table's TTL goes on
    its local table on the whole cluster (a Distributed table has no storage to expire)."""
    by_name = {r.name: r for r in rows}
    out = []
    for table, d in days.items():
        row = by_name.get(table)
        if row is None:
            continue  # not created here (e.g. raw frames not stored): nothing to expire
        if row.engine == "Distributed":
            target = distributed_target(row.engine_full)
            local = by_name.get(target[1]) if target else None
            if target is None or local is None:
                raise ValueError(f"{table}: Distributed table whose local table is not found")
            out.append(plan(local, d, cluster=target[0]))
        else:
            out.append(plan(row, d))
    return out
