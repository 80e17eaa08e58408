"""A 3-node JetStream cluster on loopback, every stream R3. The RAW stream's leader is
killed with SIGKILL while raw frames are being published by a collector's RawPublisher
(collectors/base.py) connected to a surviving node, and the real normalizer worker runs.
The frames dropped during the election are found and re-sent by RawPublisher itself;
afterwards RAW holds every frame exactly once, MARKET every trade exactly once (the
re-sent frames arrive late, but trade ids make each one once), and the restarted node has
caught up."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import ServiceUnavailableError

from collectors.base import RawPublisher
from normalizer.worker import main as normalizer_main
from streams import schemas, subjects
from streams.bus.connect import connect
from streams.bus.server import ClusterNode, NatsCluster, free_port
from streams.provision import STREAM_MARKET, STREAM_RAW, provision
from streams.settings import NatsServerSettings, Settings
from tests.conftest import make_settings
from tests.venues.binance.test_parse import trade_frame
from tests.workers import inprocess

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"]
PER_SYMBOL = 2500
KILL_AT = PER_SYMBOL * len(SYMBOLS) // 3
R3 = {"replicas": 3}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    c = NatsCluster(tmp_path / "nats", log_dir=tmp_path).start()
    yield c
    c.stop()


def cluster_settings(tmp_path: Path, url: str) -> Settings:
    return make_settings(
        tmp_path,
        url,
        streams={"raw": R3, "market": R3, "exec": R3, "dlq": R3},
        normalizer={"consumer": {"batch": 500, "ack_wait_s": 10.0}},
        log={"level": "WARNING"},
    )


async def leader(js: JetStreamContext, stream: str, timeout: float = 30.0) -> str:
    """The stream's current leader, waiting through an election."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = await js.stream_info(stream)
            if info.cluster and info.cluster.leader:
                return info.cluster.leader
        except Exception:  # no leader yet: the API request times out or is refused
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{stream} has no leader")
        await asyncio.sleep(0.2)


async def publish_all(pub: RawPublisher, kill: callable) -> int:  # type: ignore[valid-type]
    """Publish every frame as a live collector does (core publishes, an acked barrier every
    200, no message ids: the venue's frames cannot be sent again by the test), calling
    ``kill`` a third of the way in. Frames dropped while RAW had no leader are found and
    re-sent by RawPublisher itself. Returns how many barriers failed."""
    failed = 0
    was = False
    for i, (sym, tid) in enumerate((s, i) for i in range(PER_SYMBOL) for s in SYMBOLS):
        await pub.publish(
            "trade",
            sym,
            trade_frame(tid, f"{100 + tid}.5", "0.25", sym=sym),
            1_700_000_000_000_000_000 + i,  # unique: RawPublisher recognises stored frames by it
            "cluster-test-1",
        )
        if i + 1 == KILL_AT:
            kill()
        failed += pub.unconfirmed and not was
        was = pub.unconfirmed
        if i % 50 == 0:
            await asyncio.sleep(
                0.02
            )  # a live feed (~4 s), not one burst: the kill lands mid-stream
    # a live collector keeps publishing; here its connection events stand in for the feed
    # until a barrier is confirmed again (the election may outlast the trades)
    for _ in range(60):
        if pub.confirmed == pub.published:
            break
        await asyncio.sleep(0.5)
        event = {"event": "connected", "conn": "cluster-test-1", "ts": time.time_ns()}
        await pub.publish("conn", "ALL", orjson.dumps(event), time.time_ns(), "cluster-test-1",
                          durable=True)  # fmt: skip
    assert pub.confirmed == pub.published
    return failed


async def drain(js: JetStreamContext, stream: str, subject: str, n: int) -> list:
    """Every message of ``stream``, read from the start with a fresh ephemeral consumer.
    Right after a node loss the cluster may still refuse one (503) or not answer at all
    while its meta leader is elected again (seen under load), so retry whole."""
    for attempt in range(10):
        got: list = []
        try:
            sub = await js.pull_subscribe(subject, stream=stream)
            while len(got) < n:
                batch = await sub.fetch(min(1000, n - len(got)), timeout=10)
                for m in batch:
                    await m.ack()
                got.extend(batch)
            await sub.unsubscribe()
            return got
        except (ServiceUnavailableError, NatsTimeoutError):
            await asyncio.sleep(0.5 * (attempt + 1))
    raise TimeoutError(f"cannot read {stream}")


async def wait_count(js: JetStreamContext, stream: str, n: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    got = -1
    while time.monotonic() < deadline:
        try:
            got = (await js.stream_info(stream)).state.messages
            if got >= n:
                return got
        except Exception:  # mid-election
            pass
        await asyncio.sleep(0.1)
    return got


async def test_stream_leader_killed_mid_stream_loses_nothing(
    tmp_path: Path, cluster: NatsCluster
) -> None:
    settings = cluster_settings(tmp_path, cluster.url)
    nc = await connect(settings.nats, "test")  # admin: provisions and inspects
    js = nc.jetstream(timeout=5.0)
    await provision(js, settings)
    raw_info = await js.stream_info(STREAM_RAW)
    assert raw_info.config.num_replicas == 3 and len(raw_info.cluster.replicas or []) == 2
    victim = cluster.node(await leader(js, STREAM_RAW))
    total = PER_SYMBOL * len(SYMBOLS)
    # the collector sits on a node that survives: no reconnect, only failed barriers
    survivor = next(n for n in cluster.nodes if n.name != victim.name)
    coll_nc = await connect(cluster_settings(tmp_path, survivor.url).nats, "collector")
    pub = RawPublisher(coll_nc, coll_nc.jetstream(timeout=5.0), "binance", 200, ack_timeout_s=2.0)

    async with inprocess("normalizer", normalizer_main, settings) as norm:
        failed = await publish_all(pub, victim.kill)
        assert failed > 0 and pub.recovered > 0, "the kill cost no frame: nothing was proven"
        assert victim.proc is not None and victim.proc.returncode == -9
        new_leader = await leader(js, STREAM_RAW)
        assert new_leader != victim.name
        conn_frames = pub.counts.get("conn", 0)
        assert await wait_count(js, STREAM_RAW, total + conn_frames) == total + conn_frames
        assert await wait_count(js, STREAM_MARKET, total) == total
        await asyncio.sleep(1.0)  # a duplicate, if any, would have landed by now
        assert norm.health.state in ("ok", "degraded")

    # RAW: every frame exactly once, byte for byte
    assert (await js.stream_info(STREAM_RAW)).state.messages == total + conn_frames
    raw = await drain(js, STREAM_RAW, "raw.binance.trade.*", total)
    stored = {(m.subject, m.data) for m in raw}
    assert len(stored) == total
    assert stored == {
        (subjects.raw("binance", "trade", sym), trade_frame(i, f"{100 + i}.5", "0.25", sym=sym))
        for i in range(PER_SYMBOL)
        for sym in SYMBOLS
    }

    # MARKET: every trade once, and per symbol in trade-id order
    assert (await js.stream_info(STREAM_MARKET)).state.messages == total
    market = await drain(js, STREAM_MARKET, subjects.MARKET_ALL, total)
    per_symbol: dict[str, list[int]] = defaultdict(list)
    for m in market:
        t = schemas.decode(m.data)
        assert isinstance(t, schemas.Trade)
        per_symbol[t.symbol].append(int(t.id))
    assert len(per_symbol) == len(SYMBOLS)
    assert all(ids == list(range(PER_SYMBOL)) for ids in per_symbol.values())
    ci = await js.consumer_info(STREAM_RAW, settings.normalizer.consumer.durable)
    assert ci.num_pending == 0 and ci.num_ack_pending == 0

    # the killed node comes back on its own store and catches up
    victim.start()
    deadline = time.monotonic() + 60
    while True:
        info = await js.stream_info(STREAM_RAW)
        peers = info.cluster.replicas or []
        if len(peers) == 2 and all(p.current for p in peers):
            break
        assert time.monotonic() < deadline, f"replicas not current: {peers}"
        await asyncio.sleep(0.2)
    assert info.state.messages == total + conn_frames
    print(f"killed {victim.name}, new leader {new_leader}, barriers failed {failed},"
          f" frames re-sent {pub.recovered}")  # fmt: skip
    await coll_nc.close()
    await nc.close()


def peers(node: ClusterNode) -> set[str]:
    """Names of the servers this node has routes to (/routez; routes are pooled)."""
    import json
    import urllib.request

    url = f"http://{node.cfg.host}:{node.cfg.monitor_port}/routez"
    with urllib.request.urlopen(url, timeout=2.0) as resp:
        return {r.get("remote_name", "") for r in json.loads(resp.read())["routes"] or []}


def test_a_node_without_route_credentials_cannot_join(tmp_path: Path) -> None:
    """Routes authenticate: two nodes with the cluster's route credentials link up; a third
    with credentials of its own (another checkout's) is refused both ways and stays alone."""
    ports = [free_port() for _ in range(3)]
    urls = [f"nats-route://127.0.0.1:{p}" for p in ports]

    def node(i: int, creds: Path | None = None) -> ClusterNode:
        cfg = NatsServerSettings(port=free_port(), monitor_port=free_port(),
                                 store_dir=str(tmp_path / f"n{i}"))  # fmt: skip
        return ClusterNode(cfg, name=f"jm-n{i}", cluster_name="jm", cluster_port=ports[i],
                           routes=urls, log_file=tmp_path / f"n{i}.log",
                           credentials_dir=creds)  # fmt: skip

    good = [node(0), node(1)]
    bad = node(2, creds=tmp_path / "other-creds")
    try:
        for n in (*good, bad):
            n.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (
            peers(good[0]) == {"jm-n1"} and peers(good[1]) == {"jm-n0"}
        ):
            time.sleep(0.2)
        assert peers(good[0]) == {"jm-n1"} and peers(good[1]) == {"jm-n0"}
        time.sleep(1.5)  # the bad node keeps retrying meanwhile
        assert peers(bad) == set()
        assert "jm-n2" not in peers(good[0]) | peers(good[1])
        logs = (tmp_path / "n0.log").read_text() + (tmp_path / "n1.log").read_text()
        assert "authentication error" in logs.lower() or "authorization" in logs.lower()
    finally:
        for n in (*good, bad):
            n.stop()
