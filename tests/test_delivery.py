"""streams/delivery.py hands a subscription's messages over exactly as nats-py would,
leaves status messages and other subscriptions on nats-py's path, and ``int_header`` reads
the same value as the parsed headers or declines."""

from __future__ import annotations

import asyncio
import inspect
import random

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from streams import delivery
from streams.consumer import BatchConsumer
from streams.delivery import Delivery
from streams.settings import ConsumerSettings

HEADERS = [
    {"Jm-Recv-Ns": "1700000000000000001", "Jm-Conn": "c1"},
    {"Nats-Msg-Id": "binance:trade:BTC-USDT:7", "Jm-Recv-Ns": "42"},
    {"K": "café", "Empty": ""},
    None,
]


def test_nats_py_still_calls_process_msg_with_these_arguments() -> None:
    # the hook's one contact with nats-py: fail loudly here after an upgrade that moves it
    params = list(inspect.signature(Client._process_msg).parameters)
    assert params[:6] == ["self", "sid", "subject", "reply", "data", "headers"]


async def test_same_messages_as_nats_py(nc: Client) -> None:
    """One subject, two subscriptions: one attached here, one on nats-py's own path."""
    ours: list[Delivery] = []
    theirs: list[Msg] = []

    async def keep(m: Msg) -> None:
        theirs.append(m)

    async def unused(m: Msg) -> None:
        raise AssertionError("an attached subscription's data reached nats-py's path")

    sub = await nc.subscribe("t.>", cb=unused)
    delivery.attach(nc, sub._id, ours.append)
    await nc.subscribe("t.>", cb=keep)
    for i, h in enumerate(HEADERS * 50):
        await nc.publish(f"t.{i}", f"payload {i}".encode(), reply=f"r.{i}", headers=h)
    await nc.flush()
    for _ in range(200):
        if len(theirs) == len(HEADERS) * 50:
            break
        await asyncio.sleep(0.01)
    assert len(ours) == len(theirs) == len(HEADERS) * 50
    for a, b in zip(ours, theirs, strict=True):
        assert isinstance(a, Delivery) and isinstance(a, Msg)
        assert (a.subject, a.reply, a.data) == (b.subject, b.reply, b.data)
        assert a.headers == b.headers
    delivery.detach(nc, sub._id)
    await nc.publish("t.after", b"x")
    await nc.flush()
    await asyncio.sleep(0.05)
    assert len(ours) == len(HEADERS) * 50  # detached: nothing more arrives here


def test_int_header_reads_the_value_or_declines() -> None:
    def msg(raw: bytes) -> Delivery:
        return Delivery(None, "s", "", b"", raw)  # type: ignore[arg-type]

    line = b"\r\nJm-Recv-Ns:"
    ok = msg(b"NATS/1.0\r\nJm-Recv-Ns: 1700000000000000001\r\nJm-Conn: c\r\n\r\n")
    assert ok.int_header(line) == 1700000000000000001
    assert ok.int_header(line) == int(ok.headers["Jm-Recv-Ns"])  # type: ignore[index]
    with pytest.raises(KeyError):  # parsed once: the raw block is gone, read the dict
        ok.int_header(line)
    assert msg(b"NATS/1.0\r\nA: 1\r\nJm-Recv-Ns:  7 \r\n\r\n").int_header(line) == 7
    declines = [
        b"NATS/1.0\r\nJm-Conn: c\r\n\r\n",  # absent
        b"NATS/1.0\r\nJm-Recv-Ns: 1\r\nJm-Recv-Ns: 2\r\n\r\n",  # twice: nats-py keeps the last
        b"NATS/1.0\r\n Jm-Recv-Ns : 1\r\nJm-Recv-Ns: 2\r\n\r\n",  # a padded name too
        b"",
    ]
    for raw in declines:
        with pytest.raises(KeyError):
            msg(raw).int_header(line)
    with pytest.raises(KeyError):  # no line end: left to nats-py's parser
        msg(b"NATS/1.0\r\nJm-Recv-Ns: 1").int_header(line)
    for raw in [b"NATS/1.0\r\nJm-Recv-Ns: abc\r\n\r\n", b"NATS/1.0\r\nJm-Recv-Ns: \r\n"]:
        with pytest.raises(ValueError):
            msg(raw).int_header(line)


async def test_consumer_gets_every_message_once_with_headers_in_stream_order(
    js: JetStreamContext,
) -> None:
    """A JetStream push consumer on the hook: every stored message once, in stream order,
    headers intact, stream sequences from the ack subjects, acks accepted by the server."""
    await js.add_stream(StreamConfig(name="DLV", subjects=["dlv.>"]))
    n = 3000
    for i in range(n):
        await js.publish(f"dlv.{i % 7}", str(i).encode(), headers={"Jm-Recv-Ns": str(i)})
    c = BatchConsumer(js, "DLV", ConsumerSettings(durable="dlv", batch=500), "dlv.>")
    await c.start()
    got: list[tuple[int, int, int]] = []
    while len(got) < n:
        msgs = await c.fetch(timeout=5.0)
        assert msgs, "consumer stalled"
        got += [
            (seq, int(m.data), m.int_header(b"\r\nJm-Recv-Ns:"))
            for m, seq in zip(msgs, c.seqs, strict=True)
        ]
        await c.ack_through(msgs[-1])
    assert got == [(i + 1, i, i) for i in range(n)]
    for _ in range(100):
        if await c.lag() == 0:
            break
        await asyncio.sleep(0.02)
    assert await c.lag() == 0  # every ack reached the server
    await c.stop()


def test_raw_header_agrees_with_the_parsed_headers_on_random_blocks() -> None:
    rnd = random.Random(11)
    pieces = [
        b"Jm-Recv-Ns: 17", b"Jm-Recv-Ns:9 ", b" Jm-Recv-Ns: 3", b"Jm-Conn: c\xc3\xa9",
        b"Jm-Conn:", b"X: Jm-Recv-Ns", b"A:1", b"NoColon", b"", b"jm-conn: lower",
    ]  # fmt: skip
    answered = 0
    for _ in range(5000):
        lines = rnd.choices(pieces, k=rnd.randint(0, 4))
        block = b"NATS/1.0\r\n" + b"".join(x + b"\r\n" for x in lines) + b"\r\n"
        for name in ("Jm-Recv-Ns", "Jm-Conn"):
            fast = Delivery(None, "s", "", b"", block)  # type: ignore[arg-type]
            try:
                value = fast.raw_header(f"\r\n{name}:".encode())
            except KeyError:
                continue
            answered += 1
            slow = Delivery(None, "s", "", b"", block)  # type: ignore[arg-type]
            assert value.strip().decode("utf-8", "replace") == (slow.headers or {})[name]
    assert answered > 1000  # the fast path did answer, not only decline
