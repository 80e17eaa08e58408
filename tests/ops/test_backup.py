"""`jetmarket backup` / `restore` round trip on a real nats-server and a real chdb: back up,
wipe (streams deleted, ClickHouse directory removed), restore, and compare every stream's
messages (sequence, subject, headers, Nats-Msg-Id, data) and every table's rows and digest;
a durable consumer's ack floor survives; restore refuses to overwrite without --replace; a
damaged backup is refused before anything is deleted."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
from nats.js.api import ConsumerConfig

from streams import schemas, subjects
from streams.bus.connect import connect
from streams.bus.server import NatsServer
from streams.provision import STREAM_EXEC, STREAM_MARKET, STREAM_RAW
from streams.settings import Settings, to_toml_env
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]

SEED = """
import time
from sinks.clickhouse.store import Store
from sinks.clickhouse.ttl import KEEP_ALL
s = Store({dsn!r}); s.apply_ddl(); s.apply_ttl(KEEP_ALL); c = s._client_()
now = time.time_ns()
c.command("INSERT INTO trades (venue, symbol, ts_event, ts_recv, id, price, size, side, "
          "aggregated, stream_seq) SELECT 'binance', 'BTC-USDT', "
          "fromUnixTimestamp64Nano(toInt64(%d) - number * 1000000000), "
          "fromUnixTimestamp64Nano(toInt64(%d)), toString(number), 65000 + number / 10, 0.5, "
          "'buy', false, number + 1 FROM numbers(5000)" % (now, now))
c.command("INSERT INTO book_updates (venue, symbol, ts_event, ts_recv, snapshot, bids, asks, "
          "seq, prev_seq, first_seq, checksum, stream_seq) VALUES ('okx', 'ETH-USDT', now64(9), "
          "now64(9), true, [(1.5, 2.0), (1.4, 0.0)], [], 7, NULL, 3, -12, 5001)")
s.close()
"""

DIGEST = """
import orjson
from ops.backup import digest
from sinks.clickhouse.store import Store
s = Store({dsn!r}); c = s._client_()
names = [r[0] for r in c.query("SELECT name FROM system.tables WHERE database = "
         "currentDatabase() AND engine LIKE '%MergeTree' AND name != 'schema_migrations'"
         ).result_rows]
print(orjson.dumps({{n: digest(c, n) for n in sorted(names)}}).decode())
s.close()
"""


def py(settings: Settings, code: str) -> str:
    """Python in a child process: chdb binds one path per process, so the test never opens
    the database itself (the backup and restore commands are children too)."""
    env = {**os.environ, **to_toml_env(settings)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def jetmarket(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **to_toml_env(settings)}
    return subprocess.run([sys.executable, "-m", "ops", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)  # fmt: skip


async def stream_digests(settings: Settings) -> dict[str, tuple[int, str]]:
    """Per stream: (messages, sha256 over every message's sequence, subject, headers, data)."""
    nc = await connect(settings.nats, "check")
    js = nc.jetstream()
    out = {}
    try:
        for name in (STREAM_RAW, STREAM_MARKET, STREAM_EXEC):
            info = await js.stream_info(name)
            h, n = hashlib.sha256(), 0
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                m = await js.get_msg(name, seq)
                h.update(orjson.dumps([m.seq, m.subject, sorted((m.headers or {}).items())]))
                h.update(m.data or b"")
                n += 1
            out[name] = (n, h.hexdigest())
    finally:
        await nc.close()
    return out


async def fill_streams(settings: Settings) -> None:
    nc = await connect(settings.nats, "test")
    js = nc.jetstream()
    try:
        for i in range(300):
            await js.publish(
                subjects.raw("binance", "trade", "BTCUSDT"), b'{"e":"trade","t":%d}' % i,
                headers={subjects.H_RECV_NS: str(time.time_ns()), subjects.H_CONN: "c1",
                         "Nats-Msg-Id": f"binance:trade:{i}"},
            )  # fmt: skip
        for i in range(200):
            t = schemas.Trade(venue="binance", symbol="BTC-USDT", ts_event=i, ts_recv=i,
                              id=str(i), price=1.0 + i, size=0.5, side="sell")  # fmt: skip
            await js.publish(subjects.market("trade", "binance", "BTC-USDT"),
                             schemas.encode(t), headers={"Nats-Msg-Id": f"t{i}"})  # fmt: skip
        await js.publish(subjects.exec_evt("paper", "binance", "BTC-USDT"), b"{}")
        # a durable that has acknowledged the first 120 RAW messages
        await js.add_consumer(STREAM_RAW, ConsumerConfig(durable_name="bk-test", ack_policy="all"))
        sub = await js.pull_subscribe_bind("bk-test", stream=STREAM_RAW)
        msgs = await sub.fetch(120, timeout=5)
        await msgs[-1].ack_sync()
    finally:
        await nc.close()


async def ack_floor(settings: Settings) -> int:
    nc = await connect(settings.nats, "check")
    try:
        info = await nc.jetstream().consumer_info(STREAM_RAW, "bk-test")
        return info.ack_floor.stream_seq
    finally:
        await nc.close()


async def delete_streams(settings: Settings) -> None:
    nc = await connect(settings.nats, "check")
    try:
        for name in await nc.jetstream().streams_info():
            await nc.jetstream().delete_stream(name.config.name)
    finally:
        await nc.close()


async def test_round_trip(tmp_path: Path, nats_server: NatsServer) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    dsn = settings.clickhouse.dsn
    py(settings, SEED.format(dsn=dsn))
    await fill_streams(settings)
    tables_before = orjson.loads(py(settings, DIGEST.format(dsn=dsn)))
    streams_before = await stream_digests(settings)
    assert tables_before["trades"][0] == 5000 and tables_before["ohlcv_1m"][0] > 0
    assert streams_before[STREAM_RAW][0] == 300

    t0 = time.monotonic()
    out = jetmarket(settings, "backup", str(tmp_path / "bk"))
    took_backup = time.monotonic() - t0
    assert out.returncode == 0, out.stderr
    manifest = orjson.loads((tmp_path / "bk" / "manifest.json").read_bytes())
    assert manifest["clickhouse"]["trades"]["rows"] == 5000
    assert manifest["streams"][STREAM_RAW]["messages"] == 300

    # restore over live data is refused, one line, nothing touched
    refused = jetmarket(settings, "restore", str(tmp_path / "bk"))
    assert refused.returncode == 1
    assert refused.stderr.strip().endswith("(stop the workers first: `make down`)")
    assert len(refused.stderr.strip().splitlines()) == 1

    # wipe both stores
    await delete_streams(settings)
    shutil.rmtree(dsn.removeprefix("chdb://"))

    t0 = time.monotonic()
    out = jetmarket(settings, "restore", str(tmp_path / "bk"))
    took_restore = time.monotonic() - t0
    assert out.returncode == 0, out.stderr
    assert "stream RAW: 300 messages restored (seq 1..300)" in out.stdout
    assert "clickhouse trades: 5000 rows restored, digest matches" in out.stdout

    assert await stream_digests(settings) == streams_before
    assert orjson.loads(py(settings, DIGEST.format(dsn=dsn))) == tables_before
    assert await ack_floor(settings) == 120  # the durable resumes where it was
    print(f"backup {took_backup:.1f} s, restore {took_restore:.1f} s")

    # --replace restores again over the restored data (no insert deduplication swallows it)
    again = jetmarket(settings, "restore", "--replace", str(tmp_path / "bk"))
    assert again.returncode == 0, again.stderr
    assert orjson.loads(py(settings, DIGEST.format(dsn=dsn))) == tables_before
    assert await stream_digests(settings) == streams_before

    # trades alone would be aggregated a second time into ohlcv_*: refused, nothing touched
    alone = jetmarket(settings, "restore", str(tmp_path / "bk"), "--replace", "--only",
                      "clickhouse", "--tables", "trades")  # fmt: skip
    assert alone.returncode == 1 and "feeds the materialized view into ohlcv_1" in alone.stderr
    assert orjson.loads(py(settings, DIGEST.format(dsn=dsn))) == tables_before


async def test_damaged_backup_is_refused_before_deleting(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    await fill_streams(settings)
    out = jetmarket(settings, "backup", "--only", "streams", str(tmp_path / "bk"))
    assert out.returncode == 0, out.stderr
    snap = tmp_path / "bk" / f"{STREAM_RAW}.snapshot"
    data = bytearray(snap.read_bytes())
    data[len(data) // 2] ^= 0xFF
    snap.write_bytes(bytes(data))
    before = await stream_digests(settings)
    out = jetmarket(settings, "restore", "--replace", str(tmp_path / "bk"))
    assert out.returncode == 1
    assert "checksum differs from the manifest" in out.stderr
    assert await stream_digests(settings) == before  # --replace deleted nothing


def test_backup_refuses_a_used_directory_and_a_missing_backup(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "nats://127.0.0.1:1")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    out = jetmarket(settings, "backup", str(tmp_path / "used"))
    assert out.returncode == 1 and "exists and is not empty" in out.stderr
    out = jetmarket(settings, "restore", str(tmp_path / "nothing"))
    assert out.returncode == 1 and "not a backup" in out.stderr


def test_chdb_in_use_is_one_line(tmp_path: Path) -> None:
    """The sink of `make up` holds chdb: backup says to stop it, in one line."""
    settings = make_settings(tmp_path, "nats://127.0.0.1:1")
    dsn = settings.clickhouse.dsn
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from sinks.clickhouse.store import Store; "
         f"s = Store({dsn!r}); s.apply_ddl(); print('ok', flush=True); time.sleep(60)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        out = jetmarket(settings, "backup", "--only", "clickhouse", str(tmp_path / "bk"))
        assert out.returncode == 1
        assert "stop it first (`make down`)" in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
    finally:
        holder.kill()
        holder.wait()


async def test_backup_starts_the_embedded_nats_server_when_it_is_down(tmp_path: Path) -> None:
    """After `make down` nothing listens on nats.url: the command runs the embedded server on
    its store for the duration, and stops it."""
    from streams.bus.server import free_port
    from streams.settings import NatsServerSettings

    port = free_port()
    settings = make_settings(
        tmp_path, f"nats://127.0.0.1:{port}",
        nats={"server": {"port": port, "monitor_port": free_port(),
                         "store_dir": str(tmp_path / "nats")}},
    )  # fmt: skip
    cfg = NatsServerSettings(**{k: getattr(settings.nats.server, k) for k in ("port",
                             "monitor_port", "store_dir")})  # fmt: skip
    with NatsServer(cfg, log_file=tmp_path / "nats.log"):
        from tests.conftest import _provision_as_admin

        await _provision_as_admin(settings.nats.url)
        await fill_streams(settings)
    out = jetmarket(settings, "backup", "--only", "streams", str(tmp_path / "bk"))
    assert out.returncode == 0, out.stderr
    assert "started the embedded nats-server" in out.stderr
    manifest = orjson.loads((tmp_path / "bk" / "manifest.json").read_bytes())
    assert manifest["streams"][STREAM_RAW]["messages"] == 300
    with socket.socket() as s:  # stopped again: the port is free
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_a_tampered_manifest_runs_no_sql(tmp_path: Path) -> None:
    """Names and table definitions of the manifest reach SQL: only plain names and CREATE
    TABLE pass, checked before any connection."""
    settings = make_settings(tmp_path, "nats://127.0.0.1:1")
    cases = [
        {"trades": {"columns": ["venue"], "create": "DROP TABLE fills"}},
        {"trades`; DROP TABLE fills; --": {"columns": [], "create": "CREATE TABLE x (a Int8)"}},
    ]
    for case in cases:
        (tmp_path / "bk").mkdir(exist_ok=True)
        (tmp_path / "bk" / "manifest.json").write_bytes(
            orjson.dumps({"version": 1, "clickhouse": case, "streams": {}})
        )
        out = jetmarket(settings, "restore", str(tmp_path / "bk"))
        assert out.returncode == 1 and "manifest:" in out.stderr, out.stderr
