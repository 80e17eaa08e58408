"""End to end on real parts: emulator -> collector -> normalizer -> sink -> ClickHouse.

Workers are real subprocesses (``python -m ...``) so they can be killed with SIGKILL at
random points; the only emulated party is the exchange.
"""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal
from pathlib import Path

import pytest
from nats.aio.client import Client

from ops.status import status
from streams import sql
from streams.bus.server import NatsServer
from streams.settings import Settings
from tests.conftest import make_settings
from tests.venues.binance.emulator import BinanceEmulator
from tests.workers import Proc

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
OURS = {"BTCUSDT": "BTC-USDT", "ETHUSDT": "ETH-USDT"}


def pipeline_settings(tmp_path: Path, nats_url: str, emu: BinanceEmulator) -> Settings:
    return make_settings(
        tmp_path,
        nats_url,
        collector={
            "binance": {
                "ws_url": emu.ws_url,
                "rest_url": emu.rest_url,
                "symbols": SYMBOLS,
                "reconnect": {"min_s": 0.2, "max_s": 2.0},
            }
        },
        sink={"flush_interval_s": 0.2},
        log={"level": "WARNING"},
    )


async def scalar(nc: Client, query: str, timeout: float = 5.0) -> int:
    res = await sql.query(nc, query, timeout=timeout)
    return int(res.rows[0][0])


async def wait_rows(nc: Client, query: str, want: int, timeout: float) -> int:
    """Poll a count through the sink's sql.query service (which may be restarting)."""
    deadline = asyncio.get_running_loop().time() + timeout
    got = -1
    while asyncio.get_running_loop().time() < deadline:
        try:
            got = await scalar(nc, query, timeout=3.0)
            if got >= want:
                return got
        except Exception:  # sink restarting: no responder yet
            pass
        await asyncio.sleep(0.3)
    return got


async def check_exact(nc: Client, emu: BinanceEmulator) -> None:
    emitted = emu.emitted_trades
    want = len(emitted)
    assert await wait_rows(nc, "SELECT count() FROM trades", want, timeout=90) == want
    await asyncio.sleep(1.0)  # anything late would be a duplicate: give it the chance
    res = await sql.query(
        nc,
        "SELECT symbol, id, price, size, side FROM trades ORDER BY symbol, toUInt64(id)",
        max_rows=want + 10,
        timeout=30,
    )
    assert len(res.rows) == want, "duplicate or missing rows"
    seen = set()
    for symbol, tid, price, size, side in res.rows:
        key = (symbol, tid)
        assert key not in seen, f"duplicate trade {key}"
        seen.add(key)
        _, e_price, e_qty, e_side = emitted[(symbol, tid)]
        assert Decimal(repr(float(price))) == Decimal(e_price), (tid, price, e_price)
        assert Decimal(repr(float(size))) == Decimal(e_qty), (tid, size, e_qty)
        assert side == e_side


@pytest.fixture
async def emulator():  # type: ignore[no-untyped-def]
    async with BinanceEmulator(symbols=SYMBOLS, seed=7) as emu:
        yield emu


async def test_10k_trades_exactly_once_with_decimal_strings(
    tmp_path: Path, nats_server: NatsServer, emulator: BinanceEmulator, nc: Client
) -> None:
    settings = pipeline_settings(tmp_path, nats_server.url, emulator)
    procs = [
        Proc("collectors", settings, "binance", log=tmp_path / "collector.log"),
        Proc("normalizer", settings, log=tmp_path / "normalizer.log"),
        Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log"),
    ]
    for p in procs:
        p.start()
    try:
        await emulator.wait_connected(1, timeout=30)
        await emulator.emit_trades(10_000, rate=5_000)
        await check_exact(nc, emulator)
        books = await scalar(nc, "SELECT count() FROM book_updates WHERE symbol = 'BTC-USDT'")
        assert books > 0
        raw = await scalar(nc, "SELECT count() FROM raw_frames WHERE channel = 'trade'")
        assert raw == 10_000
        report = await status(nc, settings)
        for expect in ("collector", "normalizer", "sink", "binance.trade", "binance.depth",
                       "sink-market", "ok"):  # fmt: skip
            assert expect in report, report
        (tmp_path / "status.txt").write_text(report)
    finally:
        codes = [p.stop() for p in reversed(procs)]
    assert codes == [0, 0, 0], "every worker stops cleanly on SIGTERM"


async def test_kill9_normalizer_and_sink_mid_stream_loses_and_duplicates_nothing(
    tmp_path: Path, nats_server: NatsServer, emulator: BinanceEmulator, nc: Client
) -> None:
    settings = pipeline_settings(tmp_path, nats_server.url, emulator)
    collector = Proc("collectors", settings, "binance", log=tmp_path / "collector.log").start()
    norm = Proc("normalizer", settings, log=tmp_path / "normalizer.log").start()
    sink = Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log").start()
    rnd = random.Random(2026)
    try:
        await emulator.wait_connected(1, timeout=30)
        emit = asyncio.create_task(emulator.emit_trades(20_000, rate=2_500))
        kills = 0
        while not emit.done():
            await asyncio.sleep(rnd.uniform(0.3, 1.2))
            victim = rnd.choice([norm, sink])
            victim.kill9()
            kills += 1
            await asyncio.sleep(rnd.uniform(0.0, 0.5))
            victim.start()
        await emit
        assert kills >= 4
        await check_exact(nc, emulator)
    finally:
        for p in (collector, norm, sink):
            p.stop()
