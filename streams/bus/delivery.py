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
from streams.subjects import H_CONN, H_RECV_NS

_HDR_LINE = b"NATS/1.0\r\n"
_RECV_NAME, _CONN_NAME = H_RECV_NS.encode(), H_CONN.encode()
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

    def raw_stamp(self) -> tuple[int, bytes]:
        """(receive time, connection id as sent) of a block holding exactly the two lines
        every raw frame carries (``wire.hpub_raw``: receive time, then connection), read
        with one split: the sink's raw_frames rows need both, and two :meth:`raw_header`
        searches cost twice the scans. KeyError for any other block (another header,
        another order, the headers already read): the caller reads ``headers`` instead;
        ValueError when the receive time is no integer."""
        lines = self._raw_headers.split(b"\r\n")
        if len(lines) != 5 or lines[3] or lines[4] or lines[0] != b"NATS/1.0":
            raise KeyError("not the raw frames' two-line header block")
        recv_name, _, recv = lines[1].partition(b":")
        conn_name, _, conn = lines[2].partition(b":")
        if recv_name != _RECV_NAME or conn_name != _CONN_NAME:
            raise KeyError("not the raw frames' two-line header block")
        return int(recv), conn.strip()

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

    # Bytes the message at the buffer's start needs before it is complete (0: unknown): a
    # big message arriving over many reads is not copied and re-read on each of them.
    _need = 0

    def reset(self) -> None:  # nats-py resets the parser on a reconnect
        super().reset()
        self._need = 0

    async def parse(self, data: bytes = b"") -> None:
        buf = self.buf
        buf += data
        if self.state != AWAITING_CONTROL_LINE:
            if len(buf) < self.needed + 2:
                return
            await self._payload()
        if len(buf) < self._need:
            return
        self._need = 0
        nc = self.nc
        routes: dict[int, Handler] = nc._jm_routes
        # One copy of the buffer as bytes: its slices are bytes at once (a bytearray's
        # slice is another bytearray, which took a second copy per header block and
        # payload); the consumed part is deleted from ``buf`` once, at the end.
        view = bytes(buf)
        end_of_buf = len(view)
        pos = 0
        count = size = 0  # routed messages and payload bytes, added to the stats once
        handover = False  # something only nats-py's parser reads
        try:
            while pos < end_of_buf:
                if view.startswith(b"HMSG ", pos):
                    line_end = view.find(b"\r\n", pos + 5)
                    if line_end < 0:
                        return  # the rest of the line is still on its way
                    args = view[pos + 5 : line_end].split()
                    if len(args) == 5:
                        subject, sid_b, reply_b, hdr_b, total_b = args
                    elif len(args) == 4:
                        subject, sid_b, hdr_b, total_b = args
                        reply_b = b""
                    else:
                        handover = True
                        break
                    if not hdr_b.isdigit():
                        handover = True
                        break
                    hdr_size = int(hdr_b)
                elif view.startswith(b"MSG ", pos):
                    line_end = view.find(b"\r\n", pos + 4)
                    if line_end < 0:
                        return
                    args = view[pos + 4 : line_end].split()
                    if len(args) == 4:
                        subject, sid_b, reply_b, total_b = args
                    elif len(args) == 3:
                        subject, sid_b, total_b = args
                        reply_b = b""
                    else:
                        handover = True
                        break
                    hdr_size = 0
                elif view.startswith(b"PING\r\n", pos):
                    pos += 6
                    await nc._process_ping()
                    continue
                else:
                    handover = True
                    break
                if not (sid_b.isdigit() and total_b.isdigit()):
                    handover = True  # nats-py's parser says what is wrong with it
                    break
                start = line_end + 2
                stop = start + int(total_b)  # header + payload bytes
                if stop + 2 > end_of_buf:
                    self._need = stop + 2 - pos  # from where the buffer will start
                    return  # not all here yet
                sid = int(sid_b)
                fn = routes.get(sid)
                if fn is None or (hdr_size and not view.startswith(_HDR_LINE, start)):
                    # another subscription's message, or a status message: as nats-py's
                    # parser hands it over (no header block: None)
                    pos = stop + 2
                    headers = view[start : start + hdr_size] if hdr_size else None
                    payload = view[start + hdr_size : stop]
                    await nc._process_msg(sid, subject, reply_b, payload, headers)
                    continue
                count += 1
                size += stop - start - hdr_size
                header_block = view[start : start + hdr_size]
                msg = Delivery(
                    nc,
                    subject.decode(),
                    reply_b.decode(),
                    view[start + hdr_size : stop],
                    header_block,
                )
                pos = stop + 2
                fn(msg)
        finally:
            if count:
                stats = nc.stats
                stats["in_msgs"] += count
                stats["in_bytes"] += size
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
