"""``make bench``: measure, then write BENCHMARKS.md with the machine and the command.

Every rate is printed next to a baseline measured in the same run on the same frames,
because these 2-core machines are noisy: the ratio is the number to watch.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import orjson
from nats.aio.msg import Msg

from benchmarks.frames import gen_depth, gen_trades
from benchmarks.report import table
from normalizer.core import Normalizer
from normalizer.worker import NormalizerWorker
from streams import subjects
from streams.bus.connect import connect
from streams.bus.consumer import BatchConsumer, publish_batch
from streams.bus.runtime import Worker, collect_young_every, start_worker
from streams.bus.server import NatsServer, free_port
from streams.provision import STREAM_MARKET, STREAM_RAW, provision
from streams.settings import ConsumerSettings, NatsServerSettings, Settings, from_mapping

ROOT = Path(__file__).resolve().parents[1]
HDR = {subjects.H_RECV_NS: "1700000000000000000", subjects.H_CONN: "bench"}


def _remove(tmp: Path) -> None:
    """A bench's temporary directory, once its servers stopped: a nats store with the
    run's streams (~155 MB for the 200k-frame runs) stayed in var/tmp after every run."""
    shutil.rmtree(tmp, ignore_errors=True)


def rate(fn: Callable[[], object], n: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def bench_in_process() -> list[tuple[str, float, float]]:
    rows = []
    for name, channel, frames in [
        ("trade", "trade", gen_trades(200_000)),
        ("depth (10+10 levels)", "depth", gen_depth(50_000)),
    ]:
        subject = subjects.raw("binance", channel, "BTCUSDT")
        norm = Normalizer().normalize
        base = rate(lambda fr=frames: [orjson.loads(f) for f in fr], len(frames))
        ours = rate(
            lambda fr=frames, s=subject, fn=norm: [fn(s, f, HDR, 1) for f in fr], len(frames)
        )
        rows.append((name, ours, base))
    return rows


async def _fill_raw(nc, frames: list[bytes], js) -> None:  # type: ignore[no-untyped-def]
    subject = subjects.raw("binance", "trade", "BTCUSDT")
    for i, f in enumerate(frames, 1):
        if i % 5000 == 0:  # confirmed bursts: nats-server drops core publishes past its queue
            await js.publish(subject, f, headers=HDR, stream=STREAM_RAW)
        else:
            await nc.publish(subject, f, headers=HDR)
    await nc.flush()
    while (await js.stream_info(STREAM_RAW)).state.messages < len(frames):
        await asyncio.sleep(0.05)


async def _wait_stream(js, stream: str, n: int) -> None:  # type: ignore[no-untyped-def]
    while (await js.stream_info(stream)).state.messages < n:
        await asyncio.sleep(0.01)


async def _relay(w: Worker, n: int) -> None:
    """The do-nothing baseline: same consumer, same publish/ack pattern as the normalizer
    (a batch's raw messages acked once the acked publish of its last output is confirmed,
    the next batch handled meanwhile), bytes untouched."""
    assert w.js is not None and w.nc is not None
    c = BatchConsumer(w.js, STREAM_RAW, ConsumerSettings(durable="relay", batch=2000), "raw.>")
    await c.start()
    done = 0
    inflight: deque[tuple[asyncio.Future, Msg]] = deque()

    async def settle(keep: int) -> None:
        while len(inflight) > keep:
            await asyncio.wait_for(inflight[0][0], 10.0)
            await c.ack_through(inflight.popleft()[1])

    while done < n:
        if inflight and not c.buffered:
            await settle(0)
        msgs = await c.fetch()
        if not msgs:
            continue
        await publish_batch(w.nc, [("relay.out", None, m.data) for m in msgs[:-1]])
        confirmed = await w.js.publish_async("relay.out", msgs[-1].data, stream="RELAY")
        await settle(1)
        inflight.append((confirmed, msgs[-1]))
        done += len(msgs)
    await settle(0)
    await c.stop()


async def bench_over_nats(n: int) -> tuple[float, float]:
    tmp = Path(tempfile.mkdtemp(prefix="jm-bench-"))
    srv_cfg = NatsServerSettings(
        port=free_port(), monitor_port=free_port(), store_dir=str(tmp / "nats")
    )
    srv = NatsServer(srv_cfg, log_file=tmp / "nats.log", credentials_dir=tmp / "creds").start()
    try:
        settings: Settings = from_mapping(
            {
                "nats": {"url": srv.url, "credentials_dir": str(tmp / "creds")},
                "metrics": {"ports": {}},
                "log": {"level": "WARNING"},
            }
        )
        w = Worker("bench", settings)
        await start_worker(w)
        assert w.js is not None and w.nc is not None
        await provision(w.js, settings)  # workers no longer provision: the admin does
        from nats.js.api import StreamConfig

        await w.js.add_stream(StreamConfig(name="RELAY", subjects=["relay.>"]))
        await _fill_raw(w.nc, gen_trades(n), w.js)

        # the relay runs with the garbage collector set as the normalizer sets it in its
        # own process (NormalizerWorker.run): the two differ in their work only
        gc_default = gc.get_threshold()
        collect_young_every()
        t0 = time.perf_counter()
        await _relay(w, n)
        await _wait_stream(w.js, "RELAY", n)
        relay = n / (time.perf_counter() - t0)

        # built before the clock starts, as the relay's code is: startup (every venue
        # package imported, parsers built) is not throughput; with ccxt among the venue
        # packages it was ~1 s of a ~2 s timed window in a fresh process
        nw = NormalizerWorker(w, freeze_gc=True)  # as in its own process (worker.main)
        t0 = time.perf_counter()
        task = asyncio.create_task(nw.run())
        await _wait_stream(w.js, STREAM_MARKET, n)
        norm = n / (time.perf_counter() - t0)
        w.stop.set()
        await task
        await w.nc.drain()
        gc.set_threshold(*gc_default)  # the next benchmarks in this process as before
        return norm, relay
    finally:
        srv.stop()
        _remove(tmp)


def bench_orderbook(n: int) -> tuple[float, float, int]:
    """Validated level updates/s through BookState (sequence rule, sorted book, crossed
    check) next to the same levels written into two plain dicts."""
    from orderbook.sync import BookState
    from orderbook.venues.binance import BinanceSpot
    from tests.orderbook.test_sync import TrueBook

    tb = TrueBook(7)
    snap = tb.snapshot()
    deltas = [tb.delta() for _ in range(n)]
    levels = sum(len(d.bids) + len(d.asks) for d in deltas)

    def validated() -> None:
        st = BookState(BinanceSpot())
        st.feed(snap)
        feed = st.feed
        for d in deltas:
            if feed(d) is not None:
                raise AssertionError("generated stream must be valid")

    def plain() -> None:
        bids: dict[float, float] = dict(snap.bids)
        asks: dict[float, float] = dict(snap.asks)
        for d in deltas:
            for side, lv in ((bids, d.bids), (asks, d.asks)):
                for p, q in lv:
                    if q == 0.0:
                        side.pop(p, None)
                    else:
                        side[p] = q

    return rate(validated, levels), rate(plain, levels), levels


async def _server(tmp: Path) -> tuple[NatsServer, Settings]:
    srv_cfg = NatsServerSettings(
        port=free_port(), monitor_port=free_port(), store_dir=str(tmp / "nats")
    )
    srv = NatsServer(srv_cfg, log_file=tmp / "nats.log", credentials_dir=tmp / "creds").start()
    settings = from_mapping(
        {
            "nats": {"url": srv.url, "credentials_dir": str(tmp / "creds")},
            "clickhouse": {"dsn": f"chdb://{tmp / 'ch'}"},
            "metrics": {"ports": {}},
            "log": {"level": "WARNING"},
            "sink": {"store_raw": False},
        }
    )
    # the admin provisions the streams before any worker starts, as `make up` does
    nc = await connect(settings.nats, "bench")
    await provision(nc.jetstream(timeout=10.0), settings)
    await nc.close()
    return srv, settings


async def bench_sink(n: int) -> tuple[float, float]:
    """Rows/s from a MARKET backlog into chdb, and the raw publish rate for scale."""
    from streams import schemas
    from streams import sql as sqlmod
    from streams.bus.connect import connect
    from tests.workers import Proc

    tmp = Path(tempfile.mkdtemp(prefix="jm-bench-sink-"))
    srv, settings = await _server(tmp)
    try:
        nc = await connect(settings.nats, "bench")
        js = nc.jetstream()  # the streams: provisioned by _server
        t0 = time.perf_counter()
        for i in range(n):
            ts = 1_700_000_000_000_000_000 + i
            m = schemas.Trade(venue="binance", symbol="BTC-USDT", ts_event=ts, ts_recv=ts,
                              id=str(i), price=65000.1, size=0.5, side="buy")  # fmt: skip
            if i % 5000 == 0:  # confirmed bursts (see _fill_raw)
                await js.publish("market.trade.binance.BTC-USDT", schemas.encode(m))
            else:
                await nc.publish("market.trade.binance.BTC-USDT", schemas.encode(m))
        await _wait_stream(js, STREAM_MARKET, n)
        publish_rate = n / (time.perf_counter() - t0)
        sink = Proc("sinks", settings, "clickhouse", log=tmp / "sink.log").start()
        ready = None
        while True:
            try:
                got = int(
                    (await sqlmod.query(nc, "SELECT count() FROM trades", timeout=2)).rows[0][0]
                )
            except sqlmod.SqlError:
                await asyncio.sleep(0.05)
                continue
            now = time.perf_counter()
            if ready is None:
                ready = (now, got)
            if got >= n:
                break
            await asyncio.sleep(0.02)
        rate = (n - ready[1]) / max(now - ready[0], 1e-9)
        sink.stop()
        await nc.close()
        return rate, publish_rate
    finally:
        srv.stop()
        _remove(tmp)


async def bench_latency(rate: int, seconds: int) -> tuple[float, float, float, int]:
    """Emulator -> collector -> normalizer -> sink at a fixed offered load; latency from the
    collector's receive timestamp (ts_recv) to the row being visible to a query."""
    from streams import sql as sqlmod
    from streams.bus.connect import connect
    from tests.venues.binance.emulator import BinanceEmulator
    from tests.workers import Proc

    tmp = Path(tempfile.mkdtemp(prefix="jm-bench-lat-"))
    srv, settings = await _server(tmp)
    async with BinanceEmulator(["BTCUSDT", "ETHUSDT"], seed=9) as emu:
        settings = from_mapping(
            {**msgspec_to_dict(settings), "collector": {"binance": {
                "ws_url": emu.ws_url, "rest_url": emu.rest_url,
                "symbols": ["BTCUSDT", "ETHUSDT"], "channels": ["trade"]}},
             "sink": {"store_raw": False, "flush_interval_s": 0.05},
             "normalizer": {"consumer": {"durable": "normalizer", "fetch_timeout_s": 0.05}}}
        )  # fmt: skip
        procs = [
            Proc("collectors", settings, "binance", log=tmp / "collector.log").start(),
            Proc("normalizer", settings, log=tmp / "normalizer.log").start(),
            Proc("sinks", settings, "clickhouse", log=tmp / "sink.log").start(),
        ]
        nc = await connect(settings.nats, "bench")
        try:
            await emu.wait_connected(1, timeout=30)
            while True:
                try:
                    await sqlmod.query(nc, "SELECT 1", timeout=2)
                    break
                except sqlmod.SqlError:
                    await asyncio.sleep(0.1)
            polls: list[tuple[int, int]] = []
            n = rate * seconds
            emit = asyncio.create_task(emu.emit_trades(n, rate=rate, chunk=max(1, rate // 100)))
            while True:
                got = int((await sqlmod.query(nc, "SELECT count() FROM trades")).rows[0][0])
                polls.append((time.time_ns(), got))
                if got >= n and emit.done():
                    break
                await asyncio.sleep(0.005)
            res = await sqlmod.query(
                nc, "SELECT toUnixTimestamp64Nano(ts_recv) FROM trades ORDER BY stream_seq",
                max_rows=n + 1,
            )  # fmt: skip
            recv = [int(r[0]) for r in res.rows]
            lat = []
            j = 0
            for i, r in enumerate(recv):
                while polls[j][1] <= i:
                    j += 1
                lat.append((polls[j][0] - r) / 1e6)
            lat.sort()
            gaps = [b[0] - a[0] for a, b in itertools.pairwise(polls)]
            poll_ms = sorted(gaps)[len(gaps) // 2] / 1e6
            return lat[len(lat) // 2], lat[int(len(lat) * 0.99)], poll_ms, len(lat)
        finally:
            await nc.close()
            for p in procs:
                p.stop()
            srv.stop()
            _remove(tmp)


# -- real processes: emulator -> collector -> normalizer -> sink -------------------------

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
SINK_IN_LATENCY = True


def _emulator_main(port: int) -> None:
    """``python -m benchmarks.bench --emulator PORT``: the Binance emulator in its own process,
    emitting on ``POST /_bench/emit?n=&rate=&chunk=`` (answers when all are sent, with the
    send window). ``chunk`` sets the burst size: 1 ms of trades at the offered rate keeps
    the load steady instead of the emulator's default 200-frame bursts."""
    import uvloop
    from aiohttp import web

    from tests.venues.binance.emulator import BinanceEmulator

    class Emu(BinanceEmulator):
        def add_rest_routes(self, app: web.Application) -> None:
            super().add_rest_routes(app)
            app.router.add_post("/_bench/emit", self._bench_emit)

        async def _bench_emit(self, request: web.Request) -> web.Response:
            q = request.query
            n, rate, chunk = int(q["n"]), float(q["rate"]), int(q.get("chunk", "200"))
            t0 = time.time_ns()
            await self.emit_trades(n, rate=rate, chunk=chunk)
            return web.json_response({"t0": t0, "t1": time.time_ns(), "sent": self.frames_sent})

    async def run() -> None:
        emu = Emu(SYMBOLS, seed=9, port=port, depth_every=10**9)  # trades only
        await emu.start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    uvloop.run(run())


class Pipeline:
    """nats-server, the emulator and the collector, normalizer and sink as processes, all
    on this machine's cores; settings as ``make up`` has them except the venue URLs."""

    def __init__(self, name: str, sink: bool = True, store_raw: bool = True) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"jm-bench-{name}-"))
        self.with_sink = sink
        self.store_raw = store_raw
        self.procs: list[subprocess.Popen[bytes]] = []

    async def __aenter__(self) -> Pipeline:
        from streams.bus.connect import connect
        from tests.workers import Proc

        port = free_port()
        log = (self.tmp / "emulator.log").open("ab")
        self.emu = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench", "--emulator", str(port)],
            cwd=ROOT, stdout=log, stderr=log,
        )  # fmt: skip
        self.emu_url = f"http://127.0.0.1:{port}"
        self.srv, base = await _server(self.tmp)
        self.settings = from_mapping(
            {**msgspec_to_dict(base), "collector": {"binance": {
                "ws_url": f"ws://127.0.0.1:{port}", "rest_url": self.emu_url,
                "symbols": SYMBOLS, "channels": ["trade"]}},
             "sink": {"store_raw": self.store_raw}}
        )  # fmt: skip
        workers = [("collectors", "binance"), ("normalizer",)]
        if self.with_sink:
            workers.append(("sinks", "clickhouse"))
        self.workers = [
            Proc(w[0], self.settings, *w[1:], log=self.tmp / f"{w[0]}.log").start() for w in workers
        ]
        self.nc = await connect(self.settings.nats, "bench")
        await self._ready()
        return self

    async def _ready(self) -> None:
        import aiohttp

        from streams import sql as sqlmod

        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                try:
                    async with http.get(self.emu_url + "/_emu/stats") as r:
                        if (await r.json())["connections"] >= 1:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"collector never connected; logs in {self.tmp}")
        while self.with_sink:
            try:
                await sqlmod.query(self.nc, "SELECT 1", timeout=2)
                break
            except sqlmod.SqlError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sink never answered; logs in {self.tmp}") from None
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # the collector's REST snapshot/instruments settle

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU seconds so far of each process of the pipeline."""
        pids = {"emulator": self.emu.pid, "nats-server": self.srv.proc.pid}  # type: ignore[union-attr]
        pids.update({" ".join(w.cmd[2:]): w.p.pid for w in self.workers})  # type: ignore[union-attr]
        tick = os.sysconf("SC_CLK_TCK")
        out = {}
        for name, pid in pids.items():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[name] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        return out

    def peak_rss_mb(self) -> dict[str, float]:
        """Peak resident memory (VmHWM) so far of each process of the pipeline, MB."""
        pids = {"emulator": self.emu.pid, "nats-server": self.srv.proc.pid}  # type: ignore[union-attr]
        pids.update({" ".join(w.cmd[2:]): w.p.pid for w in self.workers})  # type: ignore[union-attr]
        out = {}
        for name, pid in pids.items():
            status = Path(f"/proc/{pid}/status").read_text()
            out[name] = int(status.split("VmHWM:")[1].split()[0]) / 1024
        return out

    async def emit(self, n: int, rate: float, chunk: int) -> tuple[int, int]:
        """Offer n trades at rate; (first, last) send time in ns."""
        import aiohttp

        url = f"{self.emu_url}/_bench/emit?n={n}&rate={rate}&chunk={chunk}"
        timeout = aiohttp.ClientTimeout(total=3600)
        async with aiohttp.ClientSession() as http, http.post(url, timeout=timeout) as r:
            got = await r.json()
        return int(got["t0"]), int(got["t1"])

    async def count(self, sql: str) -> list:  # type: ignore[type-arg]
        from streams import sql as sqlmod

        return (await sqlmod.query(self.nc, sql, timeout=10)).rows[0]

    async def __aexit__(self, *exc: object) -> None:
        await self.nc.close()
        for p in self.workers:
            p.stop()
        self.emu.terminate()
        self.emu.wait(10)
        self.srv.stop()
        _remove(self.tmp)


async def bench_e2e_throughput(rate: int, seconds: int, store_raw: bool = True) -> dict[str, float]:
    """Trades offered at a steady ``rate`` for ``seconds``; rows counted in ClickHouse as
    they land. Sustained = the slope of the stored count between 10% and 90% of the trades
    (steady state, free of the fixed pipeline delay at either end); overall = trades /
    (first send -> last row visible). Then every emitted trade is checked once: lost =
    offered - distinct stored, dup = stored - distinct."""
    n = rate * seconds
    async with Pipeline("e2e", store_raw=store_raw) as pl:
        polls: list[tuple[int, int]] = []
        cpu0 = pl.cpu_seconds()
        emit = asyncio.create_task(pl.emit(n, rate, max(1, rate // 1000)))
        stall = time.monotonic()
        while True:
            got = int((await pl.count("SELECT count() FROM trades"))[0])
            if not polls or got > polls[-1][1]:
                stall = time.monotonic()
            polls.append((time.time_ns(), got))
            if got >= n and emit.done():
                break
            if time.monotonic() - stall > 60:
                break  # nothing new for a minute: report what arrived
            await asyncio.sleep(0.25)
        t0, t1 = await emit
        done_ns = next((t for t, c in polls if c >= n), polls[-1][0])
        ta, ca = next(((t, c) for t, c in polls if c >= n // 10), polls[0])
        tb, cb = next(((t, c) for t, c in polls if c >= n * 9 // 10), polls[-1])
        at_send_end = max((c for t, c in polls if t <= t1), default=0)
        cpu1 = pl.cpu_seconds()
        rss = pl.peak_rss_mb()
        await asyncio.sleep(1.0)  # anything late or duplicated shows up too
        stored, distinct = map(
            int, await pl.count("SELECT count(), uniqExact(symbol, id) FROM trades")
        )
        raw = int((await pl.count("SELECT count() FROM raw_frames WHERE channel = 'trade'"))[0])
        load = os.getloadavg()[0]
    return {
        "offered": float(n), "offered_rate": n / ((t1 - t0) / 1e9),
        "sustained": (cb - ca) / max((tb - ta) / 1e9, 1e-9),
        "overall": distinct / ((done_ns - t0) / 1e9), "lost": float(n - distinct),
        "dup": float(stored - distinct), "raw_rows": float(raw),
        "backlog_at_send_end": float(n - at_send_end), "drain_s": (done_ns - t1) / 1e9,
        "loadavg": load,
        # CPU microseconds per offered trade, per process, from first send to last row
        **{f"cpu_us:{k}": (cpu1[k] - cpu0[k]) / n * 1e6 for k in cpu0},
        **{f"rss_mb:{k}": v for k, v in rss.items()},
    }  # fmt: skip


async def bench_recv_to_market(rate: int, seconds: int) -> dict[str, float]:
    """Latency from the raw frame's ``Jm-Recv-Ns`` (the collector's receive time, also the
    MARKET message's ``ts_recv``) to the MARKET trade's arrival at a core subscriber, over
    real processes at a steady ``rate``. Same-run baseline: the same frames' arrival on
    ``raw.>`` (collector -> NATS -> subscriber, no normalizer)."""
    n = rate * seconds
    async with Pipeline("lat", sink=SINK_IN_LATENCY) as pl:
        market: list[tuple[int, bytes]] = []
        raw: list[tuple[int, str]] = []
        now = time.time_ns

        async def on_market(m) -> None:  # type: ignore[no-untyped-def]
            market.append((now(), m.data))

        async def on_raw(m) -> None:  # type: ignore[no-untyped-def]
            raw.append((now(), m.headers.get(subjects.H_RECV_NS, "0")))

        jitter: list[float] = []

        async def probe() -> None:
            # how late this process wakes from a 1 ms sleep: the scheduling noise every
            # arrival stamp above carries on a shared, loaded 2-core box
            while True:
                t = time.perf_counter()
                await asyncio.sleep(0.001)
                jitter.append((time.perf_counter() - t - 0.001) * 1000)

        await pl.nc.subscribe("market.trade.binance.>", cb=on_market)
        await pl.nc.subscribe("raw.binance.trade.>", cb=on_raw)
        prober = asyncio.create_task(probe())
        await pl.emit(n, rate, max(1, rate // 1000))
        deadline = time.monotonic() + 30
        while len(market) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        prober.cancel()
    skip = n // 10  # the first second warms caches and connections
    lat = sorted((t - orjson.loads(d)["ts_recv"]) / 1e6 for t, d in market[skip:])
    base = sorted((t - int(r)) / 1e6 for t, r in raw[skip:])

    def pct(xs: list[float], q: float) -> float:
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")

    return {
        "samples": float(len(lat)), "received": float(len(market)), "offered": float(n),
        "p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "max": lat[-1] if lat else float("nan"),
        "raw_p50": pct(base, 0.5), "raw_p99": pct(base, 0.99),
        "jitter_samples": float(len(jitter)), "jitter_p50": pct(sorted(jitter), 0.5),
        "jitter_p99": pct(sorted(jitter), 0.99),
        "loadavg": os.getloadavg()[0],
    }  # fmt: skip


def msgspec_to_dict(settings: Settings) -> dict:
    import msgspec

    return msgspec.to_builtins(settings)


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nats_v = subprocess.run(
        [str(Path(sys.executable).parent / "nats-server"), "--version"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return (
        f"{platform.node()} · {cpu} · {os.cpu_count()} cores · Python {platform.python_version()}"
        f" · {nats_v}"
    )


async def bench_collector_publish(n: int) -> tuple[float, float]:
    """Frames/s through the collector's RawPublisher (subject, headers, kept frames, core
    publish, an acked barrier every 2000) next to bare ``nc.publish`` of the same bytes
    without headers, into RAW on a real nats-server."""
    from collectors.base import RawPublisher
    from streams.bus.connect import connect

    tmp = Path(tempfile.mkdtemp(prefix="jm-bench-coll-"))
    srv, settings = await _server(tmp)
    try:
        nc = await connect(settings.nats, "bench")
        js = nc.jetstream()  # the streams: provisioned by _server
        frames = gen_trades(n)
        pub = RawPublisher(nc, js, "binance", 2000)
        t0 = time.perf_counter()
        for i, f in enumerate(frames):
            await pub.publish("trade", "BTCUSDT", f, 1_700_000_000_000_000_000 + i, "bench-1")
        await pub.publish("trade", "BTCUSDT", frames[0], 1, "bench-1", durable=True)
        ours = n / (time.perf_counter() - t0)
        subject = subjects.raw("binance", "trade", "ETHUSDT")
        t0 = time.perf_counter()
        for i, f in enumerate(frames, 1):
            if i % 2000 == 0:  # the same confirmed bursts
                await js.publish(subject, f, stream=STREAM_RAW)
            else:
                await nc.publish(subject, f)
        await js.publish(subject, frames[0], stream=STREAM_RAW)
        base = n / (time.perf_counter() - t0)
        await nc.close()
        return ours, base
    finally:
        srv.stop()
        _remove(tmp)


KEPT = "<!-- kept by make bench: everything below is written by hand -->"


def _goal(ok: bool) -> str:
    return "met" if ok else "**not met**"


def bench_nats_request(n: int = 2000) -> tuple[float, float]:
    """Same-run floor for the executor's request path: a core request/reply round trip to
    an echo responder in another process (p50, p99 ms)."""
    import uvloop

    async def run() -> tuple[float, float]:
        from streams.bus.connect import connect

        tmp = Path(tempfile.mkdtemp(prefix="jm-bench-req-"))
        srv, settings = await _server(tmp)
        echo = subprocess.Popen(
            [sys.executable, "-c", _ECHO, srv.url, str(tmp / "creds" / "admin")],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        try:
            assert echo.stdout is not None
            await asyncio.get_running_loop().run_in_executor(None, echo.stdout.readline)
            nc = await connect(settings.nats, "bench")
            lat = []
            for i in range(n + 200):
                t0 = time.perf_counter()
                await nc.request("bench.echo", b"x" * 300, timeout=5)
                if i >= 200:
                    lat.append((time.perf_counter() - t0) * 1000)
            await nc.close()
        finally:
            echo.terminate()
            echo.wait(10)
            srv.stop()
            _remove(tmp)
        lat.sort()
        return lat[len(lat) // 2], lat[int(len(lat) * 0.99)]

    return uvloop.run(run())


_ECHO = """
import sys, uvloop, nats
async def main():
    pw = open(sys.argv[2]).read().strip()  # the bench server's admin (auth is always on)
    nc = await nats.connect(sys.argv[1], user="admin", password=pw)
    async def cb(m):
        await m.respond(m.data)
    await nc.subscribe("bench.echo", cb=cb)
    await nc.flush()
    print("ready", flush=True)
    await __import__("asyncio").Event().wait()
uvloop.run(main())
"""


def bench_research_goals(rp_col: list, bt: dict) -> list[str]:  # type: ignore[type-arg]
    """Issue 22's goals rows: typed columnar replay against the raw scan, backtest events/s,
    a 4-run sweep against 4 x a single run."""
    rate = {(d, w): r["messages"] / r["seconds"] for d, w, r in rp_col if r["seconds"] > 0}
    out = []
    for data in ("trades", "trades + depth"):
        scan = rate[(data, "scan")]
        for src in ("clickhouse", "parquet"):
            typed = rate[(data, f"{src}_typed")]
            out.append(
                f"| typed columnar replay from {src} ({data}) >= 1M msg/s and >= 0.5 of the raw"
                f" scan (issue 22) | {typed:,.0f} msg/s, {typed / scan:.2f} of the scan |"
                f" ClickHouse raw scan {scan:,.0f} msg/s |"
                f" {_goal(typed >= 1_000_000 and typed / scan >= 0.5)} |"
            )
    ev = {}
    for src in ("clickhouse", "parquet"):
        x = bt[src]
        ev[src] = x["events"] // len(x["digests"]) / x["run_seconds"]
    out.append(
        f"| research backtest >= 300k events/s (issue 22) | ClickHouse {ev['clickhouse']:,.0f},"
        f" Parquet {ev['parquet']:,.0f} events/s | | {_goal(min(ev.values()) >= 300_000)} |"
    )
    single = bt["parquet"]["seconds"]
    best = min(bt[m]["seconds"] for m in ("sequential", "parallel"))
    out.append(
        f"| a 4-run sweep vs 4 x a single run (issue 22: reported) | {best:.2f} s"
        f" ({best / (4 * single):.2f} of 4 x single) | 4 x single {4 * single:.2f} s | |"
    )
    return out


def main() -> None:
    import uvloop

    from benchmarks import bench_ccxt, bench_cryptofeed, bench_executor, bench_replay, bench_venues

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    t_start = time.monotonic()
    print("in-process normalizer ...", flush=True)
    inproc = bench_in_process()
    print("in-process parsers, every venue/channel ...", flush=True)
    venues = list(bench_venues.all_venues())
    print("in-process parsers next to ccxt pro's on the same frames ...", flush=True)
    vs_ccxt = bench_ccxt.bench()
    print("in-process parsers next to cryptofeed's, real recorded frames ...", flush=True)
    vs_cryptofeed = bench_cryptofeed.measure()  # None without its throwaway venv
    n = 200_000
    print(f"raw -> market over NATS, {n} trade frames ...", flush=True)
    # three rounds, each relay then normalizer on a fresh server: the box's load swings
    # between rounds, so the figure is the round with the median ratio (all are listed)
    rounds = [uvloop.run(bench_over_nats(n)) for _ in range(3)]
    norm, relay = sorted(rounds, key=lambda r: r[0] / r[1])[1]
    print("collector raw publishing ...", flush=True)
    coll, coll_base = uvloop.run(bench_collector_publish(n))
    print("order book ...", flush=True)
    ob, ob_dict, ob_levels = bench_orderbook(200_000)
    print("sink: MARKET backlog -> chdb ...", flush=True)
    sink_rate, publish_rate = uvloop.run(bench_sink(n))
    # offered above the goal, so the sustained rate shows the pipeline's capacity rather
    # than the offered rate (at exactly 30k, noise alone put it either side of the goal)
    e2e_rate, e2e_s = 33_000, 30
    print(f"end to end throughput, {e2e_rate} trades/s offered for {e2e_s} s ...", flush=True)
    e2e = uvloop.run(bench_e2e_throughput(e2e_rate, e2e_s))
    print("end to end throughput again, sink.store_raw off ...", flush=True)
    e2e_nr = uvloop.run(bench_e2e_throughput(e2e_rate, e2e_s, store_raw=False))
    r2m_rate, r2m_s = 5000, 10
    print(f"recv -> market latency at {r2m_rate} trades/s ...", flush=True)
    # five runs (issue 24: p99 <= 5 ms in at least 4 of 5); the section shows the median run
    r2m_runs = [uvloop.run(bench_recv_to_market(r2m_rate, r2m_s)) for _ in range(5)]
    r2m = sorted(r2m_runs, key=lambda r: r["p99"])[2]
    r2m_met = sum(r["p99"] <= 5.0 for r in r2m_runs)
    lat_rate, lat_s = 2000, 10
    print(f"recv -> row visible latency at {lat_rate} trades/s ...", flush=True)
    p50, p99, poll_ms, samples = uvloop.run(bench_latency(lat_rate, lat_s))
    print("executor command -> ack ...", flush=True)
    ex = uvloop.run(bench_executor.bench(2000))
    req_p50, req_p99 = bench_nats_request(2000)
    print("replay ...", flush=True)
    rp = uvloop.run(bench_replay.measure(n))
    print("columnar replay ...", flush=True)
    rp_col = bench_replay.measure_columnar()
    print("research backtest ...", flush=True)
    from benchmarks import bench_backtest

    bt = bench_backtest.measure()
    print("execution algorithms: child-order scheduling ...", flush=True)
    from benchmarks import bench_algo

    algo = bench_algo.measure()
    print("private-stream fill latency (Binance user data over ccxt pro) ...", flush=True)
    from benchmarks import bench_api, bench_private

    private = bench_private.measure()
    print("API WebSocket fan-out: 50 clients, market.trade.> at 10k msg/s ...", flush=True)
    fanout = uvloop.run(bench_api.run())
    elapsed = time.monotonic() - t_start

    worst = min((ours / base, v, ch) for v, rows in venues for ch, ours, base in rows)
    ccxt_worst = min((ours / cc, v, ch) for v, rows in vs_ccxt for ch, ours, cc in rows)
    n_ccxt = sum(len(rows) for _, rows in vs_ccxt)
    below = [(v, ch, ours / base) for v, rows in venues for ch, ours, base in rows
             if ours / base < 0.4]  # fmt: skip
    r2m_p99s = " / ".join(f"{r['p99']:.1f}" for r in r2m_runs)
    r2m_raw_p99s = " / ".join(f"{r['raw_p99']:.1f}" for r in r2m_runs)
    rounds_text = ", ".join(f"{m / r:.2f}" for m, r in rounds)
    cryptofeed_goal = []
    if vs_cryptofeed:  # (channel, frames, ours/s, theirs/s, json ours, json theirs, pure/s)
        cf = min((row[2] / row[3], row[0]) for row in vs_cryptofeed)
        cryptofeed_goal.append(
            f"| parsing >= 3x cryptofeed's handlers on every channel both handle, real recorded"
            f" frames (issue 24) | worst {cf[0]:.2f}x ({cf[1]}); {len(vs_cryptofeed)} channels;"
            f" pure Python without the C part: worst"
            f" {min(row[6] / row[3] for row in vs_cryptofeed):.2f}x | cryptofeed in the same"
            f" run | {_goal(cf[0] >= 3.0)} |"
        )
    research_goals = bench_research_goals(rp_col, bt)
    lines = [
        "# Benchmarks",
        "",
        f"Run {started} with `make bench` (`python -m benchmarks.bench`,"
        f" {elapsed / 60:.1f} min) on:",
        f"{machine()}.",
        "Each figure sits next to a baseline measured in the same run, and its goal (issue #9).",
        "The machines are noisy shared 2-core boxes (other work ran alongside), so the ratio is",
        "the figure to compare between runs.",
        "",
        "## Goals",
        "",
        "| goal | measured | same-run baseline | verdict |",
        "|---|---:|---:|---|",
        f"| normalizer over NATS >= 0.85 of a do-nothing relay (issue 24; median of 3 rounds)"
        f" | {norm / relay:.2f} of relay ({rounds_text}) |"
        f" relay {relay:,.0f} msg/s | {_goal(norm / relay >= 0.85)} |",
        f"| normalizer over NATS >= 60k msg/s | {norm:,.0f} msg/s | relay {relay:,.0f} msg/s |"
        f" {_goal(norm >= 60_000)} |",
        f"| end to end collector -> ClickHouse >= 50k msg/s sustained, 0 lost, 0 dup"
        f" (issue 24; 30k in issue 9) |"
        f" {e2e['sustained']:,.0f} msg/s, lost {e2e['lost']:.0f}, dup {e2e['dup']:.0f}"
        f" (`store_raw` off: {e2e_nr['sustained']:,.0f} msg/s, lost {e2e_nr['lost']:.0f},"
        f" dup {e2e_nr['dup']:.0f}) | offered {e2e['offered_rate']:,.0f} msg/s |"
        f" {_goal(e2e['sustained'] >= 50_000 and e2e['lost'] == 0 and e2e['dup'] == 0)} |",
        f"| recv -> market p99 <= 5 ms at {r2m_rate} msg/s in at least 4 of 5 runs |"
        f" p99 {r2m_p99s} ms ({r2m_met} of 5 met) | recv -> raw p99 {r2m_raw_p99s} ms |"
        f" {_goal(r2m_met >= 4)} |",
        *cryptofeed_goal,
        *research_goals,
        f"| in-process parsing >= 2.5x a leading Python feed handler's parser (ccxt pro,"
        f" offline), every compared venue/channel | worst {ccxt_worst[0]:.1f}x"
        f" ({ccxt_worst[1]} {ccxt_worst[2]}); {n_ccxt} channels of {len(vs_ccxt)} venues |"
        f" ccxt pro's"
        f" per-message path on the same frames | {_goal(ccxt_worst[0] >= 2.5)} |",
        f"| (fallback) in-process parsing >= 40% of `orjson.loads`, every venue/channel |"
        f" worst {worst[0]:.2f} ({worst[1]} {worst[2]}); {len(below)} of"
        f" {sum(len(r) for _, r in venues)} below 0.40 | `orjson.loads` of the same frames |"
        f" {_goal(not below)} |",
        f"| executor command -> ack p99 <= 5 ms (paper) | p99 {ex['request_p99_ms']:.2f} ms"
        f" (p50 {ex['request_p50_ms']:.2f}) | NATS request/reply to an echo: p99"
        f" {req_p99:.2f} ms (p50 {req_p50:.2f}) | {_goal(ex['request_p99_ms'] <= 5.0)} |",
        f"| replay from JetStream >= 80k msg/s | raw {rp['jetstream_raw']:,.0f},"
        f" market {rp['jetstream_market']:,.0f} msg/s | relay {relay:,.0f} msg/s |"
        f" {_goal(min(rp['jetstream_raw'], rp['jetstream_market']) >= 80_000)} |",
        "",
        "## Normalizer, in process (Binance spot, generated frames; best of 3)",
        "",
        "| frames | normalize: decode+validate+encode msg/s | `orjson.loads` msg/s | ratio |",
        "|---|---:|---:|---:|",
    ]
    for name, ours, base in inproc:
        lines.append(f"| {name} | {ours:,.0f} | {base:,.0f} | {ours / base:.2f} |")
    lines += table(
        "Parsers, in process, every venue and channel (benchmarks/bench_venues.py; best of 3)",
        """\
The venue's parser (typed decode, validation, symbol mapping, typed encode of every
output message) next to `orjson.loads` alone on the same frames. Goal: ratio >= 0.40.
A frame that becomes several messages pays for each (Bybit tickers: ticker, mark,
funding and open interest from one frame; Coinbase/Kraken tickers: bbo + ticker).""",
        columns="| venue | channel | parser msg/s | `orjson.loads` msg/s | ratio |",
        align="llrrr",
    )
    for venue, rows in venues:
        for ch, ours, base in rows:
            mark = "" if ours / base >= 0.4 else " (below goal)"
            lines.append(
                f"| {venue} | {ch} | {ours:,.0f} | {base:,.0f} | {ours / base:.2f}{mark} |"
            )
    lines += table(
        "Parsers next to ccxt pro's, in process, same frames (benchmarks/bench_ccxt.py)",
        """\
ccxt pro (MIT, already our REST library) is the leading Python feed handler that can
run here: cryptofeed needs `order_book` (GPLv3) and nautilus_trader is LGPL, so
neither is installed. Per frame, ccxt's WebSocket client's own entry point
`handle_text_or_binary_message` (JSON decode, dispatch, parse into its unified
structure, cache) against our parser (typed decode, validation, typed encode); no
socket, markets built by ccxt from our emulators' instrument lists. Best of 3 each,
passes interleaved. Left out: book channels (ccxt's handlers also maintain a sorted
book, which our normalizer leaves to the order-book service), Coinbase candles and
Kraken instruments (ccxt has no handler for them). Goal: >= 2.5x.""",
        columns="| venue | channel | our parser frames/s | ccxt pro frames/s | ours / ccxt |",
        align="llrrr",
    )
    for venue, rows in vs_ccxt:
        for ch, ours, cc in rows:
            lines.append(f"| {venue} | {ch} | {ours:,.0f} | {cc:,.0f} | {ours / cc:.1f}x |")
    lines += bench_cryptofeed.lines(vs_cryptofeed)
    lines += [
        "",
        f"## RAW -> MARKET over NATS ({n:,} Binance trade frames already in RAW)",
        "",
        "Both consume RAW with the same durable consumer (push into a buffer, batches of 2000,",
        "AckAll) and publish each batch as one write of core publishes plus one acked",
        "JetStream publish; the relay republishes bytes untouched (no headers), the",
        "normalizer parses, validates, encodes and sets `Nats-Msg-Id` on every message.",
        "Goals: >= 0.80 of the relay and >= 60k msg/s. Three rounds (relay, then normalizer,",
        "on a fresh nats-server each); the goals table uses the round with the median ratio.",
        "",
        "| round | do-nothing relay (RAW -> RELAY) msg/s | normalizer (RAW -> MARKET) msg/s |"
        " ratio to relay |",
        "|---|---:|---:|---:|",
        *[
            f"| {i} | {r:,.0f} | {m:,.0f} | {m / r:.2f}{' (median)' if m == norm else ''} |"
            for i, (m, r) in enumerate(rounds, 1)
        ],
        "",
        f"## End to end throughput: emulator -> collector -> normalizer -> sink ({e2e_rate:,}"
        f" trades/s offered for {e2e_s} s)",
        "",
        "Every part is its own process on the same 2 cores: nats-server, the Binance emulator",
        "(WebSocket, 1 ms bursts), `python -m collectors binance`, `python -m normalizer`,",
        "`python -m sinks clickhouse` (chdb, `store_raw` on as in `make up`: every trade is",
        "also a `raw_frames` row). Every offered trade is then looked up: lost = offered -",
        "distinct stored, dup = stored rows - distinct. Goal: >= 30k msg/s, 0 lost, 0 dup;",
        "more than that is offered, so the sustained rate is what the pipeline keeps up with.",
        "Sustained is the slope of the stored-row count from 10% to 90% of the trades (the",
        "steady state); overall divides all trades by first send -> last row visible, so it",
        "also carries the fixed delay at both ends (sink flush interval 0.5 s, polling).",
        "",
        "| offered | offered rate | sustained | overall | lost | dup | raw_frames rows |"
        " rows not yet visible when sending ended | drain after sending |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {r['offered']:,.0f} | {r['offered_rate']:,.0f} msg/s |"
            f" {r['sustained']:,.0f} msg/s | {r['overall']:,.0f} msg/s |"
            f" {r['lost']:.0f} | {r['dup']:.0f} | {r['raw_rows']:,.0f} |"
            f" {r['backlog_at_send_end']:,.0f} | {r['drain_s']:.1f} s |"
            for r in (e2e, e2e_nr)
        ],
        "",
        "The second row is the same run with `sink.store_raw = false` (no `raw_frames` rows:",
        "the sink consumes MARKET only), to show how much of the box the raw copy takes.",
        f"1-minute load average at the end of each: {e2e['loadavg']:.1f} and"
        f" {e2e_nr['loadavg']:.1f} on 2 cores.",
        "",
        "Where the 2 cores went: CPU time of each process from the first trade sent to the",
        "last row visible, per offered trade (user + system, /proc), and the trades/s one",
        "core could carry at that cost. The sink's figure includes chdb, the ClickHouse",
        "engine running inside it.",
        "",
        "| process | CPU us/trade, `store_raw` on | trades/s per core | `store_raw` off |"
        " trades/s per core | peak RSS MB, on / off |",
        "|---|---:|---:|---:|---:|---:|",
        *[
            f"| {k[7:]} | {e2e[k]:.1f} | {1e6 / e2e[k]:,.0f} | {e2e_nr[k]:.1f} |"
            f" {1e6 / e2e_nr[k]:,.0f} |"
            f" {e2e.get('rss_mb:' + k[7:], 0):.0f} / {e2e_nr.get('rss_mb:' + k[7:], 0):.0f} |"
            for k in e2e
            if k.startswith("cpu_us:") and e2e[k] > 0 and e2e_nr.get(k, 0) > 0
        ],
        f"| all | {sum(v for k, v in e2e.items() if k.startswith('cpu_us:')):.1f} |"
        f" {1e6 / sum(v for k, v in e2e.items() if k.startswith('cpu_us:')):,.0f} |"
        f" {sum(v for k, v in e2e_nr.items() if k.startswith('cpu_us:')):.1f} |"
        f" {1e6 / sum(v for k, v in e2e_nr.items() if k.startswith('cpu_us:')):,.0f} |"
        f" {sum(v for k, v in e2e.items() if k.startswith('rss_mb:')):.0f} /"
        f" {sum(v for k, v in e2e_nr.items() if k.startswith('rss_mb:')):.0f} |",
        "",
        f"## recv -> market latency at {r2m_rate:,} trades/s for {r2m_s} s (the median of five"
        " runs by p99; every run's p99 is in the goals table)",
        "",
        "Same processes as above. A core subscriber on `market.trade.binance.>` stamps each",
        "message's arrival; latency = arrival - the raw frame's `Jm-Recv-Ns` (carried as",
        "`ts_recv`). Baseline: the same frames' arrival on `raw.binance.trade.>` (collector",
        "-> NATS -> subscriber, no normalizer). The first second is left out (warm-up).",
        "Goal: p99 <= 5 ms.",
        "",
        "| path | samples | p50 | p99 | max |",
        "|---|---:|---:|---:|---:|",
        f"| recv -> MARKET message at a subscriber | {r2m['samples']:,.0f} |"
        f" {r2m['p50']:.2f} ms | {r2m['p99']:.2f} ms | {r2m['max']:.1f} ms |",
        f"| baseline: recv -> RAW frame at a subscriber | {r2m['samples']:,.0f} |"
        f" {r2m['raw_p50']:.2f} ms | {r2m['raw_p99']:.2f} ms | |",
        f"| noise: the subscriber's wake-up lateness after a 1 ms sleep |"
        f" {r2m['jitter_samples']:,.0f} | {r2m['jitter_p50']:.2f} ms |"
        f" {r2m['jitter_p99']:.2f} ms | |",
        "",
        f"1-minute load average at the end: {r2m['loadavg']:.1f} on 2 cores.",
        "",
        f"## Collector: raw frames published ({n:,} Binance trade frames, real nats-server)",
        "",
        "`RawPublisher.publish` per frame (subject, `Jm-Recv-Ns`/`Jm-Conn` headers, the frame",
        "kept until its barrier, core publish, an acked barrier every 2000) next to bare",
        "`nc.publish` of the same bytes without headers, same barriers. No WebSocket here.",
        "",
        "| publisher | frames/s | ratio |",
        "|---|---:|---:|",
        f"| collector RawPublisher | {coll:,.0f} | {coll / coll_base:.2f} |",
        f"| bare core publish, no headers | {coll_base:,.0f} | 1.00 |",
        "",
        f"## Order book: validated level updates ({ob_levels:,} levels in 200,000 deltas)",
        "",
        "BookState applies Binance's sequence rule per delta, keeps both sides sorted",
        "(sortedcontainers) and checks for a crossed book after every delta; the baseline",
        "writes the same levels into two plain dicts (no order, no checks).",
        "",
        "| book | level updates/s | ratio |",
        "|---|---:|---:|",
        f"| validated L2 book (one core) | {ob:,.0f} | {ob / ob_dict:.2f} |",
        f"| plain dict book | {ob_dict:,.0f} | 1.00 |",
        "",
        f"## ClickHouse sink ({n:,} trades waiting in MARKET, chdb, column-oriented inserts)",
        "",
        "| what | rate | note |",
        "|---|---:|---|",
        f"| sink: MARKET -> rows visible in `trades` | {sink_rate:,.0f} rows/s | goal >= 100k |",
        f"| baseline: core publish of the same messages into MARKET | {publish_rate:,.0f} msg/s |"
        " same run |",
        "",
        f"## recv -> row visible in ClickHouse, {lat_rate} trades/s for {lat_s} s",
        "",
        "Latency from the collector's receive time (`ts_recv`) to the row being visible to a",
        f"query, measured by polling `count()` every ~{poll_ms:.1f} ms (the poll interval is",
        "part of the figure; the sink flushes every 50 ms here). All processes share the 2",
        "cores.",
        "",
        "| samples | p50 | p99 |",
        "|---:|---:|---:|",
        f"| {samples:,} | {p50:.1f} ms | {p99:.1f} ms |",
        "",
        "## Executor: command -> ack on the paper venue (benchmarks/bench_executor.py)",
        "",
        "`python -m executor` as its own process; limit orders that rest, one at a time.",
        "Request path: `ctl.exec.<account>` request -> accept reply (events already stored).",
        "Stream path: JetStream publish on `exec.cmd.<account>` -> the order's first update",
        "on `exec.evt.<account>.>`. Baseline: a bare NATS request/reply to an echo process.",
        "",
        "| path | orders | p50 | p99 | goal |",
        "|---|---:|---:|---:|---|",
        f"| request -> accept | {ex['orders']:,.0f} | {ex['request_p50_ms']:.2f} ms |"
        f" {ex['request_p99_ms']:.2f} ms | p99 <= 5 ms |",
        f"| command on EXEC -> first update | {ex['orders']:,.0f} | {ex['stream_p50_ms']:.2f} ms |"
        f" {ex['stream_p99_ms']:.2f} ms | |",
        f"| baseline: NATS request/reply to an echo | 2,000 | {req_p50:.2f} ms |"
        f" {req_p99:.2f} ms | |",
        "",
        f"## Replay at max speed ({rp['messages']:,.0f} messages; benchmarks/bench_replay.py)",
        "",
        "The full `Replay` path (consumer, reorder, merge, typed decode for MARKET), unpaced.",
        f"Goal: >= 80k msg/s from JetStream. Baseline: the relay above ({relay:,.0f} msg/s).",
        "",
        "| source | msg/s |",
        "|---|---:|",
    ]
    for key, value in rp.items():
        if key != "messages":
            lines.append(f"| {key.replace('_', ' ')} | {value:,.0f} |")
    lines.append("")
    lines += bench_replay.columnar_lines(rp_col)
    lines += bench_backtest.lines(bt)
    lines += bench_algo.lines(algo)
    lines += bench_private.lines(private)
    lines += table(
        "API WebSocket fan-out (benchmarks/bench_api.py)",
        """\
50 WebSocket clients of `jetmarket api` subscribed to `market.trade.>` while trades are
published at 10k msg/s for 10 s, next to one direct NATS subscriber in the same run (the
baseline). Goal: every message delivered, no client dropped.""",
        columns="| delivered msg/s | goal msg/s | direct p50 / p99 ms | WebSocket p50 / p99 ms"
        " | added p99 ms | API CPU | clients dropped |",
        align="rrrrrrr",
    )
    f = fanout
    lines += [
        f"| {f['delivered_rate']:,} | {f['goal_rate']:,} | {f['direct_p50_ms']} /"
        f" {f['direct_p99_ms']} | {f['ws_p50_ms']} / {f['ws_p99_ms']} | {f['added_p99_ms']} |"
        f" {f['api_cpu_pct']}% | {f['dropped_clients']} |",
        "",
    ]
    text = "\n".join(lines)
    out = ROOT / "BENCHMARKS.md"
    # sections written by hand (before/after comparisons, figures from other runs) follow
    # KEPT in the file and survive a new `make bench`
    old = out.read_text() if out.exists() else ""
    kept = old[old.index(KEPT) :] if KEPT in old else ""
    out.write_text(text + ("\n" + kept if kept else ""))
    print(text)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--emulator"]:
        _emulator_main(int(sys.argv[2]))
    else:
        main()
