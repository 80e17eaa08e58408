"""The ClickHouse sink as a real subprocess on a real nats-server and chdb: every message
type stored once, schema <-> DDL parity, dead letters (undecodable and out-of-range values),
insert failures, kill -9 at random points, raw frames, clean stop (also while failing)."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext

from sinks.clickhouse import tables
from streams import schemas, sql, subjects
from streams.bus.server import NatsServer
from streams.provision import STREAM_DLQ, STREAM_MARKET, STREAM_RAW
from tests.conftest import make_settings
from tests.pipeline.test_e2e import wait_rows
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
        "option_greeks": lambda: schemas.OptionGreeks(**base, strike=65000.0,
                                                      expiry_ts=NS + 10**13, option_type="call",
                                                      mark_iv=0.55, delta=0.5, theta=-12.5),
        "instrument": lambda: schemas.Instrument(**base, native_symbol="BTCUSDT", kind="spot",
                                                 base="BTC", quote="USDT", tick_size=0.01,
                                                 lot_size=1e-5),
        "gap": lambda: schemas.Gap(**base, reason="sequence", channel="book", expected_seq=i,
                                   got_seq=i + 2, detail="test"),
        "long_short_ratio": lambda: schemas.LongShortRatio(**base, kind="top_positions",
                                                           period="5m", ratio=1.5,
                                                           long_share=0.6, short_share=0.4),
        "taker_volume": lambda: schemas.TakerVolume(**base, period="5m", buy_volume=12.5,
                                                    sell_volume=10.0, buy_value=None),
        "open_interest_hist": lambda: schemas.OpenInterestHist(**base, period="1h",
                                                               open_interest=8000.5),
        "volatility_index": lambda: schemas.VolatilityIndex(**base, index_name="dvol", value=55.2),
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
        # every type stored, and clickhouse-connect never imported pandas to do it
        # (store.without_pandas: 0.3 s CPU mid-stream and +83 MB otherwise)
        assert "pandas" not in Path(f"/proc/{sink.p.pid}/maps").read_text()  # type: ignore[union-attr]

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
        for bad, why in [("DROP TABLE trades", "refused"), ("SELEC 1", "Syntax error")]:
            try:
                await sql.query(nc, bad)
            except sql.SqlError as exc:
                assert why.lower() in str(exc).lower()
            else:
                raise AssertionError(f"{bad!r} was accepted")
        # table layout: dedup window, partitioning, sort key, types of the shared columns
        res = await sql.query(
            nc, "SELECT name, partition_key, sorting_key, engine_full FROM system.tables"
            " WHERE database = currentDatabase()")  # fmt: skip
        layout = {r[0]: r[1:] for r in res.rows}
        for table in [*tables.TABLES.values(), tables.RAW_TABLE]:
            part, key, engine = layout[table]
            ts = "ts_recv" if table == tables.RAW_TABLE else "ts_event"
            assert part == f"toYYYYMMDD({ts})", table
            assert key.startswith("venue, ") and ts in key, table
            assert "non_replicated_deduplication_window = 1000" in engine, table
        res = await sql.query(
            nc, "SELECT table, name, type FROM system.columns WHERE database = currentDatabase()"
            " AND name IN ('venue', 'symbol', 'ts_event', 'ts_recv', 'stream_seq')")  # fmt: skip
        want = {"venue": "LowCardinality(String)", "symbol": "LowCardinality(String)",
                "ts_event": "DateTime64(9, 'UTC')", "ts_recv": "DateTime64(9, 'UTC')",
                "stream_seq": "UInt64"}  # fmt: skip
        ours = {*tables.TABLES.values(), tables.RAW_TABLE}
        checked = [(t, n) for t, n, typ in res.rows if t in ours and typ == want[n]]
        assert len(checked) == 5 * len(tables.TABLES) + 4  # raw_frames has no ts_event
        res = await sql.query(nc, "SELECT file FROM schema_migrations FINAL ORDER BY file")
        assert [r[0] for r in res.rows][:2] == ["001_market.sql", "002_raw.sql"]

        res = await sql.query(nc, "SELECT number FROM numbers(10)", max_rows=3)
        assert res.rows == [[0], [1], [2]] and res.truncated
        assert "number" in sql.format_table(res) and sql.format_csv(res).startswith("number\n0")
    finally:
        assert sink.stop() == 0


async def test_kill9_at_random_points_while_messages_flow(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    settings = make_settings(tmp_path, nats_server.url, sink={"flush_interval_s": 0.1})
    sink = Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log").start()
    rnd = random.Random(11)
    counts: dict[str, int] = {}

    async def flow() -> None:
        for start in range(0, 16_000, 1_000):
            for k, v in (await publish_mixed(js, 1_000, start=start)).items():
                counts[k] = counts.get(k, 0) + v
            await asyncio.sleep(0.25)

    try:
        traffic = asyncio.create_task(flow())
        for _ in range(4):
            await asyncio.sleep(rnd.uniform(0.5, 1.2))  # start-up, mid-batch, mid-insert ...
            sink.kill9()
            sink.start()
        await traffic
        want = expected(counts)
        assert sum(want.values()) == 16_000
        await wait_rows(nc, "SELECT count() FROM trades", want["trades"], 60)
        await asyncio.sleep(0.5)
        assert await table_counts(nc) == want  # plain count(): none lost, none doubled
        res = await sql.query(nc, "SELECT uniqExact(stream_seq), count() FROM trades")
        assert res.rows[0][0] == res.rows[0][1] == want["trades"]
    finally:
        assert sink.stop() == 0
    info = await js.consumer_info(STREAM_MARKET, settings.sink.market.durable)
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_raw_frames_out_of_range_values_and_big_replies(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    settings = make_settings(tmp_path, nats_server.url, sink={"flush_interval_s": 0.1})
    frames = [(f'{{"e":"trade","t":{i},"p":"65000.1"}}'.encode(), NS + i) for i in range(500)]
    for payload, recv in frames:
        headers = {subjects.H_RECV_NS: str(recv), subjects.H_CONN: "c1"}
        await js.publish(subjects.raw("binance", "trade", "BTCUSDT"), payload, headers=headers)
    await js.publish(subjects.raw("binance", "depth", "BTCUSDT"), b"\xff\x00binary",
                     headers={subjects.H_RECV_NS: "99999999999999999999"})  # fmt: skip
    # decodable, but a column cannot hold it: dead letter, not a stalled stream
    poison = [sample("depth", 1), sample("book", 2)]
    poison[0].levels = 70_000  # UInt16
    poison[1].seq = 2**64 - 1  # Int64
    for kind, m in zip(["depth", "book"], poison, strict=True):
        await js.publish(subjects.market(kind, m.venue, m.symbol), schemas.encode(m))
    good = await publish_mixed(js, 600, start=100)

    sink = Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log").start()
    try:
        assert await wait_rows(nc, "SELECT count() FROM raw_frames", 501, 30) == 501
        res = await sql.query(
            nc, "SELECT payload, toUnixTimestamp64Nano(ts_recv), venue, channel, symbol, conn,"
            " subject FROM raw_frames WHERE channel = 'trade' ORDER BY stream_seq")  # fmt: skip
        assert [(r[0].encode(), r[1]) for r in res.rows] == frames
        assert set(tuple(r[2:]) for r in res.rows) == {
            ("binance", "trade", "BTCUSDT", "c1", "raw.binance.trade.BTCUSDT")
        }
        await wait_rows(nc, "SELECT count() FROM trades", good["trade"], 30)
        await asyncio.sleep(0.5)
        assert await table_counts(nc) == expected(good)

        dsub = await js.pull_subscribe(subjects.dlq("sink"), stream=STREAM_DLQ)
        dead = await dsub.fetch(2, timeout=5)
        reasons = sorted(d.headers[subjects.H_REASON] for d in dead)  # type: ignore[index]
        assert "book_updates: seq=18446744073709551615" in reasons[0]
        assert "depth: levels=70000" in reasons[1]

        # a reply never exceeds max_payload (8 MiB): rows are cut and flagged
        big = await sql.query(nc, "SELECT repeat('x', 1000) FROM numbers(10000)")
        assert big.truncated and 5000 < len(big.rows) < 10000
    finally:
        assert sink.stop() == 0


async def test_sigterm_while_inserts_fail_exits_promptly_and_loses_nothing(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    fail = tmp_path / "fail"
    fail.touch()
    settings = make_settings(
        tmp_path, nats_server.url,
        sink={"flush_interval_s": 0.1, "fail_inserts_file": str(fail), "retry_max_s": 5.0},
    )  # fmt: skip
    counts = await publish_mixed(js, 2000)
    sink = Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log").start()
    await asyncio.sleep(3)  # started, fetched, failing
    t0 = time.monotonic()
    assert sink.stop() == 0
    assert time.monotonic() - t0 < 10
    log = (tmp_path / "sink.log").read_text()
    assert "insert failed, retrying" in log and "stopping with unstored messages" in log
    info = await js.consumer_info(STREAM_MARKET, settings.sink.market.durable)
    assert (info.ack_floor.stream_seq if info.ack_floor else 0) == 0  # nothing acked

    fail.unlink()
    sink.start()
    try:
        await wait_rows(nc, "SELECT count() FROM trades", counts["trade"], 30)
        await asyncio.sleep(0.5)
        assert await table_counts(nc) == expected(counts)
    finally:
        assert sink.stop() == 0
    info = await js.consumer_info(STREAM_MARKET, settings.sink.market.durable)
    assert info.num_ack_pending == 0 and info.num_pending == 0
    raw = await js.consumer_info(STREAM_RAW, settings.sink.raw.durable)
    assert raw.num_ack_pending == 0


def test_range_checks_and_reply_sizes() -> None:
    limits = tables.bounds(
        {"levels": "UInt16", "seq": "Nullable(Int64)", "ts": "DateTime64(9, 'UTC')",
         "price": "Float64", "venue": "LowCardinality(String)", "stream_seq": "UInt64"}
    )  # fmt: skip
    assert limits == {"levels": (0, 65535), "seq": (-(2**63), 2**63 - 1),
                      "ts": (-(2**63), 2**63 - 1)}  # fmt: skip
    names = ["levels", "seq", "price"]
    data = [[1, 70_000, 3], [None, 5, 2**64 - 1], [1.0, 2.0, 3.0]]
    bad = tables.out_of_range(names, data, limits)
    assert sorted(bad) == [1, 2] and bad[1].startswith("levels=70000")
    assert tables.drop_rows(data, set(bad)) == [[1], [None], [1.0]]
    assert tables.out_of_range(names, [[1], [None], [1.0]], limits) == {}

    from sinks.clickhouse.sqlservice import encode_reply

    res = {"columns": ["x"], "types": ["String"], "rows": [["y" * 100]] * 1000,
           "truncated": False}  # fmt: skip
    body = encode_reply(res, 10_000)
    assert len(body) <= 10_000 and b'"truncated":true' in body
    assert encode_reply(res, 10**7).endswith(b'"truncated":false}')
