"""The ClickHouse server path (DSN http(s)://...) and the cluster DDL.

A real server is not part of the embedded defaults: set CLICKHOUSE_DSN (e.g.
http://default:@127.0.0.1:8123/jetmarket_test) to run the server tests; they skip otherwise.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from sinks.clickhouse.cluster import cluster_ddl
from streams import sql
from streams.bus.server import NatsServer
from tests.conftest import make_settings
from tests.sinks.test_clickhouse import expected, publish_mixed
from tests.workers import ROOT, Proc

DSN = os.environ.get("CLICKHOUSE_DSN", "")


def test_cluster_ddl_is_generated_from_the_single_node_ddl() -> None:
    text = cluster_ddl("jetmarket")
    checked_in = (ROOT / "infra" / "clickhouse" / "cluster" / "001_cluster.sql").read_text()
    assert text == checked_in, "run: python -m sinks.clickhouse.cluster jetmarket > infra/..."
    for table in ("trades", "book_updates", "raw_frames", "ohlcv_1m"):
        assert f"CREATE TABLE IF NOT EXISTS {table}_local ON CLUSTER 'jetmarket'" in text
        assert f"Distributed('jetmarket', currentDatabase(), {table}_local" in text
    assert "non_replicated_deduplication_window" not in text
    assert "FROM trades_local" in text  # views aggregate each shard locally


@pytest.mark.skipif(not DSN, reason="set CLICKHOUSE_DSN=http://... to test a ClickHouse server")
async def test_sink_against_a_server_dsn(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    settings = make_settings(tmp_path, nats_server.url, clickhouse={"dsn": DSN})

    def trades() -> int:
        try:
            return int(sql.query_direct(DSN, "SELECT count() FROM trades").rows[0][0])
        except sql.SqlError:
            return 0  # the sink has not created the table yet

    before = trades()  # the database may hold earlier runs: compare the increase
    sink = Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log").start()
    try:
        counts = await publish_mixed(js, 2000)
        want = expected(counts)
        for _ in range(300):
            if trades() - before >= want["trades"]:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        assert trades() - before == want["trades"]
    finally:
        assert sink.stop() == 0
