"""``make bench``: measure, then write BENCHMARKS.md with the machine and the command.

Every rate is printed next to a baseline measured in the same run on the same frames,
because these 2-core machines are noisy: the ratio is the number to watch.
"""

from __future__ import annotations

import asyncio
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
from streams.consumer import BatchConsumer
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
    for f in frames:
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
        for m in msgs[:-1]:
            await w.nc.publish("relay.out", m.data)
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
        "Both consume RAW with the same durable pull consumer (fetch 2000, AckAll) and publish",
        "the batch with core publishes plus one acked JetStream publish; the relay republishes",
        "bytes untouched, the normalizer parses, validates and encodes typed messages.",
        "",
        "| pipeline | msg/s | ratio to relay |",
        "|---|---:|---:|",
        f"| do-nothing relay (RAW -> RELAY stream) | {relay:,.0f} | 1.00 |",
        f"| normalizer worker (RAW -> MARKET stream) | {norm:,.0f} | {norm / relay:.2f} |",
        "",
    ]
    text = "\n".join(lines)
    (ROOT / "BENCHMARKS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
