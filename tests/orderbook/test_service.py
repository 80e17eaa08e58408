"""The order-book service on a real nats-server: valid books publish depth/BBO, faults
publish gaps and snapshot requests, ``book.get`` returns the full book."""

from __future__ import annotations

import asyncio

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from orderbook.service import main as orderbook_main
from streams import schemas, subjects
from streams.provision import STREAM_MARKET
from streams.settings import Settings
from tests.conftest import make_settings
from tests.orderbook.test_sync import TrueBook
from tests.workers import inprocess

SUBJ = subjects.market("book", "binance", "BTC-USDT")


async def pub(js: JetStreamContext, m: schemas.Book) -> None:
    await js.publish(SUBJ, schemas.encode(m), stream=STREAM_MARKET)


async def collect(js: JetStreamContext, subject: str, wait: float = 1.0) -> list[schemas.Base]:
    """Every MARKET message on ``subject`` stored so far, decoded, in stream order."""
    last = (await js.stream_info(STREAM_MARKET)).state.last_seq
    sub = await js.subscribe(subject, stream=STREAM_MARKET, ordered_consumer=True)
    out: list[schemas.Base] = []
    try:
        while True:
            msg = await sub.next_msg(timeout=wait)
            out.append(schemas.decode(msg.data))
            if msg.metadata.sequence.stream >= last:
                break
    except Exception:  # timeout: no more messages on this subject
        pass
    await sub.unsubscribe()
    return out


async def test_service_depth_bbo_gap_resync_and_book_get(
    tmp_path, nats_server, nc: Client, js: JetStreamContext
) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings(
        tmp_path, nats_server.url, orderbook={"depth_interval_ms": 50, "snapshot_retry_s": 0.2}
    )
    tb = TrueBook(3)
    tb.history = {}
    requests: list[str] = []

    async def fake_collector(msg: Msg) -> None:
        # stands in for the collector's ctl.snapshot handler: a fresh snapshot onto MARKET
        requests.append(msg.subject)
        await pub(js, tb.snapshot())

    await nc.subscribe("ctl.snapshot.>", cb=fake_collector)
    async with inprocess("orderbook", orderbook_main, settings):
        await asyncio.sleep(0.3)  # ordered consumer starts at NEW
        for _ in range(200):
            await pub(js, tb.delta())  # unknown book: asks for a snapshot, buffers
        for _ in range(50):
            if requests:
                break
            await asyncio.sleep(0.05)
        assert requests == ["ctl.snapshot.binance.BTC-USDT"]
        await asyncio.sleep(0.3)
        for _ in range(300):
            await pub(js, tb.delta())
        await asyncio.sleep(0.3)
        reply = orjson.loads((await nc.request("book.get.binance.BTC-USDT", b"", timeout=5)).data)
        assert reply["valid"] is True and reply["seq"] == tb.u
        assert [tuple(x) for x in reply["bids"]] == sorted(tb.bids.items(), reverse=True)
        assert [tuple(x) for x in reply["asks"]] == sorted(tb.asks.items())

        # drop one delta: gap event, snapshot request, no depth/bbo while invalid, healed
        seq_before_gap = tb.u
        tb.delta()  # never published
        for _ in range(20):
            await pub(js, tb.delta())
        await asyncio.sleep(0.8)
        assert len(requests) >= 2
        for _ in range(20):
            await pub(js, tb.delta())
        await asyncio.sleep(0.5)
        reply = orjson.loads((await nc.request("book.get.binance.BTC-USDT", b"", timeout=5)).data)
        assert reply["valid"] is True and reply["seq"] == tb.u
        assert [tuple(x) for x in reply["asks"]] == sorted(tb.asks.items())
        missing = orjson.loads((await nc.request("book.get.binance.NOPE", b"", timeout=5)).data)
        assert "error" in missing

    gaps = await collect(js, "market.gap.binance.BTC-USDT")
    assert [g.reason for g in gaps if isinstance(g, schemas.Gap)] == ["sequence"]
    assert gaps[0].expected_seq == seq_before_gap + 1  # type: ignore[attr-defined]
    depth = [d for d in await collect(js, "market.depth.binance.BTC-USDT")]
    bbo = [b for b in await collect(js, "market.bbo.binance.BTC-USDT")]
    assert depth and bbo
    assert all(isinstance(d, schemas.Depth) and len(d.bids) <= 20 for d in depth)
    # every depth/bbo published equals the true book at its sequence: nothing came from
    # the invalid book (which lacked the dropped delta)
    for d in depth:
        assert isinstance(d, schemas.Depth)
        bids, asks = tb.history[d.seq]
        assert (d.bids, d.asks) == (bids, asks), d.seq
    for b in bbo:
        assert isinstance(b, schemas.BBO) and b.seq is not None
        bids, asks = tb.history[b.seq]
        assert (b.bid_price, b.bid_size, b.ask_price, b.ask_size) == (*bids[0], *asks[0])


async def test_an_unanswered_snapshot_request_is_asked_again_without_new_deltas(
    tmp_path, nats_server, nc: Client, js: JetStreamContext
) -> None:  # type: ignore[no-untyped-def]
    """The request (or its answer) is lost and the symbol goes quiet: the service asks
    again by itself, and the book heals, instead of staying in gap until the next delta."""
    settings: Settings = make_settings(
        tmp_path, nats_server.url, orderbook={"depth_interval_ms": 50, "snapshot_retry_s": 0.2}
    )
    tb = TrueBook(5)
    tb.history = {}
    requests: list[float] = []

    async def collector_losing_the_first(msg: Msg) -> None:
        requests.append(asyncio.get_running_loop().time())
        if len(requests) > 1:  # the first request is lost
            await pub(js, tb.snapshot())

    await nc.subscribe("ctl.snapshot.>", cb=collector_losing_the_first)
    async with inprocess("orderbook", orderbook_main, settings):
        await asyncio.sleep(0.3)  # ordered consumer starts at NEW
        for _ in range(20):
            await pub(js, tb.delta())  # unknown book: one request, then quiet
        reply: dict = {}
        for _ in range(100):
            await asyncio.sleep(0.1)
            got = await nc.request("book.get.binance.BTC-USDT", b"", timeout=5)
            reply = orjson.loads(got.data)
            if reply.get("valid"):
                break
        assert len(requests) >= 2, "the lost request was never repeated"
        assert requests[1] - requests[0] >= 0.2 * 5 * 0.9  # not before its patience ran out
        assert reply["valid"] is True and reply["seq"] == tb.u
