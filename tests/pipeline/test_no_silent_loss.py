"""No silent loss (issue 15, items 12-13), short forms on a real nats-server: a full
JetStream store, NATS down longer than the collector's buffer, a 20 MB frame and one over
the collector's limit. Each ends with every frame either in RAW exactly once or covered by
a recorded ``lost`` gap with the exact count, and health degraded while it lasted. The long
forms run in ``make faults`` (tests/faults/)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import orjson
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import ServiceUnavailableError

from collectors import metrics, publisher
from collectors.binance import run as collector_main
from collectors.health import health_of
from collectors.publisher import RawPublisher
from normalizer.core import Normalizer
from normalizer.worker import main as normalizer_main
from streams import schemas, subjects
from streams.bus.connect import connect
from streams.bus.server import CONFIG, NatsServer, free_port
from streams.provision import STREAM_RAW, provision
from streams.settings import NatsServerSettings, Settings
from tests.conftest import make_settings
from tests.venues.binance.emulator import BinanceEmulator
from tests.workers import inprocess

BASE_NS = 1_700_000_000_000_000_000
SMALL = {"max_age_s": 3600, "max_bytes": 4_000_000}
_RANGE = re.compile(r"received (\d+)\.\.(\d+) ns")


def frame(i: int) -> bytes:
    return b'{"stream":"btcusdt@trade","data":{"t":%d}}' % i


class Feed:
    """Trade frames 1, 2, 3 ... through a RawPublisher, receive time BASE_NS + id."""

    def __init__(self, pub: RawPublisher) -> None:
        self.pub = pub
        self.n = 0

    async def send(self, count: int, durable_last: bool = False) -> None:
        for k in range(count):
            self.n += 1
            durable = durable_last and k == count - 1
            await self.pub.publish(
                "trade", "BTCUSDT", frame(self.n), BASE_NS + self.n, "binance-test-1",
                durable=durable,
            )  # fmt: skip

    async def until_recorded(self, timeout: float = 30.0) -> None:
        """Frames (an acked one every 0.2 s) until every frame is confirmed and every loss
        record is on RAW."""
        deadline = time.monotonic() + timeout
        while self.pub.unconfirmed or self.pub._losses or self.pub.confirmed < self.pub.published:
            assert time.monotonic() < deadline, f"not recovered: {self.pub.trouble()}"
            await asyncio.sleep(0.2)
            await self.send(1, durable_last=True)


async def raw_all(js: JetStreamContext) -> list:
    """Every message in RAW, in stream order."""
    info = await js.stream_info(STREAM_RAW)
    want = int(info.state.messages)
    sub = await js.subscribe(subjects.RAW_ALL, stream=STREAM_RAW, ordered_consumer=True)
    out = []
    try:
        while len(out) < want:
            out.append(await sub.next_msg(timeout=5.0))
    finally:
        await sub.unsubscribe()
    return out


async def account(js: JetStreamContext, total: int) -> tuple[int, int, list[schemas.Gap]]:
    """(stored, lost) of trade ids 1..total, checked exactly: no id stored twice, every
    missing id inside a ``lost`` gap (made by the real normalizer from RAW), and the gaps'
    counts add up to the missing ids."""
    stored: dict[int, int] = {}
    gaps: list[schemas.Gap] = []
    norm = Normalizer()
    for m in await raw_all(js):
        if m.subject == "raw.binance.trade.BTCUSDT":
            i = orjson.loads(m.data)["data"]["t"]
            stored[i] = stored.get(i, 0) + 1
        elif m.subject == "raw.binance.conn.ALL":
            res = norm.normalize(m.subject, m.data, m.headers, m.metadata.sequence.stream)
            assert isinstance(res, list), res
            gaps += [msgspec.json.decode(o.data, type=schemas.Gap) for o in res]
    assert all(n == 1 for n in stored.values()), "a frame stored twice"
    lost_gaps = [g for g in gaps if g.reason == "lost"]
    spans = []
    counted = 0
    for g in lost_gaps:
        assert g.symbol == "BTC-USDT" and g.channel == "trade", g
        lo, hi = (int(x) for x in _RANGE.search(g.detail).groups())  # type: ignore[union-attr]
        assert g.ts_event == lo
        spans.append((lo, hi))
        counted += int(g.detail.split()[1])
    missing = [i for i in range(1, total + 1) if i not in stored]
    uncovered = [i for i in missing if not any(lo <= BASE_NS + i <= hi for lo, hi in spans)]
    assert not uncovered, f"{len(uncovered)} lost frames without a gap, e.g. {uncovered[:5]}"
    assert counted == len(missing), f"gaps count {counted} lost frames, {len(missing)} missing"
    return len(stored), len(missing), lost_gaps


# -- JetStream store full ---------------------------------------------------------------
@pytest.fixture
def small_store(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server whose file store holds 64 MB."""
    conf = tmp_path / "small-store.conf"
    conf.write_text(re.sub(r"max_file_store: \S+", "max_file_store: 64MB", CONFIG.read_text()))
    cfg = NatsServerSettings(
        port=free_port(), monitor_port=free_port(), store_dir=str(tmp_path / "nats")
    )
    srv = NatsServer(cfg, log_file=tmp_path / "nats.log", config=conf).start()
    yield srv
    srv.stop()


def loss_settings(tmp_path: Path, url: str, **collector: object) -> Settings:
    streams = {k: SMALL for k in ("raw", "market", "exec", "dlq", "frames")}
    return make_settings(tmp_path, url, streams={**streams, "store_bytes": 64_000_000},
                         collector={"flush_every": 50, **collector})  # fmt: skip


async def test_store_full_every_lost_frame_is_a_gap_and_health_degrades(
    tmp_path: Path, small_store: NatsServer
) -> None:
    """Another stream (no max_bytes, e.g. someone's replay) fills the store: RAW publishes
    get 503 (err 10023). Frames past the collector's buffer are lost - counted, health
    degraded - and once the store has room the loss is recorded and the kept frames are
    re-sent: every frame stored once or inside a gap with the exact count."""
    settings = loss_settings(tmp_path, small_store.url, buffer_frames=400)
    nc = await connect(settings.nats, "loss-test")
    try:
        js = nc.jetstream(timeout=5.0)
        await provision(js, settings)
        pub = RawPublisher(nc, js, "binance", 50, ack_timeout_s=2.0, settings=settings.collector)
        pub.loss_hold_s = 0.5
        feed = Feed(pub)
        await feed.send(100, durable_last=True)
        assert health_of([pub])[0] == "ok" and pub.confirmed == 100

        await js.add_stream(StreamConfig(name="FILLER", subjects=["filler.>"]))
        with pytest.raises(ServiceUnavailableError):
            for _ in range(1000):
                await js.publish("filler.x", b"x" * 500_000)
        lost_before = metrics.LOST.labels("binance", "buffer")._value.get()
        await feed.send(1500)  # store full: barriers refused, the buffer overflows
        state, fields = health_of([pub])
        assert state == "degraded", fields
        assert "not yet recorded" in fields["trouble"]
        assert pub.lost == 1500 - 400, pub.lost  # the buffer kept the newest 400
        assert metrics.LOST.labels("binance", "buffer")._value.get() - lost_before == pub.lost
        assert "10023" in pub.last_error or "ServiceUnavailable" in pub.last_error

        await js.delete_stream("FILLER")  # room again
        await feed.until_recorded()
        stored, lost, gaps = await account(js, feed.n)
        # 1100, plus one per frame sent after it while the store was still refusing
        assert lost == pub.lost >= 1100 and stored == feed.n - lost
        assert "buffer" in gaps[0].detail and "ServiceUnavailable" in gaps[0].detail
        await asyncio.sleep(0.6)  # loss_hold_s over: healthy again
        assert health_of([pub])[0] == "ok", pub.trouble()
    finally:
        await nc.close()


# -- NATS down longer than the buffer -------------------------------------------------------
async def test_nats_down_past_the_buffer_gap_covers_the_dropped_frames(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """nats-server is away while 1000 frames arrive and the buffer holds 300: the 700
    oldest are dropped, health is degraded meanwhile, and the loss is recorded once NATS
    is back; the 300 kept are re-sent. Nothing in nats-py's reconnect buffer."""
    settings = loss_settings(tmp_path, nats_server.url, buffer_frames=300)
    nc = await connect(settings.nats, "loss-test")
    try:
        js = nc.jetstream(timeout=5.0)
        await provision(js, settings)
        pub = RawPublisher(nc, js, "binance", 50, ack_timeout_s=2.0, settings=settings.collector)
        feed = Feed(pub)
        await feed.send(100, durable_last=True)
        nats_server.kill()
        deadline = time.monotonic() + 10
        while nc.is_connected:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        t0 = time.monotonic()
        await feed.send(1000)
        assert time.monotonic() - t0 < 2.0, "barriers waited for timeouts while disconnected"
        state, fields = health_of([pub])
        assert state == "degraded" and pub.lost == 700, (pub.lost, fields)
        assert nc._pending_data_size == 0, "frames went into nats-py's reconnect buffer"
        await asyncio.to_thread(nats_server.start)
        await feed.until_recorded()
        stored, lost, gaps = await account(js, feed.n)
        # 700, plus one per frame sent while NATS was still reconnecting
        assert lost == pub.lost >= 700 and stored == feed.n - lost
        assert len(gaps) == 1 and "collector buffer of 300" in gaps[0].detail
    finally:
        await nc.close()


async def test_frame_over_the_limit_is_dead_lettered_and_a_gap(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """A 10 MB frame with collector.max_frame_bytes = 9 MB: dead letter with the reason and
    the frame's first bytes, and a lost gap once the next publish is confirmed."""
    settings = loss_settings(tmp_path, nats_server.url, max_frame_bytes=9 * 1024 * 1024)
    nc = await connect(settings.nats, "loss-test")
    try:
        js = nc.jetstream(timeout=5.0)
        await provision(js, settings)
        pub = RawPublisher(nc, js, "binance", 50, settings=settings.collector)
        feed = Feed(pub)
        await feed.send(3)
        feed.n += 1
        big = frame(feed.n)[:-2] + b',"pad":"' + b"x" * (10 * 1024 * 1024) + b'"}}'
        await pub.publish("trade", "BTCUSDT", big, BASE_NS + feed.n, "binance-test-1")
        assert health_of([pub])[0] == "degraded"
        await feed.until_recorded()
        stored, lost, gaps = await account(js, feed.n)
        assert (stored, lost) == (feed.n - 1, 1)
        assert "oversized" in gaps[0].detail and "max_frame_bytes" in gaps[0].detail
        dl = await js.get_last_msg("DLQ", subjects.dlq("collector"))
        assert "max_frame_bytes" in dl.headers[subjects.H_REASON]  # type: ignore[index]
        assert dl.data == big[: publisher.DLQ_KEEP]
    finally:
        await nc.close()


# -- a 20 MB frame through the real WebSocket ---------------------------------------------------
class BigInfoEmulator(BinanceEmulator):
    """exchangeInfo padded to ``pad`` bytes (a real one is 13-20 MB)."""

    pad = 0

    async def _rest_info(self, request):  # type: ignore[no-untyped-def]
        resp = await super()._rest_info(request)
        if self.pad:
            body = orjson.loads(resp.body)
            body["pad"] = "x" * self.pad
            resp.body = orjson.dumps(body)
        return resp


@pytest.mark.timeout(120)
async def test_20mb_frames_arrive_whole_in_the_normalizer(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    """A 20 MB exchangeInfo (REST) and a 20 MB trade frame (WebSocket) through the real
    collector and normalizer, over an 8 MB max_payload: both stored by reference and
    normalized whole. A 40 MB frame over collector.max_frame_bytes (30 MB) ends the
    connection: a dead letter saying why, and the reconnect gap."""
    mb20 = 20 * 1024 * 1024
    async with BigInfoEmulator(["BTCUSDT"], seed=5) as emu:
        emu.pad = mb20
        settings = make_settings(tmp_path, nats_server.url, collector={
            "binance": {"ws_url": emu.ws_url, "rest_url": emu.rest_url, "symbols": ["BTCUSDT"],
                        "channels": ["trade"], "reconnect": {"min_s": 0.1, "max_s": 0.5}},
            "max_frame_bytes": 30 * 1024 * 1024})  # fmt: skip
        instruments = asyncio.Event()
        trades: list[schemas.Trade] = []

        async def on_instr(msg: object) -> None:
            instruments.set()

        async def on_trade(msg: object) -> None:
            trades.append(msgspec.json.decode(msg.data, type=schemas.Trade))  # type: ignore[attr-defined]

        s1 = await nc.subscribe("market.instrument.binance.BTC-USDT", cb=on_instr)
        s2 = await nc.subscribe("market.trade.binance.BTC-USDT", cb=on_trade)
        async with (
            inprocess("collector", collector_main, settings) as cw,
            inprocess("normalizer", normalizer_main, settings),
        ):
            await emu.wait_connected(1, timeout=30)
            await asyncio.wait_for(instruments.wait(), 60)  # the 20 MB exchangeInfo, whole
            ms = int(time.time() * 1000)
            trade = {"e": "trade", "E": ms, "s": "BTCUSDT", "t": 424242, "p": "65000.10",
                     "q": "0.25", "T": ms, "m": True, "M": True}  # fmt: skip
            big = orjson.dumps({"stream": "btcusdt@trade", "data": {**trade, "pad": "y" * mb20}})
            await emu.send_raw(big.decode())
            deadline = time.monotonic() + 60
            while not any(t.id == "424242" for t in trades):
                assert time.monotonic() < deadline, "20 MB trade frame not normalized"
                await asyncio.sleep(0.1)
            t = next(t for t in trades if t.id == "424242")
            assert (t.price, t.size, t.side) == (65000.1, 0.25, "sell")
            info = await js.stream_info("OBJ_JM_FRAMES")
            assert info.state.bytes >= 2 * mb20  # both bodies stored whole by reference
            # over collector.max_frame_bytes: the connection ends with close 1009
            await emu.send_raw("z" * (40 * 1024 * 1024))
            deadline = time.monotonic() + 30
            while True:
                try:
                    dl = await js.get_last_msg("DLQ", subjects.dlq("collector"))
                    break
                except Exception:
                    assert time.monotonic() < deadline, "no dead letter for the 40 MB frame"
                    await asyncio.sleep(0.2)
            assert "1009" in dl.headers[subjects.H_REASON]  # type: ignore[index]
            await emu.wait_connected(1, timeout=30)
            assert not cw.stop.is_set()
        await s1.unsubscribe()
        await s2.unsubscribe()
    conn = [orjson.loads(m.data) for m in await raw_all(js) if m.subject.endswith("conn.ALL")]
    assert any(e["event"] == "disconnected" and "1009" in e["reason"] for e in conn), conn
