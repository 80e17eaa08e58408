"""A resync storm on one IP budget: four processes share Binance's request weight.

Two collector processes (``python -m collectors binance``, N symbols each) resync every
book at once, a backfill process (``python -m collectors.backfill``) pages candles, and the
executor process places and cancels orders, all against emulators that enforce one
weight limit together (the market-data emulator and the trading mock share one
``VenueLimits``: one IP) and answer 429, then 418, like Binance. The limits are scaled
(windows of seconds, not a minute) so a storm spans several windows in a short run.

Shown: 0 responses 429/418; every book gets its snapshot after each storm; the backfill
finishes after the storm (it yields); order latency (command -> the venue's "new" on
exec.evt) during the storm next to before it. ``python -m tests.faults.storm`` runs the
one-minute version (``make faults``); tests/collectors/test_storm.py a short one.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import orjson
from aiohttp import web

from collectors.binance import LIMITS
from streams import schemas, subjects
from streams.bus.connect import connect
from streams.bus.server import free_port
from streams.provision import STREAM_RAW
from tests.conftest import make_settings
from tests.executor.test_ccxt import ACCOUNT, Executor, limit, live
from tests.venues.binance.emulator import BinanceEmulator
from tests.venues.binance.emulator_rest import MockBinance
from tests.venues.emulator_base import VenueLimits
from tests.workers import Proc


@dataclass
class StormResult:
    symbols: int
    storms: int
    statuses: dict[str, int]  # what the shared emulator limit answered: ok, over, banned
    resynced: list[int] = field(default_factory=list)  # books with a new snapshot, per storm
    resync_s: list[float] = field(default_factory=list)  # storm start -> last snapshot
    backfill_rc: int | None = None
    backfill_done_s: float = 0.0  # from the first storm's start
    backfill_pages: int = 0
    latency_before_ms: list[float] = field(default_factory=list)
    latency_storm_ms: list[float] = field(default_factory=list)
    executor_waits: dict[str, str] = field(default_factory=dict)  # priority -> histogram
    max_window_used: int = 0
    capacity: int = 0
    problems: list[str] = field(default_factory=list)

    def p(self, values: list[float], q: float) -> float:
        if not values:
            return float("nan")
        s = sorted(values)
        return s[min(len(s) - 1, int(q * len(s)))]

    def lines(self) -> list[str]:
        return [
            f"symbols {self.symbols} in 2 collectors, {self.storms} storm(s); emulator answered "
            f"{self.statuses}; most weight in one window {self.max_window_used} of "
            f"{self.capacity}",
            f"books resynced per storm {self.resynced}, storm -> last snapshot "
            f"{[round(s, 1) for s in self.resync_s]} s",
            f"backfill rc {self.backfill_rc}, {self.backfill_pages} pages, done "
            f"{self.backfill_done_s:.1f} s after the first storm began",
            f"order latency before: p50 {self.p(self.latency_before_ms, 0.5):.1f} ms p99 "
            f"{self.p(self.latency_before_ms, 0.99):.1f} ms ({len(self.latency_before_ms)}); "
            f"during the storms: p50 {self.p(self.latency_storm_ms, 0.5):.1f} ms p99 "
            f"{self.p(self.latency_storm_ms, 0.99):.1f} ms ({len(self.latency_storm_ms)})",
            f"executor's waits for budget: {self.executor_waits}",
        ]


def shared_limit(capacity: int, window_s: float) -> VenueLimits:
    """One IP's weight for both emulators, with Binance's weights of every path used."""

    def weight(request: web.Request) -> int:
        path = request.path
        if path.endswith("/depth"):
            return LIMITS.weight("depth", {"limit": request.query.get("limit", "100")})
        if path == "/api/v3/order" and request.method == "GET":
            return 4
        return LIMITS.weights.get(path.rsplit("/", 1)[-1], 1)

    return VenueLimits(capacity, window_s, weight, "X-MBX-USED-WEIGHT-1M")


def limits_spec(capacity: int, window_s: float) -> dict[str, Any]:
    spec = msgspec.to_builtins(LIMITS)
    spec["rules"][0].update(capacity=capacity, window_s=window_s)
    return spec


async def run_storm(
    work: Path, nats_url: str, *, per_collector: int, capacity: int, window_s: float,
    storms: int, storm_every_s: float, orders_per_s: float = 2.0,
) -> StormResult:  # fmt: skip
    natives = [f"C{i:03d}USDT" for i in range(2 * per_collector)]
    halves = [natives[:per_collector], natives[per_collector:]]
    res = StormResult(symbols=len(natives), storms=storms, statuses={}, capacity=capacity)
    lim = shared_limit(capacity, window_s)
    used_by_window: dict[int, int] = {}
    check = lim._check

    def counting(request: Any) -> tuple[int, float] | None:
        out = check(request)
        used_by_window[lim.window] = lim.used
        return out

    lim._check = counting  # type: ignore[method-assign]
    spec = limits_spec(capacity, window_s)
    emu = BinanceEmulator(natives, seed=3)
    emu.access_log = False
    emu.limits = lim
    mock = MockBinance()
    mock.limits = lim
    await emu.start()
    # the trading venue on its own thread and loop: an order's latency is then ours, not
    # the market-data emulator's backlog while it serves a storm of snapshots
    mock_loop = asyncio.new_event_loop()
    mock_thread = threading.Thread(target=mock_loop.run_forever, daemon=True)
    mock_thread.start()
    asyncio.run_coroutine_threadsafe(mock.start(), mock_loop).result(10)
    procs: list[Proc] = []
    nc = await connect(make_settings(work, nats_url).nats, "storm")
    try:
        for i, half in enumerate(halves):
            s = make_settings(work, nats_url, collector={"binance": {
                "ws_url": emu.ws_url, "rest_url": emu.rest_url, "symbols": half,
                "channels": ["depth"], "snapshot_limit": 100, "limits": spec}},
                nats={"role": "collector"})  # fmt: skip
            procs.append(Proc("collectors", s, "binance", log=work / f"collector{i}.log").start())
        await emu.wait_connected(2, timeout=30)
        account = {
            "venue": "ccxt", "exchange": "binance", "market_venue": "binance",
            "urls": mock.ccxt_urls(), "api_key_env": "JM_TEST_KEY", "secret_env": "JM_TEST_SECRET",
            "options": {"fetchCurrencies": False, "fetchMargins": False,
                        "fetchMarkets": {"types": ["spot"]}},
            "request_timeout_s": 5.0, "unknown_grace_s": 2.0, "timeouts": {},
            "risk": {"require_mark": False},
        }  # fmt: skip
        metrics_port = free_port()  # the executor's budget waits, read at the end
        ex_settings = make_settings(work, nats_url, executor={
            "accounts": {ACCOUNT: account}, "reconcile_interval_s": 2.0},
            nats={"role": "executor"}, metrics={"ports": {"executor": metrics_port}})  # fmt: skip
        executor = Executor(ex_settings, work / "executor.log")
        await executor.start(nc)
        procs.append(executor.proc)

        # the executor answers a request once the venue has answered (state "new" with the
        # venue's order id): command -> reply is the order's way to the venue and back
        new_at: dict[str, float] = {}
        sent: dict[str, float] = {}
        n = 0

        async def order_once() -> None:
            nonlocal n
            n += 1
            cid = f"storm{n}"
            sent[cid] = time.monotonic()
            reply = await nc.request(subjects.exec_req(ACCOUNT), schemas.encode(
                limit(cid, qty="0.01", price="60000")), timeout=15)  # fmt: skip
            answer = orjson.loads(reply.data)
            if not answer.get("accepted") or answer.get("state") != "new":
                raise RuntimeError(f"order {cid} not placed: {answer}")
            new_at[cid] = time.monotonic()
            await asyncio.sleep(0.3)
            await nc.request(subjects.exec_req(ACCOUNT), schemas.encode(live(cid, "cancel")),
                             timeout=15)  # fmt: skip

        for _ in range(10):  # before the storm
            await order_once()
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        before = {c: new_at[c] - t for c, t in sent.items() if c in new_at}
        res.latency_before_ms = [v * 1e3 for v in before.values()]

        back = make_settings(work, nats_url, collector={"ccxt": {"exchanges": {"binance": {
            "symbols": ["BTC/USDT"], "api_url": mock.url + "/api/v3",
            "options": account["options"]}}}}, nats={"role": "collector"})  # fmt: skip
        since = int(time.time() * 1000) - 3 * 86_400_000
        bf = Proc("collectors.backfill", back, "--venue", "binance", "--symbol", "BTC/USDT",
                  "--since", str(since), "--limit", "200", "--checkpoint",
                  str(work / "backfill.ckpt"), "--progress", "never",
                  log=work / "backfill.log").start()  # fmt: skip
        procs.append(bf)

        t0 = time.monotonic()
        stop_orders = asyncio.Event()

        errors: list[str] = []
        tasks: set[asyncio.Task[None]] = set()

        async def guarded() -> None:
            try:
                await order_once()
            except Exception as exc:
                errors.append(repr(exc)[:200])

        async def orders() -> None:
            while not stop_orders.is_set():
                t = asyncio.create_task(guarded())
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                await asyncio.sleep(1 / orders_per_s)

        order_task = asyncio.create_task(orders())
        storm_sent_from = n
        bf_done: float | None = None
        for k in range(storms):
            start = time.monotonic()
            if k:
                await emu.drop_connections()  # reconnect: every book needs a snapshot again
                await emu.wait_connected(2, timeout=30)
            before_counts = await snapshot_counts(nc)
            for native in natives:  # a depth event per book: each asks for its snapshot
                await emu.emit_depth(1, native)
            deadline = start + max(storm_every_s * 2, 60)
            while True:
                counts = await snapshot_counts(nc)
                done = sum(1 for s in natives if counts.get(s, 0) > before_counts.get(s, 0))
                if done == len(natives) or time.monotonic() > deadline:
                    break
                if bf_done is None and bf.p is not None and bf.p.poll() is not None:
                    bf_done = time.monotonic()
                await asyncio.sleep(0.2)
            res.resynced.append(done)
            res.resync_s.append(time.monotonic() - start)
            while time.monotonic() < start + storm_every_s:
                if bf_done is None and bf.p is not None and bf.p.poll() is not None:
                    bf_done = time.monotonic()
                await asyncio.sleep(0.2)
        stop_orders.set()
        await order_task
        await asyncio.gather(*tasks)
        res.executor_waits = await budget_waits(metrics_port)
        if errors:
            res.problems.append(f"{len(errors)} order requests failed: {errors[:3]}")
        await asyncio.sleep(2.0)
        storm_cids = [f"storm{i}" for i in range(storm_sent_from + 1, n + 1)]
        res.latency_storm_ms = [(new_at[c] - sent[c]) * 1e3 for c in storm_cids if c in new_at]
        missing = [c for c in storm_cids if c not in new_at]
        if missing:
            res.problems.append(f"{len(missing)} orders never acknowledged: {missing[:5]}")
        deadline = time.monotonic() + 60
        while bf.p is not None and bf.p.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        if bf_done is None:
            bf_done = time.monotonic()
        res.backfill_rc = bf.p.poll() if bf.p is not None else None
        res.backfill_done_s = bf_done - t0
        res.backfill_pages = mock.klines_served
    finally:
        for p in reversed(procs):
            try:
                p.stop(timeout=20)
            except Exception:
                p.kill9()
        await nc.close()
        asyncio.run_coroutine_threadsafe(mock.stop(), mock_loop).result(10)
        mock_loop.call_soon_threadsafe(mock_loop.stop)
        mock_thread.join(5)
        await emu.stop()
    res.statuses = dict(lim.stats)
    res.max_window_used = max(used_by_window.values(), default=0)
    if lim.stats["over"] or lim.stats["banned"]:
        res.problems.append(f"venue refused calls: {lim.stats}")
    if any(r != len(natives) for r in res.resynced):
        res.problems.append(f"books not resynced: {res.resynced} of {len(natives)}")
    if res.backfill_rc != 0:
        res.problems.append(f"backfill exit status {res.backfill_rc}")
    return res


async def budget_waits(port: int) -> dict[str, str]:
    """priority -> "calls, waits over 10/100/1000 ms" from the executor's /metrics."""
    import aiohttp

    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/metrics") as r,
        ):
            text = await r.text()
    except Exception as exc:
        return {"error": repr(exc)[:100]}
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if line.startswith("jetmarket_budget_wait_seconds_bucket"):
            prio = line.split('priority="')[1].split('"')[0]
            le = line.split('le="')[1].split('"')[0]
            out.setdefault(prio, {})[le] = float(line.rsplit(" ", 1)[1])
    return {p: f"{b['+Inf']:.0f} calls, {b['+Inf'] - b['0.01']:.0f} > 10 ms, "
               f"{b['+Inf'] - b['0.1']:.0f} > 100 ms, {b['+Inf'] - b['1.0']:.0f} > 1 s"
            for p, b in out.items()}  # fmt: skip


async def snapshot_counts(nc: Any) -> dict[str, int]:
    """native symbol -> snapshots on RAW so far."""
    js = nc.jetstream(timeout=10.0)
    info = await js.stream_info(STREAM_RAW, subjects_filter="raw.binance.snapshot.>")
    return {s.rsplit(".", 1)[-1]: n for s, n in (info.state.subjects or {}).items()}


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.faults.storm")
    ap.add_argument("--symbols", type=int, default=200, help="per collector (200)")
    ap.add_argument("--seconds", type=float, default=60.0, help="run length (60)")
    ap.add_argument("--keep", type=Path, default=None, help="work dir to keep (logs)")
    args = ap.parse_args()
    from streams.bus.server import NatsServer
    from streams.settings import NatsServerSettings
    from tests.conftest import _provision_as_admin

    with tempfile.TemporaryDirectory(prefix="jm-storm-", dir="var/tmp") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        cfg = NatsServerSettings(port=free_port(), monitor_port=free_port(),
                                 store_dir=str(work / "nats"))  # fmt: skip
        srv = NatsServer(cfg, log_file=work / "nats.log").start()
        try:
            asyncio.run(_provision_as_admin(srv.url))
            # 6000 weight per minute as 1000 per 10 s windows; a storm every half minute
            res = asyncio.run(run_storm(
                work, srv.url, per_collector=args.symbols, capacity=1000, window_s=10.0,
                storms=max(1, int(args.seconds // 30)), storm_every_s=30.0))  # fmt: skip
        finally:
            srv.stop()
    for line in res.lines():
        print(line)
    for p in res.problems:
        print("FAIL", p)
    print(orjson.dumps({"statuses": res.statuses}).decode())
    sys.exit(1 if res.problems else 0)


if __name__ == "__main__":
    main()
