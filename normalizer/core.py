"""Raw frame (subject, headers, bytes) -> typed messages or a dead letter. No I/O here,
so the same code runs in the worker, the benchmarks and re-normalization."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple, Protocol

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


class Route(NamedTuple):
    """What a raw subject says: its venue's parser, venue, channel and native symbol."""

    parse: Parse
    venue: str
    channel: str
    native: str


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


class Carrier(Protocol):
    """Where a frame's headers are read, only when a dead letter quotes one: a NATS
    message parses its headers lazily, and the hot path never needs the whole dict."""

    @property
    def headers(self) -> Mapping[str, str] | None: ...


class Headers(NamedTuple):
    """A ``Carrier`` for callers that already hold the headers."""

    headers: Mapping[str, str] | None


def recv_text(headers: Mapping[str, str] | None) -> str:
    """The receive-time header as it came, for a dead letter."""
    return headers.get(subjects.H_RECV_NS, "") if headers else ""


def venue_of(route: Route | str) -> str:
    """A metrics label: the routed venue, or "?" for a subject that has no route."""
    return "?" if route.__class__ is str else route.venue  # type: ignore[union-attr]


class Normalizer:
    """The per-frame path, the same for the worker, re-normalization, benchmarks and
    fuzzers: route the raw subject (parsed once, by ``subjects.parse_raw``, then cached),
    check the receive time, parse, and turn any failure into a ``Dead`` with the reason."""

    def __init__(self) -> None:
        self.parsers = parsers()
        # raw subject -> route: one dict hit per frame instead of a split, a registry
        # lookup and a tuple per frame
        self._routes: dict[str, Route | str] = {}

    def route(self, subject: str) -> Route | str:
        """The raw subject's route, or why it has none (also cached: junk subjects repeat)."""
        hit = self._routes.get(subject)
        if hit is not None:
            return hit
        try:
            venue, channel, native = subjects.parse_raw(subject)
            parser = self.parsers.get(venue)
            route: Route | str = (
                Route(parser.parse, venue, channel, native)
                if parser is not None
                else f"no parser for venue {venue!r}"
            )
        except ValueError as exc:
            route = str(exc)
        if len(self._routes) >= ROUTES_MAX:
            self._routes.clear()
        self._routes[subject] = route
        return route

    @staticmethod
    def frame(
        subject: str,
        route: Route | str,
        data: bytes,
        ts_recv: int | None,
        seq: int,
        carrier: Carrier,
    ) -> list[Out] | Dead:
        """One frame of a routed subject: its messages, or a dead letter saying why.
        ``ts_recv`` is the receive-time header already read as an int (None: missing or
        not a number); ``carrier.headers`` is read only to quote it in a dead letter."""
        if route.__class__ is str:
            return Dead(subject, data, route, recv_text(carrier.headers))  # type: ignore[arg-type]
        if ts_recv is None:
            return Dead(subject, data, BAD_RECV, recv_text(carrier.headers))
        r: Route = route  # type: ignore[assignment]
        try:
            return r.parse(Frame(r.channel, r.native, data, ts_recv, seq))
        except Exception as exc:
            return Dead(subject, data, failure(exc), recv_text(carrier.headers))

    def normalize(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None, raw_seq: int
    ) -> list[Out] | Dead:
        """``frame`` for callers holding a headers mapping."""
        try:
            ts_recv: int | None = int(recv_text(headers))
        except ValueError:
            ts_recv = None
        return self.frame(subject, self.route(subject), data, ts_recv, raw_seq, Headers(headers))
