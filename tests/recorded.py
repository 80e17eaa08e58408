"""Reader for the recorded exchange traffic in ../shared/frames (format in its SOURCES.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple


class Recorded(NamedTuple):
    kind: str  # "recv" (frame received), "sent" (frame we sent), "rest" (REST answer), "config"
    url: str  # connection or request URL ("" for received frames)
    ts: float  # receive time on the recording machine, seconds
    payload: str


def read(path: Path) -> Iterator[Recorded]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line or " <-> " in line.split(": ", 1)[0]:
                continue  # connection-opened marker
            head, _, body = line.partition(": ")
            if " -> " in head:
                url, _, ts = head.rpartition(" -> ")
                yield Recorded("rest", url, float(ts), body)
            elif " <- " in head:
                url, _, ts = head.rpartition(" <- ")
                yield Recorded("sent", url, float(ts), body)
            elif head == "configuration":
                yield Recorded("config", "", 0.0, body)
            else:
                yield Recorded("recv", "", float(head), body)
