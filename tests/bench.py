"""``make bench``: measure, then write BENCHMARKS.md with the machine and the command.

Every rate is printed next to a baseline measured in the same run on the same frames,
because these 2-core machines are noisy: the ratio is the number to watch.
"""

from __future__ import annotations

import asyncio
import itertools
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from normalizer.core import Normalizer
from normalizer.worker import NormalizerWorker
from streams import subjects
from streams.consumer import BatchConsumer, publish_batch
from streams.natsserver import NatsServer, free_port
from streams.provision import STREAM_MARKET, STREAM_RAW
from streams.runtime import Worker, start_worker
from streams.settings import ConsumerSettings, NatsServerSettings, Settings, from_mapping

ROOT = Path(__file__).resolve().parents[1]
HDR = {subjects.H_RECV_NS: "1700000000000000000", subjects.H_CONN: "bench"}


def gen_trades(n: int, sym: str = "BTCUSDT", seed: int = 1) -> list[bytes]:
    rnd = random.Random(seed)
    px = 6_500_000  # cents
    out = []
    for i in range(n):
        px = max(1, px + rnd.randint(-5, 5))
        data = {"e": "trade", "E": 1700000000000 + i, "s": sym, "t": i + 1,
                "p": f"{px // 100}.{px % 100:02d}", "q": f"0.{rnd.randint(1, 99999):05d}",
                "T": 1700000000000 + i, "m": rnd.random() < 0.5, "M": True}  # fmt: skip
        out.append(orjson.dumps({"stream": f"{sym.lower()}@trade", "data": data}))
    return out


def gen_depth(n: int, sym: str = "BTCUSDT", levels: int = 10, seed: int = 2) -> list[bytes]:
    rnd = random.Random(seed)
    out, u = [], 1000
    for i in range(n):

        def side(base: int, sign: int) -> list[list[str]]:
            return [[f"{(base + sign * k) // 100}.{(base + sign * k) % 100:02d}",
                     f"{rnd.randint(0, 5)}.{rnd.randint(0, 99999):05d}"]
                    for k in range(levels)]  # fmt: skip

        data = {"e": "depthUpdate", "E": 1700000000000 + i, "s": sym, "U": u + 1, "u": u + 3,
                "b": side(6_499_990, -1), "a": side(6_500_010, 1)}  # fmt: skip
        u += 3
        out.append(orjson.dumps({"stream": f"{sym.lower()}@depth@100ms", "data": data}))
    return out


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
    """The do-nothing baseline: same consumer, same publish/ack pattern, bytes untouched."""
    assert w.js is not None and w.nc is not None
    c = BatchConsumer(w.js, STREAM_RAW, ConsumerSettings(durable="relay", batch=2000), "raw.>")
    await c.start()
    done = 0
    while done < n:
        msgs = await c.fetch()
        if not msgs:
            continue
        await publish_batch(w.nc, [("relay.out", None, m.data) for m in msgs[:-1]])
        await w.js.publish("relay.out", msgs[-1].data, stream="RELAY")
        await c.ack_through(msgs[-1])
        done += len(msgs)
    await c.stop()


async def bench_over_nats(n: int) -> tuple[float, float]:
    tmp = Path(tempfile.mkdtemp(prefix="jm-bench-"))
    srv_cfg = NatsServerSettings(
        port=free_port(), monitor_port=free_port(), store_dir=str(tmp / "nats")
    )
    srv = NatsServer(srv_cfg, log_file=tmp / "nats.log").start()
    try:
        settings: Settings = from_mapping(
            {"nats": {"url": srv.url}, "metrics": {"ports": {}}, "log": {"level": "WARNING"}}
        )
        w = Worker("bench", settings)
        await start_worker(w)
        assert w.js is not None and w.nc is not None
        from nats.js.api import StreamConfig

        await w.js.add_stream(StreamConfig(name="RELAY", subjects=["relay.>"]))
        await _fill_raw(w.nc, gen_trades(n), w.js)

        t0 = time.perf_counter()
        await _relay(w, n)
        await _wait_stream(w.js, "RELAY", n)
        relay = n / (time.perf_counter() - t0)

        t0 = time.perf_counter()
        nw = NormalizerWorker(w)
        task = asyncio.create_task(nw.run())
        await _wait_stream(w.js, STREAM_MARKET, n)
        norm = n / (time.perf_counter() - t0)
        w.stop.set()
        await task
        await w.nc.drain()
        return norm, relay
    finally:
        srv.stop()


def bench_orderbook(n: int) -> tuple[float, float, int]:
    """Validated level updates/s through BookState (sequence rule, sorted book, crossed
    check) next to the same levels written into two plain dicts."""
    from orderbook.sync import BookState
    from orderbook.venues.binance import BinanceSpot
    from tests.test_orderbook_sync import TrueBook

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
    srv = NatsServer(srv_cfg, log_file=tmp / "nats.log").start()
    settings = from_mapping(
        {
            "nats": {"url": srv.url},
            "clickhouse": {"dsn": f"chdb://{tmp / 'ch'}"},
            "metrics": {"ports": {}},
            "log": {"level": "WARNING"},
            "sink": {"store_raw": False},
        }
    )
    return srv, settings


async def bench_sink(n: int) -> tuple[float, float]:
    """Rows/s from a MARKET backlog into chdb, and the raw publish rate for scale."""
    from streams import schemas
    from streams import sql as sqlmod
    from streams.connect import connect
    from tests.workers import Proc

    tmp = Path(tempfile.mkdtemp(prefix="jm-bench-sink-"))
    srv, settings = await _server(tmp)
    try:
        nc = await connect(settings.nats, "bench")
        js = nc.jetstream()
        from streams.provision import provision

        await provision(js, settings)
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


async def bench_latency(rate: int, seconds: int) -> tuple[float, float, float, int]:
    """Emulator -> collector -> normalizer -> sink at a fixed offered load; latency from the
    collector's receive timestamp (ts_recv) to the row being visible to a query."""
    from streams import sql as sqlmod
    from streams.connect import connect
    from tests.emulator.binance import BinanceEmulator
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
    import os

    nats_v = subprocess.run(
        [str(Path(sys.executable).parent / "nats-server"), "--version"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return (
        f"{platform.node()} · {cpu} · {os.cpu_count()} cores · Python {platform.python_version()}"
        f" · {nats_v}"
    )


def main() -> None:
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print("in-process normalizer ...", flush=True)
    inproc = bench_in_process()
    n = 200_000
    print(f"raw -> market over NATS, {n} trade frames ...", flush=True)
    import uvloop

    norm, relay = uvloop.run(bench_over_nats(n))
    print("order book ...", flush=True)
    ob, ob_dict, ob_levels = bench_orderbook(200_000)
    print("sink: MARKET backlog -> chdb ...", flush=True)
    sink_rate, publish_rate = uvloop.run(bench_sink(n))
    lat_rate, lat_s = 2000, 10
    print(f"end-to-end latency at {lat_rate} trades/s ...", flush=True)
    p50, p99, poll_ms, samples = uvloop.run(bench_latency(lat_rate, lat_s))
    lines = [
        "# Benchmarks",
        "",
        f"Run {started} with `make bench` (`python -m tests.bench`) on: {machine()}.",
        "Each rate sits next to a baseline measured in the same run on the same frames;",
        "the machines are noisy 2-core boxes, so the ratio is the figure to compare.",
        "",
        "## Normalizer, in process (Binance spot, generated frames; best of 3)",
        "",
        "| frames | normalize: decode+validate+encode msg/s | `orjson.loads` msg/s | ratio |",
        "|---|---:|---:|---:|",
    ]
    for name, ours, base in inproc:
        lines.append(f"| {name} | {ours:,.0f} | {base:,.0f} | {ours / base:.2f} |")
    lines += [
        "",
        f"## RAW -> MARKET over NATS ({n:,} Binance trade frames already in RAW)",
        "",
        "Both consume RAW with the same durable consumer (push into a buffer, batches of 2000,",
        "AckAll) and publish each batch with core publishes plus one acked JetStream publish;",
        "the relay republishes bytes untouched, the normalizer parses, validates and encodes.",
        "",
        "| pipeline | msg/s | ratio to relay |",
        "|---|---:|---:|",
        f"| do-nothing relay (RAW -> RELAY stream) | {relay:,.0f} | 1.00 |",
        f"| normalizer worker (RAW -> MARKET stream) | {norm:,.0f} | {norm / relay:.2f} |",
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
        f"## End to end: emulator -> collector -> normalizer -> sink, {lat_rate} trades/s for"
        f" {lat_s} s",
        "",
        "Latency from the collector's receive time (`ts_recv`) to the row being visible to a",
        f"query, measured by polling `count()` every ~{poll_ms:.1f} ms (the poll interval is",
        "part of the figure). All four processes share the 2 cores.",
        "",
        "| samples | p50 | p99 |",
        "|---:|---:|---:|",
        f"| {samples:,} | {p50:.1f} ms | {p99:.1f} ms |",
        "",
    ]
    text = "\n".join(lines)
    (ROOT / "BENCHMARKS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
