"""Raw frame (subject, headers, bytes) -> typed messages or a dead letter. No I/O here,
so the same code runs in the worker, the benchmarks and re-normalization."""

from __future__ import annotations

from collections.abc import Callable
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


# Distinct raw subjects seen are venues x channels x symbols; the cap only bounds memory
# against a flood of junk subjects.
_ROUTES_MAX = 100_000


class Normalizer:
    def __init__(self) -> None:
        self.parsers = parsers()
        # raw subject -> (parse, channel, native symbol): one dict hit per frame instead of
        # a split, a registry lookup and a tuple per frame
        self._routes: dict[str, tuple[Callable[[Frame], list[Out]], str, str]] = {}

    def _route(self, subject: str) -> tuple[Callable[[Frame], list[Out]], str, str] | str:
        """The subject's parser, channel and symbol, or why it has none."""
        try:
            venue, channel, native = subjects.parse_raw(subject)
        except ValueError as exc:
            return str(exc)
        parser = self.parsers.get(venue)
        if parser is None:
            return f"no parser for venue {venue!r}"
        if len(self._routes) >= _ROUTES_MAX:
            self._routes.clear()
        route = self._routes[subject] = (parser.parse, channel, native)
        return route

    def normalize(
        self, subject: str, data: bytes, headers: dict[str, str] | None, raw_seq: int
    ) -> list[Out] | Dead:
        recv = headers.get(subjects.H_RECV_NS, "") if headers else ""
        route = self._routes.get(subject)
        if route is None:
            route = self._route(subject)
            if isinstance(route, str):
                return Dead(subject, data, route, recv)
        parse, channel, native = route
        try:
            ts_recv = int(recv)
        except ValueError:
            return Dead(subject, data, f"missing or bad {subjects.H_RECV_NS} header", recv)
        try:
            return parse(Frame(channel, native, data, ts_recv, raw_seq))
        except Rejected as exc:
            return Dead(subject, data, str(exc), recv)
        except RecursionError:  # JSON nested deeper than any venue writes: hostile input
            return Dead(subject, data, "frame nested too deeply to decode", recv)
        except UnicodeDecodeError as exc:
            return Dead(subject, data, f"frame is not UTF-8 text: {exc.reason}", recv)
        except Exception as exc:  # a parser bug must not stop the pipeline; the frame is kept
            return Dead(subject, data, f"parser error {type(exc).__name__}: {exc}", recv)
