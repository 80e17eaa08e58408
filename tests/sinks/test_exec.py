"""EXEC stream -> orders, fills, positions, order_commands: stored once, columns = fields."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext

from sinks.clickhouse import tables
from streams import schemas, sql, subjects
from streams.bus.server import NatsServer
from tests.conftest import make_settings
from tests.pipeline.test_e2e import wait_rows
from tests.workers import Proc

NS = 1_700_000_000_000_000_000


def exec_messages(n: int) -> list[tuple[str, schemas.ExecBase]]:
    out: list[tuple[str, schemas.ExecBase]] = []
    for i in range(n):
        b = {"account": "desk1", "venue": "paper", "symbol": "BTC-USDT", "ts_event": NS + i,
             "ts_recv": NS + i}  # fmt: skip
        cid = f"c{i}"
        out.append((subjects.exec_cmd("desk1"), schemas.OrderCommand(
            **b, action="new", client_order_id=cid, side="buy", order_type="limit",
            quantity="0.0100", price="65000.10")))  # fmt: skip
        evt = subjects.exec_evt("desk1", "paper", "BTC-USDT")
        out.append((evt, schemas.OrderUpdate(
            **b, client_order_id=cid, venue_order_id=f"v{i}", state="filled", side="buy",
            order_type="limit", quantity=0.01, price=65000.1, filled=0.01,
            avg_price=65000.1)))  # fmt: skip
        out.append((evt, schemas.Fill(
            **b, client_order_id=cid, venue_order_id=f"v{i}", trade_id=f"t{i}", side="buy",
            price=65000.1, size=0.01, fee=0.26, fee_currency="USDT",
            liquidity="maker")))  # fmt: skip
        out.append((subjects.exec_pos("desk1"), schemas.Position(
            **b, size=0.01 * (i + 1), avg_price=65000.1, realized_pnl=0.0, unrealized_pnl=1.5,
            fees=0.26 * (i + 1), mark_price=65150.0)))  # fmt: skip
        # parents and TCA (executor/algo): the algo_commands, parents and tca tables
        out.append((subjects.exec_cmd("desk1"), schemas.AlgoCommand(
            **b, action="new", parent_id=f"p{i}", algo="twap", side="buy", quantity="1",
            end_ts=NS + i + 60, venues=["paper"])))  # fmt: skip
        out.append((evt, schemas.ParentUpdate(
            **b, parent_id=f"p{i}", algo="vwap", state="working", side="buy", quantity=1.0,
            start_ts=NS + i, profile=[0.5, 0.5], version=1)))  # fmt: skip
        out.append((evt, schemas.Tca(
            **b, scope="parent", id=f"p{i}", side="buy", quantity=1.0, filled=1.0,
            ts_start=NS + i, ts_end=NS + i + 5, slippage_bps=1.5)))  # fmt: skip
    return out


async def test_exec_records_stored_once_with_matching_columns(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    settings = make_settings(tmp_path, nats_server.url, sink={"flush_interval_s": 0.1})
    sink = Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log").start()
    try:
        msgs = exec_messages(250)
        # forged history: a fill published on the command subject, and a position on
        # desk1's subject naming another account; neither is the executor's record
        fill = next(m for _, m in msgs if isinstance(m, schemas.Fill))
        forged = schemas.Fill(**{**msgspec.structs.asdict(fill), "trade_id": "forged",
                                 "size": 5000.0, "side": "sell"})  # fmt: skip
        pos = next(m for _, m in msgs if isinstance(m, schemas.Position))
        other = schemas.Position(**{**msgspec.structs.asdict(pos), "account": "desk2"})
        msgs[100:100] = [(subjects.exec_cmd("desk1"), forged),
                         (subjects.exec_pos("desk1"), other)]  # fmt: skip
        acks = [await js.publish_async(s, schemas.encode(m)) for s, m in msgs]
        await asyncio.gather(*acks)
        assert await wait_rows(nc, "SELECT count() FROM positions", 250, 60) == 250
        await asyncio.sleep(0.5)
        for table in tables.EXEC_TABLES.values():
            assert (await sql.query(nc, f"SELECT count() FROM {table}")).rows == [[250]], table
        for kind, table in tables.EXEC_TABLES.items():
            res = await sql.query(
                nc, f"SELECT name FROM system.columns WHERE table = '{table}' ORDER BY position"
            )
            assert [r[0] for r in res.rows] == tables.columns(schemas.EXEC_TYPES[kind]), table
        res = await sql.query(nc, "SELECT quantity, price FROM order_commands LIMIT 1")
        assert res.rows == [["0.0100", "65000.10"]]  # the command's decimal strings, as sent
        res = await sql.query(nc, "SELECT round(sum(fee), 2) FROM fills WHERE account = 'desk1'")
        assert res.rows == [[65.0]]
        dlq = await js.pull_subscribe(subjects.dlq("sink"), stream="DLQ")
        reasons = sorted(m.headers[subjects.H_REASON] for m in await dlq.fetch(2, timeout=5)
                         if m.headers)  # fmt: skip
        assert reasons == [
            "Fill with account 'desk1' does not belong on exec.cmd.desk1",
            "Position with account 'desk2' does not belong on exec.pos.desk1",
        ], reasons
    finally:
        assert sink.stop() == 0
