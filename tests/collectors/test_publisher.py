"""RawPublisher keeps each frame's receive time and connection as values, not a headers dict
(the hot path writes its HPUB from them): every way out of it (a core write, an acked
barrier, a frame with a msg id, a re-send after an outage) carries the same headers."""

from __future__ import annotations

from nats.js import JetStreamContext

from collectors.losses import kept_headers
from collectors.publisher import RawPublisher
from streams import subjects
from streams.provision import STREAM_RAW


async def test_every_path_publishes_the_frames_own_headers(js: JetStreamContext) -> None:
    nc = js._nc
    pub = RawPublisher(nc, js, "binance", flush_every=3)
    sent = []
    for i in range(7):  # core writes with an acked barrier every third frame
        ns = 1_700_000_000_000_000_000 + i
        msg_id = "binance:snap:7" if i == 4 else None  # a frame with its own dedup id
        await pub.publish("trade", "BTCUSDT", b'{"i":%d}' % i, ns, "conn-1", msg_id=msg_id)
        sent.append((ns, msg_id))
    await pub.publish("trade", "BTCUSDT", b'{"i":7}', 9, "conn-1", durable=True)
    sent.append((9, None))
    assert pub.confirmed == pub.published == 8 and not pub._kept
    for seq, (ns, msg_id) in enumerate(sent, 1):
        m = await js.get_msg(STREAM_RAW, seq)
        want = {subjects.H_RECV_NS: str(ns), subjects.H_CONN: "conn-1"}
        if msg_id:
            want[subjects.H_MSG_ID] = msg_id
        got = dict(m.headers or {})
        got.pop("Nats-Expected-Stream", None)  # an acked publish's own (js.publish stream=)
        assert got == want, (seq, m.headers)
        assert m.data == b'{"i":%d}' % (seq - 1)
    # what a re-send after an outage would publish for a kept frame: the same headers
    entry = (1, "raw.binance.trade.BTCUSDT", b"x", 42, "conn-2", {subjects.H_MSG_ID: "m"}, "t", "S")
    assert kept_headers(entry) == {
        subjects.H_RECV_NS: "42",
        subjects.H_CONN: "conn-2",
        subjects.H_MSG_ID: "m",
    }


async def test_frames_past_the_clients_pending_limit_are_flushed_not_lost(
    js: JetStreamContext,
) -> None:
    """The hot path queues a frame itself below nats-py's pending limit and hands it to
    nats-py (which flushes first) above it: with a limit of a few frames, every frame of
    a burst still reaches RAW, in order."""
    nc = js._nc
    limit = nc._max_pending_size
    nc._max_pending_size = 2048  # ~10 frames
    try:
        pub = RawPublisher(nc, js, "binance", flush_every=10**9)
        n = 500
        for i in range(n):
            await pub.publish("trade", "BTCUSDT", b'{"i":%05d}' % i + b" " * 150, i + 1, "c")
        await pub.publish("trade", "BTCUSDT", b"end", n + 1, "c", durable=True)
    finally:
        nc._max_pending_size = limit
    assert pub.confirmed == n + 1
    info = await js.stream_info(STREAM_RAW)
    assert info.state.messages == n + 1
    for seq in (1, 137, n):
        m = await js.get_msg(STREAM_RAW, seq)
        assert m.data.startswith(b'{"i":%05d}' % (seq - 1))
