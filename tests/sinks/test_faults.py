"""Sink fault drills: kill -9 at 10 random points while 50k mixed messages flow, and 60 s
of failing inserts; afterwards every table holds exactly what was published."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext

from streams.bus.server import NatsServer
from streams.provision import STREAM_MARKET
from tests.conftest import make_settings
from tests.pipeline.test_e2e import wait_rows
from tests.sinks.test_clickhouse import expected, publish_mixed, table_counts
from tests.workers import Proc

# 20 s keeps `make test` under its 10-minute budget and still spans ~10 retries at the
# 2 s backoff cap; `make faults` runs the 60 s outage, JM_TEST_FAULT_SECONDS=60 here too
FAIL_SECONDS = float(os.environ.get("JM_TEST_FAULT_SECONDS", "20"))


async def steady(js: JetStreamContext, total: int, per_tick: int, tick: float) -> dict[str, int]:
    counts: dict[str, int] = {}
    for start in range(0, total, per_tick):
        for k, v in (await publish_mixed(js, per_tick, start=start)).items():
            counts[k] = counts.get(k, 0) + v
        await asyncio.sleep(tick)
    return counts


async def test_kill9_sink_10_times_during_50k_mixed(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    settings = make_settings(tmp_path, nats_server.url, sink={"flush_interval_s": 0.2})
    sink = Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log").start()
    rnd = random.Random(5)
    try:
        flow = asyncio.create_task(steady(js, 50_000, 2_500, 0.5))  # ~10 s of traffic
        for _ in range(10):
            await asyncio.sleep(rnd.uniform(0.3, 1.0))
            sink.kill9()
            await asyncio.sleep(rnd.uniform(0.0, 0.3))
            sink.start()
        counts = await flow
        want = expected(counts)
        await wait_rows(nc, "SELECT count() FROM trades", want["trades"], 120)
        await asyncio.sleep(1.0)
        assert await table_counts(nc) == want  # 0 lost, 0 duplicated, plain count()
    finally:
        assert sink.stop() == 0


async def test_inserts_failing_for_an_outage_then_recovering(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    fail = tmp_path / "fail"
    settings = make_settings(
        tmp_path, nats_server.url,
        sink={"flush_interval_s": 0.2, "fail_inserts_file": str(fail), "retry_max_s": 2.0},
    )  # fmt: skip
    sink = Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log").start()
    try:
        before = await publish_mixed(js, 2000)
        await wait_rows(nc, "SELECT count() FROM trades", expected(before)["trades"], 60)
        for _ in range(100):  # every table of that batch, not only trades
            if await table_counts(nc) == expected(before):
                break
            await asyncio.sleep(0.1)
        fail.touch()
        during = await steady(js, 10_000, 500, FAIL_SECONDS / 20)  # traffic for the whole outage
        stored = await table_counts(nc)
        assert stored == expected(before), "nothing may be stored while inserts fail"
        info = await js.consumer_info(STREAM_MARKET, settings.sink.market.durable)
        assert info.num_pending + info.num_ack_pending >= 10_000  # held back, not acked
        fail.unlink()
        total = {k: before[k] + during[k] for k in before}
        await wait_rows(nc, "SELECT count() FROM trades", expected(total)["trades"], 120)
        await asyncio.sleep(1.0)
        assert await table_counts(nc) == expected(total)
        log = (tmp_path / "sink.log").read_text()
        assert "insert failed, retrying" in log and "inserts recovered" in log
        assert log.count("insert failed, retrying") <= 3  # one line per outage, not per try
    finally:
        assert sink.stop() == 0
