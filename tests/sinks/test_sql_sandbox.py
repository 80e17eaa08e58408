"""The ``sql.query`` sandbox against a real sink subprocess (real nats-server, real chdb):
hostile queries refused by the allow-list, limits that a query cannot lift, queries killed
when the requester gives up, and inserts from a live MARKET stream measured while an attack
burst runs (docs/security.md, section 1, has the numbers)."""

from __future__ import annotations

import asyncio
import itertools
import site
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from streams import schemas, sql, sqlguard, subjects
from streams.bus.connect import connect
from streams.bus.server import NatsServer, free_port
from streams.provision import STREAM_MARKET
from streams.settings import NatsServerSettings, Settings
from tests.conftest import _provision_as_admin, make_settings
from tests.pipeline.test_e2e import wait_rows
from tests.workers import Proc

NS = 1_700_000_000_000_000_000
OUT = Path(sys.prefix) / "jm_sql_attack_out"  # where an INTO OUTFILE would land
PTH = Path(site.getsitepackages()[0]) / "jm_sql_attack.pth"

# (query, a word the refusal must contain). Every table function ClickHouse has is added
# below from system.table_functions, except the allow-listed pure ones.
HOSTILE: list[tuple[str, str]] = [
    # issue 15 item 1: files, environment, internal URLs, s3, written files
    ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "file()"),
    ("SELECT * FROM file('/proc/self/environ', 'RawBLOB')", "file()"),
    ("SELECT * FROM url('http://127.0.0.1:8222/varz', 'RawBLOB')", "url()"),
    ("SELECT * FROM s3('http://127.0.0.1:9000/b/k.csv', 'CSV')", "s3()"),
    (f"SELECT 1 INTO OUTFILE '{OUT}'", "INTO OUTFILE"),
    (f"SELECT 1 INTO OUTFILE '{OUT}' APPEND", "INTO OUTFILE"),
    (f"SELECT 1 INTO OUTFILE '{OUT}' TRUNCATE", "INTO OUTFILE"),
    (f"SELECT 'import os' INTO OUTFILE '{PTH}' FORMAT TSVRaw", "INTO OUTFILE"),
    (f"SELECT 1 INTO OUTFILE '{OUT}' COMPRESSION 'gzip'", "INTO OUTFILE"),
    (f"SHOW TABLES INTO OUTFILE '{OUT}'", "INTO OUTFILE"),
    (f"EXPLAIN SELECT 1 INTO OUTFILE '{OUT}'", "INTO OUTFILE"),
    # item 2: writes and SET
    ("DROP TABLE trades", "DropQuery"),
    ("TRUNCATE TABLE trades", "refused"),
    ("INSERT INTO trades (venue) VALUES ('x')", "InsertQuery"),
    ("ALTER TABLE trades DELETE WHERE 1", "refused"),
    ("CREATE TABLE x (a UInt8) ENGINE = Memory", "refused"),
    ("SET max_memory_usage = 1", "Set"),
    ("SET readonly = 0", "Set"),
    ("KILL QUERY WHERE 1", "KillQueryQuery"),
    ("SYSTEM SHUTDOWN", "refused"),
    ("OPTIMIZE TABLE trades FINAL", "refused"),
    ("USE system", "refused"),
    ("SELECT 1; DROP TABLE trades", "Multi-statements"),
    ("SELECT 1; SELECT 2", "Multi-statements"),
    # item 3: limits that a query would lift
    # (ClickHouse's parser already refuses these in the readonly session)
    ("SELECT * FROM numbers(10) SETTINGS max_result_rows = 0", "setting"),
    ("SELECT 1 SETTINGS readonly = 0", "setting"),
    ("SELECT 1 SETTINGS max_execution_time = 0", "setting"),
    ("SELECT * FROM (SELECT 1 SETTINGS max_memory_usage = 0)", "SETTINGS"),
    ("EXPLAIN json = 1 SELECT 1", "SETTINGS"),
    ("SELECT 1 FORMAT JSON", "FORMAT"),
    # other tables and leaks
    ("SELECT query FROM system.processes", "system.processes"),
    ("SELECT * FROM system.query_log", "system.query_log"),
    ("SELECT * FROM system.server_settings", "system.server_settings"),
    ("SELECT * FROM system.databases", "system.databases"),
    ("SELECT * FROM system.disks", "system.disks"),
    ("SELECT * FROM system.users", "system.users"),
    ("SELECT * FROM system.build_options", "system.build_options"),
    ("SELECT 1 WHERE 1 IN system.processes", "system.processes"),
    ("SHOW PROCESSLIST", "ShowProcesslistQuery"),
    ("SHOW CREATE TABLE system.processes", "SHOW CREATE"),
    ("SELECT * FROM other_db.trades", "outside this database"),
    # functions that reach outside or tell about the host / settings
    ("SELECT file('/etc/passwd')", "file()"),
    ("SELECT getSetting('max_memory_usage')", "getSetting()"),
    ("SELECT hostName()", "hostName()"),
    ("SELECT currentUser()", "currentUser()"),
    ("SELECT dictGet('d', 'v', toUInt64(1))", "dictGet()"),
    ("SELECT joinGet('j', 'v', 1)", "joinGet()"),
    ("SELECT sleepEachRow(3) FROM numbers(100)", "sleepEachRow()"),
    ("SELECT hasColumnInTable('127.0.0.1:9000', 'default', 'trades', 'x')", "hasColumnInTable"),
    ("SELECT getMacro('replica')", "getMacro()"),
    ("SELECT filesystemAvailable()", "filesystemAvailable()"),
    ("SELECT 1 WHERE 1 IN url('http://127.0.0.1:8222/varz', 'RawBLOB')", "url()"),
    # hiding: case, comments, quoting, subqueries, CTEs, unions, unicode
    ("select * from FILE('/etc/passwd', 'LineAsString')", "FILE()"),
    ("SELECT * FROM /* x */ file /* y */ ('/etc/passwd', 'LineAsString')", "file()"),
    ("SELECT * FROM `file`('/etc/passwd', 'LineAsString')", "file()"),
    ("SELECT 1 /* ; */ INTO -- \n OUTFILE '/tmp/jm_x'", "INTO OUTFILE"),
    ("WITH x AS (SELECT * FROM url('http://127.0.0.1:8222/', 'RawBLOB')) SELECT * FROM x", "url()"),
    ("SELECT * FROM (SELECT * FROM (SELECT * FROM file('/etc/hosts', 'RawBLOB')))", "file()"),
    ("SELECT 1 UNION ALL SELECT * FROM file('/etc/hosts', 'RawBLOB')", "file()"),
    ("SELECT * FROM trades t JOIN file('/etc/hosts', 'RawBLOB') f ON 1", "file()"),
    ("SELECT (SELECT * FROM url('http://127.0.0.1:8222/', 'RawBLOB'))", "url()"),
    ("SELECT * FROM `system`.`processes`", "system.processes"),
    ('SELECT * FROM "system"."processes"', "system.processes"),
    ("\uff33\uff25\uff2c\uff25\uff23\uff34 1", "Syntax error"),  # fullwidth SELECT
    ("SELECT 1 \uff29\uff2e\uff34\uff2f OUTFILE '/tmp/jm_x'", "Syntax error"),
    ("SELECT 1\u00a0INTO\u00a0OUTFILE '/tmp/jm_x'", "INTO OUTFILE"),
    ("SELECT 1 \x00", "control characters"),
    ("SELECT * FROM viewIfPermitted(SELECT 1 ELSE null('x UInt8'))", "viewIfPermitted()"),
    ("SELECT * FROM view(SELECT * FROM file('/etc/hosts', 'RawBLOB'))", "view()"),
    ("SELECT * FROM merge('system', 'processes')", "merge()"),
    ("SELECT * FROM input('x String')", "input()"),
    ("", "empty"),
    ("SELECT '" + "x" * 100_001 + "'", "longer than"),
]

# one plausible call per table function name; the refusal comes before any argument is read
TABLE_FUNCTIONS = [
    "azureBlobStorage", "azureBlobStorageCluster", "clusterAllReplicas", "cluster",
    "deltaLake", "dictionary", "executable", "file", "fileCluster", "format", "gcs",
    "generateRandom", "hdfs", "hdfsCluster", "hudi", "iceberg", "input", "jdbc", "merge",
    "mergeTreeIndex", "mongodb", "mysql", "null", "odbc", "postgresql", "redis", "remote",
    "remoteSecure", "s3", "s3Cluster", "sqlite", "url", "urlCluster", "view", "loop",
]  # fmt: skip
ALLOWED = ["numbers(3)", "numbers_mt(3)", "generateSeries(1, 3)",
           "generate_series(1, 3)", "values('x UInt8', 1, 2, 3)"]  # fmt: skip


@pytest.fixture(scope="module")
def sink_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """One nats-server and one sink for the refusal table (each query is milliseconds)."""
    tmp = tmp_path_factory.mktemp("sqlsandbox")
    cfg = NatsServerSettings(port=free_port(), monitor_port=free_port(), store_dir=str(tmp / "n"))
    srv = NatsServer(cfg, log_file=tmp / "nats.log").start()
    asyncio.run(_provision_as_admin(srv.url))  # as conftest's nats_server does
    settings = make_settings(tmp, srv.url)
    sink = Proc("sinks", settings, "clickhouse", log=tmp / "sink.log").start()
    try:
        yield settings
    finally:
        sink.stop()
        srv.stop()


async def _ask(settings: Settings, query: str, **kw: float) -> sql.SqlResult:
    nc = await connect(settings.nats, "test")
    try:
        await wait_rows(nc, "SELECT 1", 1, 30)
        return await sql.query(nc, query, **kw)  # type: ignore[arg-type]
    finally:
        await nc.close()


@pytest.mark.parametrize("query,why", HOSTILE, ids=[f"h{i:02d}" for i in range(len(HOSTILE))])
async def test_hostile_query_refused(sink_env: Settings, query: str, why: str) -> None:
    with pytest.raises(sql.SqlError) as err:
        await _ask(sink_env, query)
    assert why.lower() in str(err.value).lower(), str(err.value)
    assert not OUT.exists() and not PTH.exists() and not Path("/tmp/jm_x").exists()


async def test_every_table_function_but_the_pure_ones_refused(sink_env: Settings) -> None:
    known = await _ask(sink_env, "SELECT name FROM system.table_functions", timeout=10)
    names = sorted({r[0] for r in known.rows} | set(TABLE_FUNCTIONS))
    allowed = {a.split("(")[0].lower() for a in ALLOWED}
    refused = []
    for name in names:
        if name.lower() in allowed:
            continue
        try:
            args = {
                "view": "SELECT 1",
                "viewifpermitted": "SELECT 1 ELSE null('x UInt8')",
                "viewexplain": "'EXPLAIN AST', '', (SELECT 1)",
            }.get(name.lower(), "'a', 'b'")
            await _ask(sink_env, f"SELECT * FROM {name}({args})")
        except sql.SqlError as exc:
            if f"table function {name.lower()}()" in str(exc).lower():
                refused.append(name)
                continue
            raise AssertionError(f"{name}: {exc}") from None
        raise AssertionError(f"{name}() was run")
    assert len(refused) >= 40, refused  # chdb 26.9 has ~60
    for call in ALLOWED:
        assert (await _ask(sink_env, f"SELECT count() FROM {call}")).rows == [[3]], call


async def test_limits_hold_and_reads_work(sink_env: Settings) -> None:
    # a huge result is cut at the request's max_rows, reading stops early (break)
    t0 = time.monotonic()
    res = await _ask(sink_env, "SELECT number FROM system.numbers", max_rows=10)
    assert len(res.rows) == 10 and res.truncated and time.monotonic() - t0 < 10
    # more memory than max_memory_bytes (1 GiB)
    with pytest.raises(sql.SqlError, match="(?i)memory limit"):
        await _ask(sink_env, "SELECT groupArray(number) FROM numbers(1000000000)", timeout=30)
    # more rows than max_rows_to_read (2e9)
    with pytest.raises(sql.SqlError, match="max_rows_to_read"):
        await _ask(sink_env, "SELECT count() FROM numbers(10000000000)")
    # the read-only session is not changed by any of it
    names = "'readonly', 'max_memory_usage', 'max_threads', 'max_execution_time'"
    res = await _ask(sink_env, f"SELECT name, value FROM system.settings WHERE name IN ({names})")
    assert dict(res.rows) == {"readonly": "1", "max_memory_usage": "1073741824",
                              "max_threads": "1", "max_execution_time": "30"}  # fmt: skip
    # what a reader needs still works
    for q in ["SHOW TABLES", "DESCRIBE TABLE trades", "EXISTS TABLE trades",
              "SHOW CREATE TABLE trades", "EXPLAIN SELECT count() FROM trades",
              "WITH 2 AS x SELECT x * number FROM numbers(3)", "SELECT format('{}', 'a')",
              "SELECT name FROM system.columns WHERE table = 'trades'",
              "SELECT count() FROM information_schema.tables",
              "(SELECT 1) EXCEPT (SELECT 2)",
              "SELECT 'INTO OUTFILE', 'SETTINGS x = 1'"]:  # fmt: skip
        await _ask(sink_env, q)


async def test_query_killed_when_the_requester_gives_up(tmp_path: Path, nats_server: NatsServer,
                                                        nc: Client) -> None:  # fmt: skip
    """With one query slot, a 1 s requester timeout must free the slot within ~1 s: without
    the kill the heavy query would hold it for max_execution_s (30 s)."""
    settings = make_settings(tmp_path, nats_server.url, sink={"sql": {"concurrency": 1}})
    sink = Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log").start()
    try:
        assert await wait_rows(nc, "SELECT 1", 1, 30) == 1
        heavy = "SELECT count() FROM numbers(1000000000) WHERE sipHash64(toString(number)) % 7 = 1"
        t0 = time.monotonic()
        with pytest.raises(sql.SqlError, match="cancelled after 1 s"):
            await sql.query(nc, heavy, timeout=1.0)
        res = await sql.query(nc, "SELECT 42", timeout=10)
        waited = time.monotonic() - t0
        assert res.rows == [[42]] and waited < 5.0, waited
    finally:
        assert sink.stop() == 0


def _trade(i: int) -> bytes:
    return schemas.encode(schemas.Trade(venue="binance", symbol="BTC-USDT", ts_event=NS + i,
                                        ts_recv=NS + i, id=str(i), price=1.0, size=1.0,
                                        side="buy"))  # fmt: skip


async def _attack(nc: Client, stop: asyncio.Event, counts: dict[str, int]) -> None:
    """Refused writes, SET and SETTINGS tricks and heavy queries, round after round."""
    heavy = "SELECT count() FROM numbers(300000000) WHERE sipHash64(toString(number)) % 7 = 1"
    tricks = ["DROP TABLE trades", "SET max_memory_usage = 1", "SET readonly = 0",
              "SELECT 1 SETTINGS max_result_rows = 0", "TRUNCATE TABLE trades",
              "SELECT * FROM file('/proc/self/environ', 'RawBLOB')"]  # fmt: skip

    async def one(q: str, timeout: float) -> None:
        try:
            await sql.query(nc, q, timeout=timeout)
            counts["answered"] += 1
        except sql.SqlError:
            counts["refused_or_cancelled"] += 1

    while not stop.is_set():
        await asyncio.gather(one(heavy, 2.0), one(heavy, 2.0),
                             *(one(q, 5.0) for q in tricks))  # fmt: skip


async def test_inserts_keep_flowing_during_an_attack_burst(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    """Trades published at a steady rate; the sink's stored position (consumer ack floor)
    sampled every 0.1 s before, during and after a burst of attacks."""
    settings = make_settings(tmp_path, nats_server.url, sink={"flush_interval_s": 0.2})
    sink = Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log").start()
    rate, phase = 2000, 5.0  # messages/s, seconds per phase
    samples: list[tuple[float, int]] = []
    stop_pub = asyncio.Event()
    published = 0

    async def publish() -> None:
        nonlocal published
        subj = subjects.market("trade", "binance", "BTC-USDT")
        while not stop_pub.is_set():
            t = time.monotonic()
            futs = [await js.publish_async(subj, _trade(published + k)) for k in range(rate // 10)]
            await asyncio.gather(*futs)
            published += len(futs)
            await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - t)))

    async def sample(until: float) -> None:
        while time.monotonic() < until:
            info = await js.consumer_info(STREAM_MARKET, settings.sink.market.durable)
            samples.append((time.monotonic(), info.ack_floor.stream_seq if info.ack_floor else 0))
            await asyncio.sleep(0.1)

    try:
        assert await wait_rows(nc, "SELECT 1", 1, 30) == 1
        pub = asyncio.create_task(publish())
        await asyncio.sleep(1.0)  # warm up
        t0 = time.monotonic()
        await sample(t0 + phase)
        counts = {"answered": 0, "refused_or_cancelled": 0}
        stop_attack = asyncio.Event()
        attack = asyncio.create_task(_attack(nc, stop_attack, counts))
        t1 = time.monotonic()
        await sample(t1 + phase)
        stop_attack.set()
        await attack
        t2 = time.monotonic()
        await sample(t2 + phase)
        stop_pub.set()
        await pub

        def stored_rate(a: float, b: float) -> float:
            w = [(t, s) for t, s in samples if a <= t <= b]
            return (w[-1][1] - w[0][1]) / (w[-1][0] - w[0][0])

        def longest_stall(a: float, b: float) -> float:
            w = [(t, s) for t, s in samples if a <= t <= b]
            stall, since = 0.0, w[0][0]
            for (_, s0), (t, s) in itertools.pairwise(w):
                if s > s0:
                    since = t
                stall = max(stall, t - since)
            return stall

        before, during, after = (stored_rate(t0, t1), stored_rate(t1, t2),
                                 stored_rate(t2, t2 + phase))  # fmt: skip
        stall = longest_stall(t1, t2)
        print(f"\nstored rows/s: before {before:.0f}, during attack {during:.0f}, after "
              f"{after:.0f}; longest stall during attack {stall:.2f} s; attack queries "
              f"{counts}")  # fmt: skip
        assert counts["refused_or_cancelled"] >= 20
        assert during >= 0.8 * rate and stall < 1.5, (during, stall)
        assert await wait_rows(nc, "SELECT count() FROM trades", published, 60) == published
        log = (tmp_path / "sink.log").read_text()
        assert "insert failed" not in log and "READONLY" not in log
    finally:
        assert sink.stop() == 0


def test_guard_reads_explain_ast() -> None:
    """The tree reader on EXPLAIN AST text as chdb 26.9 prints it."""
    ast = """SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Asterisk
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      Function file (alias f) (children 1)
       ExpressionList (children 1)
        Literal '/etc/passwd'
 Literal '/tmp/out'"""
    nodes = sqlguard.parse_ast(ast)
    assert nodes[8] == sqlguard.Node(6, "Function", "file")
    with pytest.raises(sqlguard.Refused, match="table function file"):
        sqlguard.check_ast(nodes, frozenset({"file"}))
    ok = ast.replace("Function file", "Function numbers")
    with pytest.raises(sqlguard.Refused, match="INTO OUTFILE"):  # the root's Literal child
        sqlguard.check_ast(sqlguard.parse_ast(ok), frozenset({"file", "numbers"}))
    ok = ok.replace("\n Literal '/tmp/out'", "")
    sqlguard.check_ast(sqlguard.parse_ast(ok), frozenset({"file", "numbers"}))
    with pytest.raises(sqlguard.Refused, match="INTO OUTFILE"):
        sqlguard.check_clauses("SELECT 1 INTO  OUTFILE 'x'")
    sqlguard.check_clauses("SELECT 'INTO OUTFILE', `SETTINGS`, formatRow('CSV', 1)")


def test_query_direct_applies_the_same_checks(tmp_path: Path) -> None:
    """streams.sql.query_direct (the server path of `jetmarket sql`) runs the allow-list
    through the engine it queries; here a chdb path in a child process (one engine path
    per process), which takes the same code as an http DSN."""
    import subprocess

    from tests.workers import ROOT

    code = (
        "from streams import sql\n"
        f"dsn = 'chdb://{tmp_path / 'ch'}'\n"
        "for q in ['SELECT * FROM file(\\'/etc/passwd\\', \\'LineAsString\\')',"
        " 'DROP TABLE x', 'SELECT 1 SETTINGS max_result_rows = 0',"
        " 'SELECT 1 INTO OUTFILE \\'/tmp/jm_x\\'', 'SELECT number FROM numbers(5)']:\n"
        "    try:\n"
        "        print('ok', sql.query_direct(dsn, q, max_rows=3).rows)\n"
        "    except sql.SqlError as e:\n"
        "        print('refused', str(e)[:60])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True).stdout.splitlines()  # fmt: skip
    assert [line.split(" ")[0] for line in out] == ["refused"] * 4 + ["ok"], out
    assert out[-1] == "ok [[0], [1], [2]]" and not Path("/tmp/jm_x").exists()
