"""streams.bus.consumer.publish_batch: the normalizer's one-write batch publish must put on the
wire exactly what nc.publish would (subjects, payloads, Nats-Msg-Id), in order."""

from __future__ import annotations

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import MaxPayloadError
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from streams.bus.consumer import publish_batch


async def test_batch_arrives_in_order_with_ids_and_dedup(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(StreamConfig(name="PB", subjects=["pb.>"]))
    seen: list[Msg] = []

    async def on_msg(m: Msg) -> None:
        seen.append(m)

    sub = await nc.subscribe("pb.>", cb=on_msg)
    msgs = [
        ("pb.a", "id-1", b'{"n":1}'),
        ("pb.b", None, b""),  # no header, empty payload
        ("pb.a", "caf\u00e9:\u20ac", b"x" * 3000),  # non-ASCII id: lengths count bytes
        ("pb.a", "bad\r\nid", b"crlf"),  # a header value is one line
        ("pb.a", "id-1", b"again"),  # same id: JetStream drops the copy
    ]
    await publish_batch(nc, msgs, prefix="")
    await publish_batch(nc, [("b.c", "id-9", b"last")], prefix="pb.")
    await js.publish("pb.end", b"end", stream="PB")  # acked: everything before is stored
    await nc.flush()
    await sub.unsubscribe()
    assert [m.subject for m in seen] == ["pb.a", "pb.b", "pb.a", "pb.a", "pb.a", "pb.b.c", "pb.end"]
    assert [m.data for m in seen][:6] == [b'{"n":1}', b"", b"x" * 3000, b"crlf", b"again", b"last"]
    ids = [(m.headers or {}).get("Nats-Msg-Id") for m in seen]
    assert ids == ["id-1", None, "caf\u00e9:\u20ac", "bad  id", "id-1", "id-9", None]
    assert (await js.stream_info("PB")).state.messages == 6  # the repeated id-1 dropped


async def test_oversize_payload_is_refused_not_sent(nc: Client) -> None:
    with pytest.raises(MaxPayloadError):
        await publish_batch(nc, [("pb.big", "x", b"0" * (nc.max_payload + 1))])
    assert nc.is_connected  # nats-server would have cut the link on the oversize command
