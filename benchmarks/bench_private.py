"""Private-stream fill latency: the venue's fill to our ``exec.evt`` Fill.

``python -m benchmarks.bench_private [fills]`` prints the numbers; ``measure()`` /
``lines()`` serve benchmarks/bench.py. The Binance emulator with its user data stream
(tests/venues/binance/emulator_private.py) runs on its own thread and event loop; the
executor's parts (CcxtVenue over real ccxt, Engine, PrivateStream over real ccxt pro,
JetStream publisher) on the main loop against a real nats-server; a separate connection
subscribes to ``exec.evt.bench.>``. Resting limit orders are filled one at a time, spaced
``gap_s`` apart; latency = the Fill's arrival at the subscriber - the moment the emulator
handed the ``executionReport`` to its socket (same host clock). Reconciliation polling is
not running: every fill comes pushed.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.report import Results
from benchmarks.servers import temp_nats
from executor.engine import Engine
from executor.marks import Marks
from executor.venues.ccxt_venue import CcxtVenue
from executor.venues.private.stream import PrivateStream
from executor.worker import JsPublisher
from streams import schemas, subjects
from streams.bus.connect import connect
from streams.provision import provision
from streams.schemas import Fill, OrderCommand
from streams.settings import from_mapping
from tests.venues.binance.emulator_private import MockBinancePrivate
from tests.venues.binance.emulator_rest import API_KEY, SECRET


class EmulatorThread:
    """The emulator on a loop of its own, as a venue is a process of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.mock = MockBinancePrivate()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.mock.start(), self.loop).result(10)

    def call(self, fn: Any, *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.mock.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


async def run(fills: int, gap_s: float) -> dict[str, float]:
    emu = EmulatorThread()
    emu.start()
    mock = emu.mock
    os.environ.update(JM_BENCH_KEY=API_KEY, JM_BENCH_SECRET=SECRET)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        srv = temp_nats(tmp)
        try:
            account = {
                "venue": "ccxt", "exchange": "binance", "urls": mock.ccxt_urls(),
                "api_key_env": "JM_BENCH_KEY", "secret_env": "JM_BENCH_SECRET",
                "options": {"fetchCurrencies": False, "fetchMargins": False,
                            "fetchMarkets": {"types": ["spot"]}},
                "timeouts": {}, "risk": {"require_mark": False, "max_open_orders": 10**6,
                                         "max_orders_per_s": 10**6},
                "private": {"enabled": True, "ws": {"ws.ws-api.spot": mock.ws_api_url},
                            "truth_interval_s": 3600.0},
            }  # fmt: skip
            settings = from_mapping({
                "nats": {"url": srv.url, "credentials_dir": str(tmp / "creds")},
                "executor": {"accounts": {"bench": account}},
            })  # fmt: skip
            admin = await connect(settings.nats, "admin")
            await provision(admin.jetstream(), settings)
            nc = await connect(settings.nats, "executor")
            cfg = settings.executor.accounts["bench"]
            venue = CcxtVenue(cfg, nc)
            await venue.start()
            e = Engine("bench", cfg, venue, JsPublisher(nc.jetstream()), Marks())
            ps = PrivateStream("bench", cfg, venue, e, nc)
            await ps.start()
            got: dict[str, int] = {}
            done = asyncio.Event()

            async def on_evt(msg: Any) -> None:
                now = time.time_ns()
                obj = schemas.decode_exec(msg.data)
                if isinstance(obj, Fill):
                    got[obj.trade_id] = now
                    if len(got) >= fills:
                        done.set()

            await admin.subscribe(subjects.exec_evt_filter("bench"), cb=on_evt)
            await admin.flush()
            try:
                while not mock.subscribes:
                    await asyncio.sleep(0.01)
                cids = []
                for i in range(fills):
                    now = time.time_ns()
                    cid = f"b{i}"
                    r = await e.handle(OrderCommand(
                        account="bench", venue="binance", symbol="BTC-USDT", ts_event=now,
                        ts_recv=now, action="new", client_order_id=cid, side="buy",
                        order_type="limit", quantity="0.001", price="60000",
                    ))  # fmt: skip
                    assert r.accepted, r
                    cids.append(cid)
                await asyncio.sleep(0.5)  # every NEW report applied before fills start
                for cid in cids:
                    emu.call(mock.fill, cid)
                    await asyncio.sleep(gap_s)
                await asyncio.wait_for(done.wait(), 30)
            finally:
                await ps.close()
                await venue.close()
                await nc.close()
                await admin.close()
        finally:
            srv.stop()
            emu.stop()
    lat = sorted((got[t] - mock.pushed_ns[t]) / 1e6 for t in got)
    q = statistics.quantiles(lat, n=100)
    return {"fills": len(lat), "p50": statistics.median(lat), "p99": q[98], "max": lat[-1],
            "gap_ms": gap_s * 1e3}  # fmt: skip


def measure(fills: int = 500, gap_s: float = 0.005) -> dict[str, dict[str, float]]:
    return {"Binance user data stream (WebSocket API)": asyncio.run(run(fills, gap_s))}


REPORT = Results(
    "Private-stream fill latency (benchmarks/bench_private.py)",
    """\
The emulator's fill (executionReport handed to its socket) to our Fill on
`exec.evt` at a subscriber: ccxt pro's connection, the frame tapped and parsed,
Engine.on_reports, an acked JetStream publish, NATS delivery. Goal: p99 < 50 ms.""",
    "| stream | fills | one every (ms) | p50 ms | p99 ms | max ms |",
    "| {name} | {fills:,.0f} | {gap_ms:.0f} | {p50:.2f} | {p99:.2f} | {max:.2f} |",
)
lines = REPORT.lines  # its section of BENCHMARKS.md (make bench)


if __name__ == "__main__":
    REPORT.main(measure, 500)
