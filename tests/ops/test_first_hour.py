"""Issue 17, the first hour (items 3-9): what a new user meets when something is not running,
not configured or mistyped: one line, fast, no traceback, and every process stoppable."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ops.cli import UP_HELP, WORKERS, _parser
from streams.bus import logs
from streams.bus.connect import connect
from streams.bus.server import NatsServer, free_port
from streams.settings import Settings
from tests.workers import ROOT


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Nothing listens at the NATS URL; paths under tmp_path; no metrics endpoints."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JETMARKET_")}
    return env | {
        "PYTHONPATH": str(ROOT),
        "JETMARKET_NATS__URL": f"nats://127.0.0.1:{free_port()}",
        "JETMARKET_NATS__CREDENTIALS_DIR": str(tmp_path / "creds"),
        "JETMARKET_CLICKHOUSE__DSN": f"chdb://{tmp_path / 'ch'}",
        "JETMARKET_API__PORT": str(free_port()),
        "JETMARKET_API__NATS_WS_PORT": str(free_port()),
        "JETMARKET_METRICS__PORTS": '{"collector": 0, "normalizer": 0, "sink": 0, '
        '"orderbook": 0, "executor": 0}',
        **extra,
    }


def _load() -> float:
    """How many times over the machine is busy (1 when idle): timing bounds stretch by it."""
    return max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))


def _one_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


COMMANDS = [
    ["sql", "SELECT 1"], ["status"], ["book", "binance", "BTC-USDT"], ["provision"],
    ["replay", "--since", "1h"], ["record", "x.jmrec", "--since", "1h"],
    ["renormalize", "--since", "1h"],
    ["backtest", "--strategy", f"{ROOT}/examples/sma_cross.py:SmaCross", "--venue", "binance",
     "--symbol", "BTC-USDT", "--start", "1h"],
]  # fmt: skip


def test_item3_commands_without_a_pipeline_fail_in_one_line_under_3s(tmp_path: Path) -> None:
    # credentials exist (a previous make up), NATS does not answer
    (tmp_path / "creds").mkdir(mode=0o700)
    for role in ("reader", "operator", "admin", "replay"):
        (tmp_path / "creds" / role).write_text("pw\n")
        (tmp_path / "creds" / role).chmod(0o600)
    env = _env(tmp_path)
    for argv in COMMANDS:  # one at a time: the bound is per command, on a busy machine too
        t0 = time.monotonic()
        res = subprocess.run([sys.executable, "-m", "ops", *argv], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=30)  # fmt: skip
        took = time.monotonic() - t0
        assert res.returncode == 1, (argv, res.stderr)
        line = _one_line(res.stderr)
        assert "start the pipeline with `make up`" in line, (argv, line)
        assert took < 3 * _load(), (argv, took)
    assert not list(tmp_path.glob("x.jmrec*")), "a failed record left a file"


def test_item3_without_credentials_says_what_to_start(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "ops", "sql", "SELECT 1"]
    res = subprocess.run(argv, cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                         text=True, timeout=30)  # fmt: skip
    assert res.returncode == 1
    assert "make up" in _one_line(res.stderr)


@pytest.mark.parametrize("module", ["collectors", "normalizer", "sinks", "orderbook", "executor"])
def test_item3_every_worker_answers_help(module: str, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", module, "--help"]
    res = subprocess.run(argv, cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                         text=True, timeout=30)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"usage: python -m {module}") and "JETMARKET_" in res.stdout


def test_item3_workers_stop_on_sigterm_and_sigint_while_nats_is_down(tmp_path: Path) -> None:
    env = _env(tmp_path)
    creds = tmp_path / "creds"
    creds.mkdir(mode=0o700)
    for role in ("collector", "normalizer", "sink", "orderbook", "executor"):
        (creds / role).write_text("pw\n")
        (creds / role).chmod(0o600)
    argvs = [["collectors", "binance"], ["normalizer"], ["sinks", "clickhouse"], ["orderbook"],
             ["executor"]]  # fmt: skip
    logs_ = [tmp_path / f"{a[0]}.log" for a in argvs]
    procs = [
        subprocess.Popen([sys.executable, "-m", *a], cwd=tmp_path, env=env, stderr=f.open("w"))
        for a, f in zip(argvs, logs_, strict=True)
    ]
    # each is retrying its first connection (its warning says so) before the signal
    deadline = time.monotonic() + 60
    for f in logs_:
        while "nats error" not in f.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "nats error" in f.read_text(), f.read_text()
    for i, p in enumerate(procs):
        p.send_signal(signal.SIGTERM if i % 2 == 0 else signal.SIGINT)
    t0 = time.monotonic()
    for a, p, f in zip(argvs, procs, logs_, strict=True):
        assert p.wait(15) == 0, (a, f.read_text()[-2000:])
        assert "Traceback" not in f.read_text(), f.read_text()
    assert time.monotonic() - t0 < 5 * _load()


def test_item4_unknown_venue_stops_up_in_one_line(tmp_path: Path) -> None:
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "ops", "up", "--venues", "nosuch"],
                         cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                         timeout=30)  # fmt: skip
    assert res.returncode == 2
    line = _one_line(res.stderr)
    assert "unknown venue(s) nosuch" in line and "binance" in line
    assert time.monotonic() - t0 < 5 * _load()
    assert not (tmp_path / "var" / "up.pid").exists()  # nothing was started


def test_item4_a_worker_refusing_its_configuration_stops_up(tmp_path: Path) -> None:
    port = free_port()
    env = _env(tmp_path, JETMARKET_NATS__URL=f"nats://127.0.0.1:{port}",
               JETMARKET_NATS__SERVER__PORT=str(port),
               JETMARKET_NATS__SERVER__MONITOR_PORT=str(free_port()),
               JETMARKET_NATS__SERVER__STORE_DIR=str(tmp_path / "nats"),
               # a list written as plain text: the collector reads its section at start
               JETMARKET_COLLECTOR__BINANCE__SYMBOLS="BTCUSDT")  # fmt: skip
    res = subprocess.run([sys.executable, "-m", "ops", "up"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=90)  # fmt: skip
    assert res.returncode == 1, res.stderr[-2000:]
    assert "collector: bad configuration: invalid setting collector.binance.symbols" in res.stderr
    starts = [x for x in res.stderr.splitlines() if "worker started" in x and "collector" in x]
    assert len(starts) == 1, res.stderr[-3000:]  # not restarted
    assert "Traceback" not in res.stderr


def test_item5_6_second_up_refuses_and_nats_has_its_own_process_group(tmp_path: Path) -> None:
    port = free_port()
    env = _env(tmp_path, JETMARKET_NATS__URL=f"nats://127.0.0.1:{port}",
               JETMARKET_NATS__SERVER__PORT=str(port),
               JETMARKET_NATS__SERVER__MONITOR_PORT=str(free_port()),
               JETMARKET_NATS__SERVER__STORE_DIR=str(tmp_path / "nats"),
               JETMARKET_COLLECTOR__VENUES='["binance"]',
               JETMARKET_COLLECTOR__BINANCE__WS_URL=f"ws://127.0.0.1:{free_port()}",
               JETMARKET_COLLECTOR__BINANCE__REST_URL=f"http://127.0.0.1:{free_port()}",
               )  # fmt: skip
    log = tmp_path / "up.log"  # a file: a pipe nobody reads would block the workers' logging
    first = subprocess.Popen([sys.executable, "-m", "ops", "up"], cwd=tmp_path, env=env,
                             stderr=log.open("w"))  # fmt: skip
    pid_file = tmp_path / "up.pid"  # beside the store (tmp_path/nats)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _nats_pid(tmp_path):
            time.sleep(0.2)
        nats_pid = _nats_pid(tmp_path)
        assert nats_pid, "nats-server did not start"
        assert os.getpgid(nats_pid) != os.getpgid(first.pid)  # Ctrl-C cannot reach it
        assert pid_file.read_text().split()[0] == str(first.pid)
        second = subprocess.run([sys.executable, "-m", "ops", "up"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=30)  # fmt: skip
        assert second.returncode == 1
        line = _one_line(second.stderr)
        assert f"already running in this checkout (pid {first.pid}" in line
        assert pid_file.read_text().split()[0] == str(first.pid)  # still names the first
        down = subprocess.run([sys.executable, "-m", "ops", "down"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=90)  # fmt: skip
        assert down.returncode == 0 and "stopped" in down.stdout, down
        assert first.wait(30) == 0
    finally:
        if first.poll() is None:
            first.kill()
    err = log.read_text()
    assert err.rfind("nats-server stopped") > err.rfind("worker stopped") > 0
    assert not pid_file.exists()


def _nats_pid(cwd: Path) -> int | None:
    for proc in Path("/proc").iterdir():
        try:
            here = proc.name.isdigit() and os.readlink(proc / "cwd") == str(cwd)
            if here and b"nats-server" in (proc / "cmdline").read_bytes():
                return int(proc.name)
        except OSError:
            continue
    return None


def test_item7_make_up_takes_venues_from_configuration() -> None:
    def dry(*args: str) -> str:
        return subprocess.run(["make", "-n", "up", *args], cwd=ROOT, capture_output=True,
                              text=True, check=True, timeout=30).stdout  # fmt: skip

    assert "--venues" not in dry()  # collector.venues decides
    assert "--venues okx deribit" in dry("VENUES=okx deribit")
    assert "--emulator" in dry("EMULATOR=1")


def test_item7_bad_enum_from_make_normalizer_is_one_line_with_the_valid_values(
    tmp_path: Path,
) -> None:
    env = _env(tmp_path, JETMARKET_LOG__LEVEL="debug")
    for argv in (["-m", "normalizer"], ["-m", "collectors"], ["-m", "ops", "status"]):
        res = subprocess.run([sys.executable, *argv], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=30)  # fmt: skip
        assert res.returncode == 2
        line = _one_line(res.stderr)
        assert line.endswith(
            "bad configuration: invalid setting log.level: 'debug' is not one of "
            '"DEBUG", "INFO", "WARNING", "ERROR"'
        ), line


def test_item8_console_lines_and_json_when_not_a_terminal() -> None:
    rec = logging.LogRecord("collectors", logging.WARNING, "", 0, "binance connect failed",
                            None, None)  # fmt: skip
    rec.__dict__.update(worker="collector", retry_in_s=2.0, error="refused: no route")
    line = logs.ConsoleFormatter(colour=False).format(rec)
    assert "\n" not in line
    assert line[8:] == (
        ' WARN  collector   binance connect failed  retry_in_s=2.0 error="refused: no route"'
    )
    assert logs.wants_json("auto", stream=open(os.devnull, "w"))  # noqa: SIM115
    assert not logs.wants_json("human") and logs.wants_json("json")


async def test_item8_no_disconnect_warning_on_a_normal_close(
    settings: Settings, nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    nc = await connect(settings.nats, "sql", max_reconnect_attempts=0)
    with caplog.at_level(logging.INFO, logger="streams.bus.connect"):
        await nc.close()
        await asyncio.sleep(0.1)
    assert not [r for r in caplog.records if "disconnected" in r.getMessage()]


def test_item9_every_option_has_help_and_up_help_lists_what_it_starts() -> None:
    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        assert p.description or name in sub._name_parser_map, name
        for action in p._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"jetmarket {name} {action.option_strings[0]} has no help"
            elif not action.option_strings and p.add_help:
                assert action.help, f"jetmarket {name} {action.dest} has no help"
    for worker in (*WORKERS, "nats-server", "emulator"):
        assert worker in UP_HELP
    # the make targets' names are subcommands; the old verbs stay as aliases
    for alias, name in (
        ("collect", "collector"),
        ("normalize", "normalizer"),
        ("exec", "executor"),
    ):
        assert parser.parse_known_args([alias])[0].cmd == alias
        assert parser.parse_known_args([name])[0].cmd == name
