"""Table TTLs (clickhouse.ttl_days) on a real chdb: the DDL's defaults equal the settings'
defaults, old rows are removed, a changed setting changes the table's TTL once (idempotent),
tables from before TTLs get one, and the sink applies them at start."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest

from sinks.clickhouse import ttl
from sinks.clickhouse.store import Store
from streams.settings import TtlDays
from tests.conftest import make_settings
from tests.workers import Proc

DAY_NS = 86400 * 10**9
DEFAULTS = msgspec.to_builtins(TtlDays())


def ttl_of(store: Store, table: str) -> int | None:
    full = store.rows(f"SELECT engine_full FROM system.tables WHERE name = '{table}'")[0][0]
    return ttl.current_days(full)


def insert_raw(store: Store, ages_days: list[float], seq0: int) -> None:
    now = time.time_ns()
    n = len(ages_days)
    ts = [now - int(a * DAY_NS) for a in ages_days]
    store.insert(
        "raw_frames",
        ["venue", "channel", "symbol", "ts_recv", "conn", "subject", "payload", "stream_seq"],
        [["binance"] * n, ["trade"] * n, ["BTCUSDT"] * n, ts, ["c"] * n, ["raw.x"] * n,
         ["{}"] * n, list(range(seq0, seq0 + n))],
        f"raw{seq0}",
    )  # fmt: skip


def insert_trades(store: Store, ages_days: list[float], seq0: int) -> None:
    now = time.time_ns()
    n = len(ages_days)
    ts = [now - int(a * DAY_NS) for a in ages_days]
    store.insert(
        "trades",
        ["venue", "symbol", "ts_event", "ts_recv", "id", "price", "size", "side", "aggregated",
         "stream_seq"],
        [["binance"] * n, ["BTC-USDT"] * n, ts, ts, [str(seq0 + i) for i in range(n)],
         [1.0] * n, [1.0] * n, ["buy"] * n, [False] * n, list(range(seq0, seq0 + n))],
        f"tr{seq0}",
    )  # fmt: skip


@pytest.fixture
def store(tmp_path: Path):
    s = Store(f"chdb://{tmp_path / 'ch'}")
    s.apply_ddl()
    yield s
    s.close()


def test_ddl_defaults_are_the_settings_defaults(store: Store) -> None:
    """A fresh database from infra/clickhouse/*.sql already has the default TTLs: the sink
    then changes nothing."""
    for table, days in DEFAULTS.items():
        assert ttl_of(store, table) == days, table
    assert store.apply_ttl(DEFAULTS) == ([], [])
    assert DEFAULTS["raw_frames"] > 0 and DEFAULTS["trades"] == 0


def test_old_rows_are_removed_and_a_changed_setting_changes_the_ttl(store: Store) -> None:
    insert_raw(store, [45, 40, 31, 1, 0], seq0=1)
    insert_trades(store, [45, 20, 1], seq0=1)
    store.rows("OPTIMIZE TABLE raw_frames FINAL")
    store.rows("OPTIMIZE TABLE trades FINAL")
    # raw_frames keeps 30 days: the three older frames are gone; trades keep everything
    assert store.rows("SELECT stream_seq FROM raw_frames ORDER BY stream_seq") == [(4,), (5,)]
    assert store.rows("SELECT count() FROM trades") == [(3,)]

    changed, foreign = store.apply_ttl({**DEFAULTS, "trades": 10, "raw_frames": 0})
    assert sorted(changed) == ["raw_frames: 30 days -> kept forever", "trades: forever -> 10 days"]
    assert foreign == []
    assert ttl_of(store, "trades") == 10 and ttl_of(store, "raw_frames") == 0
    # idempotent: the same settings again alter nothing
    assert store.apply_ttl({**DEFAULTS, "trades": 10, "raw_frames": 0}) == ([], [])

    insert_raw(store, [45, 2], seq0=10)  # no TTL any more: a 45-day-old frame stays
    store.rows("OPTIMIZE TABLE trades FINAL")
    store.rows("OPTIMIZE TABLE raw_frames FINAL")
    assert store.rows("SELECT count() FROM trades") == [(1,)]  # the 20- and 45-day rows went
    assert store.rows("SELECT count() FROM raw_frames") == [(4,)]


def test_a_table_from_before_ttls_gets_one(store: Store) -> None:
    """Tables created by an older DDL (no TTL, no ttl_only_drop_parts): one ALTER each."""
    store.rows("ALTER TABLE depth REMOVE TTL")
    store.rows("ALTER TABLE depth MODIFY SETTING ttl_only_drop_parts = 0")
    assert ttl_of(store, "depth") == 0
    changed, _ = store.apply_ttl(DEFAULTS)
    assert changed == ["depth: forever -> 7 days"]
    full = store.rows("SELECT engine_full FROM system.tables WHERE name = 'depth'")[0][0]
    assert "ttl_only_drop_parts = 1" in full and ttl.current_days(full) == 7


def test_foreign_ttl_is_not_removed_by_zero_but_replaced_by_days(store: Store) -> None:
    store.rows("ALTER TABLE gaps MODIFY TTL toDateTime(ts_recv) + INTERVAL 3 DAY DELETE")
    store.rows("ALTER TABLE gaps MODIFY TTL toDate(ts_event) + toIntervalMonth(1)")
    changed, foreign = store.apply_ttl({"gaps": 0})
    assert changed == [] and foreign == ["gaps: TTL not written by jetmarket, left as is"]
    assert ttl_of(store, "gaps") is None
    changed, _ = store.apply_ttl({"gaps": 5})
    assert changed == ["gaps: another TTL -> 5 days"] and ttl_of(store, "gaps") == 5


def test_a_refused_ttl_is_a_warning_and_the_others_apply(store: Store) -> None:
    """A table the TTL cannot apply to (here one partitioned by venue, not time) does not stop
    the sink: one warning line, the other tables still get theirs."""
    store.rows("DROP TABLE gaps")
    store.rows("CREATE TABLE gaps (venue String, ts_event DateTime64(9, 'UTC')) ENGINE ="
               " MergeTree PARTITION BY venue ORDER BY venue")  # fmt: skip
    changed, warnings = store.apply_ttl({"gaps": 3, "trades": 9})
    assert changed == ["trades: forever -> 9 days"]
    assert warnings == ["gaps: TTL of 3 days not applied: gaps: no daily/monthly time partition "
                        "key to expire by"]  # fmt: skip


def test_cluster_tables_are_altered_on_their_local_table_on_the_cluster() -> None:
    local = ttl.TableRow(
        "depth_local",
        "ReplicatedMergeTree",
        "ReplicatedMergeTree('/p', '{replica}') PARTITION BY toYYYYMMDD(ts_event) ORDER BY "
        "(venue) TTL toDateTime(ts_event) + toIntervalDay(7) SETTINGS ttl_only_drop_parts = 1",
        "toYYYYMMDD(ts_event)",
    )
    dist = ttl.TableRow(
        "depth", "Distributed",
        "Distributed('jetmarket', 'default', 'depth_local', cityHash64(venue, symbol))", "",
    )  # fmt: skip
    assert ttl.plans([local, dist], {"depth": 7})[0].statements == []
    (p,) = ttl.plans([local, dist], {"depth": 2})
    assert p.statements == [
        "ALTER TABLE depth_local ON CLUSTER 'jetmarket' MODIFY TTL toDateTime(ts_event)"
        " + INTERVAL 2 DAY"
    ]


def test_settings_refuse_negative_days() -> None:
    from streams.settings import SettingsError, from_mapping

    with pytest.raises(SettingsError, match=r"clickhouse.ttl_days.depth must be in \[0, 36500\]"):
        from_mapping({"clickhouse": {"ttl_days": {"depth": -1}}})


async def test_the_sink_applies_the_setting_at_start(tmp_path: Path, nats_server) -> None:
    settings = make_settings(tmp_path, nats_server.url,
                             clickhouse={"ttl_days": {"raw_frames": 3, "bbo": 0}})  # fmt: skip
    sink = Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log").start()
    try:
        deadline = time.monotonic() + 60
        while "clickhouse ready" not in (tmp_path / "sink.log").read_text():
            assert sink.alive() and time.monotonic() < deadline, "sink did not start"
            time.sleep(0.2)
    finally:
        assert sink.stop() == 0
    store = Store(settings.clickhouse.dsn)
    try:
        assert ttl_of(store, "raw_frames") == 3
        assert ttl_of(store, "bbo") == 0 and ttl_of(store, "depth") == 0  # make_settings: 0
    finally:
        store.close()
    assert "raw_frames: 30 days -> 3 days" in (tmp_path / "sink.log").read_text()


def test_every_market_table_has_a_ttl_setting() -> None:
    """A new market table gets its key in clickhouse.ttl_days (streams/settings.py TtlDays),
    so its retention is a setting like the others' (0 when it should stay forever)."""
    from streams.tables import RAW_TABLE, TABLES

    assert set(TtlDays.__struct_fields__) == {*TABLES.values(), RAW_TABLE}
