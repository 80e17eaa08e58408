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
parser calls for every MSG/HMSG (checked against nats-py 2.16 by tests/streams/test_delivery.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.protocol.parser import AWAITING_CONTROL_LINE, Parser

from streams.bus.headers import parse_header_lines

_HDR_LINE = b"NATS/1.0\r\n"
_FIRST = len(_HDR_LINE) - 2  # where the first header line's "\r\n<Name>:" starts


class Delivery(Msg):
    """A ``Msg`` built without the dataclass ``__init__``, headers parsed on first use.

    Only what differs per message is set: ``_metadata``, ``_ackd`` and ``_sid`` keep the
    dataclass's class-level defaults until nats-py's own methods assign them."""

    _parsed: dict[str, str] | None = None

    def __init__(self, client: Client, subject: str, reply: str, data: bytes, raw: bytes) -> None:
        self._client = client
        self.subject = subject
        self.reply = reply
        self.data = data
        self._raw_headers = raw

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
        """``int()`` of :meth:`raw_header` (KeyError as there; ValueError: no integer).

        First the shape the collectors write, the header on the block's first line right
        after ``NATS/1.0``: one ``startswith`` and two ``find`` instead of the general
        search (the receive time of every RAW message, ~10% less per call). The name
        must not occur again after it, as in :meth:`raw_header`."""
        raw = self._raw_headers
        if raw.startswith(line, _FIRST):
            i = _FIRST + len(line)
            end = raw.find(b"\r", i)
            if end > 0 and raw.find(line[2:-1], end) < 0:
                return int(raw[i:end])  # int() strips the value's whitespace
        return int(self.raw_header(line))

    @headers.setter
    def headers(self, value: dict[str, str] | None) -> None:
        self._parsed, self._raw_headers = value, b""


Handler = Callable[[Delivery], None]


class _RoutedParser(Parser):
    """nats-py's protocol parser, with a fast path for the messages of routed subscriptions.

    nats-py's parser matches a regex against the buffer, fills a dict, deletes the consumed
    bytes and awaits a coroutine for every message: in py-spy profiles of the sink and the
    normalizer that was most of their read loop, itself a third of each process. Here a
    run of MSG/HMSG is read by offsets: a routed subscription's message goes to its handler
    directly, any other (another subscription's, a status message) to the client's
    ``_process_msg`` exactly as nats-py's parser would hand it over; the consumed bytes are
    deleted once per read, and an incomplete message waits for the next read. Anything
    else (INFO, PONG, +OK, -ERR, a malformed line) goes to nats-py's own parser with the
    rest of the buffer: it reaches routed messages through ``process_msg`` below, so
    nothing depends on which path read what, and when it stops inside a payload, the next
    read finishes that message as it would and the fast path resumes."""

    async def parse(self, data: bytes = b"") -> None:
        buf = self.buf
        buf += data
        if self.state != AWAITING_CONTROL_LINE:
            if len(buf) < self.needed + 2:
                return
            await self._payload()
        nc = self.nc
        routes: dict[int, Handler] = nc._jm_routes
        stats = nc.stats
        end_of_buf = len(buf)
        pos = 0
        handover = False  # something only nats-py's parser reads
        try:
            while pos < end_of_buf:
                if buf.startswith(b"HMSG ", pos):
                    line_end = buf.find(b"\r\n", pos + 5)
                    if line_end < 0:
                        return  # the rest of the line is still on its way
                    args = buf[pos + 5 : line_end].split()
                    with_reply = len(args) == 5
                    if not (4 <= len(args) <= 5 and args[-2].isdigit()):
                        handover = True
                        break
                    hdr_size = int(args[-2])
                elif buf.startswith(b"MSG ", pos):
                    line_end = buf.find(b"\r\n", pos + 4)
                    if line_end < 0:
                        return
                    args = buf[pos + 4 : line_end].split()
                    with_reply = len(args) == 4
                    if not 3 <= len(args) <= 4:
                        handover = True
                        break
                    hdr_size = 0
                elif buf.startswith(b"PING\r\n", pos):
                    pos += 6
                    await nc._process_ping()
                    continue
                else:
                    handover = True
                    break
                if not (args[1].isdigit() and args[-1].isdigit()):
                    handover = True  # nats-py's parser says what is wrong with it
                    break
                sid = int(args[1])
                start = line_end + 2
                stop = start + int(args[-1])  # header + payload bytes
                if stop + 2 > end_of_buf:
                    return  # not all here yet
                headers = bytes(buf[start : start + hdr_size])
                payload = bytes(buf[start + hdr_size : stop])
                pos = stop + 2
                fn = routes.get(sid)
                if fn is None or (hdr_size and not headers.startswith(_HDR_LINE)):
                    # another subscription's message, or a status message: as nats-py's
                    # parser hands it over (no header block: None)
                    reply_b = bytes(args[2]) if with_reply else b""
                    await nc._process_msg(
                        sid, bytes(args[0]), reply_b, payload, headers if hdr_size else None
                    )
                    continue
                stats["in_msgs"] += 1
                stats["in_bytes"] += len(payload)
                reply = args[2].decode() if with_reply else ""
                fn(Delivery(nc, args[0].decode(), reply, payload, headers))
        finally:
            if pos:  # consumed, even if a handler raised
                del buf[:pos]
        if handover:
            await super().parse()

    async def _payload(self) -> None:
        """The message whose control line nats-py's parser read: its payload has arrived
        (the same steps as nats-py's own, so the next message is ours again)."""
        buf, needed, hdr_size = self.buf, self.needed, self.header_needed
        arg = self.msg_arg
        headers = bytes(buf[:hdr_size]) if hdr_size > 0 else None
        payload = bytes(buf[max(hdr_size, 0) : needed])
        del buf[: needed + 2]
        self.header_needed = 0
        self.state = AWAITING_CONTROL_LINE
        await self.nc._process_msg(arg["sid"], arg["subject"], arg["reply"], payload, headers)


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
    # the client's own parser instance (nats-py keeps it across reconnects and resets its
    # buffer there): switching its class keeps whatever it holds
    nc._ps.__class__ = _RoutedParser
    return routes


def attach(nc: Client, sid: int, fn: Handler) -> None:
    _routes(nc)[sid] = fn


def detach(nc: Client, sid: int) -> None:
    _routes(nc).pop(sid, None)
