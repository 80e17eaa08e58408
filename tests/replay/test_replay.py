"""Replay from JetStream: deterministic order, filters, ranges, speed (real nats-server)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from replay import ReplayClock, ReplayMsg, replay, select
from replay.order import Reorder
from streams import schemas, subjects
from streams.bus.server import NatsServer
from streams.provision import STREAM_MARKET, STREAM_RAW, provision
from streams.settings import Settings
from tests.conftest import make_settings

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def digest(msgs: list[ReplayMsg]) -> str:
    h = hashlib.sha256()
    for m in msgs:
        for part in (m.subject.encode(), str(m.seq).encode(), str(m.ts_recv).encode(), m.data):
            h.update(len(part).to_bytes(4, "big") + part)
    return h.hexdigest()


def trade(venue: str, symbol: str, i: int, ts_recv: int) -> schemas.Trade:
    return schemas.Trade(venue=venue, symbol=symbol, ts_event=ts_recv - MS, ts_recv=ts_recv,
                         id=str(i), price=100.0 + i / 100, size=0.5, side="buy")  # fmt: skip


def ts_of(i: int) -> int:
    return T0 + (i // 3) * MS - (50 * MS if i % 97 == 5 else 0)


async def publish_mixed(nc: Client, js: JetStreamContext, n: int) -> None:
    """Raw frames and trades on several subjects, receive times with ties and stored out of
    order (a frame stamped up to 50 ms before frames stored ahead of it)."""
    for i in range(n):
        ts = ts_of(i)
        venue = ("binance", "okx")[i % 2]
        sym = ("BTC-USDT", "ETH-USDT", "SOL-USDT")[i % 3]
        hdr = {subjects.H_RECV_NS: str(ts), subjects.H_CONN: f"{venue}-1"}
        await nc.publish(subjects.raw(venue, "trade", sym.replace("-", "")), b"%d" % i, headers=hdr)
        t = trade(venue, sym, i, ts)
        await nc.publish(subjects.market("trade", venue, sym), schemas.encode(t))
    # acked publishes on the same connection: both streams hold everything before them
    await js.publish("raw.test.sync.X", b"", headers={subjects.H_RECV_NS: str(T0 - 10**12)})
    early = trade("test", "SYNC", -1, T0 - 10**12)
    await js.publish(subjects.market("trade", "test", "SYNC"), schemas.encode(early))


async def collect(settings: Settings, **kw: object) -> list[ReplayMsg]:
    # receive times here are from 2023, stored now: "auto" would rightly pick ClickHouse
    kw.setdefault("source", "jetstream")
    return [m async for m in replay(settings, progress=False, **kw)]


async def test_two_replays_identical_and_in_key_order(
    settings: Settings, nc: Client, js: JetStreamContext
) -> None:
    await publish_mixed(nc, js, 3000)
    kw = {"subjects": ["raw.>", "market.>"], "start": T0 - 10**9, "end": T0 + 2000 * MS}
    first = await collect(settings, **kw)
    second = await collect(settings, **kw, nc=nc)
    assert len(first) == 6000  # the sync frames are outside the range
    assert digest(first) == digest(second)
    keys = [m.key() for m in first]
    assert keys == sorted(keys)  # ts_recv, RAW before MARKET, then sequence
    assert {m.stream for m in first} == {STREAM_RAW, STREAM_MARKET}
    market = [m for m in first if m.stream == STREAM_MARKET]
    assert all(isinstance(m.msg, schemas.Trade) and m.msg.ts_recv == m.ts_recv for m in market)
    assert all(m.msg is None and m.headers for m in first if m.stream == STREAM_RAW)


async def test_filters_range_and_start_sequence(
    settings: Settings, nc: Client, js: JetStreamContext
) -> None:
    await publish_mixed(nc, js, 600)
    got = await collect(settings, subjects="market.>", venues=["okx"], symbols=["BTC-USDT"])
    assert got and all(m.subject == "market.trade.okx.BTC-USDT" for m in got)
    assert len(got) == 100  # i odd and i % 3 == 0
    ranged = await collect(
        settings, subjects=["raw.*.trade.>"], start=T0 + 10 * MS, end=T0 + 20 * MS
    )
    assert ranged and all(T0 + 10 * MS <= m.ts_recv < T0 + 20 * MS for m in ranged)
    assert len(ranged) == sum(1 for i in range(600) if T0 + 10 * MS <= ts_of(i) < T0 + 20 * MS)
    by_seq = await collect(settings, subjects="raw.>", start_seq=500, order="stream")
    assert [m.seq for m in by_seq] == list(range(500, 602))  # stream order, sync frame too


def test_selection_tokens() -> None:
    sel = select(["market.>", "market.trade.>"], venues=["binance", "okx"], types=["trade"])
    assert sel.subjects(STREAM_MARKET) == ["market.trade.binance.*", "market.trade.okx.*"]
    assert select("raw.binance.>", types=["depth"]).subjects(STREAM_RAW) == ["raw.binance.depth.*"]
    assert select(">").streams == [STREAM_RAW, STREAM_MARKET]
    with pytest.raises(ValueError, match="select nothing"):
        select("market.trade.>", types=["book"])
    with pytest.raises(ValueError, match="4 tokens"):
        select("market.trade.binance.BTC.x")


def test_reorder_window_is_deterministic_and_counts_late() -> None:
    def msg(seq: int, ts: int) -> ReplayMsg:
        return ReplayMsg("raw.a.b.c", STREAM_RAW, seq, ts, b"")

    stream = [msg(1, 100), msg(2, 90), msg(3, 100), msg(4, 300), msg(5, 50), msg(6, 310)]
    outs = []
    for split in (1, 2, 6):  # chunking must not matter
        r = Reorder(window_ns=20)
        out: list[ReplayMsg] = []
        for k in range(0, len(stream), split):
            out += r.push(stream[k : k + split])
        out += r.drain()
        outs.append(([m.seq for m in out], r.late))
    assert outs[0] == outs[1] == outs[2] == ([2, 1, 3, 5, 4, 6], 1)
    r = Reorder(window_ns=10**9, max_held=2)  # a dense feed: the oldest go out early
    out = r.push([msg(m.seq, m.ts_recv) for m in stream])
    assert [m.seq for m in out] == [2, 1, 3, 5]  # 5 is late (1 went out early): after 3
    assert (out[-1].ts_recv, out[-1].key()[0]) == (50, 100)  # ordered at 100, keeps its time
    assert [m.seq for m in r.drain()] == [4, 6] and r.late == 1


async def test_merge_of_streams_with_late_messages_ignores_chunking() -> None:
    import random

    from replay.order import merge

    rnd = random.Random(5)

    def stream_of(name: str, n: int) -> list[ReplayMsg]:
        # receive times mostly rising, some 2-10 units behind: late for a window of 1
        ts = [i * 3 + (-rnd.randint(2, 10) if rnd.random() < 0.1 else 0) for i in range(n)]
        return [ReplayMsg(f"{name}.x", name, i + 1, t, b"") for i, t in enumerate(ts)]

    async def chunked(msgs: list[ReplayMsg], size: int):  # type: ignore[no-untyped-def]
        r = Reorder(window_ns=1)
        fresh = [ReplayMsg(m.subject, m.stream, m.seq, m.ts_recv, m.data) for m in msgs]
        for k in range(0, len(fresh), size):
            yield r.push(fresh[k : k + size])
        yield r.drain()

    raw, market = stream_of(STREAM_RAW, 500), stream_of(STREAM_MARKET, 700)
    runs = []
    for a, b in ((1, 1), (7, 300), (500, 3), (64, 64)):
        merged = [m async for c in merge([chunked(raw, a), chunked(market, b)]) for m in c]
        runs.append([(m.stream, m.seq) for m in merged])
        keys = [m.key() for m in merged]
        assert keys == sorted(keys) and len(merged) == 1200
    assert runs[0] == runs[1] == runs[2] == runs[3]


async def test_clock_sleepers_wake_on_replay_time() -> None:
    clock = ReplayClock()
    woke: list[int] = []

    async def sleeper(at: int) -> None:
        await clock.sleep_until(at)
        woke.append(at)

    import asyncio

    tasks = [asyncio.create_task(sleeper(t)) for t in (30, 10, 20)]
    await asyncio.sleep(0)
    clock.advance(15)
    await asyncio.sleep(0)
    assert woke == [10] and clock.now_ns() == 15
    clock.advance(5)  # never moves back
    assert clock.now_ns() == 15
    clock.advance(25)
    await asyncio.sleep(0)
    assert woke == [10, 20]
    clock.close()
    await asyncio.gather(*tasks)
    assert woke == [10, 20, 30]


async def test_speed_10x_plays_60s_in_6s(
    settings: Settings, nc: Client, js: JetStreamContext
) -> None:
    # 601 frames 100 ms apart in receive time: a 60 s recording
    for i in range(601):
        hdr = {subjects.H_RECV_NS: str(T0 + i * 100 * MS)}
        await nc.publish("raw.binance.trade.BTCUSDT", b"%d" % i, headers=hdr)
    await js.publish(
        "raw.binance.trade.BTCUSDT", b"end", headers={subjects.H_RECV_NS: str(T0 + 61 * 10**9)}
    )
    t0 = time.perf_counter()
    got = await collect(settings, subjects="raw.>", end=T0 + 60 * 10**9 + 1, speed="10x", nc=nc)
    took = time.perf_counter() - t0
    assert len(got) == 601
    assert 5.4 <= took <= 6.6, took


async def test_republished_under_replay_name_with_original_sequence(
    settings: Settings, nc: Client, js: JetStreamContext
) -> None:
    await publish_mixed(nc, js, 300)
    got: list = []

    async def take(m: object) -> None:
        got.append(m)

    sub = await nc.subscribe("replay.bt1.>", cb=take)  # type: ignore[arg-type]
    await nc.flush()
    r = replay(settings, subjects="market.trade.okx.>", source="jetstream", progress=False)
    stats = await r.publish("bt1")
    await nc.flush()
    await asyncio.sleep(0.2)
    await sub.unsubscribe()
    assert stats.messages == 150 == len(got)
    assert all(m.subject.startswith("replay.bt1.market.trade.okx.") for m in got)
    seqs = [int(m.headers[subjects.H_REPLAY_SEQ]) for m in got]
    ts = [schemas.decode(m.data).ts_recv for m in got]
    pairs = list(zip(ts, seqs, strict=True))
    assert sorted(pairs) == pairs  # replay order on the bus
    assert r.clock.now_ns() == max(ts)


async def test_undecodable_messages_are_skipped_counted_and_explained(
    settings: Settings, nc: Client, js: JetStreamContext
) -> None:
    await publish_mixed(nc, js, 30)
    await js.publish("market.trade.okx.BTC-USDT", b'{"type":"trade","venue":1}')
    r = replay(settings, subjects="market.>", source="jetstream", progress=False)
    got = [m async for m in r]
    assert len(got) == 31  # 30 + the sync trade; the broken one is not among them
    assert r.stats.bad == 1 and "market.trade.okx.BTC-USDT" in r.stats.first_bad
    assert "Expected `str`, got `int`" in r.stats.first_bad
    with pytest.raises(RuntimeError, match="no stream REPLAY_NOPE"):
        async for _ in replay(settings, from_replay="nope", progress=False):
            pass


async def test_partitioned_raw_replays_collector_subjects(
    tmp_path: Path, nats_server: NatsServer, nc: Client
) -> None:
    settings = make_settings(tmp_path, nats_server.url, normalizer={"partitions": 3})
    js = nc.jetstream(timeout=10.0)
    await provision(js, settings)  # RAW appends .<N>.<p> to every subject it stores
    for i in range(60):
        sym = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "ALL")[i % 4]
        await nc.publish(subjects.raw("binance", "trade", sym), b"%d" % i,
                         headers={subjects.H_RECV_NS: str(T0 + i)})  # fmt: skip
    await js.publish("raw.binance.trade.BTCUSDT", b"end", headers={subjects.H_RECV_NS: str(T0)})
    stored = (await js.stream_info(STREAM_RAW, subjects_filter=">")).state.subjects or {}
    assert all(s.count(".") == 5 for s in stored)
    got = await collect(settings, subjects="raw.binance.*.BTCUSDT")
    assert len(got) == 16 and {m.subject for m in got} == {"raw.binance.trade.BTCUSDT"}
    assert len(await collect(settings, subjects="raw.>")) == 61
