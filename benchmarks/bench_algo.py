"""Child-order scheduling throughput of the execution algorithms (executor/algo).

``python -m benchmarks.bench_algo`` prints the numbers; ``measure()`` / ``lines()`` serve
benchmarks/bench.py. Many TWAP parents on the paper venue, each due one child per timer
round (a simulated clock steps one slice per round), market children filled from a book:
- in process, events to a null publisher: the algorithms + engine + paper venue alone;
- the same with every event an acked JetStream publish to a real nats-server (what the
  executor does: order update, fill, position, parent record per child).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.report import Results
from benchmarks.servers import temp_nats
from executor.algo.runner import Algos
from executor.algo.tape import Tapes
from executor.engine import Engine
from executor.marks import Marks
from executor.venues.paper import PaperVenue
from executor.worker import JsPublisher
from streams.bus.connect import connect
from streams.provision import provision
from streams.schemas import AlgoCommand, Depth, ExecBase
from streams.settings import AlgoSettings, from_mapping

NS = 1_000_000_000


class NullPublisher:
    async def publish(self, subject: str, msg: ExecBase, msg_id: str) -> None:
        return None

    async def dlq(self, data: bytes, reason: str) -> None:
        return None


async def run(pub: Any, parents: int, slices: int) -> dict[str, float]:
    account = {
        "venue": "paper", "timeouts": {}, "instruments": {"BTC-USDT": {"tick": "0.01",
                                                                       "lot": "0.001"}},
        "risk": {"max_open_orders": 10**7, "max_orders_per_s": 10**7,
                 "max_order_notional": 1e12, "max_position": {"*": 1e12}},
    }  # fmt: skip
    cfg = from_mapping({"executor": {"accounts": {"bench": account}}}).executor.accounts["bench"]
    now = [1_700_000_000.0]
    venue = PaperVenue(cfg)
    marks = Marks()
    d = Depth(venue="binance", symbol="BTC-USDT", ts_event=0, ts_recv=0,
              bids=[(100.0, 1e9)], asks=[(100.5, 1e9)], seq=1, levels=1)  # fmt: skip
    venue.on_market(d)
    marks.on_market(d)
    tapes = Tapes()
    tapes.on_market(d)
    e = Engine("bench", cfg, venue, pub, marks, lambda: now[0])
    algos = Algos(e, AlgoSettings(min_child_interval_s=0.0, max_parents=parents), tapes)
    t0 = int(now[0] * NS)
    for i in range(parents):
        r = await algos.handle(AlgoCommand(
            account="bench", venue="binance", symbol="BTC-USDT", ts_event=t0, ts_recv=t0,
            action="new", parent_id=f"p{i}", algo="twap", side="buy" if i % 2 else "sell",
            quantity=repr(slices * 0.001), start_ts=t0, end_ts=t0 + slices * NS, slices=slices,
        ))  # fmt: skip
        assert r.accepted, r
    start = time.perf_counter()
    rounds = 0
    while algos.working:
        await algos.tick()
        now[0] += 1.0
        rounds += 1
        if rounds > slices + 20:
            raise RuntimeError("parents did not finish")
    secs = time.perf_counter() - start
    sent = algos.children_sent
    assert sent == parents * slices, (sent, parents * slices)
    return {"children": sent, "parents": parents, "seconds": secs, "per_s": sent / secs,
            "us_per_child": secs / sent * 1e6}  # fmt: skip


async def over_nats(parents: int, slices: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=None) as d:
        tmp = Path(d)
        srv = temp_nats(tmp)
        try:
            settings = from_mapping({"nats": {"url": srv.url,
                                              "credentials_dir": str(tmp / "creds")}})  # fmt: skip
            admin = await connect(settings.nats, "admin")
            await provision(admin.jetstream(), settings)
            await admin.close()
            nc = await connect(settings.nats, "executor")
            try:
                return await run(JsPublisher(nc.jetstream()), parents, slices)
            finally:
                await nc.close()
        finally:
            srv.stop()


def measure(parents: int = 200, slices: int = 50) -> dict[str, dict[str, float]]:
    return {
        "in process (null publisher)": asyncio.run(run(NullPublisher(), parents, slices)),
        "acked JetStream publishes": asyncio.run(over_nats(parents, slices // 5)),
    }


REPORT = Results(
    "Execution algorithms: child-order scheduling (benchmarks/bench_algo.py)",
    """\
TWAP parents on the paper venue, each due one child per timer round (simulated
clock), market children filled from a book, through the Engine (checks, risk,
rounding, paper fills, positions) and the parent bookkeeping; the second row
publishes every event (order update, fill, position, parent record, TCA) as an
acked JetStream publish, one at a time, as the executor does.""",
    "| path | parents | children | children/s | us/child |",
    "| {name} | {parents:,.0f} | {children:,.0f} | {per_s:,.0f} | {us_per_child:.0f} |",
)
lines = REPORT.lines  # its section of BENCHMARKS.md (make bench)


if __name__ == "__main__":
    REPORT.main(measure, 200)
