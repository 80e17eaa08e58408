"""Least privilege on the real server config (infra/nats/nats-server.conf + streams/bus/auth.py):
each worker identity tries every JetStream API subject against every stream and every data
subject outside its role, and the server refuses each one; its own subjects work. Item 4's
attacks (a collector shrinking EXEC, a RAW republish rule into exec.cmd) are refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import orjson
import pytest
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, RePublish, StreamConfig

from streams.bus import auth as natsauth
from streams.bus.connect import connect
from streams.bus.server import NatsServer
from streams.settings import Settings
from tests.conftest import CREDENTIALS, make_settings

STREAMS = ("RAW", "MARKET", "EXEC", "DLQ", natsauth.FRAMES_STREAM, "KV_JM_HALT", "REPLAY_X")
# Every verb of the JetStream API (nats-server 2.15): stream-level ones take the stream name,
# consumer-level ones the stream and a consumer name.
ACCOUNT_VERBS = ("INFO", "STREAM.LIST", "STREAM.NAMES", "CONSUMER.LIST", "SERVER.REMOVE",
                 "ACCOUNT.PURGE", "ACCOUNT.STREAM.MOVE", "META.LEADER.STEPDOWN")  # fmt: skip
STREAM_VERBS = ("STREAM.CREATE", "STREAM.UPDATE", "STREAM.DELETE", "STREAM.PURGE",
                "STREAM.INFO", "STREAM.MSG.GET", "STREAM.MSG.DELETE", "STREAM.SNAPSHOT",
                "STREAM.RESTORE", "STREAM.PEER.REMOVE", "STREAM.LEADER.STEPDOWN",
                "CONSUMER.LIST", "CONSUMER.NAMES", "CONSUMER.CREATE", "DIRECT.GET")  # fmt: skip
CONSUMER_VERBS = ("CONSUMER.CREATE", "CONSUMER.DURABLE.CREATE", "CONSUMER.DELETE",
                  "CONSUMER.INFO", "CONSUMER.MSG.NEXT", "CONSUMER.LEADER.STEPDOWN",
                  "CONSUMER.PAUSE", "CONSUMER.UNPIN", "CONSUMER.RESET")  # fmt: skip
DURABLES = ("normalizer", "sink-raw", "sink-market", "sink-exec", "executor", "spy")
DATA = ("raw.binance.trade.BTCUSDT", "market.trade.binance.BTC-USDT", "market.depth.x.Y",
        "exec.cmd.paper", "exec.cmd.alice", "exec.evt.paper.binance.BTC-USDT", "exec.pos.paper",
        "exec.ctl.halt", "exec.ctl.resume", "ctl.exec.paper", "ctl.snapshot.binance.BTCUSDT",
        "sql.query", "book.get.binance.BTC-USDT", "status.query", "dlq.collector",
        "dlq.normalizer", "dlq.sink", "dlq.orderbook", "dlq.executor", "replay.x.raw.a.b.c",
        "$O.JM_FRAMES.C.x", "$KV.JM_HALT.state", "_INBOX.x", "_INBOX_admin.x",
        "$JS.ACK.RAW.normalizer.1.1.1.1.0", "$JS.ACK.EXEC.executor.1.1.1.1.0",
        "$JS.ACK.MARKET.sink-market.1.1.1.1.0", "$JS.FC.MARKET.x",
        "$SYS.REQ.SERVER.PING", "raw.private.paper.binance")  # fmt: skip
# A refused JetStream request gets no reply (the server logs the violation): a timeout.
DENIED = (nats.errors.Error, TimeoutError)

# Reading the big-frames object store: an ordered consumer, whose server-made name INFO and
# MSG.NEXT cannot be narrowed to.
EPHEMERAL = ("CONSUMER.INFO", "CONSUMER.MSG.NEXT")
FRAMES = {f"$JS.API.{v}.{natsauth.FRAMES_STREAM}.{d}" for v in EPHEMERAL for d in DURABLES}
# What each worker may publish among the subjects above (everything else must be refused).
OWN: dict[str, set[str]] = {
    "collector": {"raw.binance.trade.BTCUSDT", "dlq.collector", "$O.JM_FRAMES.C.x",
                  *(f"$JS.API.STREAM.INFO.{s}" for s in ("RAW", "MARKET", "EXEC", "DLQ",
                                                          natsauth.FRAMES_STREAM)),
                  "$JS.API.STREAM.MSG.GET.RAW", "$JS.API.DIRECT.GET.RAW",
                  f"$JS.API.STREAM.MSG.GET.{natsauth.FRAMES_STREAM}",
                  f"$JS.API.DIRECT.GET.{natsauth.FRAMES_STREAM}",
                  f"$JS.API.CONSUMER.CREATE.{natsauth.FRAMES_STREAM}", *FRAMES},
    "normalizer": {"market.trade.binance.BTC-USDT", "market.depth.x.Y", "dlq.normalizer",
                   "$JS.ACK.RAW.normalizer.1.1.1.1.0",
                   *(f"$JS.API.STREAM.INFO.{s}" for s in ("RAW", "MARKET", "DLQ",
                                                           natsauth.FRAMES_STREAM)),
                   f"$JS.API.STREAM.MSG.GET.{natsauth.FRAMES_STREAM}",
                   f"$JS.API.DIRECT.GET.{natsauth.FRAMES_STREAM}",
                   f"$JS.API.CONSUMER.CREATE.{natsauth.FRAMES_STREAM}", *FRAMES,
                   *(f"$JS.API.{v}.RAW.normalizer" for v in (
                       "CONSUMER.CREATE", "CONSUMER.DURABLE.CREATE", "CONSUMER.DELETE",
                       "CONSUMER.INFO", "CONSUMER.MSG.NEXT"))},
    "sink": {"dlq.sink", "$JS.ACK.MARKET.sink-market.1.1.1.1.0",
             *(f"$JS.API.STREAM.INFO.{s}" for s in ("RAW", "MARKET", "EXEC", "DLQ",
                                                     natsauth.FRAMES_STREAM)),
             f"$JS.API.STREAM.MSG.GET.{natsauth.FRAMES_STREAM}",
             f"$JS.API.DIRECT.GET.{natsauth.FRAMES_STREAM}",
             f"$JS.API.CONSUMER.CREATE.{natsauth.FRAMES_STREAM}", *FRAMES,
             *(f"$JS.API.{v}.{s}.{d}" for v in ("CONSUMER.CREATE", "CONSUMER.DURABLE.CREATE",
                                                "CONSUMER.DELETE", "CONSUMER.INFO",
                                                "CONSUMER.MSG.NEXT")
               for s, d in (("RAW", "sink-raw"), ("MARKET", "sink-market"),
                            ("EXEC", "sink-exec")))},
    "orderbook": {"market.depth.x.Y", "ctl.snapshot.binance.BTCUSDT", "dlq.orderbook",
                  "$JS.FC.MARKET.x", "$JS.API.STREAM.INFO.MARKET", "$JS.API.CONSUMER.CREATE.MARKET",
                  *(f"$JS.API.{v}.MARKET.{d}" for v in EPHEMERAL for d in DURABLES)},
    "executor": {"exec.cmd.paper", "exec.cmd.alice", "exec.evt.paper.binance.BTC-USDT",
                 "raw.private.paper.binance",
                 "exec.pos.paper", "dlq.executor", "sql.query", "$JS.ACK.EXEC.executor.1.1.1.1.0",
                 "$JS.API.STREAM.INFO.EXEC", "$JS.API.STREAM.INFO.MARKET",
                 "$JS.API.STREAM.MSG.GET.EXEC", "$JS.API.DIRECT.GET.EXEC",
                 "$JS.API.CONSUMER.CREATE.EXEC", "$JS.API.CONSUMER.CREATE.MARKET",
                 "$JS.FC.MARKET.x",
                 *(f"$JS.API.{v}.MARKET.{d}" for v in EPHEMERAL for d in DURABLES),
                 *(f"$JS.API.{v}.EXEC.executor" for v in (
                     "CONSUMER.CREATE", "CONSUMER.DURABLE.CREATE", "CONSUMER.DELETE")),
                 *(f"$JS.API.{v}.EXEC.{d}" for v in EPHEMERAL for d in DURABLES)},
}  # fmt: skip


def api_subjects() -> list[str]:
    out = [f"$JS.API.{v}" for v in ACCOUNT_VERBS]
    for s in STREAMS:
        out += [f"$JS.API.{v}.{s}" for v in STREAM_VERBS]
        out += [f"$JS.API.{v}.{s}.{d}" for v in CONSUMER_VERBS for d in DURABLES]
    return out


async def refused(nc: Client, errors: list[Exception], subject: str) -> bool:
    """Publish once; True when the server answers with a permissions violation for it."""
    del errors[:]
    await nc.publish(subject, b"{}")
    await nc.flush()
    for _ in range(5):  # the -ERR comes before the flush's PONG; its callback is a task
        # nats-py lower-cases the server's text: 'permissions violation for publish to "..."'
        if any(f'publish to "{subject.lower()}"' in str(e).lower() for e in errors):
            return True
        await asyncio.sleep(0.01)
        await nc.flush()
    return False


async def client(url: str, role: str, errors: list[Exception]) -> Client:
    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    s = make_settings(Path("/nonexistent"), url)
    return await connect(s.nats, role, error_cb=on_error, max_reconnect_attempts=0)


@pytest.mark.parametrize("role", natsauth.WORKER_ROLES)
async def test_every_api_and_data_subject_outside_the_role_is_refused(
    nats_server: NatsServer, role: str
) -> None:
    errors: list[Exception] = []
    nc = await client(nats_server.url, role, errors)
    try:
        wrong_allowed, wrong_refused = [], []
        for subject in [*api_subjects(), *DATA]:
            got = await refused(nc, errors, subject)
            if subject in OWN[role] and got:
                wrong_refused.append(subject)
            elif subject not in OWN[role] and not got:
                wrong_allowed.append(subject)
        assert not wrong_allowed, f"{role} may publish outside its role: {wrong_allowed}"
        assert not wrong_refused, f"{role} refused its own subjects: {wrong_refused}"
        # subscriptions: another role's inbox, commands, control and service subjects
        for subject in ("_INBOX.>", "_INBOX_admin.>", "exec.cmd.>", "exec.ctl.>", ">",
                        "$JS.API.>", "raw.>" if role != "collector" else "exec.>"):  # fmt: skip
            del errors[:]
            await nc.subscribe(subject)
            await nc.flush()
            await asyncio.sleep(0.05)
            assert any("subscription" in str(e).lower() for e in errors), (role, subject)
    finally:
        await nc.close()


async def test_item4_attacks_are_refused(nats_server: NatsServer, tmp_path: Path) -> None:
    """As the collector: cut EXEC to max_msgs=1, add a RAW republish rule into exec.cmd,
    create a stream that republishes into exec.cmd, read commands with a consumer: all
    refused, and EXEC is untouched."""
    errors: list[Exception] = []
    admin = await connect(make_settings(tmp_path, nats_server.url).nats, "test")
    ajs = admin.jetstream(timeout=5)
    coll = await client(nats_server.url, "collector", errors)
    js = coll.jetstream(timeout=2)
    try:
        before = (await ajs.stream_info("EXEC")).config
        cut = StreamConfig(name="EXEC", subjects=["exec.>"], max_msgs=1)
        with pytest.raises(DENIED):
            await js.update_stream(cut)
        raw = (await ajs.stream_info("RAW")).config
        raw.republish = RePublish(src="raw.x.*.*", dest="exec.cmd.{{wildcard(2)}}")
        with pytest.raises(DENIED):
            await js.update_stream(raw)
        evil = StreamConfig(name="EVIL", subjects=["evil.>"],
                            republish=RePublish(src=">", dest="exec.cmd.paper"))  # fmt: skip
        with pytest.raises(DENIED):
            await js.add_stream(evil)
        with pytest.raises(DENIED):
            await js.add_consumer("EXEC", ConsumerConfig(durable_name="spy"))
        with pytest.raises(DENIED):
            await js.purge_stream("EXEC")
        await coll.publish("raw.x.paper.1", b'{"type":"order_command"}')
        await coll.publish("exec.cmd.paper", b'{"type":"order_command"}')
        await coll.flush()
        await asyncio.sleep(0.2)
        after = await ajs.stream_info("EXEC")
        assert after.config.max_msgs == before.max_msgs and not after.config.republish
        assert not (await ajs.stream_info("RAW")).config.republish
        assert after.state.messages == 0, "something reached EXEC"
        assert all(s.config.name != "EVIL" for s in await ajs.streams_info())
        assert any("exec.cmd.paper" in str(e).lower() for e in errors), errors
    finally:
        await coll.close()
        await admin.close()


async def test_trader_operator_reader_and_per_account_trader(nats_server: NatsServer) -> None:
    """Halt: trader and operator; resume: operator only. trader-paper: its account only."""
    for role, ok, no in (
        ("trader", ["exec.cmd.paper", "exec.cmd.alice", "ctl.exec.paper", "exec.ctl.halt"],
         ["exec.ctl.resume", "exec.evt.paper.x.y", "raw.a.b.c", "market.trade.a.b",
          "$JS.API.STREAM.INFO.EXEC", "$JS.API.CONSUMER.CREATE.EXEC"]),
        ("trader-paper", ["exec.cmd.paper", "ctl.exec.paper", "exec.ctl.halt"],
         ["exec.cmd.alice", "ctl.exec.alice", "exec.ctl.resume", "sql.query"]),
        ("operator", ["exec.ctl.halt", "exec.ctl.resume", "sql.query"],
         ["exec.cmd.paper", "ctl.exec.paper", "$JS.API.STREAM.UPDATE.EXEC"]),
        ("reader", ["sql.query", "book.get.binance.BTC-USDT", "status.query"],
         ["exec.cmd.paper", "exec.ctl.halt", "ctl.snapshot.a.b", "$JS.API.STREAM.INFO.RAW"]),
    ):  # fmt: skip
        errors: list[Exception] = []
        nc = await client(nats_server.url, role, errors)
        try:
            for subject in ok:
                assert not await refused(nc, errors, subject), (role, subject)
            for subject in no:
                assert await refused(nc, errors, subject), (role, subject)
        finally:
            await nc.close()


async def test_credentials_files_and_hashes(nats_server: NatsServer, tmp_path: Path) -> None:
    """Passwords are 0600 files; the server config holds only bcrypt hashes; a wrong or
    missing password is refused; a missing credentials file is a one-line error."""
    assert oct(CREDENTIALS.stat().st_mode & 0o777) == "0o700"
    users_conf = Path(nats_server.cfg.store_dir) / "conf" / "users.conf"
    assert oct(users_conf.stat().st_mode & 0o777) == "0o600"
    text = users_conf.read_text()
    for user in natsauth.users(Settings()):
        f = CREDENTIALS / user
        assert oct(f.stat().st_mode & 0o777) == "0o600", user
        assert f.read_text().strip() not in text, f"plain password of {user} in users.conf"
    entries = orjson.loads(text.removeprefix("users: "))
    assert all(e["password"].startswith("$2") for e in entries)
    for kwargs in ({"user": "admin", "password": "nope"}, {}):
        with pytest.raises(nats.errors.Error):
            await nats.connect(nats_server.url, allow_reconnect=False, connect_timeout=2,
                               max_reconnect_attempts=0, **kwargs)  # fmt: skip
    s = make_settings(tmp_path, nats_server.url, nats={"credentials_dir": str(tmp_path)})
    with pytest.raises(natsauth.CredentialsError, match="no NATS credentials for 'sink' in"):
        await connect(s.nats, "sink")
    # a secrets file readable by others is refused before connecting
    loose = tmp_path / "reader.pw"
    loose.write_text((CREDENTIALS / "reader").read_text())
    loose.chmod(0o644)
    bad = make_settings(tmp_path, nats_server.url, nats={"user": "reader",
                                                         "password_file": str(loose)})  # fmt: skip
    with pytest.raises(PermissionError):
        await connect(bad.nats, "reader")


async def test_executor_runs_under_its_user_and_a_trader_commands_it(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """The real executor works with only its own permissions; a trader's credentials can
    command it (request/reply) but cannot read the command stream."""
    from executor.worker import main as executor_main
    from tests.executor.test_paper import PAPER, cmd, request
    from tests.workers import inprocess

    # no market data here: the limit order is valued at its price (risk.require_mark)
    paper = {**PAPER, "risk": {"require_mark": False}}
    settings = make_settings(tmp_path, nats_server.url, executor={"accounts": {"paper": paper}})
    async with inprocess("executor", executor_main, settings) as w:
        for _ in range(100):
            if w.health.state == "ok":
                break
            await asyncio.sleep(0.1)
        assert w.health.state == "ok", w.health.line()
        trader = await connect(settings.nats, "trader")
        r = await request(trader, cmd("perm-1", side="buy", order_type="limit", quantity="0.01",
                                      price="100"))  # fmt: skip
        assert r["accepted"] and r["state"] == "new", r
        with pytest.raises(DENIED):  # may not consume the command stream
            await trader.jetstream(timeout=2).add_consumer(
                "EXEC", ConsumerConfig(durable_name="spy")
            )
        await trader.close()
    log = Path(str(nats_server.log_file)).read_text()
    violations = [line for line in log.splitlines() if "Violation" in line]
    # the trader's refused consumer is the only one
    assert violations and all("user:trader" in line for line in violations), violations


async def test_whole_pipeline_runs_with_least_privilege(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """Collector, normalizer, order book and sink each under their own user: trades flow
    into ClickHouse, books are served, and the server logged no permission violation."""
    from collectors.binance import run as collector_main
    from normalizer.worker import main as normalizer_main
    from orderbook.service import main as orderbook_main
    from sinks.clickhouse.worker import main as sink_main
    from streams import sql
    from tests.venues.binance.emulator import BinanceEmulator
    from tests.workers import inprocess

    async with BinanceEmulator(["BTCUSDT"], seed=9) as emu:
        settings = make_settings(tmp_path, nats_server.url, collector={"binance": {
            "ws_url": emu.ws_url, "rest_url": emu.rest_url, "symbols": ["BTCUSDT"]}},
            sink={"flush_interval_s": 0.2})  # fmt: skip
        async with (
            inprocess("sink", sink_main, settings),
            inprocess("orderbook", orderbook_main, settings),
            inprocess("normalizer", normalizer_main, settings),
            inprocess("collector", collector_main, settings),
        ):
            await emu.wait_connected(1, timeout=15)
            await emu.emit_trades(300)
            reader = await connect(settings.nats, "reader")
            n = 0
            for _ in range(100):
                try:
                    res = await sql.query(reader, "SELECT count() FROM trades", timeout=5)
                    n = res.rows[0][0]
                except Exception:
                    n = 0
                if n == 300:
                    break
                await asyncio.sleep(0.2)
            assert n == 300
            book: dict = {}
            for _ in range(100):
                msg = await reader.request("book.get.binance.BTC-USDT", b"", timeout=2)
                book = orjson.loads(msg.data)
                if book.get("valid"):
                    break
                await asyncio.sleep(0.1)
            assert book.get("valid"), book
            await reader.close()
    log = Path(str(nats_server.log_file)).read_text()
    assert "Violation" not in log, [line for line in log.splitlines() if "Violation" in line]


@pytest.mark.parametrize("role", ["operator", "api"])
async def test_feed_freshness_reads_market_frames_but_never_account_frames(
    nats_server: NatsServer, js: object, role: str
) -> None:
    """The operator's `jetmarket status` and the API read RAW's newest frame per feed; the
    executor's private frames (raw.private.<account>.<venue>: orders, fills, balances) sit
    in the same stream and must stay out of their reach: the subject-named direct get is
    allowed for market subjects only, every request-body form of a RAW read is refused."""
    from nats.js import JetStreamContext

    from streams import subjects

    assert isinstance(js, JetStreamContext)
    market, private = "raw.binance.trade.BTCUSDT", subjects.raw_private("paper", "binance")
    await js.publish(market, b'{"e":"trade"}', headers={subjects.H_RECV_NS: "1"})
    await js.publish(private, b'{"secret":"fill"}', headers={subjects.H_RECV_NS: "2"})
    errors: list[Exception] = []
    nc = await client(nats_server.url, role, errors)
    try:
        mine = nc.jetstream(timeout=2.0)
        got = await mine.get_last_msg("RAW", market, direct=True)
        assert got.data == b'{"e":"trade"}'
        for attempt in (
            mine.get_last_msg("RAW", private, direct=True),
            mine.get_last_msg("RAW", private),  # STREAM.MSG.GET with a body
            mine.get_msg("RAW", seq=2),
            mine.get_msg("RAW", seq=2, direct=True),  # DIRECT.GET.RAW with a body
        ):
            with pytest.raises(DENIED):
                await attempt
        for subject in (f"$JS.API.DIRECT.GET.RAW.{private}", "$JS.API.STREAM.MSG.GET.RAW",
                        "$JS.API.DIRECT.GET.RAW"):  # fmt: skip
            assert await refused(nc, errors, subject), subject
    finally:
        await nc.close()
