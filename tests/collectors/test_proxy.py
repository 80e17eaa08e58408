"""Proxies per venue: REST (ccxt) and the collector's WebSocket through a local HTTP proxy
and a local SOCKS5 proxy (pproxy, started here), credentials from the environment kept
out of logs, and a clear error when the proxy is down."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import ccxt.async_support as ccxt
import pytest
from nats.js import JetStreamContext

from collectors.binance import run as collector_main
from streams import subjects
from streams.bus import budget as b
from streams.bus.server import NatsServer, free_port
from streams.provision import STREAM_RAW
from tests.conftest import make_settings
from tests.venues.binance.emulator import BinanceEmulator
from tests.workers import inprocess

USER, PASSWORD = "jm", "s3cret-proxy-pw"
# pproxy's main installs uvloop when importable and then asks for the current loop, which
# uvloop refuses on Python 3.11: run it on a plain asyncio loop of its own
PPROXY = """
import asyncio, sys
sys.modules["uvloop"] = None
asyncio.set_event_loop(asyncio.new_event_loop())
from pproxy.server import main
sys.argv = ["pproxy", *sys.argv[1:]]
main()
"""


class Pproxy:
    """``python -m pproxy -l <scheme>://127.0.0.1:<port>[#user:password]``."""

    def __init__(self, scheme: str, auth: bool = False) -> None:
        self.scheme, self.port, self.auth = scheme, free_port(), auth
        self.p: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> Pproxy:
        listen = self.url + (f"#{USER}:{PASSWORD}" if self.auth else "")
        self.p = subprocess.Popen([sys.executable, "-c", PPROXY, "-l", listen],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"pproxy did not listen on {self.port}")

    def stop(self) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.terminate()
            self.p.wait(5)


@pytest.fixture(params=["http", "socks5"])
def proxy(request: pytest.FixtureRequest) -> Iterator[Pproxy]:
    p = Pproxy(request.param).start()
    yield p
    p.stop()


async def test_rest_through_proxy_then_clear_error_when_down(proxy: Pproxy) -> None:
    async with BinanceEmulator(["BTCUSDT"]) as emu:
        ex = ccxt.binance()
        ex.urls["api"]["public"] = emu.rest_url + "/api/v3"
        cfg = b.LimitsSettings(rules=[b.RateLimit(name="w", capacity=6000, window_s=60)],
                               proxy=proxy.url)  # fmt: skip
        bud = await b.open_budget(None, "binance", cfg, ex)
        try:
            got = await ex.public_get_depth({"symbol": "BTCUSDT", "limit": 5})
            assert got["lastUpdateId"] > 0
            proxy.stop()
            with pytest.raises(b.ProxyUnreachable, match=f"through proxy {proxy.url}.*is the"):
                await ex.public_get_depth({"symbol": "BTCUSDT", "limit": 5})
        finally:
            await bud.close()
            await ex.close()


async def test_proxy_credentials_from_env_never_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A proxy that wants a password: the URL comes from settings without it, the
    password from the environment. A wrong one is refused (first: pproxy then trusts an
    address that logged in), the right one works, and no log line carries either."""
    p = Pproxy("http", auth=True).start()
    try:
        async with BinanceEmulator(["BTCUSDT"]) as emu:
            cfg = b.LimitsSettings(rules=[b.RateLimit(name="w", capacity=6000, window_s=60)],
                                   proxy=p.url)  # fmt: skip
            for password, works in (("wrong-proxy-pw", False), (PASSWORD, True)):
                monkeypatch.setenv("JETMARKET_PROXY_AUTH_BINANCE", f"{USER}:{password}")
                ex = ccxt.binance()
                ex.urls["api"]["public"] = emu.rest_url + "/api/v3"
                bud = await b.open_budget(None, "binance", cfg, ex)
                try:
                    with caplog.at_level(logging.DEBUG):
                        if works:
                            got = await ex.public_get_depth({"symbol": "BTCUSDT"})
                            assert got["lastUpdateId"] > 0
                        else:
                            with pytest.raises(Exception, match="407|[Pp]roxy"):
                                await ex.public_get_depth({"symbol": "BTCUSDT"})
                finally:
                    await bud.close()
                    await ex.close()
        from streams.bus import logs

        printed = "\n".join(logs.redact(r.getMessage() + str(r.__dict__)) for r in caplog.records)
        for password in ("wrong-proxy-pw", PASSWORD):
            assert password not in printed
            assert password not in logs.redact(f"proxy http://{USER}:{password}@127.0.0.1:1")
    finally:
        p.stop()


async def test_collector_websocket_and_snapshots_through_proxy(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext, proxy: Pproxy
) -> None:
    """The Binance collector with [collector.binance.limits] proxy: its WebSocket and its
    REST snapshot go through the proxy (with the proxy down it cannot connect and says
    through which proxy it tried)."""
    async with BinanceEmulator(["BTCUSDT"]) as emu:
        settings = make_settings(tmp_path, nats_server.url, collector={"binance": {
            "ws_url": emu.ws_url, "rest_url": emu.rest_url, "symbols": ["BTCUSDT"],
            "channels": ["trade", "depth"], "limits": {"proxy": proxy.url}}})  # fmt: skip
        async with inprocess("collector", collector_main, settings) as w:
            await emu.wait_connected(1, timeout=15)
            await emu.emit_trades(30)
            await emu.emit_depth(3)
            snap = subjects.raw("binance", "snapshot", "BTCUSDT")
            deadline = time.monotonic() + 15
            while True:
                try:
                    await js.get_last_msg(STREAM_RAW, snap)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await emu.emit_depth(1)
                    await asyncio.sleep(0.2)
            proxy.stop()
            await emu.drop_connections()
            deadline = time.monotonic() + 15
            while "through proxy" not in str(w.health.fields.get("error", "")):
                assert time.monotonic() < deadline, w.health.fields
                await asyncio.sleep(0.1)
            assert proxy.url in w.health.fields["error"]
            assert emu.connections == 0
