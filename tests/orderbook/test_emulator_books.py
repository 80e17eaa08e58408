"""Order books against the emulator's true book: emulator -> collector -> normalizer ->
orderbook, all real processes. Exact equality after 100k deltas per symbol, and every
injected wire fault detected, recorded as a gap, healed by a REST resync, with no depth
published from an invalid book."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext

from streams import schemas
from streams.bus.server import NatsServer
from tests.conftest import make_settings
from tests.helpers import served_book
from tests.orderbook.test_service import collect
from tests.venues.binance.emulator import BinanceEmulator
from tests.workers import Proc

SYMBOLS = {"BTCUSDT": "BTC-USDT", "ETHUSDT": "ETH-USDT"}


def start_pipeline(tmp_path: Path, url: str, emu: BinanceEmulator) -> list[Proc]:
    settings = make_settings(
        tmp_path, url,
        collector={"binance": {"ws_url": emu.ws_url, "rest_url": emu.rest_url,
                               "symbols": list(SYMBOLS), "channels": ["depth"]}},
        orderbook={"depth_interval_ms": 50, "snapshot_retry_s": 0.5},
        log={"level": "WARNING"},
    )  # fmt: skip
    return [
        Proc("collectors", settings, "binance", log=tmp_path / "collector.log").start(),
        Proc("normalizer", settings, log=tmp_path / "normalizer.log").start(),
        Proc("orderbook", settings, log=tmp_path / "orderbook.log").start(),
    ]


async def wait_synced(nc: Client, emu: BinanceEmulator, native: str, timeout: float = 60) -> dict:
    """Until the service's book is valid at the emulator's latest update id."""
    sim = emu.sims[native]
    deadline = asyncio.get_running_loop().time() + timeout
    b: dict = {}
    while asyncio.get_running_loop().time() < deadline:
        b = await served_book(nc, "binance", SYMBOLS[native])
        if b.get("valid") and b.get("seq") == sim.u:
            return b
        await asyncio.sleep(0.1)
    raise AssertionError(f"{native} not synced: valid={b.get('valid')} seq={b.get('seq')} "
                         f"want {sim.u}")  # fmt: skip


def assert_true_book(b: dict, emu: BinanceEmulator, native: str) -> None:
    bids, asks = emu.true_book(native)
    assert [tuple(x) for x in b["bids"]] == bids
    assert [tuple(x) for x in b["asks"]] == asks


async def test_books_equal_true_book_after_100k_deltas_per_symbol(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    async with BinanceEmulator(list(SYMBOLS), seed=11) as emu:
        procs = start_pipeline(tmp_path, nats_server.url, emu)
        try:
            await emu.wait_connected(1, timeout=30)
            await emu.emit_depth(200)  # first updates: the collector fetches snapshots
            for native in SYMBOLS:
                await wait_synced(nc, emu, native)
            for native in SYMBOLS:
                await emu.emit_depth(100_000, native)
            for native in SYMBOLS:
                b = await wait_synced(nc, emu, native, timeout=120)
                assert_true_book(b, emu, native)
                if b["problems"]:
                    gaps = await collect(js, f"market.gap.binance.{SYMBOLS[native]}", 2.0)
                    raise AssertionError(
                        [(g.reason, g.detail, g.expected_seq, g.got_seq) for g in gaps[:5]]
                    )  # type: ignore[attr-defined]
        finally:
            for p in procs:
                p.stop()


async def test_injected_faults_detected_resynced_and_never_published_invalid(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    async with BinanceEmulator(list(SYMBOLS), seed=12) as emu:
        emu.sims["BTCUSDT"].history = {}
        procs = start_pipeline(tmp_path, nats_server.url, emu)
        try:
            await emu.wait_connected(1, timeout=30)
            await emu.emit_depth(200)
            await wait_synced(nc, emu, "BTCUSDT")
            for fault in ("drop", "duplicate", "reorder", "cross"):
                before = emu.rest_calls.get("depth", 0)
                await emu.emit_depth(2000, "BTCUSDT", fault=fault)
                b = await wait_synced(nc, emu, "BTCUSDT")
                assert_true_book(b, emu, "BTCUSDT")
                if fault != "duplicate":  # a duplicate is harmless: detected, no resync
                    assert emu.rest_calls.get("depth", 0) > before, f"{fault}: no resync"
            await asyncio.sleep(0.3)
        finally:
            for p in procs:
                p.stop()

    gaps = await collect(js, "market.gap.binance.BTC-USDT", 2.0)
    # (the collector's own stop at the end is recorded as a reconnect gap: skip it)
    gaps = [g for g in gaps if isinstance(g, schemas.Gap) and "stopping" not in g.detail]
    reasons = [g.reason for g in gaps]
    # drop and reorder break the U == u+1 chain; cross is caught as a crossed book. The
    # duplicate never reaches the book: it carries the same Nats-Msg-Id (binance:book:
    # BTC-USDT:<u>) and JetStream drops it at the MARKET stream (a duplicate that did get
    # through is reported as harmless: see test_orderbook_sync).
    assert reasons == ["sequence", "sequence", "crossed"], [
        (g.reason, g.detail)
        for g in gaps  # type: ignore[attr-defined]
    ]
    hist = emu.sims["BTCUSDT"].history
    assert hist is not None
    depth = [d for d in await collect(js, "market.depth.binance.BTC-USDT", 2.0)]
    assert len(depth) > 10
    for d in depth:  # every published depth equals the true book at its sequence
        assert isinstance(d, schemas.Depth)
        if d.seq in hist:
            assert (d.bids, d.asks) == hist[d.seq], d.seq
    bbo = await collect(js, "market.bbo.binance.BTC-USDT", 2.0)
    for q in bbo:
        assert isinstance(q, schemas.BBO) and q.seq is not None
        if q.seq in hist:
            bids, asks = hist[q.seq]
            assert (q.bid_price, q.ask_price) == (bids[0][0], asks[0][0]), q.seq
