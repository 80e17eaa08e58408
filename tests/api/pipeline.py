"""The real pipeline behind the API tests: nats-server (auth on, as `make up`), the Binance
emulator trading continuously, collector, normalizer, sink (chdb), orderbook, executor
(paper), and ``python -m api`` - each a subprocess, as `make up` runs them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from api.keys import KeyStore
from streams.bus.server import NatsServer, free_port
from streams.settings import NatsServerSettings, Settings
from tests.conftest import _provision_as_admin, make_settings
from tests.workers import ROOT, Proc

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


class ApiPipeline:
    def __init__(self, tmp: Path, *, rate: float = 50.0, api: dict | None = None) -> None:
        self.tmp = tmp
        self.rate = rate
        self.api_overrides = api or {}
        self.nats: NatsServer | None = None
        self.emu: subprocess.Popen[bytes] | None = None
        self.procs: list[Proc] = []
        self.tokens: dict[str, str] = {}

    def start(self) -> ApiPipeline:
        tmp = self.tmp
        cfg = NatsServerSettings(port=free_port(), monitor_port=free_port(),
                                 store_dir=str(tmp / "nats"))  # fmt: skip
        self.nats = NatsServer(cfg, log_file=tmp / "nats.log")
        self.nats.websocket_port = free_port()
        self.nats.start()
        asyncio.run(_provision_as_admin(self.nats.url))
        emu_port = free_port()
        log = (tmp / "emulator.log").open("ab")
        self.emu = subprocess.Popen(
            [sys.executable, "-m", "tests.venues", "binance", "--port", str(emu_port),
             "--symbols", ",".join(SYMBOLS), "--rate", str(self.rate)],
            cwd=ROOT, stdout=log, stderr=log,
        )  # fmt: skip
        self.port = free_port()
        self.settings: Settings = make_settings(
            tmp, self.nats.url,
            collector={"binance": {"ws_url": f"ws://127.0.0.1:{emu_port}",
                                   "rest_url": f"http://127.0.0.1:{emu_port}",
                                   "symbols": SYMBOLS}},
            sink={"flush_interval_s": 0.2},
            api={"port": self.port, "keys_file": str(tmp / "api" / "keys.json"),
                 "nats_ws_port": self.nats.websocket_port, **self.api_overrides},
            log={"level": "WARNING"},
        )  # fmt: skip
        store = KeyStore(self.settings.api.keys_file)
        for name, scopes, account in (
            ("market", ["market"], ""),
            ("account", ["market", "account"], "paper"),
            ("trader", ["market", "account", "trade"], "paper"),
            ("other", ["market", "account", "trade"], "other"),
        ):
            self.tokens[name] = store.add(name, scopes, account)[1]
        for module, args in (("collectors", ["binance"]), ("normalizer", []),
                             ("sinks", ["clickhouse"]), ("orderbook", []), ("executor", []),
                             ("api", [])):  # fmt: skip
            name = module if not args else f"{module}-{args[0]}"
            self.procs.append(Proc(module, self.settings, *args, log=tmp / f"{name}.log").start())
        self.wait_http(timeout=60)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_http(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/v1/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"the API did not answer on {self.url}: see {self.tmp}/api.log")

    def stop(self) -> list[int]:
        codes = [p.stop() for p in reversed(self.procs)]
        if self.emu is not None:
            self.emu.terminate()
            self.emu.wait(10)
        if self.nats is not None:
            self.nats.stop()
        return codes
