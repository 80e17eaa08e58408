"""The ClickHouse sink as a real subprocess on a real nats-server and chdb: every message
type stored once, schema <-> DDL parity, dead letters, insert failures, clean stop."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext

from sinks.clickhouse import tables
from streams import schemas, sql, subjects
from streams.natsserver import NatsServer
from streams.provision import STREAM_DLQ, STREAM_MARKET
from tests.conftest import make_settings
from tests.test_e2e_pipeline import wait_rows
from tests.workers import Proc

NS = 1_700_000_000_000_000_000


def sample(kind: str, i: int) -> schemas.Base:
    """One message of each type; ``i`` makes it unique."""
    base = {"venue": "binance", "symbol": "BTC-USDT", "ts_event": NS + i, "ts_recv": NS + i + 7}
    lv = [(65000.1, 1.5), (64999.9, 0.0)]
    return {
        "trade": lambda: schemas.Trade(**base, id=str(i), price=65000.1 + i / 100, size=0.0012,
                                       side="buy"),
        "book": lambda: schemas.Book(**base, snapshot=i % 7 == 0, bids=lv, asks=lv[:1], seq=i,
                                     first_seq=i, checksum=None),
        "bbo": lambda: schemas.BBO(**base, bid_price=1.0, bid_size=2.0, ask_price=1.1,
                                   ask_size=3.0, seq=i),
        "depth": lambda: schemas.Depth(**base, bids=lv, asks=lv, seq=i, levels=20),
        "ticker": lambda: schemas.Ticker(**base, last=1.0, volume_24h=None),
        "candle": lambda: schemas.Candle(**base, interval="1m", ts_open=NS, open=1, high=2,
                                         low=0.5, close=1.5, volume=10, closed=False, trades=3),
        "funding": lambda: schemas.Funding(**base, rate=-0.0001, next_funding_ts=NS + 10**12),
        "open_interest": lambda: schemas.OpenInterest(**base, open_interest=123.4),
        "liquidation": lambda: schemas.Liquidation(**base, side="sell", price=9910.5, size=0.1,
                                                   id=f"L{i}"),
        "mark": lambda: schemas.Mark(**base, mark_price=65000.5, index_price=None),
        "instrument": lambda: schemas.Instrument(**base, native_symbol="BTCUSDT", kind="spot",
                                                 base="BTC", quote="USDT", tick_size=0.01,
                                                 lot_size=1e-5),
        "gap": lambda: schemas.Gap(**base, reason="sequence", channel="book", expected_seq=i,
                                   got_seq=i + 2, detail="test"),
    }[kind]()  # fmt: skip


async def publish_mixed(js: JetStreamContext, n: int, start: int = 0) -> dict[str, int]:
    kinds = list(tables.TABLES)
    counts = dict.fromkeys(kinds, 0)
    rnd = random.Random(start)
    futs = []
    for i in range(start, start + n):
        kind = rnd.choice(kinds)
        counts[kind] += 1
        m = sample(kind, i)
        subject = subjects.market(kind, m.venue, m.symbol)
        futs.append(await js.publish_async(subject, schemas.encode(m)))
        if len(futs) >= 2000:
            await asyncio.gather(*futs)
            futs = []
    await asyncio.gather(*futs)
    return counts


async def table_counts(nc: Client) -> dict[str, int]:
    q = " UNION ALL ".join(f"SELECT '{t}', count() FROM {t}" for t in tables.TABLES.values())
    res = await sql.query(nc, q)
    return {r[0]: int(r[1]) for r in res.rows}


def expected(counts: dict[str, int]) -> dict[str, int]:
    return {tables.TABLES[k]: v for k, v in counts.items()}


async def test_every_type_once_schema_parity_dlq_failures_and_clean_stop(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    fail = tmp_path / "fail-inserts"
    settings = make_settings(
        tmp_path, nats_server.url,
        sink={"flush_interval_s": 0.1, "fail_inserts_file": str(fail), "retry_max_s": 0.5},
    )  # fmt: skip
    sink = Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log").start()
    try:
        counts = await publish_mixed(js, 3000)
        await js.publish("market.trade.binance.BTC-USDT", b'{"type":"trade","venue":1}')
        assert await wait_rows(nc, "SELECT count() FROM trades", counts["trade"], 60) > 0
        await asyncio.sleep(0.5)
        assert await table_counts(nc) == expected(counts)

        # schema <-> DDL parity: every field has a column and every column a field
        for kind, table in tables.TABLES.items():
            res = await sql.query(
                nc, f"SELECT name FROM system.columns WHERE table = '{table}' ORDER BY position"
            )
            cols = [r[0] for r in res.rows]
            assert cols == tables.columns(schemas.MARKET_TYPES[kind]), table

        # values round-trip: decimal strings and nanoseconds
        res = await sql.query(
            nc, "SELECT id, price, toUnixTimestamp64Nano(ts_event), toUnixTimestamp64Nano(ts_recv)"
            " FROM trades ORDER BY toUInt64(id) LIMIT 1")  # fmt: skip
        tid, price, ts_event, ts_recv = res.rows[0]
        assert repr(price) == repr(65000.1 + int(tid) / 100)
        assert (ts_event, ts_recv) == (NS + int(tid), NS + int(tid) + 7)

        # the undecodable message is a dead letter with a reason; nothing else was lost
        dsub = await js.pull_subscribe(subjects.dlq("sink"), stream=STREAM_DLQ)
        [dead] = await dsub.fetch(1, timeout=5)
        assert "undecodable" in dead.headers[subjects.H_REASON]  # type: ignore[index]

        # inserts fail for a while: nothing acked, nothing lost, then everything once
        fail.touch()
        more = await publish_mixed(js, 1000, start=10_000)
        await asyncio.sleep(3)
        assert await table_counts(nc) == expected(counts)
        info = await js.consumer_info(STREAM_MARKET, settings.sink.market.durable)
        assert info.num_ack_pending > 0 or info.num_pending > 0
        fail.unlink()
        total = {k: counts[k] + more[k] for k in counts}
        await wait_rows(nc, "SELECT count() FROM trades", total["trade"], 60)
        await asyncio.sleep(0.5)
        assert await table_counts(nc) == expected(total)
    finally:
        code = sink.stop()
    assert code == 0
    info = await js.consumer_info(STREAM_MARKET, settings.sink.market.durable)
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_sql_service_refuses_writes_and_reports_errors(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    sink = Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log").start()
    try:
        assert await wait_rows(nc, "SELECT 1", 1, 30) == 1
        for bad, why in [("DROP TABLE trades", "readonly"), ("SELEC 1", "Syntax error")]:
            try:
                await sql.query(nc, bad)
            except sql.SqlError as exc:
                assert why.lower() in str(exc).lower()
            else:
                raise AssertionError(f"{bad!r} was accepted")
        res = await sql.query(nc, "SELECT number FROM numbers(10)", max_rows=3)
        assert res.rows == [[0], [1], [2]] and res.truncated
        assert "number" in sql.format_table(res) and sql.format_csv(res).startswith("number\n0")
    finally:
        assert sink.stop() == 0
