"""The normalizer worker on a real nats-server: RAW -> MARKET once, bad frames -> DLQ."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client
from nats.js import JetStreamContext

from normalizer.worker import main as normalizer_main
from streams import schemas, subjects
from streams.provision import STREAM_DLQ, STREAM_MARKET
from streams.settings import Settings
from tests.venues.binance.test_parse import trade_frame
from tests.workers import inprocess

HDR = {subjects.H_RECV_NS: "1700000000000000000", subjects.H_CONN: "t-1"}


async def wait_count(js: JetStreamContext, stream: str, n: int, timeout: float = 20.0) -> int:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = (await js.stream_info(stream)).state.messages
        if got >= n or asyncio.get_running_loop().time() > deadline:
            return got
        await asyncio.sleep(0.05)


async def test_trades_normalized_once_and_bad_frames_dead_lettered(
    settings: Settings, nc: Client, js: JetStreamContext
) -> None:
    subject = subjects.raw("binance", "trade", "BTCUSDT")
    bad = [
        b'{"stream":"btcusdt@trade","data":{"e":"tr',  # truncated JSON
        trade_frame(1, "not-a-price", "1"),  # wrong type
        trade_frame(2, "1", "1").replace(b'"e":"trade"', b'"e":"kline"'),  # unknown event
        bytes(range(256)),  # binary garbage
    ]
    async with inprocess("normalizer", normalizer_main, settings):
        for i in range(1000):
            await nc.publish(subject, trade_frame(i, f"{100 + i}.10", "0.5"), headers=HDR)
        for b in bad:
            await nc.publish(subject, b, headers=HDR)
        await nc.publish(subjects.raw("binance", "mystery", "BTCUSDT"), b"{}", headers=HDR)
        # later frames are still processed, and a re-sent trade is not stored twice
        for i in range(1000, 1500):
            await nc.publish(subject, trade_frame(i, f"{100 + i}.10", "0.5"), headers=HDR)
        await nc.publish(subject, trade_frame(5, "105.10", "0.5"), headers=HDR)
        await nc.flush()
        assert await wait_count(js, STREAM_MARKET, 1500) == 1500
        assert await wait_count(js, STREAM_DLQ, 5) == 5
        await asyncio.sleep(0.5)
        assert (await js.stream_info(STREAM_MARKET)).state.messages == 1500

    sub = await js.pull_subscribe(subjects.dlq("normalizer"), stream=STREAM_DLQ)
    dead = await sub.fetch(5, timeout=5)
    reasons = [m.headers[subjects.H_REASON] for m in dead]  # type: ignore[index]
    assert [m.data for m in dead[:4]] == bad
    assert "malformed" in reasons[0] and "invalid" in reasons[1]
    assert "unexpected event 'kline'" in reasons[2] and "malformed" in reasons[3]
    assert "unknown channel 'mystery'" in reasons[4]
    assert all(m.headers[subjects.H_SOURCE].startswith("raw.binance.") for m in dead)  # type: ignore[index]

    msub = await js.pull_subscribe("market.trade.binance.BTC-USDT", stream=STREAM_MARKET)
    ids = []
    while len(ids) < 1500:
        for m in await msub.fetch(500, timeout=5):
            await m.ack()
            t = schemas.decode(m.data)
            assert isinstance(t, schemas.Trade)
            ids.append(int(t.id))
            assert repr(t.price) == f"{100 + int(t.id)}.1"
    assert ids == list(range(1500))  # every trade once, in order

    info = await js.consumer_info("RAW", settings.normalizer.consumer.durable)
    assert info.num_ack_pending == 0 and info.num_pending == 0
