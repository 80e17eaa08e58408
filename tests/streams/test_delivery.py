"""streams/bus/delivery.py hands a subscription's messages over exactly as nats-py would,
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

from streams.bus import delivery
from streams.bus.consumer import BatchConsumer
from streams.bus.delivery import Delivery
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


def test_int_header_agrees_with_the_parsed_headers_on_random_blocks() -> None:
    """The first-line fast path of ``int_header`` (the collectors' shape) and the general
    search answer alike: a value only when nats-py's parsed headers hold that integer."""
    rnd = random.Random(12)
    pieces = [
        b"Jm-Recv-Ns: 17", b"Jm-Recv-Ns:9 ", b" Jm-Recv-Ns: 3", b"Jm-Recv-Ns: x1",
        b"Jm-Conn: c", b"Jm-Conn: Jm-Recv-Ns: 5", b"X: Jm-Recv-Ns", b"A:1", b"",
    ]  # fmt: skip
    fast_answers = 0
    for _ in range(5000):
        lines = [pieces[rnd.randint(0, 1)], *rnd.choices(pieces, k=rnd.randint(0, 3))]
        block = b"NATS/1.0\r\n" + b"".join(x + b"\r\n" for x in lines) + b"\r\n"
        m = Delivery(None, "s", "", b"", block)  # type: ignore[arg-type]
        parsed = (Delivery(None, "s", "", b"", block).headers or {}).get("Jm-Recv-Ns")  # type: ignore[arg-type]
        try:
            value = m.int_header(b"\r\nJm-Recv-Ns:")
        except (KeyError, ValueError):
            continue
        fast_answers += 1
        assert parsed is not None and value == int(parsed), block
    assert fast_answers > 1000


class _Recorder:
    """What a client sees from its protocol parser: every message and control line."""

    def __init__(self, routed: set[int]) -> None:
        self.events: list[tuple] = []
        self.stats = {"in_msgs": 0, "in_bytes": 0}
        self._jm_routes = {sid: self._routed for sid in routed}

    def _routed(self, m: Delivery) -> None:
        raw = m._raw_headers or None
        self.events.append(("msg", m.subject, m.reply, m.data, raw))

    async def _process_msg(self, sid, subject, reply, data, headers) -> None:  # type: ignore[no-untyped-def]
        self.events.append(("msg", subject.decode(), reply.decode(), data, headers or None))

    async def _process_ping(self) -> None:
        self.events.append(("ping",))

    async def _process_pong(self) -> None:
        self.events.append(("pong",))

    async def _process_info(self, info: dict) -> None:
        self.events.append(("info", info))

    async def _process_err(self, err: str) -> None:
        self.events.append(("err", err))


CONTROL = [b"PING\r\n", b"PONG\r\n", b"+OK\r\n", b'INFO {"server_id":"x"}\r\n',
           b"-ERR 'slow consumer'\r\n"]  # fmt: skip


def _protocol(rnd: random.Random, n: int) -> bytes:
    out = []
    for i in range(n):
        kind = rnd.random()
        sid = rnd.choice([1, 2, 3])
        reply = rnd.choice(["", f"$JS.ACK.RAW.c.1.{i}.{i}.1700000000000000000.0"])
        sep = rnd.choice([" ", " ", "  ", "\t"])
        data = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 40)))
        if kind < 0.45:
            hdr = rnd.choice([
                b"NATS/1.0\r\nJm-Recv-Ns: 17\r\nJm-Conn: c\r\n\r\n",
                b"NATS/1.0 100 Idle Heartbeat\r\n\r\n",  # a status: nats-py's path
                b"NATS/1.0\r\n\r\n",
            ])  # fmt: skip
            args = sep.join(x for x in ("HMSG", f"s.{i}", str(sid), reply) if x)
            out.append(f"{args}{sep}{len(hdr)}{sep}{len(hdr) + len(data)}\r\n".encode())
            out.append(hdr + data + b"\r\n")
        elif kind < 0.85:
            args = sep.join(x for x in ("MSG", f"s.{i}", str(sid), reply) if x)
            out.append(f"{args}{sep}{len(data)}\r\n".encode() + data + b"\r\n")
        else:
            out.append(rnd.choice(CONTROL))
    return b"".join(out)


async def test_routed_parser_reads_what_nats_py_reads_in_any_chunking() -> None:
    """The same protocol bytes, cut at random points, through nats-py's parser and through
    the routed one (sids 1 and 2 routed): the same messages and control lines, in order."""
    from nats.protocol.parser import Parser

    from streams.bus.delivery import _RoutedParser

    rnd = random.Random(5)
    for _ in range(60):
        stream = _protocol(rnd, rnd.randint(1, 120))
        ref, ours = _Recorder(set()), _Recorder({1, 2})
        p_ref, p_ours = Parser(ref), _RoutedParser(ours)
        await p_ref.parse(stream)
        pos = 0
        while pos < len(stream):
            step = rnd.choice([1, 2, 7, 50, 300, 5000])
            await p_ours.parse(stream[pos : pos + step])
            pos += step
        assert ours.events == ref.events
        assert len(p_ours.buf) == 0
    # a consumer's connection as it usually reads: its own messages in socket-sized chunks
    hdr = b"NATS/1.0\r\nJm-Conn: c\r\n\r\n"
    routed_only = b"".join(
        b"HMSG s.%d 1 $JS.ACK.RAW.c.1.%d.%d.1.0 %d %d\r\n%sabc\r\n"
        % (i, i, i, len(hdr), len(hdr) + 3, hdr)
        for i in range(2000)
    )
    ours = _Recorder({1})
    p_ours = _RoutedParser(ours)
    for pos in range(0, len(routed_only), 65536):
        await p_ours.parse(routed_only[pos : pos + 65536])
    assert len(ours.events) == 2000
    assert ours.stats["in_msgs"] >= 1990  # all but the few cut at a chunk's end: fast path


def test_stream_seq_reads_what_nats_py_metadata_reads() -> None:
    from streams.bus.consumer import stream_seq

    for reply in [
        "$JS.ACK.RAW.sink-raw.1.5.1.1700000000000000000.0",  # v1: 9 tokens
        "$JS.ACK.hub.ACCHASH.RAW.sink-raw.2.77.3.1700000000000000000.0.r1",  # v2: domain
        "$JS.ACK._.ACCHASH.RAW.sink-raw.1.123456789.9.1700000000000000000.4",
    ]:
        m = Delivery(None, "raw.binance.trade.BTCUSDT", reply, b"", b"")  # type: ignore[arg-type]
        assert stream_seq(m) == m.metadata.sequence.stream


async def test_big_message_over_many_reads_and_a_reset_midway() -> None:
    """A routed message far bigger than a read arrives in 4 KiB pieces and is handed over
    once, whole; a reconnect (nats-py resets the parser) midway through another big one
    leaves no wait for its missing bytes: the next connection's small message comes at once."""
    from streams.bus.delivery import _RoutedParser

    hdr = b"NATS/1.0\r\nJm-Conn: c\r\n\r\n"
    big = bytes(range(256)) * 4096  # 1 MiB
    wire = b"HMSG s.1 1 r.1 %d %d\r\n%s%s\r\n" % (len(hdr), len(hdr) + len(big), hdr, big)
    rec = _Recorder({1})
    p = _RoutedParser(rec)
    for pos in range(0, len(wire), 4096):
        await p.parse(wire[pos : pos + 4096])
    assert rec.events == [("msg", "s.1", "r.1", big, hdr)]
    assert len(p.buf) == 0
    await p.parse(wire[: len(wire) // 2])  # half of another, then the connection drops
    p.reset()
    small = b"HMSG s.2 1 r.2 %d %d\r\n%sabc\r\n" % (len(hdr), len(hdr) + 3, hdr)
    await p.parse(small)
    assert rec.events[1:] == [("msg", "s.2", "r.2", b"abc", hdr)]
    assert len(p.buf) == 0


def test_raw_stamp_agrees_with_the_parsed_headers_on_random_blocks() -> None:
    """``raw_stamp`` (both raw-frame headers in one split) answers only for the collectors'
    two-line block, and then exactly what nats-py's parsed headers hold; the blocks
    ``wire.hpub_raw`` writes always take it."""
    from streams.bus import wire

    rnd = random.Random(13)
    recv = [b"Jm-Recv-Ns: 17", b"Jm-Recv-Ns:9 ", b" Jm-Recv-Ns: 3", b"Jm-Recv-Ns: x", b"A: 1"]
    conn = [b"Jm-Conn: c1", b"Jm-Conn:  c\xc3\xa9 ", b"Jm-Conn:", b"Jm-Conn: Jm-Recv-Ns: 5", b""]
    answered = 0
    for _ in range(5000):
        lines = [rnd.choice(recv), rnd.choice(conn)]
        if rnd.random() < 0.3:
            lines.insert(rnd.randint(0, 2), rnd.choice(recv + conn))
        block = b"NATS/1.0\r\n" + b"".join(x + b"\r\n" for x in lines) + b"\r\n"
        parsed = Delivery(None, "s", "", b"", block).headers or {}  # type: ignore[arg-type]
        try:
            ns, conn_id = Delivery(None, "s", "", b"", block).raw_stamp()  # type: ignore[arg-type]
        except (KeyError, ValueError):
            continue
        answered += 1
        assert (ns, conn_id.decode("utf-8", "replace")) == (
            int(parsed["Jm-Recv-Ns"]), parsed["Jm-Conn"]), block  # fmt: skip
    assert answered > 1000
    for ns, cid in [(1700000000000000000, "binance-1-2"), (0, "x")]:
        head = wire.hpub_raw("raw.binance.trade.BTCUSDT", ns, cid, 3)
        block = head[head.index(b"\r\n") + 2 :]
        assert Delivery(None, "s", "", b"abc", block).raw_stamp() == (ns, cid.encode())  # type: ignore[arg-type]
