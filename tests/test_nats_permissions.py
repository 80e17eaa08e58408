"""Least-privilege NATS users (infra/nats/nats-server-secure.conf): a collector's credentials
can publish raw frames but can neither command the executor nor read its commands."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import nats
import orjson
import pytest
from nats.js.api import ConsumerConfig

from streams.connect import connect
from streams.natsserver import CONFIG, NatsServer, free_port
from streams.provision import provision
from streams.settings import NatsServerSettings
from tests.conftest import make_settings

SECURE = CONFIG.parent / "nats-server-secure.conf"
USERS = ("collector", "normalizer", "sink", "orderbook", "executor", "trader", "reader")


@pytest.fixture
def secure_server(tmp_path: Path) -> Iterator[NatsServer]:
    for u in USERS:
        os.environ[f"JM_PW_{u.upper()}"] = f"pw-{u}-{os.getpid()}"
    cfg = NatsServerSettings(
        port=free_port(), monitor_port=free_port(), store_dir=str(tmp_path / "n")
    )
    srv = NatsServer(cfg, log_file=tmp_path / "nats.log", config=SECURE).start()
    yield srv
    srv.stop()


def password_file(tmp_path: Path, user: str, mode: int = 0o600) -> Path:
    p = tmp_path / f"{user}.pw"
    p.write_text(os.environ[f"JM_PW_{user.upper()}"])
    p.chmod(mode)
    return p


async def test_collector_cannot_publish_or_read_exec_commands(
    tmp_path: Path, secure_server: NatsServer
) -> None:
    def settings(user: str):  # type: ignore[no-untyped-def]
        return make_settings(tmp_path, secure_server.url, nats={
            "url": secure_server.url, "user": user,
            "password_file": str(password_file(tmp_path, user))})  # fmt: skip

    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    executor = await connect(settings("executor").nats, "executor")
    js_exec = executor.jetstream()
    await provision(js_exec, settings("executor"))

    coll = await connect(settings("collector").nats, "collector", error_cb=on_error)
    js = coll.jetstream()
    ack = await js.publish("raw.binance.trade.BTCUSDT", b"{}", headers={"Jm-Recv-Ns": "1"})
    assert ack.stream == "RAW"  # its own job works

    await coll.publish("exec.cmd.desk1", b'{"action":"cancel_all"}')
    await coll.flush()
    await asyncio.sleep(0.3)
    assert any("permissions violation" in str(e).lower() for e in errors), errors
    info = await js_exec.stream_info("EXEC")
    assert info.state.messages == 0, "the collector's command reached the EXEC stream"

    with pytest.raises(nats.errors.Error):  # cannot create a consumer on EXEC to read commands
        await js.add_consumer("EXEC", ConsumerConfig(durable_name="spy"))

    # a secrets file readable by others is refused before connecting
    loose = password_file(tmp_path, "reader", mode=0o644)
    bad = make_settings(tmp_path, secure_server.url, nats={"url": secure_server.url,
                        "user": "reader", "password_file": str(loose)})  # fmt: skip
    with pytest.raises(PermissionError):
        await connect(bad.nats, "reader")
    with pytest.raises(nats.errors.Error):  # wrong password: authorization violation
        await nats.connect(secure_server.url, user="reader", password="nope",
                           allow_reconnect=False, connect_timeout=2)  # fmt: skip
    await coll.close()
    await executor.close()


async def test_executor_runs_under_its_user_and_a_trader_commands_it(
    tmp_path: Path, secure_server: NatsServer
) -> None:
    """The real executor works with only its own permissions; a trader's credentials can
    command it (request/reply and the EXEC stream) but cannot read others' commands."""
    from executor.worker import main as executor_main
    from tests.test_executor_paper import PAPER, cmd, request
    from tests.workers import inprocess

    def settings(user: str):  # type: ignore[no-untyped-def]
        return make_settings(tmp_path, secure_server.url, nats={
            "url": secure_server.url, "user": user,
            "password_file": str(password_file(tmp_path, user))},
            # no market data here: the limit order is valued at its price (risk.require_mark)
            executor={"accounts": {"paper": {**PAPER, "risk": {"require_mark": False}}}},
        )  # fmt: skip

    async with inprocess("executor", executor_main, settings("executor")) as w:
        for _ in range(100):
            if w.health.state == "ok":
                break
            await asyncio.sleep(0.1)
        assert w.health.state == "ok", w.health.line()
        trader = await connect(settings("trader").nats, "trader")
        r = await request(trader, cmd("perm-1", side="buy", order_type="limit", quantity="0.01",
                                      price="100"))  # fmt: skip
        assert r["accepted"] and r["state"] == "new", r
        js = trader.jetstream()
        with pytest.raises(nats.errors.Error):  # may not consume the command stream
            await js.add_consumer("EXEC", ConsumerConfig(durable_name="spy"))
        await trader.close()


async def test_whole_pipeline_runs_with_least_privilege(
    tmp_path: Path, secure_server: NatsServer
) -> None:
    """Collector, normalizer, order book and sink each under their own user: trades flow
    into ClickHouse, books are served, and the server logged no permission violation."""
    from collectors.binance import run as collector_main
    from normalizer.worker import main as normalizer_main
    from orderbook.service import main as orderbook_main
    from sinks.clickhouse.worker import main as sink_main
    from streams import sql
    from tests.emulator.binance import BinanceEmulator
    from tests.workers import inprocess

    async with BinanceEmulator(["BTCUSDT"], seed=9) as emu:

        def settings(user: str):  # type: ignore[no-untyped-def]
            return make_settings(tmp_path, secure_server.url, nats={
                "url": secure_server.url, "user": user,
                "password_file": str(password_file(tmp_path, user))},
                collector={"binance": {"ws_url": emu.ws_url, "rest_url": emu.rest_url,
                                       "symbols": ["BTCUSDT"]}},
                sink={"flush_interval_s": 0.2})  # fmt: skip

        async with (
            inprocess("sink", sink_main, settings("sink")),
            inprocess("orderbook", orderbook_main, settings("orderbook")),
            inprocess("normalizer", normalizer_main, settings("normalizer")),
            inprocess("collector", collector_main, settings("collector")),
        ):
            await emu.wait_connected(1, timeout=15)
            await emu.emit_trades(300)
            reader = await connect(settings("reader").nats, "reader")
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
    log = secure_server.log_file and Path(secure_server.log_file).read_text()
    assert log is not None and "Violation" not in log, [
        line for line in log.splitlines() if "Violation" in line
    ]
