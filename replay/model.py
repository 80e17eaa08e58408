"""What a replay yields, and how replay times are written."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec

from streams.provision import STREAM_EXEC, STREAM_MARKET, STREAM_RAW

# Ties on ts_recv across streams: a raw frame sorts before the typed messages made from it
# (they carry its ts_recv), and those before the executor's reactions to them.
RANK: dict[str, int] = {STREAM_RAW: 0, STREAM_MARKET: 1, STREAM_EXEC: 2}


class ReplayMsg(msgspec.Struct, gc=False):
    """One replayed message.

    ``subject`` is the original subject (never the ``replay.<name>.`` one); ``seq`` the
    sequence in the stream it was stored in (``stream``); ``data`` the stored bytes (raw
    frames untouched; typed messages as msgspec JSON); ``msg`` the decoded typed message
    (``None`` for raw frames). ``headers``: what JetStream stored, or, from ClickHouse, the
    headers it keeps (``Jm-Recv-Ns``/``Jm-Conn`` of raw frames).
    """

    subject: str
    stream: str
    seq: int
    ts_recv: int
    data: bytes
    headers: dict[str, str] | None = None
    msg: Any = None
    # set on a message stored later than the reorder window behind its successors: the
    # receive time it is ordered by (the latest one already replayed), so every stream's
    # output stays sorted and merging streams never depends on how they were chunked
    order_ts: int | None = None

    def key(self) -> tuple[int, int, int]:
        """The replay order: receive time, then stream, then stream sequence."""
        ts = self.ts_recv if self.order_ts is None else self.order_ts
        return (ts, RANK.get(self.stream, 9), self.seq)


class ReplayStats(msgspec.Struct):
    source: str = ""
    messages: int = 0
    late: int = 0  # came out after messages received later (beyond the reorder window)
    bad: int = 0  # undecodable typed messages, skipped
    first_bad: str = ""
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


_REL = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$")
_UNIT_S = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_time(value: str | int | float | datetime | None, now_ns: int | None = None) -> int | None:
    """A point in time as integer ns since the epoch (UTC).

    Accepts ns/s integers (a number below 1e12 is seconds), ISO-8601 (``2025-01-02T03:04:05Z``;
    naive means UTC), a ``datetime``, or a duration before now (``90s``, ``15m``, ``2h``, ``1d``).
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000
    if isinstance(value, int | float):
        return int(value * 1e9) if abs(value) < 1e12 else int(value)
    text = value.strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return parse_time(float(text) if "." in text else int(text))
    m = _REL.match(text.lstrip("-"))
    if m:
        now = time.time_ns() if now_ns is None else now_ns
        return now - int(float(m.group(1)) * _UNIT_S[m.group(2)] * 1e9)
    return parse_iso_ns(text)


def parse_iso_ns(text: str) -> int:
    """ISO-8601 with up to nanosecond digits (JetStream writes 9; datetime keeps 6)."""
    frac_ns = 0
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", text)
    if m:
        head, digits, tail = m.groups()
        frac_ns = int(digits[:9].ljust(9, "0"))
        text = head + tail
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"bad time {text!r}: use ISO-8601, epoch seconds/ns, or a duration like 15m"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1_000_000_000 + frac_ns


def format_ns(ns: int | None) -> str:
    if ns is None:
        return "-"
    dt = datetime.fromtimestamp(ns // 1_000_000_000, UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ns % 1_000_000_000:09d}Z"


class Digest:
    """sha256 over a message sequence: subject, data and, optionally, sequence, receive time
    and the Nats-Msg-Id header; each part length-prefixed so boundaries cannot shift."""

    def __init__(self, *, seq: bool = True, msg_id: bool = False) -> None:
        self.h = hashlib.sha256()
        self.count = 0
        self.seq, self.msg_id = seq, msg_id

    def update(self, msgs: Iterable[ReplayMsg]) -> None:
        h = self.h
        for m in msgs:
            parts = [m.subject.encode(), m.data]
            if self.seq:
                parts += [b"%d" % m.seq, b"%d" % m.ts_recv]
            if self.msg_id:
                parts.append(((m.headers or {}).get("Nats-Msg-Id", "")).encode())
            for part in parts:
                h.update(len(part).to_bytes(4, "big"))
                h.update(part)
            self.count += 1

    def hexdigest(self) -> str:
        return self.h.hexdigest()
