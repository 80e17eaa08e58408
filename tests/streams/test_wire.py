"""The one PUB/HPUB encoder (streams/bus/wire.py) writes what nats-py's own ``publish``
would write, byte for byte, for every subject, id and header value."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from streams.bus import wire

_CHARS = st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=".*>")
TOKENS = st.text(alphabet=_CHARS, min_size=1, max_size=12)
SUBJECTS = st.lists(TOKENS, min_size=1, max_size=4).map(".".join)
# any text, but values nats-py would strip differ on purpose (we keep them as given)
VALUES = st.text(max_size=40).filter(lambda v: v == v.strip())


class _Capture(Client):
    """A client whose publish path ends in a list instead of a socket."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self._flush_queue = None

    async def _send_command(self, cmd: bytes, priority: bool = False) -> None:
        self.sent.append(bytes(cmd))


def nats_py(subject: str, data: bytes, headers: dict[str, str] | None) -> bytes:
    c = _Capture()
    asyncio.run(c._send_publish(subject, "", data, len(data), headers))
    return c.sent[0]


def ours(head: bytes, data: bytes) -> bytes:
    return head + data + wire.CRLF


def same(a: bytes, b: bytes) -> bool:
    """Equal but for the empty reply token nats-py writes as a double space."""
    la, _, ra = a.partition(b"\r\n")
    lb, _, rb = b.partition(b"\r\n")
    return la.split() == lb.split() and ra == rb


@settings(max_examples=300, deadline=None)
@given(SUBJECTS, VALUES, st.binary(max_size=64))
def test_hpub_id_matches_nats_py(subject: str, msg_id: str, data: bytes) -> None:
    head, total = wire.hpub_id(subject, msg_id, len(data))
    got = ours(head, data)
    assert same(got, nats_py(subject, data, {"Nats-Msg-Id": msg_id}))
    assert total == len(got) - len(head.split(b"\r\n", 1)[0]) - 4


@settings(max_examples=300, deadline=None)
@given(SUBJECTS, VALUES, VALUES, st.binary(max_size=64))
def test_hpub_matches_nats_py(subject: str, recv: str, conn: str, data: bytes) -> None:
    headers = (("Jm-Recv-Ns", recv), ("Jm-Conn", conn))
    head, _ = wire.hpub(subject, headers, len(data))
    assert same(ours(head, data), nats_py(subject, data, dict(headers)))


@given(SUBJECTS, st.binary(max_size=64))
def test_pub_matches_nats_py(subject: str, data: bytes) -> None:
    assert same(ours(wire.pub(subject, len(data)), data), nats_py(subject, data, None))


def test_a_line_break_in_a_value_cannot_add_a_header() -> None:
    head, _ = wire.hpub_id("market.trade.x.y", "a\r\nNats-Expected-Stream: EVIL", 0)
    assert head.count(b"\r\n") == 4 and b"a  Nats-Expected-Stream: EVIL" in head
    head, _ = wire.hpub("raw.x.y.z", (("Jm-Conn", "c\rX: 1"),), 0)
    assert head.count(b"\r\n") == 4 and b"Jm-Conn: c X: 1\r\n" in head


@settings(max_examples=300, deadline=None)
@given(SUBJECTS, st.integers(min_value=0, max_value=2**63), VALUES, st.binary(max_size=64))
def test_hpub_raw_is_hpub_with_the_raw_headers(
    subject: str, recv_ns: int, conn: str, data: bytes
) -> None:
    head, _ = wire.hpub(subject, (("Jm-Recv-Ns", str(recv_ns)), ("Jm-Conn", conn)), len(data))
    assert wire.hpub_raw(subject, recv_ns, conn, len(data)) == head
