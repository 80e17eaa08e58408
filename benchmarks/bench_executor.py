"""Executor command -> ack latency on the paper venue over a real nats-server.

``python -m benchmarks.bench_executor [N]`` prints the numbers; ``bench(n)`` returns them for
benchmarks/bench.py. The executor runs as its own process (``python -m executor``); the client
sends limit orders that rest (no fills) one at a time and measures
- request path: ``ctl.exec.<account>`` request -> accept reply (events already stored),
- stream path: JetStream publish on ``exec.cmd.<account>`` -> the order's first update on
  ``exec.evt.<account>.>`` (durable consumer, write to EXEC, delivery back to the client).
Goal: request p99 <= 5 ms.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.servers import temp_nats
from streams import schemas, subjects
from streams.bus.connect import connect
from streams.provision import provision
from streams.schemas import Depth, OrderCommand
from streams.settings import from_mapping
from tests.workers import Proc

ACCOUNT = "bench"


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def _cmd(cid: str) -> OrderCommand:
    now = time.time_ns()
    return OrderCommand(account=ACCOUNT, venue="binance", symbol="BTC-USDT", ts_event=now,
                        ts_recv=now, action="new", client_order_id=cid, side="buy",
                        order_type="limit", quantity="0.01", price="50")  # fmt: skip


async def bench(n: int = 2000, warmup: int = 200) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        srv = temp_nats(tmp)
        account = {"venue": "paper", "instruments": {"BTC-USDT": {"tick": "0.01", "lot": "0.001"}},
                   "risk": {"max_open_orders": 10**7, "max_orders_per_s": 10**7},
                   "timeouts": {}}  # fmt: skip
        settings = from_mapping({
            "nats": {"url": srv.url, "credentials_dir": str(tmp / "creds")},
            "metrics": {"ports": {}}, "log": {"level": "WARNING"},
            "executor": {"accounts": {ACCOUNT: account}},
        })  # fmt: skip
        proc = Proc("executor", settings, log=tmp / "executor.log").start()
        nc = await connect(settings.nats, "bench")
        try:
            js = nc.jetstream()
            await provision(js, settings)
            req = subjects.exec_req(ACCOUNT)
            while True:  # ready once it answers
                try:
                    await nc.request(req, schemas.encode(_cmd("probe")), timeout=1)
                    break
                except Exception:
                    await asyncio.sleep(0.2)
            ts = time.time_ns()
            depth = Depth(venue="binance", symbol="BTC-USDT", ts_event=ts, ts_recv=ts,
                          bids=[(99.0, 5.0)], asks=[(100.0, 5.0)], seq=1, levels=1)  # fmt: skip
            await nc.publish(subjects.market("depth", "binance", "BTC-USDT"), schemas.encode(depth))
            lat_req: list[float] = []
            for i in range(warmup + n):
                data = schemas.encode(_cmd(f"q{i}"))
                t0 = time.perf_counter()
                await nc.request(req, data, timeout=5)
                if i >= warmup:
                    lat_req.append(time.perf_counter() - t0)
            got: asyncio.Queue[float] = asyncio.Queue()

            async def on_evt(msg: Any) -> None:
                got.put_nowait(time.perf_counter())

            await nc.subscribe(subjects.exec_evt_filter(ACCOUNT), cb=on_evt)
            lat_js: list[float] = []
            for i in range(warmup + n):
                c = _cmd(f"s{i}")
                t0 = time.perf_counter()
                await js.publish(subjects.exec_cmd(ACCOUNT), schemas.encode(c),
                                 headers={subjects.H_MSG_ID: f"{ACCOUNT}:s{i}:new"})  # fmt: skip
                t1 = await asyncio.wait_for(got.get(), 10)
                if i >= warmup:
                    lat_js.append(t1 - t0)
        finally:
            await nc.close()
            proc.stop()
            srv.stop()
    ms = 1000.0
    return {
        "orders": float(n),
        "request_p50_ms": _pct(lat_req, 0.50) * ms, "request_p99_ms": _pct(lat_req, 0.99) * ms,
        "stream_p50_ms": _pct(lat_js, 0.50) * ms, "stream_p99_ms": _pct(lat_js, 0.99) * ms,
    }  # fmt: skip


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    import uvloop

    res = uvloop.run(bench(n))
    for k, v in res.items():
        print(f"{k:>16} {v:10.3f}")


if __name__ == "__main__":
    main()
