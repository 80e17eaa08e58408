"""Issue 15 item 11 on a real sink subprocess, nats-server and chdb: a batch spanning 150
days (tables are partitioned by day, ClickHouse refuses more than 100 partitions in one
insert) is stored whole, and a batch that ClickHouse keeps refusing goes to dlq.sink after
``sink.insert_tries`` with a gap row and degraded health instead of blocking the stream."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import orjson
from nats.aio.client import Client
from nats.js import JetStreamContext

from sinks.clickhouse import tables
from streams import schemas, subjects
from streams.bus.server import NatsServer
from streams.provision import STREAM_DLQ, STREAM_MARKET
from tests.conftest import make_settings
from tests.helpers import take
from tests.pipeline.test_e2e import wait_rows
from tests.workers import ROOT, Proc

NS = 1_700_000_000_000_000_000
DAY = tables.DAY_NS


def trade(i: int, ts: int, price: float = 100.0) -> bytes:
    return schemas.encode(schemas.Trade(venue="binance", symbol="BTC-USDT", ts_event=ts,
                                        ts_recv=ts, id=str(i), price=price, size=1.0,
                                        side="buy"))  # fmt: skip


async def publish(js: JetStreamContext, frames: list[bytes]) -> None:
    subj = subjects.market("trade", "binance", "BTC-USDT")
    await asyncio.gather(*[await js.publish_async(subj, f) for f in frames])


def test_split_by_day_keeps_order_and_bounds_days() -> None:
    days = [0, 0, 1, 5, 5, 2, 7, 8, 8, 9]
    ts = [NS + d * DAY + k for k, d in enumerate(days)]
    names = ["ts_event", "stream_seq"]
    data = [ts, list(range(1, len(ts) + 1))]
    parts = tables.split_by_day(names, data, "ts_event", 3)
    assert [p[1] for p in parts] == [[1, 2, 3, 4, 5], [6, 7, 8, 9], [10]]
    for p in parts:
        assert len({t // DAY for t in p[0]}) <= 3
    assert [s for p in parts for s in p[1]] == data[1]  # every row once, in order
    assert tables.split_by_day(names, [ts[:2], [1, 2]], "ts_event", 3) == [[ts[:2], [1, 2]]]
    assert tables.partition_column("toYYYYMMDD(ts_event)") == "ts_event"
    assert tables.partition_column("toYYYYMM(ts_recv)") == "ts_recv"
    assert tables.partition_column("cityHash64(venue)") is None


async def test_a_150_day_batch_is_stored_whole(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    """Published before the sink starts, so it arrives as one batch of 3000 over 150 days
    (before the split: "Too many partitions for single INSERT block", retried forever)."""
    n_days, per_day = 150, 20
    frames = [trade(d * per_day + k, NS + d * DAY + k * 1000) for d in range(n_days)
              for k in range(per_day)]  # fmt: skip
    await publish(js, frames)
    settings = make_settings(tmp_path, nats_server.url)
    sink = Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log").start()
    try:
        q = "SELECT count(), uniqExact(toDate(ts_event)), uniqExact(id) FROM trades"
        await wait_rows(nc, "SELECT 1 FROM trades HAVING count() >= 3000", 1, 60)
        from streams import sql

        assert (await sql.query(nc, q)).rows == [[3000, 150, 3000]]
        parts = await sql.query(nc, "SELECT uniqExact(partition) FROM system.parts WHERE "
                                "table = 'trades' AND active")  # fmt: skip
        assert parts.rows == [[150]]
        # the candle views saw every trade once
        res = await sql.query(nc, "SELECT sum(trades) FROM candles_1h")
        assert res.rows == [[3000]]
        info = await js.consumer_info(STREAM_MARKET, settings.sink.market.durable)
        assert info.num_ack_pending == 0 and info.num_pending == 0
    finally:
        assert sink.stop() == 0
    log = (tmp_path / "sink.log").read_text()
    assert "insert failed" not in log and "Too many partitions" not in log


async def test_a_batch_clickhouse_keeps_refusing_is_dead_lettered(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    """A CHECK constraint makes ClickHouse itself refuse one batch on every try: after
    insert_tries it is in dlq.sink (reason header), a gap row says so, health is degraded,
    and the trades published after it are stored (the stream is not blocked)."""
    settings = make_settings(tmp_path, nats_server.url,
                             sink={"insert_tries": 3, "flush_interval_s": 0.2})  # fmt: skip
    dsn = settings.clickhouse.dsn
    subprocess.run(
        [sys.executable, "-c", "from sinks.clickhouse.store import Store; s = Store(dsn := "
         f"{dsn!r}); s.apply_ddl(); s._client_().command('ALTER TABLE trades ADD CONSTRAINT"
         " sane_price CHECK price < 1e9'); s.close()"],
        cwd=ROOT, check=True, timeout=120,
    )  # fmt: skip
    dlq = await js.subscribe(subjects.dlq("sink"), stream=STREAM_DLQ, ordered_consumer=True)
    sink = Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log").start()
    try:
        await publish(js, [trade(i, NS + i) for i in range(10)])
        assert await wait_rows(nc, "SELECT count() FROM trades", 10, 60) == 10
        await publish(js, [trade(10 + i, NS + 10 + i, price=2e9) for i in range(5)])
        dead = await take(dlq, 5, timeout=30)
        assert len(dead) == 5
        reason = dead[0].headers[subjects.H_REASON]
        assert "refused 3 times" in reason and "sane_price" in reason, reason
        await publish(js, [trade(20 + i, NS + 20 + i) for i in range(10)])
        assert await wait_rows(nc, "SELECT count() FROM trades", 20, 60) == 20
        from streams import sql

        gaps = await sql.query(nc, "SELECT channel, expected_seq, got_seq, detail FROM gaps")
        assert len(gaps.rows) == 1 and gaps.rows[0][:3] == ["trades", 11, 15], gaps.rows
        status = orjson.loads((await nc.request(subjects.STATUS_QUERY, b"", timeout=5)).data)
        assert status["state"] == "degraded" and status["dead_batches"] == 1, status
        for _ in range(50):  # the ack follows the insert
            info = await js.consumer_info(STREAM_MARKET, settings.sink.market.durable)
            if info.num_ack_pending == 0 and info.num_pending == 0:
                break
            await asyncio.sleep(0.1)
        assert info.num_ack_pending == 0 and info.num_pending == 0
    finally:
        await dlq.unsubscribe()
        assert sink.stop() == 0


def test_dsn_password_masked_and_chdb_directory_private(tmp_path: Path) -> None:
    """Issue 15 item 10: the sink logs its DSN (now through redact_url, and every log line
    passes it), and chdb's directory is created, or tightened, to 0700."""
    import logging

    from sinks.clickhouse.store import private_dir
    from streams.bus.logs import JsonFormatter, redact_url

    dsn = "http://jm_writer:s3cr3t-Pa55@127.0.0.1:8123/jetmarket"
    assert redact_url(dsn) == "http://jm_writer:***@127.0.0.1:8123/jetmarket"
    rec = logging.LogRecord("sinks.clickhouse", logging.INFO, "", 0, "ready", None, None)
    rec.dsn = dsn
    line = JsonFormatter().format(rec)
    assert "s3cr3t" not in line and "jm_writer:***@" in line
    assert redact_url("chdb:///var/x nats://u@h:4222") == "chdb:///var/x nats://u@h:4222"
    new, old = tmp_path / "a" / "clickhouse", tmp_path / "old"
    private_dir(new)
    old.mkdir(mode=0o755)
    private_dir(old)
    assert new.stat().st_mode & 0o777 == 0o700 and old.stat().st_mode & 0o777 == 0o700
