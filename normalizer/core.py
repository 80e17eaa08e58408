"""Raw frame (subject, headers, bytes) -> typed messages or a dead letter. No I/O here,
so the same code runs in the worker, the benchmarks and re-normalization."""

from __future__ import annotations

from typing import NamedTuple

from normalizer.registry import parsers
from normalizer.venues.base import Frame, Out, Rejected
from streams import subjects


class Dead(NamedTuple):
    """A raw message that could not be normalized, with the reason."""

    subject: str
    data: bytes
    reason: str
    recv_ns: str


class Normalizer:
    def __init__(self) -> None:
        self.parsers = parsers()

    def normalize(
        self, subject: str, data: bytes, headers: dict[str, str] | None, raw_seq: int
    ) -> list[Out] | Dead:
        recv = (headers or {}).get(subjects.H_RECV_NS, "")
        try:
            venue, channel, native = subjects.parse_raw(subject)
        except ValueError as exc:
            return Dead(subject, data, str(exc), recv)
        parser = self.parsers.get(venue)
        if parser is None:
            return Dead(subject, data, f"no parser for venue {venue!r}", recv)
        try:
            ts_recv = int(recv)
        except ValueError:
            return Dead(subject, data, f"missing or bad {subjects.H_RECV_NS} header", recv)
        try:
            return parser.parse(Frame(channel, native, data, ts_recv, raw_seq))
        except Rejected as exc:
            return Dead(subject, data, str(exc), recv)
        except RecursionError:  # JSON nested deeper than any venue writes: hostile input
            return Dead(subject, data, "frame nested too deeply to decode", recv)
        except UnicodeDecodeError as exc:
            return Dead(subject, data, f"frame is not UTF-8 text: {exc.reason}", recv)
        except Exception as exc:  # a parser bug must not stop the pipeline; the frame is kept
            return Dead(subject, data, f"parser error {type(exc).__name__}: {exc}", recv)
