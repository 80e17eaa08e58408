"""The README's research block (export, then a sweep on the export), which the README test
skips because it reads the embedded ClickHouse a running sink holds: run here verbatim, as
a newcomer runs it after the pipeline has stopped, in a directory laid out like the checkout
(``.venv``, ``examples``, ``var/clickhouse`` with the last hour of market data)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import msgspec

from tests.backtest.test_sim import T0, market
from tests.docs.readme import blocks
from tests.replay.test_columnar import store_market
from tests.workers import ROOT


def test_research_block_runs_as_written(tmp_path: Path) -> None:
    (block,) = [
        b
        for b in blocks((ROOT / "README.md").read_text())
        if b.skip and "reads the embedded ClickHouse" in b.skip
    ]
    for name in (".venv", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    # the default clickhouse.dsn (chdb:///./var/clickhouse), with data of the last day
    shift = time.time_ns() - 3600 * 10**9 - T0
    msgs = []
    for m in market(n=3000):
        kw = {"ts_event": m.ts_event + shift, "ts_recv": m.ts_recv + shift}
        if getattr(m, "next_funding_ts", None):
            kw["next_funding_ts"] = m.next_funding_ts + shift  # type: ignore[attr-defined]
        msgs.append(msgspec.structs.replace(m, **kw))
    store_market(f"chdb://{tmp_path / 'var' / 'clickhouse'}", msgs)
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env["TMPDIR"] = str(tmp_path)
    out = subprocess.run(["sh", "-e", "-c", block.code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, f"{block.where}: {out.stderr[-2000:]}"
    assert "rows -> var/export/trades.parquet" in out.stdout, out.stdout[-2000:]
    assert "6 runs in backtest_results" in out.stdout, out.stdout[-2000:]
    report = Path(out.stdout.strip().splitlines()[-1].removeprefix("report "))
    assert report.is_file() and report.is_relative_to(tmp_path), report
