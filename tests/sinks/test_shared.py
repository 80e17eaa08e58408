"""Several sink instances on one shared durable (``sink.shared``, docs/scaling.md), on a real
nats-server and a real chdb ClickHouse.

chdb is one engine per process, so the instances run in this process and share one
``Store`` (one ClickHouse, as a server DSN would be); each has its own NATS connection,
as separate processes would. An instance "dies" by closing its connection right after an
insert and before its acks: the server hands the unacked messages to the survivor after
``ack_wait``, which must store the ones never inserted and skip the ones that were.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from sinks.clickhouse import tables
from sinks.clickhouse.store import Store
from sinks.clickhouse.worker import META_CHECK_BELOW, ClickHouseSink, Pipe
from streams.bus.runtime import Worker, start_worker
from streams.bus.server import NatsServer
from streams.bus.shared_consumer import SharedConsumer, ack_position
from streams.provision import STREAM_MARKET
from tests.conftest import make_settings
from tests.sinks.test_clickhouse import expected, publish_mixed

SINK = {
    "flush_interval_s": 0.2,
    "store_raw": False,
    "market": {"durable": "sink-market", "batch": 500, "ack_wait_s": 2.0},
}


def skipped() -> float:
    return sum(
        REGISTRY.get_sample_value("jetmarket_sink_skipped_total", {"table": t}) or 0.0
        for t in tables.TABLES.values()
    )


class Borrowed:
    """A shared Store as one instance sees it: its ``aclose()`` (run when the instance
    stops or dies) must not close the ClickHouse the other instances still use."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def aclose(self) -> None:
        pass


class Instance:
    """One sink in this process: its own Worker and NATS connection."""

    def __init__(self, tmp: Path, url: str, name: str, shared: bool) -> None:
        self.w = Worker(name, make_settings(tmp, url, sink={**SINK, "shared": shared}))
        self.sink: ClickHouseSink | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self, store: Store) -> ClickHouseSink:
        await start_worker(self.w)
        self.sink = ClickHouseSink(self.w)
        await self.sink.store.aclose()  # one ClickHouse for all instances instead
        self.sink.store = Borrowed(store)  # type: ignore[assignment]
        self.task = asyncio.create_task(self.sink.run())
        return self.sink

    async def market_pipe(self) -> Pipe:
        """Its MARKET pipe once bound (the DDL runs first)."""
        for _ in range(300):
            for p in _PIPES.values():
                if p.sink is self.sink and p.stream == STREAM_MARKET and p.consumer._sub:
                    return p
            await asyncio.sleep(0.1)
        raise AssertionError("no MARKET pipe after 30 s")

    async def stop(self) -> None:
        self.w.stop.set()
        if self.task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self.task, 15)
        if self.w.nc is not None and not self.w.nc.is_closed:
            await self.w.nc.close()


_PIPES: dict[int, Pipe] = {}


@contextlib.asynccontextmanager
async def tracked_pipes() -> AsyncIterator[None]:
    """Remember every Pipe created meanwhile (they live inside ``ClickHouseSink.run``)."""
    orig = Pipe.__init__

    def init(self: Pipe, *a: Any, **kw: Any) -> None:
        orig(self, *a, **kw)
        _PIPES[id(self)] = self

    Pipe.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        Pipe.__init__ = orig  # type: ignore[method-assign]
        _PIPES.clear()


class Killer:
    """Once armed, the instance's next MARKET batch is inserted and then its connection is
    closed instead of acking: a kill -9 between insert and ack."""

    def __init__(self, inst: Instance, pipe: Pipe) -> None:
        self.inst = inst
        self.armed = False
        self.dead = asyncio.Event()
        self.lost_acks = 0  # messages stored but never acked
        consumer = pipe.consumer
        if isinstance(consumer, SharedConsumer):
            self.real: Callable[..., Awaitable[None]] = consumer.ack
            consumer.ack = self.ack  # type: ignore[method-assign]
        else:
            self.real = consumer.ack_through
            consumer.ack_through = self.ack  # type: ignore[method-assign]

    async def ack(self, *a: Any) -> None:
        if not self.armed:
            return await self.real(*a)
        assert self.inst.w.nc is not None
        await self.inst.w.nc.close()
        self.lost_acks = len(a[0]) if isinstance(a[0], list) else 0
        self.dead.set()
        raise asyncio.CancelledError


async def killer(inst: Instance) -> Killer:
    return Killer(inst, await inst.market_pipe())


async def counts(store: Store) -> dict[str, int]:
    """Straight from the shared ClickHouse: a ``sql.query`` request can land on the
    instance being killed and go unanswered."""
    q = " UNION ALL ".join(f"SELECT '{t}', count() FROM {t}" for t in tables.TABLES.values())
    return {r[0]: int(r[1]) for r in await store.call(store.rows, q)}


async def wait_counts(store: Store, want: dict[str, int], timeout: float = 45) -> dict[str, int]:
    deadline = asyncio.get_running_loop().time() + timeout
    got: dict[str, int] = {}
    while asyncio.get_running_loop().time() < deadline:
        got = await counts(store)
        if got == want:
            await asyncio.sleep(1.0)  # and nothing more arrives
            return await counts(store)
        await asyncio.sleep(0.3)
    return got


async def distinct_seqs(store: Store) -> int:
    q = " UNION ALL ".join(f"SELECT uniqExact(stream_seq) FROM {t}" for t in tables.TABLES.values())
    return sum(int(r[0]) for r in await store.call(store.rows, q))


def test_ack_position_reads_both_subject_forms() -> None:
    assert ack_position("$JS.ACK.MARKET.sink-market-shared.3.1207.1190.1700000000.5") == (1207, 3)
    assert ack_position("$JS.ACK.hub.ACCHASH.MARKET.sink.1.42.40.1700000000.0.tok") == (42, 1)


async def test_two_sinks_share_the_work_and_a_dead_ones_batch_is_stored_once(
    tmp_path: Path, nats_server: NatsServer, js: Any, nc: Any
) -> None:
    async with tracked_pipes():
        a = Instance(tmp_path, nats_server.url, "sink-a", shared=True)
        b = Instance(tmp_path, nats_server.url, "sink-b", shared=True)
        store = Store(a.w.settings.clickhouse.dsn)
        sa = await a.start(store)
        sb = await b.start(store)
        await b.market_pipe()
        kill = await killer(a)
        skipped_before = skipped()
        try:
            first = await publish_mixed(js, 10_000)
            assert await wait_counts(store, expected(first)) == expected(first)
            kill.armed = True
            second = await publish_mixed(js, 10_000, start=10_000)
            counts = {k: first[k] + second[k] for k in first}
            await asyncio.wait_for(kill.dead.wait(), 30)
            got = await wait_counts(store, expected(counts))
            assert got == expected(counts)  # every message once: none lost, none twice
            assert await distinct_seqs(store) == 20_000
            # both did real work; the survivor got the dead one's unacked messages and
            # skipped exactly the batch that had been inserted
            assert sum(sa.rows.values()) > 0 and sum(sb.rows.values()) > 0
            assert sum(sa.rows.values()) + sum(sb.rows.values()) == 20_000
            assert kill.lost_acks > 0
            assert skipped() - skipped_before == kill.lost_acks
            info = await js.consumer_info(STREAM_MARKET, "sink-market-shared")
            assert info.config.deliver_group == "sink-market-shared"
            assert (info.num_ack_pending, info.num_pending) == (0, 0)
        finally:
            await b.stop()
            await a.stop()
            await store.aclose()


async def test_shared_sinks_take_over_from_a_single_sink_that_died_mid_batch(
    tmp_path: Path, nats_server: NatsServer, js: Any, nc: Any
) -> None:
    """The single sink stored a batch but died before acking it: its ack floor is below its
    tables' high-water mark. The shared durable starts after the floor and looks up
    everything up to the mark, so that batch is neither lost nor stored twice."""
    async with tracked_pipes():
        single = Instance(tmp_path, nats_server.url, "sink-single", shared=False)
        store = Store(single.w.settings.clickhouse.dsn)
        await single.start(store)
        kill = await killer(single)
        first = await publish_mixed(js, 3_000, start=0)
        assert await wait_counts(store, expected(first)) == expected(first)
        kill.armed = True
        more = await publish_mixed(js, 3_000, start=3_000)
        first = {k: first[k] + more[k] for k in first}
        await asyncio.wait_for(kill.dead.wait(), 30)
        await single.stop()
        info = await js.consumer_info(STREAM_MARKET, "sink-market")
        floor = info.ack_floor.stream_seq
        mark = max([await store.call(store.watermark, t) for t in tables.TABLES.values()])
        assert 0 < floor < mark <= 6_000  # stored beyond what was acked

        a = Instance(tmp_path, nats_server.url, "sink-a", shared=True)
        b = Instance(tmp_path, nats_server.url, "sink-b", shared=True)
        try:
            await a.start(store)
            await b.start(store)
            await a.market_pipe()
            await b.market_pipe()
            second = await publish_mixed(js, 6_000, start=6_000)
            want = expected({k: first[k] + second[k] for k in first})
            got = await wait_counts(store, want)
            assert got == want
            assert await distinct_seqs(store) == 12_000
            shared = await js.consumer_info(STREAM_MARKET, "sink-market-shared")
            assert shared.config.opt_start_seq == floor + 1
            assert shared.config.metadata[META_CHECK_BELOW] == str(mark)
        finally:
            await b.stop()
            await a.stop()
            await store.aclose()
