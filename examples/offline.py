"""The offline pipeline both demos run: a Binance emulator and `jetmarket up` on free
ports, everything under ``var/<name>`` of the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from streams.bus.server import free_port

ROOT = Path(__file__).resolve().parents[1]


def start(
    name: str, symbols: list[str], emulator_args: list[str], **env_extra: str
) -> tuple[dict[str, str], Path, subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """A fresh ``var/<name>``, the emulator trading ``symbols`` and the pipeline against it:
    (the pipeline's environment, its var folder, the emulator, the supervisor)."""
    var = ROOT / "var" / name
    shutil.rmtree(var, ignore_errors=True)
    var.mkdir(parents=True)
    emu_port, nats_port, mon_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "JETMARKET_NATS__URL": f"nats://127.0.0.1:{nats_port}",
        "JETMARKET_NATS__SERVER__PORT": str(nats_port),
        "JETMARKET_NATS__SERVER__MONITOR_PORT": str(mon_port),
        "JETMARKET_NATS__SERVER__STORE_DIR": str(var / "nats"),
        "JETMARKET_CLICKHOUSE__DSN": f"chdb://{var / 'clickhouse'}",
        "JETMARKET_COLLECTOR__BINANCE__WS_URL": f"ws://127.0.0.1:{emu_port}",
        "JETMARKET_COLLECTOR__BINANCE__REST_URL": f"http://127.0.0.1:{emu_port}",
        "JETMARKET_COLLECTOR__BINANCE__SYMBOLS": str(symbols).replace("'", '"'),
        "JETMARKET_METRICS__PORTS": "{}",
        **env_extra,
    }
    py = sys.executable
    emu = subprocess.Popen(
        [py, "-m", "tests.venues", "binance", "--port", str(emu_port),
         "--symbols", ",".join(symbols), *emulator_args],
        cwd=ROOT, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    up = subprocess.Popen([py, "-m", "ops", "up"], cwd=ROOT, env=env)
    return env, var, emu, up
