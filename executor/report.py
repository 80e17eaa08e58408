"""``jetmarket exec report`` (``python -m executor report``): transaction-cost analysis from
the ``tca`` table, as a table, CSV or JSON; and ``jetmarket exec algo``: send an algo command
(new/pause/resume/amend/cancel) to the executor and print its answer.

The report reads ClickHouse like ``jetmarket sql`` (through the sink for a chdb DSN, the
server directly otherwise) as the read-only ``reader``; algo commands go as the ``trader``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time

import orjson

from streams import schemas, sql, subjects
from streams.bus import logs
from streams.settings import Settings

# Values go into the query as literals: only what a subject token or an id may hold.
_TOKEN = re.compile(r"^[A-Za-z0-9_:./-]{1,64}$")
_SINCE = re.compile(r"^(\d+)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}

COLUMNS = (
    "scope, id, parent_id, algo, account, venue, symbol, side, quantity, filled, "
    "round(fill_ratio, 4) AS fill_ratio, round(avg_price, 8) AS avg_price, arrival_mid, "
    "round(interval_vwap, 8) AS interval_vwap, round(slippage_bps, 3) AS slippage_bps, "
    "round(vwap_slippage_bps, 3) AS vwap_slippage_bps, round(shortfall, 6) AS shortfall, "
    "round(shortfall_bps, 3) AS shortfall_bps, round(fees, 8) AS fees, children, "
    "round(time_to_fill_s, 3) AS time_to_fill_s, round(ack_latency_ms, 3) AS ack_latency_ms, "
    "ts_event AS ts_end"
)


class ReportError(ValueError):
    pass


def report_sql(
    account: str | None = None,
    parent: str | None = None,
    scope: str = "parent",
    since: str | None = None,
    limit: int = 100,
) -> str:
    """The report's query; ReportError (one line) for a value it cannot take."""
    where = []
    if scope != "all":
        if scope not in ("parent", "order"):
            raise ReportError("--scope must be parent, order or all")
        where.append(f"scope = '{scope}'")
    for name, value, clause in (
        ("account", account, "account = '{v}'"),
        ("parent", parent, "(parent_id = '{v}' OR id = '{v}')"),
    ):
        if value is None:
            continue
        if not _TOKEN.match(value):
            raise ReportError(f"--{name} {value!r}: letters, digits and _ : . / - only")
        where.append(clause.format(v=value))
    if since is not None:
        m = _SINCE.match(since)
        if m is None:
            raise ReportError(f"--since {since!r}: a number and s, m, h or d (e.g. 30m, 7d)")
        where.append(f"ts_event >= now64(9) - INTERVAL {int(m[1]) * _UNIT[m[2]]} SECOND")
    if not 1 <= limit <= 100_000:
        raise ReportError("--limit must be 1-100000")
    cond = f" WHERE {' AND '.join(where)}" if where else ""
    return f"SELECT {COLUMNS} FROM tca{cond} ORDER BY ts_event DESC, id LIMIT {limit}"


async def run_query(settings: Settings, query: str, timeout: float = 30.0) -> sql.SqlResult:
    if settings.clickhouse.dsn.startswith("chdb://"):
        from streams.bus.connect import connect

        nc = await connect(settings.nats, "sql", role=settings.nats.role or "reader",
                           max_reconnect_attempts=0)  # fmt: skip
        try:
            return await sql.query(nc, query, timeout=timeout, max_rows=100_000)
        finally:
            await nc.close()
    return sql.query_direct(sql.query_dsn(settings), query, max_rows=100_000)


FORMATS = {"table": sql.format_table, "csv": sql.format_csv, "json": sql.format_json}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jetmarket exec", description="execution reports and algo commands"
    )
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("report", help="transaction-cost analysis per parent or order (tca table)")
    r.add_argument("--account", help="one account")
    r.add_argument("--parent", help="one parent (its row and, with --scope all, its children)")
    r.add_argument("--scope", default="parent", choices=["parent", "order", "all"],
                   help="parents, child orders or both (parent)")  # fmt: skip
    r.add_argument("--since", help="only rows of the last N s/m/h/d, e.g. 1h")
    r.add_argument("--limit", type=int, default=100, help="rows at most (100)")
    r.add_argument("--format", choices=list(FORMATS), default="table", help="output (table)")
    a = sub.add_parser("algo", help="send an algo command to the executor and print the answer")
    a.add_argument("action", choices=["new", "pause", "resume", "amend", "cancel"])
    a.add_argument("parent_id")
    a.add_argument("--account", default="paper", help="the account (paper)")
    a.add_argument("--venue", default="binance", help="venue (binance)")
    a.add_argument("--symbol", default="", help="symbol, e.g. BTC-USDT (new)")
    a.add_argument("--algo", choices=["twap", "vwap", "pov", "iceberg", "peg"], help="(new)")
    a.add_argument("--side", choices=["buy", "sell"], help="(new)")
    a.add_argument("--quantity", help="base units, a decimal string")
    a.add_argument("--limit-price", help="never buy above / sell below")
    a.add_argument("--duration", type=float, help="seconds from now to end_ts (horizon)")
    a.add_argument("--slices", type=int, help="TWAP/VWAP children")
    a.add_argument("--participation", type=float, help="POV share (or cap of the others)")
    a.add_argument("--display", help="iceberg visible quantity")
    a.add_argument("--offset-ticks", type=int, default=0, help="peg: ticks inside the touch")
    return p


async def _algo(settings: Settings, args: argparse.Namespace) -> int:
    from streams.bus.connect import connect

    now = time.time_ns()
    cmd = schemas.AlgoCommand(
        account=args.account, venue=args.venue, symbol=args.symbol, ts_event=now, ts_recv=now,
        action=args.action, parent_id=args.parent_id, algo=args.algo, side=args.side,
        quantity=args.quantity, limit_price=args.limit_price,
        end_ts=now + int(args.duration * 1e9) if args.duration else None, slices=args.slices,
        participation=args.participation, display=args.display, offset_ticks=args.offset_ticks,
    )  # fmt: skip
    nc = await connect(settings.nats, "exec-cli", role=settings.nats.role or "trader",
                       max_reconnect_attempts=0)  # fmt: skip
    try:
        msg = await nc.request(subjects.exec_req(cmd.account), schemas.encode(cmd), timeout=15)
    finally:
        await nc.close()
    reply = orjson.loads(msg.data)
    print(orjson.dumps(reply).decode())
    return 0 if reply.get("accepted") else 1


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    settings = logs.command_settings("jetmarket exec")
    if settings is None:
        return 2
    try:
        if args.what == "algo":
            return asyncio.run(_algo(settings, args))
        query = report_sql(args.account, args.parent, args.scope, args.since, args.limit)
        result = asyncio.run(run_query(settings, query))
    except (ReportError, sql.SqlError) as exc:
        print(f"jetmarket exec {args.what}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # NATS unreachable, no credentials: one line, no traceback
        print(f"jetmarket exec {args.what}: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    print(FORMATS[args.format](result))
    return 0


def rows_as_dicts(result: sql.SqlResult) -> list[dict[str, object]]:
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]
