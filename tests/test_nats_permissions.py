"""Least-privilege NATS users (infra/nats/nats-server-secure.conf): a collector's credentials
can publish raw frames but can neither command the executor nor read its commands."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.js.api import ConsumerConfig

from streams.connect import connect
from streams.natsserver import CONFIG, NatsServer, free_port
from streams.provision import provision
from streams.settings import NatsServerSettings
from tests.conftest import make_settings

SECURE = CONFIG.parent / "nats-server-secure.conf"
USERS = ("collector", "normalizer", "sink", "orderbook", "executor", "reader")


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
