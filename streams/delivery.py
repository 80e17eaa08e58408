"""Push deliveries handed straight to a consumer, past nats-py's per-message machinery.

For a subscription with a callback nats-py parses every message's headers into a dict,
builds a ``Msg`` dataclass, puts it on an ``asyncio.Queue``, and a task per subscription
takes it off again to await the callback; JetStream subscriptions add flow-control
bookkeeping on top. Our consumers only append each message to a list. Measured on the
RAW -> relay drain (200k frames, same machine, same run): 58k msg/s through nats-py's path,
80k msg/s with the messages handed over here.

``attach(nc, sid, fn)`` routes the data messages of one subscription to ``fn`` (called
synchronously from the client's read loop) as ``Delivery`` objects: a ``Msg`` whose headers
are parsed only when read (the sink's MARKET pipe never reads them). Status messages
(heartbeats, flow control: a status code after ``NATS/1.0``) and every other subscription
keep nats-py's own path. Consumers using it set no flow control and no heartbeats; what
they hold is bounded by the consumer's ``max_ack_pending`` instead.

Written by hand because nats-py has no batch or raw delivery hook; it relies on
``Client._process_msg(sid, subject, reply, data, headers)``, which nats-py's protocol
parser calls for every MSG/HMSG (checked against nats-py 2.16 by tests/test_delivery.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from streams.natsheaders import parse_header_lines

_HDR_LINE = b"NATS/1.0\r\n"


class Delivery(Msg):
    """A ``Msg`` built without the dataclass ``__init__``, headers parsed on first use."""

    def __init__(self, client: Client, subject: str, reply: str, data: bytes, raw: bytes) -> None:
        self._client = client
        self.subject = subject
        self.reply = reply
        self.data = data
        self._raw_headers = raw
        self._parsed: dict[str, str] | None = None
        self._metadata = None
        self._ackd = False
        self._sid = None

    @property  # type: ignore[override]
    def headers(self) -> dict[str, str] | None:
        if self._parsed is None and self._raw_headers:
            # as nats-py: the lines after the version line; no header at all is None
            self._parsed = parse_header_lines(self._raw_headers[len(_HDR_LINE) :]) or None
            self._raw_headers = b""
        return self._parsed

    def raw_header(self, line: bytes) -> bytes:
        """One header's value as sent (unstripped), read from the raw block without parsing
        the rest: parsing every header into a dict for one value was a fifth of the
        normalizer's per-message time in a py-spy profile.

        ``line`` is ``b"\\r\\n<Name>:"``. KeyError when the block no longer is raw (the
        headers were read), lacks that exact line start, or holds the name anywhere else
        (nats-py would keep the last of two lines, and strips names): the caller then
        reads ``headers`` as usual."""
        raw = self._raw_headers
        i = raw.find(line)
        if i < 0 or raw.count(line[2:-1]) != 1:
            raise KeyError(line)
        i += len(line)
        end = raw.find(b"\r", i)
        if end < 0:
            raise KeyError(line)  # a truncated block: nats-py's parser decides
        return raw[i:end]

    def int_header(self, line: bytes) -> int:
        """``int()`` of :meth:`raw_header` (KeyError as there; ValueError: no integer)."""
        return int(self.raw_header(line))  # int() strips the value's whitespace

    @headers.setter
    def headers(self, value: dict[str, str] | None) -> None:
        self._parsed, self._raw_headers = value, b""


Handler = Callable[[Delivery], None]


def _routes(nc: Client) -> dict[int, Handler]:
    routes: dict[int, Handler] | None = getattr(nc, "_jm_routes", None)
    if routes is not None:
        return routes
    routes = {}
    nc._jm_routes = routes  # type: ignore[attr-defined]
    nats_path = nc._process_msg
    stats = nc.stats

    async def process_msg(
        sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any
    ) -> None:
        fn = routes.get(sid)
        if fn is None or (headers and not headers.startswith(_HDR_LINE)):
            return await nats_path(sid, subject, reply, data, headers)
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        fn(Delivery(nc, subject.decode(), reply.decode(), data, headers or b""))

    nc._process_msg = process_msg  # type: ignore[method-assign]
    return routes


def attach(nc: Client, sid: int, fn: Handler) -> None:
    _routes(nc)[sid] = fn


def detach(nc: Client, sid: int) -> None:
    _routes(nc).pop(sid, None)
