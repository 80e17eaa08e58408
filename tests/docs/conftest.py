"""One newcomer checkout for the docs tests: a fresh clone, ``make up EMULATOR=1`` in a
pseudo-terminal, data flowing. At the end Ctrl-C is typed into that terminal and the
teardown checks what a newcomer would see: a clean stop (workers, then nats-server), no
process left, nothing written outside the checkout."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.docs.readme import Terminal, fresh_clone, pipeline_env, processes_in


@dataclass
class Checkout:
    path: Path
    home: Path
    env: dict[str, str]
    term: Terminal
    started_s: float  # make up until data is in ClickHouse and the book is valid

    def make(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["make", "-s", *args], cwd=self.path, env=self.env,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip


# package scope: the pipeline stops after the last test of tests/docs, not at the end of the
# whole session (left running, its emulator, workers and nats-server took CPU from every
# later test)
@pytest.fixture(scope="package")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Checkout]:
    base = tmp_path_factory.mktemp("newcomer")
    path = fresh_clone(base / "jetmarket")
    home = base / "home"  # outside the checkout: must stay empty
    home.mkdir()
    env = pipeline_env(path, home)
    t0 = time.monotonic()
    term = Terminal.start(["make", "up", "EMULATOR=1"], path, env)
    co = Checkout(path, home, env, term, 0.0)
    try:
        deadline = time.monotonic() + 120
        ready = False
        while time.monotonic() < deadline and term.wait(0) is None:
            sql = co.make("sql", "Q=SELECT count() AS n FROM trades", "FORMAT=csv")
            rows = sql.stdout.split()
            if sql.returncode == 0 and len(rows) == 2 and int(rows[1]) > 0:
                ready = co.make("book", "VENUE=binance", "SYMBOL=BTC-USDT").returncode == 0
                if ready:
                    break
            time.sleep(1.0)
        assert ready, f"make up EMULATOR=1 produced no data in 120 s:\n{term.text[-3000:]}"
        co.started_s = time.monotonic() - t0
        yield co
    finally:
        _stop_and_check(co)


def _stop_and_check(co: Checkout) -> None:
    term = co.term
    if term.code is None:
        term.ctrl_c()
        if term.wait(60) is None:
            term.kill()
            pytest.fail(f"make up ignored Ctrl-C for 60 s:\n{term.text[-3000:]}")
    text = re.sub(r"\x1b\[[0-9;]*m", "", term.text)  # colours off
    left = processes_in(co.path)
    assert not left, f"processes left after Ctrl-C: {left}"
    assert "Traceback" not in text, text[-3000:]
    # workers first (each drained), nats-server last
    assert "nats-server stopped" in text, text[-3000:]
    last_worker = max(text.rfind(f"{w} ") for w in ("collector", "executor", "sink"))
    assert text.rfind("nats-server stopped") > last_worker
    assert term.code in (0, 2, 130, -2), term.code  # make reports the interrupt its way
    outside = [p for p in co.home.rglob("*")]
    assert not outside, f"written outside the checkout: {outside}"
    assert not Path("/var/clickhouse").exists()
