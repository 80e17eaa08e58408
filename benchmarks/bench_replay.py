"""Replay rate at max speed, from JetStream and from ClickHouse.

``python -m benchmarks.bench_replay [N]`` prints the numbers; ``measure(n)`` returns them (for
``make bench``). Goal: >= 80k msg/s from JetStream. Every replay here is the full
``Replay`` path (consumer, reorder, merge, typed decode for MARKET), unpaced.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from replay import Replay
from streams import schemas, subjects
from streams import sql as sqlmod
from streams.bus.connect import connect
from streams.bus.server import NatsServer, free_port
from streams.provision import STREAM_MARKET, STREAM_RAW, provision
from streams.settings import NatsServerSettings, Settings, from_mapping

T0 = 1_700_000_000_000_000_000


def _settings(tmp: Path, url: str) -> Settings:
    return from_mapping(
        {
            "nats": {"url": url, "credentials_dir": str(tmp / "creds")},
            "clickhouse": {"dsn": f"chdb://{tmp / 'ch'}"},
            "metrics": {"ports": {}},
            "log": {"level": "WARNING"},
            "sink": {"flush_interval_s": 0.2},
            "replay": {"progress": False},
        }
    )


async def _fill(settings: Settings, n: int) -> None:
    """n raw Binance trade frames and n typed trades, 100 µs apart in receive time (a busy
    feed: 10k frames/s)."""
    from benchmarks.frames import gen_trades

    nc = await connect(settings.nats, "bench-fill")
    js = nc.jetstream(timeout=30)
    await provision(js, settings)
    frames = gen_trades(n)
    subject = subjects.raw("binance", "trade", "BTCUSDT")
    for i, frame in enumerate(frames):
        ts = T0 + i * 100_000
        hdr = {subjects.H_RECV_NS: str(ts), subjects.H_CONN: "bench"}
        t = schemas.Trade(venue="binance", symbol="BTC-USDT", ts_event=ts, ts_recv=ts,
                          id=str(i), price=65000.1 + i % 100, size=0.5, side="buy")  # fmt: skip
        if i % 4000 == 0:  # acked bursts keep the server's ingest queue from overflowing
            await js.publish(subject, frame, headers=hdr)
            await js.publish("market.trade.binance.BTC-USDT", schemas.encode(t))
        else:
            await nc.publish(subject, frame, headers=hdr)
            await nc.publish("market.trade.binance.BTC-USDT", schemas.encode(t))
    await js.publish(subject, b"{}", headers={subjects.H_RECV_NS: str(T0 - 1)})
    await js.publish("market.trade.binance.BTC-USDT", schemas.encode(t))
    for stream in (STREAM_RAW, STREAM_MARKET):
        while (await js.stream_info(stream)).state.messages < n + 1:
            await asyncio.sleep(0.05)
    await nc.close()


async def _rate(settings: Settings, **kw: object) -> tuple[float, int]:
    r = Replay(settings, progress=False, **kw)  # type: ignore[arg-type]
    n = 0
    t0 = time.perf_counter()
    async for chunk in r.batches():
        n += len(chunk)
    return n / (time.perf_counter() - t0), n


async def _wait_sink(settings: Settings, n: int) -> None:
    nc = await connect(settings.nats, "bench-wait")
    try:
        while True:
            try:
                res = await sqlmod.query(nc, "SELECT (SELECT count() FROM trades) + "
                                         "(SELECT count() FROM raw_frames)", timeout=5)  # fmt: skip
                if int(res.rows[0][0]) >= 2 * n:
                    return
            except sqlmod.SqlError:
                pass
            await asyncio.sleep(0.2)
    finally:
        await nc.close()


async def measure(n: int = 200_000) -> dict[str, float]:
    """Messages/s: raw and market from JetStream; market from ClickHouse through the sink's
    sql.query and directly (chdb, sink stopped)."""
    from tests.workers import Proc

    tmp = Path(tempfile.mkdtemp(prefix="jm-bench-replay-"))
    cfg = NatsServerSettings(port=free_port(), monitor_port=free_port(), store_dir=str(tmp / "n"))
    srv = NatsServer(cfg, log_file=tmp / "nats.log", credentials_dir=tmp / "creds").start()
    out: dict[str, float] = {"messages": float(n)}
    try:
        settings = _settings(tmp, srv.url)
        await _fill(settings, n)
        out["jetstream_raw"], got = await _rate(settings, subjects="raw.>", source="jetstream")
        assert got == n + 1, got
        out["jetstream_market"], got = await _rate(
            settings, subjects="market.>", source="jetstream"
        )
        assert got == n + 1, got
        out["jetstream_raw_and_market_merged"], got = await _rate(
            settings, subjects=["raw.>", "market.>"], source="jetstream"
        )
        sink = Proc("sinks", settings, "clickhouse", log=tmp / "sink.log").start()
        try:
            await _wait_sink(settings, n)
            out["clickhouse_market_via_sink"], got = await _rate(
                settings, subjects="market.>", source="clickhouse", clickhouse="sink"
            )
            assert got == n + 1, got
        finally:
            sink.stop()
        out["clickhouse_market_direct"], got = await _rate(
            settings, subjects="market.>", source="clickhouse", clickhouse="direct"
        )
        out["clickhouse_raw_direct"], got = await _rate(
            settings, subjects="raw.>", source="clickhouse", clickhouse="direct"
        )
    finally:
        srv.stop()
    return out


def main() -> None:
    import uvloop

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    for name, value in uvloop.run(measure(n)).items():
        print(f"{name:36s} {value:>12,.0f}{'' if name == 'messages' else ' msg/s'}")


if __name__ == "__main__":
    main()
