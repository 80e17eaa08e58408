"""`jetmarket up` (what `make up` runs): everything starts, offline collectors keep
retrying, each worker prints a health line, a crashed worker is restarted, Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson

from ops.cli import _parser
from streams.bus.server import free_port
from tests.workers import ROOT


def test_cli_parses_every_command() -> None:
    p = _parser()
    for argv in (["up"], ["down"], ["nats"], ["provision"], ["collect", "binance"],
                 ["collector", "okx"], ["normalize"], ["normalizer"], ["exec"], ["executor"],
                 ["sink"], ["orderbook"], ["book", "binance", "BTC-USDT"], ["config"],
                 ["sql", "SELECT 1", "--format", "csv"]):  # fmt: skip
        # worker commands pass their arguments through to the worker's own parser
        assert p.parse_known_args(argv)[0].cmd == argv[0]


def test_up_offline_health_lines_restart_and_clean_stop(tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "JETMARKET_NATS__SERVER__PORT": str(port := free_port()),
        "JETMARKET_NATS__SERVER__MONITOR_PORT": str(free_port()),
        "JETMARKET_API__PORT": str(free_port()),
        "JETMARKET_API__NATS_WS_PORT": str(free_port()),
        "JETMARKET_NATS__SERVER__STORE_DIR": str(tmp_path / "nats"),
        "JETMARKET_NATS__URL": f"nats://127.0.0.1:{port}",
        "JETMARKET_CLICKHOUSE__DSN": f"chdb://{tmp_path / 'ch'}",
        "JETMARKET_COLLECTOR__BINANCE__WS_URL": f"ws://{dead}",
        "JETMARKET_COLLECTOR__BINANCE__REST_URL": f"http://{dead}",
        "JETMARKET_METRICS__PORTS": "{}",
        "JETMARKET_METRICS__HEALTH_INTERVAL_S": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops", "up"], cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    lines: list[dict] = []

    def reader() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            try:
                lines.append(orjson.loads(raw))
            except orjson.JSONDecodeError:
                lines.append({"text": raw.decode(errors="replace")})

    t = threading.Thread(target=reader, daemon=True)
    t.start()

    def health(worker: str) -> list[dict]:
        return [x for x in lines if x.get("msg") == "health" and x.get("worker") == worker]

    try:
        deadline = time.monotonic() + 60
        workers = ("collector", "normalizer", "sink", "orderbook", "executor")
        while time.monotonic() < deadline and not all(health(w) for w in workers):
            time.sleep(0.2)
        assert all(health(w) for w in workers), [x for x in lines if "worker" in x][-20:]
        while time.monotonic() < deadline and not any(
            x.get("state") == "retrying" for x in health("collector")
        ):
            time.sleep(0.2)
        assert any(x.get("state") == "retrying" for x in health("collector"))
        retries = [x for x in lines if x.get("msg") == "binance connect failed, retrying"]
        assert retries and all("retry_in_s" in x for x in retries)

        # a worker killed behind the supervisor's back is restarted
        early_exits = [x for x in lines if x.get("msg") == "worker exited, restarting"]
        assert not early_exits, [(x["worker"], x["code"]) for x in early_exits]
        started = [x for x in lines if x.get("msg") == "worker started"]
        pid = next(x["pid"] for x in started if x["worker"] == "normalizer")
        os.kill(pid, signal.SIGKILL)

        def reported_after_restart() -> bool:
            starts = [x for x in lines if x.get("msg") == "worker started"]
            restart = [x for x in starts if x["worker"] == "normalizer"][1:]
            return bool(restart) and any(x["ts"] > restart[0]["ts"] for x in health("normalizer"))

        while time.monotonic() < deadline and not reported_after_restart():
            time.sleep(0.2)  # the restarted normalizer reports in
        assert any(x.get("msg") == "worker exited, restarting" for x in lines)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
        t.join(5)
    assert code == 0
    stopped = {x["worker"]: x["code"] for x in lines if x.get("msg") == "worker stopped"}
    # every worker stopped cleanly (the API too, when up starts it)
    assert set(workers) <= set(stopped) and set(stopped.values()) == {0}, stopped
    assert any(x.get("msg") == "nats-server stopped" for x in lines)
