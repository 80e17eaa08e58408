"""The embedded nats-server's WebSocket listener (streams/bus/server.py websocket_conf):
a NATS client over ws:// with the browser identity gets market data and nothing else, and
the other identities cannot log in on that listener at all."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.errors import Error as NatsError

from streams import settings as settings_mod
from streams.bus import auth as natsauth
from streams.bus.server import NatsServer, free_port, websocket_conf
from streams.settings import NatsServerSettings
from tests.conftest import CREDENTIALS, make_settings


@pytest.fixture
def ws_server(tmp_path: Path) -> Iterator[NatsServer]:
    cfg = NatsServerSettings(
        port=free_port(), monitor_port=free_port(), store_dir=str(tmp_path / "nats")
    )
    srv = NatsServer(cfg, log_file=tmp_path / "nats.log")
    srv.websocket_port = free_port()
    srv.start()
    yield srv
    srv.stop()


def _password(role: str) -> str:
    return (CREDENTIALS / role).read_text().strip()


async def _ws_connect(srv: NatsServer, role: str) -> nats.NATS:
    assert srv.ws_url is not None
    return await nats.connect(
        srv.ws_url, user=role, password=_password(role), max_reconnect_attempts=1,
        connect_timeout=2, allow_reconnect=False,
    )  # fmt: skip


async def test_browser_reads_market_over_websocket(ws_server: NatsServer, tmp_path: Path) -> None:
    assert ws_server.ws_url and ws_server.ws_url.startswith("ws://127.0.0.1:")
    s = make_settings(tmp_path, ws_server.url)
    from streams.bus.connect import connect

    admin = await connect(s.nats, "test")  # publishes over the client port
    browser = await _ws_connect(ws_server, "browser")
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    browser._error_cb = on_error  # permission violations arrive asynchronously
    try:
        got: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

        async def cb(msg: nats.aio.msg.Msg) -> None:
            await got.put((msg.subject, msg.data))

        await browser.subscribe("market.>", cb=cb)
        await browser.flush()
        await admin.publish("market.trade.binance.BTC-USDT", b'{"x":1}')
        await admin.flush()
        subject, data = await asyncio.wait_for(got.get(), 5)
        assert (subject, data) == ("market.trade.binance.BTC-USDT", b'{"x":1}')
        # anything else: refused by the server (exec data, publishing, requests)
        await browser.subscribe("exec.>", cb=cb)
        await browser.publish("market.trade.binance.BTC-USDT", b"forged")
        await browser.flush()
        await asyncio.sleep(0.3)
        assert got.empty(), "the browser's forged publish was delivered"
        text = " ".join(str(e) for e in errors).lower()
        assert "permissions violation" in text and "exec.>" in text, text
    finally:
        await browser.close()
        await admin.close()


@pytest.mark.parametrize("role", ["admin", "collector", "trader", "api"])
async def test_other_identities_cannot_log_in_over_websocket(
    ws_server: NatsServer, role: str
) -> None:
    with pytest.raises((NatsError, OSError, asyncio.TimeoutError)):
        nc = await _ws_connect(ws_server, role)
        await nc.close()  # not reached when the server refuses


def test_websocket_listener_rules() -> None:
    s = settings_mod.Settings()
    assert websocket_conf(s, "127.0.0.1", None).startswith("#")  # nobody asked for one
    assert "no_tls: true" in websocket_conf(s, "127.0.0.1", 4280)
    # off by default outside loopback
    assert websocket_conf(s, "0.0.0.0", 4280).startswith("#")
    on = settings_mod.from_mapping({"api": {"nats_ws": "on"}})
    with pytest.raises(ValueError, match="no plain WebSocket outside loopback"):
        websocket_conf(on, "10.0.0.5", 4280)
    tls = settings_mod.from_mapping(
        {"api": {"nats_ws": "on", "nats_ws_tls_cert": "c.pem", "nats_ws_tls_key": "k.pem",
                 "nats_ws_origins": ["https://console.example"]}}
    )  # fmt: skip
    text = websocket_conf(tls, "10.0.0.5", 4280)
    assert 'cert_file: "c.pem"' in text and "no_tls" not in text
    assert 'allowed_origins: ["https://console.example"]' in text
    off = settings_mod.from_mapping({"api": {"nats_ws": "off"}})
    assert websocket_conf(off, "127.0.0.1", 4280).startswith("#")
    assert natsauth.connection_types("browser") == ["STANDARD", "WEBSOCKET"]
    assert natsauth.connection_types("executor") == ["STANDARD"]


async def test_reader_may_log_in_over_websocket(ws_server: NatsServer) -> None:
    # the refusals above are the connection type, not a broken listener or password
    nc = await _ws_connect(ws_server, "reader")
    assert nc.is_connected
    await nc.close()


async def test_wss_listener_with_tls(tmp_path: Path) -> None:
    """api.nats_ws = on with a certificate: wss:// works (the browser identity, verified
    against the CA) and plain ws:// on that port does not."""
    import ssl

    from tests.pipeline.test_security import _pki

    ca, cert, key = _pki(tmp_path, "ws")
    settings = settings_mod.from_mapping({"api": {
        "nats_ws": "on", "nats_ws_tls_cert": str(cert), "nats_ws_tls_key": str(key)}})  # fmt: skip
    cfg = NatsServerSettings(port=free_port(), monitor_port=free_port(),
                             store_dir=str(tmp_path / "nats"))  # fmt: skip
    srv = NatsServer(cfg, log_file=tmp_path / "nats.log", settings=settings)
    srv.websocket_port = free_port()
    srv.start()
    try:
        assert srv.ws_url and srv.ws_url.startswith("wss://")
        tls = ssl.create_default_context(cafile=str(ca))
        nc = await nats.connect(srv.ws_url, user="browser", password=_password("browser"),
                                tls=tls, allow_reconnect=False, connect_timeout=3)  # fmt: skip
        assert nc.is_connected
        await nc.close()
        with pytest.raises((NatsError, OSError, asyncio.TimeoutError)):
            plain = await nats.connect(srv.ws_url.replace("wss://", "ws://"), user="browser",
                                       password=_password("browser"), allow_reconnect=False,
                                       connect_timeout=2, max_reconnect_attempts=1)  # fmt: skip
            await plain.close()
    finally:
        srv.stop()
