"""WebSocket fan-out of the API: ``market.trade.>`` to N clients at R msg/s.

``python -m benchmarks.bench_api [--clients 50] [--rate 10000] [--seconds 10]`` starts a
nats-server, ``python -m api`` (its own process), a publisher of trade messages at the rate
(core publishes in 10 ms batches, each carrying its publish time), one direct NATS
subscriber (its own process) and the WebSocket clients (two processes). It reports
- delivered: messages received by all WebSocket clients per second (goal: N x R),
- latency publish -> receipt, p50/p99, for the direct NATS subscriber and for the
  WebSocket clients (per frame: its oldest message), and the p99 the API adds,
- CPU of the API process (% of one core), of the client processes, and clients dropped.
Everything shares the machine's cores (2 here): the numbers include that contention.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
SUBJECT = "market.trade.bench.{sym}"
SYMBOLS = ("BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT")


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- client processes ---------------------------------------------------------------------
async def _ws_clients(url: str, key: str, n: int, until: float, out: Path) -> None:
    import aiohttp

    counts = [0] * n
    lat: list[float] = []
    dropped: list[str] = []
    windows: list[tuple[float, int]] = []  # (receipt time, messages) per frame, all clients

    async def one(i: int, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(url, max_msg_size=0) as ws:
            await ws.send_str(orjson.dumps({"key": key}).decode())
            await ws.send_str(orjson.dumps({"subscribe": ["market.trade.>"]}).decode())
            while time.time() < until:
                try:
                    m = await ws.receive(timeout=max(0.1, until - time.time()))
                except TimeoutError:
                    break
                if m.type != aiohttp.WSMsgType.TEXT:
                    if ws.close_code == 4008:
                        dropped.append(str(ws.close_code))
                    break
                data: str = m.data
                now = time.time_ns()
                first = data.find("\n")
                head = orjson.loads(data if first < 0 else data[:first])
                if "data" not in head:
                    continue  # {"subscribed": ...}
                k = data.count("\n") + 1
                counts[i] += k
                windows.append((now / 1e9, k))
                lat.append((now - head["data"]["ts_event"]) / 1e6)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(i, session) for i in range(n)), return_exceptions=True)
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    out.write_bytes(orjson.dumps({"lat": lat, "windows": windows, "dropped": dropped,
                                  "cpu_s": ru.ru_utime + ru.ru_stime}))  # fmt: skip


async def _direct(nats_url: str, creds: str, until: float, out: Path) -> None:
    from streams.bus.connect import connect
    from streams.settings import from_mapping

    s = from_mapping({"nats": {"url": nats_url, "credentials_dir": creds}})
    nc = await connect(s.nats, "reader")
    lat: list[float] = []

    async def cb(msg: Any) -> None:
        lat.append((time.time_ns() - orjson.loads(msg.data)["ts_event"]) / 1e6)

    await nc.subscribe("market.trade.>", cb=cb, pending_msgs_limit=1_000_000)
    await asyncio.sleep(max(0.0, until - time.time()))
    await nc.close()
    out.write_bytes(orjson.dumps({"lat": lat}))


# -- the run --------------------------------------------------------------------------------
async def _publish(nc: Any, rate: float, seconds: float) -> int:
    per = max(1, int(rate / 100))  # every 10 ms
    t0 = time.monotonic()
    sent = 0
    i = 0
    while (el := time.monotonic() - t0) < seconds:
        now = time.time_ns()
        for _ in range(per):
            sym = SYMBOLS[i % len(SYMBOLS)]
            body = orjson.dumps({"type": "trade", "venue": "bench", "symbol": sym,
                                 "ts_event": now, "ts_recv": now, "id": str(i),
                                 "price": 65000.0 + (i % 100) / 100, "size": 0.001,
                                 "side": "buy", "aggregated": False})  # fmt: skip
            await nc.publish(SUBJECT.format(sym=sym), body)
            i += 1
        sent += per
        ahead = sent / rate - (time.monotonic() - t0)
        if ahead > 0:
            await asyncio.sleep(ahead)
        elif el > 0 and int(el * 100) % 50 == 0:
            await asyncio.sleep(0)
    await nc.flush()
    return sent


async def run(clients: int = 50, rate: float = 10_000, seconds: float = 10.0) -> dict[str, Any]:
    from api.keys import KeyStore
    from benchmarks.servers import temp_nats
    from streams.bus.connect import connect
    from streams.bus.server import free_port
    from streams.provision import provision
    from streams.settings import from_mapping
    from tests.workers import Proc

    tmp = Path(tempfile.mkdtemp(prefix="jm-bench-api-"))
    srv = temp_nats(tmp)
    port = free_port()
    settings = from_mapping({
        "nats": {"url": srv.url, "credentials_dir": str(tmp / "creds")},
        "metrics": {"ports": {}}, "log": {"level": "WARNING"},
        "api": {"port": port, "keys_file": str(tmp / "keys.json")},
    })  # fmt: skip
    nc = await connect(settings.nats, "bench")
    await provision(nc.jetstream(timeout=10.0), settings)
    _, key = KeyStore(settings.api.keys_file).add("bench", ["market"])
    api = Proc("api", settings, log=tmp / "api.log").start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        assert api.p is not None
        warm = 2.0
        start = time.time() + 3.0  # clients connected and subscribed by then
        until = start + warm + seconds
        split = [clients // 2, clients - clients // 2]
        for j, n in enumerate(split):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "benchmarks.bench_api", "--client-ws", str(n),
                 "--url", f"ws://127.0.0.1:{port}/v1/ws", "--key", key, "--until", str(until),
                 "--out", str(tmp / f"ws{j}.json")], cwd=ROOT))  # fmt: skip
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_api", "--client-direct", srv.url,
             "--creds", str(tmp / "creds"), "--until", str(until),
             "--out", str(tmp / "direct.json")], cwd=ROOT))  # fmt: skip
        await asyncio.sleep(max(0.0, start - time.time()))
        await _publish(nc, rate, warm)
        cpu0, t0 = _cpu_s(api.p.pid), time.time()
        sent = await _publish(nc, rate, seconds)
        cpu1, t1 = _cpu_s(api.p.pid), time.time()
        for p in procs:
            p.wait(timeout=seconds + 60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        api.stop()
        await nc.close()
        srv.stop()
    ws = [orjson.loads((tmp / f"ws{j}.json").read_bytes()) for j in range(2)]
    direct = orjson.loads((tmp / "direct.json").read_bytes())
    delivered = sum(k for w in ws for t, k in w["windows"] if t0 <= t <= t1 + 0.5)
    ws_lat = [x for w in ws for x in w["lat"]]
    p99_ws, p99_direct = _pct(ws_lat, 0.99), _pct(direct["lat"], 0.99)
    return {
        "clients": clients, "offered_rate": round(sent / (t1 - t0)),
        "goal_rate": int(clients * rate),
        "delivered_rate": round(delivered / (t1 - t0)),
        "direct_p50_ms": round(_pct(direct["lat"], 0.5), 2), "direct_p99_ms": round(p99_direct, 2),
        "ws_p50_ms": round(_pct(ws_lat, 0.5), 2), "ws_p99_ms": round(p99_ws, 2),
        "added_p99_ms": round(p99_ws - p99_direct, 2),
        "api_cpu_pct": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
        "dropped_clients": sum(len(w["dropped"]) for w in ws),
        # the two client processes, over their whole life (connect, warm-up, run)
        "clients_cpu_pct": round(100 * sum(w["cpu_s"] for w in ws) / (until - start + 3), 1),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_api", description=__doc__)
    p.add_argument("--clients", type=int, default=50, help="WebSocket clients (50)")
    p.add_argument("--rate", type=float, default=10_000, help="messages per second (10000)")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds (10)")
    p.add_argument("--client-ws", type=int, help=argparse.SUPPRESS)
    p.add_argument("--client-direct", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--key", help=argparse.SUPPRESS)
    p.add_argument("--creds", help=argparse.SUPPRESS)
    p.add_argument("--until", type=float, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    import uvloop

    if a.client_ws:
        uvloop.run(_ws_clients(a.url, a.key, a.client_ws, a.until, Path(a.out)))
    elif a.client_direct:
        uvloop.run(_direct(a.client_direct, a.creds, a.until, Path(a.out)))
    else:
        print(json.dumps(uvloop.run(run(a.clients, a.rate, a.seconds)), indent=1))


if __name__ == "__main__":
    main()
