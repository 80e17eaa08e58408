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


Parse = Callable[[Frame], list[Out]]
# (parse, channel, native symbol) of a raw subject
Route = tuple[Parse, str, str]

# Distinct raw subjects seen are venues x channels x symbols; the cap only bounds memory
# against a flood of junk subjects.
ROUTES_MAX = 100_000
BAD_RECV = f"missing or bad {subjects.H_RECV_NS} header"


def failure(exc: Exception) -> str:
    """Why a parser's exception makes its frame a dead letter."""
    if isinstance(exc, Rejected):
        return str(exc)
    if isinstance(exc, RecursionError):  # JSON nested deeper than any venue writes: hostile
        return "frame nested too deeply to decode"
    if isinstance(exc, UnicodeDecodeError):
        return f"frame is not UTF-8 text: {exc.reason}"
    # a parser bug must not stop the pipeline; the frame is kept
    return f"parser error {type(exc).__name__}: {exc}"


class Normalizer:
    def __init__(self) -> None:
        self.parsers = parsers()
        # raw subject -> route: one dict hit per frame instead of a split, a registry
        # lookup and a tuple per frame
        self._routes: dict[str, Route] = {}

    def route(self, subject: str) -> Route | str:
        """The raw subject's parser, channel and symbol, or why it has none."""
        hit = self._routes.get(subject)
        if hit is not None:
            return hit
        try:
            venue, channel, native = subjects.parse_raw(subject)
        except ValueError as exc:
            return str(exc)
        parser = self.parsers.get(venue)
        if parser is None:
            return f"no parser for venue {venue!r}"
        if len(self._routes) >= ROUTES_MAX:
            self._routes.clear()
        route = self._routes[subject] = (parser.parse, channel, native)
        return route

    def normalize(
        self, subject: str, data: bytes, headers: dict[str, str] | None, raw_seq: int
    ) -> list[Out] | Dead:
        recv = headers.get(subjects.H_RECV_NS, "") if headers else ""
        route = self.route(subject)
        if isinstance(route, str):
            return Dead(subject, data, route, recv)
        parse, channel, native = route
        try:
            ts_recv = int(recv)
        except ValueError:
            return Dead(subject, data, BAD_RECV, recv)
        try:
            return parse(Frame(channel, native, data, ts_recv, raw_seq))
        except Exception as exc:
            return Dead(subject, data, failure(exc), recv)
