"""``make demo``: the whole pipeline offline against the local Binance emulator.

Starts the emulator, then ``jetmarket up`` (embedded nats-server, collector, normalizer,
sink) pointed at it on free ports with its own store under ./var/demo, lets data flow,
prints ClickHouse queries answered by the running sink, and stops everything cleanly.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

from examples import offline
from streams import sql
from streams.bus.connect import connect
from streams.settings import from_mapping

ROOT = offline.ROOT
SECONDS = float(os.environ.get("DEMO_SECONDS", "15"))

QUERIES = [
    (
        "trades per symbol",
        "SELECT symbol, count() AS trades, min(price) AS low, max(price) AS high, "
        "round(sum(price * size) / sum(size), 2) AS vwap "
        "FROM trades GROUP BY symbol ORDER BY symbol",
    ),
    (
        "one-second OHLCV, BTC-USDT (last 5)",
        "SELECT toStartOfSecond(ts_event) AS t, argMin(price, ts_event) AS open, "
        "max(price) AS high, min(price) AS low, argMax(price, ts_event) AS close, "
        "round(sum(size), 5) AS volume "
        "FROM trades WHERE symbol = 'BTC-USDT' GROUP BY t ORDER BY t DESC LIMIT 5",
    ),
    (
        "book updates and raw frames",
        "SELECT 'book_updates' AS tbl, count() AS n FROM book_updates UNION ALL "
        "SELECT 'raw_frames', count() FROM raw_frames",
    ),
]


def main() -> int:
    env, var, emu, up = offline.start(
        "demo", ["BTCUSDT", "ETHUSDT"], ["--rate", "1000"],
        JETMARKET_METRICS__HEALTH_INTERVAL_S="5",
    )  # fmt: skip
    py = sys.executable
    try:
        print(f"demo: pipeline running against the emulator for {SECONDS:.0f} s ...", flush=True)
        time.sleep(SECONDS)
        asyncio.run(_queries(env["JETMARKET_NATS__URL"]))
        print("\n-- the live book held by the orderbook service (jetmarket book)\n", flush=True)
        subprocess.run([py, "-m", "ops", "book", "binance", "BTC-USDT", "--levels", "5"], env=env)
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(60)
        emu.terminate()
        emu.wait(10)
    print(f"demo: pipeline stopped (exit code {code}); data kept under {var}")
    return code


async def _queries(url: str) -> None:
    nc = await connect(from_mapping({"nats": {"url": url}}).nats, "demo", max_reconnect_attempts=5)
    try:
        for title, q in QUERIES:
            for _ in range(20):
                try:
                    res = await sql.query(nc, q, timeout=10)
                    break
                except Exception as exc:  # sink still starting
                    err = exc
                    await asyncio.sleep(0.5)
            else:
                print(f"\n-- {title}: failed: {err}")
                continue
            print(f"\n-- {title}\n{q}\n")
            print(sql.format_table(res))
    finally:
        await nc.close()
    print(json.dumps({"demo": "done"}))


if __name__ == "__main__":
    sys.exit(main())
