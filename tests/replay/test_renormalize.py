"""Re-normalization reproduces MARKET exactly, for every venue with an emulator.

Each venue's collector (in-process) records its emulator's real protocol into RAW and the
live normalizer writes MARKET; then ``renormalize`` replays RAW into a fresh prefix through
``python -m normalizer`` and the two outputs are hashed: per venue, and as a whole in
stream order with message ids. A new venue joins with one line in ``VENUES``.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext

from normalizer.worker import main as normalizer_main
from replay import Replay
from replay.model import Digest
from replay.renormalize import renormalize
from streams.bus.server import NatsServer
from streams.provision import STREAM_DLQ, STREAM_RAW
from streams.settings import Settings
from tests.conftest import make_settings
from tests.venues.binance.emulator import BinanceEmulator
from tests.venues.bybit.emulator import BybitEmulator
from tests.venues.coinbase.emulator import CoinbaseEmulator
from tests.venues.deribit.emulator import DeribitEmulator
from tests.venues.kraken.emulator import KrakenEmulator
from tests.venues.okx.emulator import OkxEmulator
from tests.workers import inprocess

RECONNECT = {"min_s": 0.1, "max_s": 0.5}


@dataclass
class Venue:
    make: Callable[[], Any]  # the emulator (an async context manager)
    section: Callable[[Any], dict[str, Any]]  # collector.<venue> settings for it
    ready: Callable[[Any], Awaitable[None]]  # until the collector is subscribed
    drive: Callable[[Any], Awaitable[None]]  # market activity
    extra: dict[str, Any] = field(default_factory=dict)


def ws(emu: Any, **kw: Any) -> dict[str, Any]:
    return {"ws_url": emu.ws_url, "rest_url": emu.rest_url, "reconnect": RECONNECT, **kw}


VENUES: dict[str, Venue] = {
    "binance": Venue(
        lambda: BinanceEmulator(["BTCUSDT", "ETHUSDT"], seed=7),
        lambda e: ws(e, symbols=["BTCUSDT", "ETHUSDT"], channels=["trade", "depth"]),
        lambda e: e.wait_connected(1, timeout=15),
        lambda e: e.emit_trades(1500),
    ),
    "okx": Venue(
        lambda: OkxEmulator(["BTC-USDT", "BTC-USDT-SWAP"], seed=3),
        lambda e: ws(e, symbols=list(e.sims), channels=["trades", "books"]),
        lambda e: e.wait_subscribed(4, timeout=15),
        lambda e: e.emit(1500, books_every=2),
    ),
    "bybit": Venue(
        lambda: BybitEmulator({"spot": ["BTCUSDT"], "linear": ["BTCUSDT"]}, seed=3),
        lambda e: ws(
            e,
            symbols=["spot:BTCUSDT", "linear:BTCUSDT"],
            channels=["publicTrade", "orderbook.50"],
            options={"categories": "spot,linear"},
        ),
        lambda e: e.wait_subscribed("orderbook.50.BTCUSDT", n=2, timeout=15),
        lambda e: _bybit(e),
    ),
    "coinbase": Venue(
        lambda: CoinbaseEmulator(["BTC-USD", "ETH-USD"], seed=5),
        lambda e: ws(e, symbols=list(e.sims), channels=["market_trades", "level2"]),
        lambda e: e.wait_subscribed(4, timeout=15),
        lambda e: e.emit(1500),
    ),
    "deribit": Venue(
        lambda: DeribitEmulator(seed=5),
        lambda e: ws(e, symbols=list(e.sims), channels=["trades", "book", "ticker"]),
        lambda e: e.wait_subscribed(6, timeout=15),
        lambda e: e.emit(800),
    ),
    "kraken": Venue(
        lambda: KrakenEmulator(["BTC/USD"], seed=5),
        lambda e: ws(e, symbols=list(e.sims), channels=["trade", "book", "ticker"]),
        lambda e: e.wait_subscribed(3, timeout=15),
        lambda e: e.emit(1500),
    ),
}


async def _bybit(e: BybitEmulator) -> None:
    await e.emit(800, category="linear")
    await e.emit(300, "BTCUSDT", category="spot")


async def _normalized(js: JetStreamContext, settings: Settings) -> None:
    """Until the live normalizer has acked all of RAW (the collectors have stopped)."""
    while True:
        info = await js.consumer_info(STREAM_RAW, settings.normalizer.consumer.durable)
        if not info.num_pending and not info.num_ack_pending:
            return
        await asyncio.sleep(0.1)


async def _reasons(js: JetStreamContext, subject: str, n: int = 5) -> list[str]:
    sub = await js.subscribe(subject, ordered_consumer=True)
    out = []
    for _ in range(n):
        m = await sub.next_msg(timeout=5)
        out.append(f"{m.headers.get('Jm-Source-Subject')}: {m.headers.get('Jm-Reason')}")  # type: ignore[union-attr]
    await sub.unsubscribe()
    return out


async def _per_venue(settings: Settings, **kw: Any) -> dict[str, Digest]:
    out: dict[str, Digest] = {}
    r = Replay(settings, subjects="market.>", order="stream", progress=False, **kw)
    async for chunk in r.batches():
        for m in chunk:
            d = out.setdefault(m.subject.split(".")[2], Digest(seq=False, msg_id=True))
            d.update([m])
    return out


async def test_renormalize_reproduces_market_for_every_venue(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext
) -> None:
    since = time.time_ns()
    async with AsyncExitStack() as stack:
        emus = {v: await stack.enter_async_context(spec.make()) for v, spec in VENUES.items()}
        settings = make_settings(
            tmp_path, nats_server.url,
            collector={"venues": list(VENUES), "flush_every": 500,
                       **{v: VENUES[v].section(e) for v, e in emus.items()}},
            log={"level": "WARNING"},
        )  # fmt: skip
        await stack.enter_async_context(inprocess("normalizer", normalizer_main, settings))
        async with AsyncExitStack() as collectors:
            for v in VENUES:
                run = importlib.import_module(f"collectors.{v}").run
                await collectors.enter_async_context(inprocess(f"collector-{v}", run, settings))
            await asyncio.gather(*(VENUES[v].ready(e) for v, e in emus.items()))
            await asyncio.gather(*(VENUES[v].drive(e) for v, e in emus.items()))
            await asyncio.sleep(0.5)  # the last frames reach the collectors
        await _normalized(js, settings)

    res = await renormalize(settings, since=since, name="t1", compare=True, progress=False)
    assert res.frames == (await js.stream_info(STREAM_RAW)).state.messages
    dlq = (await js.stream_info(STREAM_DLQ)).state.messages
    assert res.dead == dlq, await _reasons(js, "replay.t1.dlq.>")  # the same frames rejected
    live = await _per_venue(settings, start=since, source="jetstream")
    again = await _per_venue(settings, from_replay="t1", source="jetstream")
    assert sorted(live) == sorted(VENUES)  # every venue produced market data
    for venue in VENUES:
        assert live[venue].count > 100, venue
        assert (venue, again[venue].count, again[venue].hexdigest()) == (
            venue, live[venue].count, live[venue].hexdigest())  # fmt: skip
    # and the whole of MARKET, in stream order, message ids included
    assert res.identical, res.lines()
    assert res.messages == sum(d.count for d in live.values())

    # RAW and MARKET merged twice over the same range: the same bytes in the same order; a
    # market message carries its frame's receive time and comes after that frame
    runs = []
    for _ in range(2):
        r = Replay(settings, subjects=["raw.>", "market.>"], start=since, progress=False)
        msgs = [m async for m in r]
        d = Digest()
        d.update(msgs)
        runs.append((d.hexdigest(), len(msgs), r.stats.late))
        seen: set[int] = set()
        for m in msgs:
            if m.stream == STREAM_RAW:
                seen.add(m.ts_recv)
            else:
                assert m.ts_recv in seen, m
    assert runs[0] == runs[1]
