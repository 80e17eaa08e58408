"""``make backtest``: the example strategy on replayed data, on a fresh machine, offline.

1. The local Binance emulator (seeded, so the same price path every time) trades BTCUSDT;
   ``jetmarket up`` (embedded nats-server, collector, normalizer, order book, sink, under
   ./var/backtest) turns it into MARKET trades, depth and instruments.
2. ``jetmarket backtest`` replays that stream from JetStream twice with the example
   SMA-cross strategy, under two run ids: the digests of fills and PnL must match.
3. The results, stored by the running sink, are read back with SQL per run id.
4. With the pipeline stopped, the research path: a 4-run sweep on the columnar replay of
   the same ClickHouse data, HTML reports; the last line is the sweep page's path.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time

from examples import offline
from streams import sql
from streams.bus.connect import connect
from streams.settings import from_mapping

ROOT = offline.ROOT
TRADES = int(os.environ.get("BACKTEST_TRADES", "5000"))
STRATEGY = os.environ.get("BACKTEST_STRATEGY", "examples/sma_cross.py:SmaCross")
PARAMS = os.environ.get("BACKTEST_PARAMS", "bar_s=0.2 fast=2 slow=6 size=0.01").split()


def backtest(env: dict[str, str], run_id: str) -> str:
    cmd = [sys.executable, "-m", "ops", "backtest", "--strategy", STRATEGY,
           "--venue", "binance", "--symbol", "BTC-USDT", "--source", "jetstream",
           "--run-id", run_id, "--curve-interval-s", "1"]  # fmt: skip
    if STRATEGY.startswith("examples/sma_cross.py"):
        cmd += [a for p in PARAMS for a in ("--param", p)]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise SystemExit(f"backtest failed:\n{out.stderr}")
    return out.stdout


def main() -> int:
    env, var, emu, up = offline.start(
        "backtest", ["BTCUSDT"], ["--rate", "500", "--trades", str(TRADES)],
        JETMARKET_LOG__LEVEL="WARNING",
    )  # fmt: skip
    url = env["JETMARKET_NATS__URL"]
    try:
        print(f"backtest: recording {TRADES} emulated BTCUSDT trades ...", flush=True)
        asyncio.run(_wait_trades(url, TRADES))
        first = backtest(env, "demo-a")
        print(first, flush=True)
        second = backtest(env, "demo-b")
        digests = [re.search(r"digest\s+(\w+)", o).group(1) for o in (first, second)]  # type: ignore[union-attr]
        same = "identical" if digests[0] == digests[1] else "DIFFERENT"
        print(f"second run (demo-b): digest {digests[1]} -> {same} fills and PnL\n", flush=True)
        asyncio.run(_queries(url))
        code = 0 if digests[0] == digests[1] else 1
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(60)
        emu.terminate()
        emu.wait(10)
    print(f"backtest: pipeline stopped; data kept under {var}")
    if code == 0:
        code = research(env, var)
    return code


def research(env: dict[str, str], var: object) -> int:
    """4. The research path on the same data, the sink stopped (chdb is free to read): the
    columnar replay into the sim engine, a 4-run sweep in parallel processes, one
    backtest_results row per run, HTML reports. Opens nothing: prints where they are."""
    reports = f"{var}/reports"
    cmd = [sys.executable, "-m", "ops", "backtest", "--strategy", STRATEGY, "--venue", "binance",
           "--symbol", "BTC-USDT", "--columnar", "clickhouse", "--curve-interval-s", "1",
           "--report-dir", reports, "--cache-dir", f"{var}/cache"]  # fmt: skip
    if STRATEGY.startswith("examples/sma_cross.py"):
        cmd += [a for p in PARAMS for a in ("--param", p) if not p.startswith(("fast", "slow"))]
    print("backtest: research sweep fast=2,3 slow=6,10 on the columnar replay ...", flush=True)
    cmd += ["--grid", "fast=2,3 slow=6,10", "--run-id", "demo-sweep"]
    sweep = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if sweep.returncode != 0:
        print(f"research sweep failed:\n{sweep.stderr}", file=sys.stderr)
        return 1
    print(sweep.stdout, flush=True)
    return 0


async def _query(nc: object, q: str) -> sql.SqlResult:
    err: Exception | None = None
    for _ in range(60):
        try:
            return await sql.query(nc, q, timeout=10)  # type: ignore[arg-type]
        except Exception as exc:  # the sink is starting or catching up
            err = exc
            await asyncio.sleep(0.5)
    raise SystemExit(f"query failed: {err}")


async def _wait_trades(url: str, want: int) -> None:
    nc = await connect(from_mapping({"nats": {"url": url}}).nats, "demo", max_reconnect_attempts=60)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            res = await _query(nc, "SELECT count() FROM trades")
            if int(res.rows[0][0]) >= want:
                await asyncio.sleep(1.0)  # the last depth updates
                return
            await asyncio.sleep(0.5)
        raise SystemExit("the emulator's trades did not all arrive in 120 s")
    finally:
        await nc.close()


QUERIES = [
    ("fills per run", "SELECT account, count() AS fills, round(sum(size), 5) AS volume, "
     "round(sum(fee), 4) AS fees FROM fills WHERE account LIKE 'bt-%' GROUP BY account "
     "ORDER BY account"),
    ("PnL curve of bt-demo-a (last 5 points)", "SELECT ts_event, size, "
     "round(realized_pnl + unrealized_pnl, 4) AS pnl FROM positions WHERE account = "
     "'bt-demo-a' ORDER BY ts_event DESC LIMIT 5"),
]  # fmt: skip


async def _queries(url: str) -> None:
    nc = await connect(from_mapping({"nats": {"url": url}}).nats, "demo", max_reconnect_attempts=5)
    try:
        await asyncio.sleep(1.0)  # the sink flushes what the backtests stored
        for title, q in QUERIES:
            print(f"-- {title}\n{q}\n\n{sql.format_table(await _query(nc, q))}\n", flush=True)
    finally:
        await nc.close()


if __name__ == "__main__":
    sys.exit(main())
