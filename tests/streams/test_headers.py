"""streams/bus/headers.py gives exactly what nats-py's own header parser gives, and the
clients ``connect()`` returns use it (a message's headers arrive intact)."""

from __future__ import annotations

import random

from nats.aio.client import Client

from streams.bus import headers as natsheaders
from streams.bus.connect import connect
from streams.settings import Settings

CASES = [
    b"Nats-Msg-Id: binance:trade:BTC-USDT:1\r\nJm-Recv-Ns: 1700000000000000000\r\n\r\n",
    b"Jm-Conn: c1\r\n\r\n",
    b"A:1\r\nA: 2\r\n\r\n",  # a repeated name: the last wins, as in nats-py
    b"Name:\tValue\r\nNoColon\r\n: empty name\r\n\r\n",
    b"Bad Name: x\r\nTab\tName: y\r\nSep\x1fName: z\r\n\r\n",
    b"Caf\xc3\xa9: x\r\nK: caf\xc3\xa9 \xff\r\n\r\n",
    b"  Padded  :   value with spaces   \r\n\r\n",
    b"",
    b"\r\n\r\n",
]


def reference(raw: bytes) -> dict[str, str]:
    return Client._parse_header_lines(raw)


def test_same_as_nats_py_on_ordinary_and_odd_headers() -> None:
    for raw in CASES:
        assert natsheaders.parse_header_lines(raw) == reference(raw), raw
        assert natsheaders.parse_header_lines(raw) == reference(raw), raw  # cached names


def test_same_as_nats_py_on_random_bytes() -> None:
    rnd = random.Random(7)
    alphabet = b"ab:\t \r\n\x1f\xc3\xa9-Z0"
    for _ in range(5000):
        raw = bytes(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 40)))
        assert natsheaders.parse_header_lines(raw) == reference(raw), raw


async def test_connected_clients_use_it(settings: Settings) -> None:
    nc = await connect(settings.nats, "test")
    try:
        assert nc._parse_header_lines is natsheaders.parse_header_lines
        sub = await nc.subscribe("h.test")
        await nc.publish("h.test", b"x", headers={"Jm-Recv-Ns": "42", "Nats-Msg-Id": "a:b"})
        msg = await sub.next_msg(timeout=5)
        assert msg.headers == {"Jm-Recv-Ns": "42", "Nats-Msg-Id": "a:b"}
    finally:
        await nc.close()
