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


# -- the conformance corpus, for tests/venues/*/test_real_frames.py ----------------------------
def normalize(venue: str, channel: str, native: str, frames: list[bytes]) -> list[object]:
    """Each frame through one fresh normalizer on ``raw.<venue>.<channel>.<native>``, in
    order: per frame, its messages (dicts) or the dead letter's reason (str)."""
    import orjson

    from normalizer.core import Dead, Normalizer
    from streams import subjects

    n = Normalizer()
    out: list[object] = []
    for i, data in enumerate(frames, 1):
        r = n.normalize(subjects.raw(venue, channel, native), data,
                        {subjects.H_RECV_NS: "1700000000000000000"}, i)  # fmt: skip
        out.append(r.reason if isinstance(r, Dead) else [orjson.loads(o.data) for o in r])
    return out


def shared(rel: str) -> Path:
    """``tests.conftest.shared_frames``, imported late: the conformance CLI reads this module's
    callers without pytest's fixtures (conftest creates temporary files when imported)."""
    from tests.conftest import shared_frames

    return shared_frames(rel)


def check_expectations(expect: dict[str, list[tuple[str, dict[str, object]]]]) -> None:
    """Every file of ``expect`` (paths under ../shared/frames) through the conformance runner:
    its messages equal the expectation field by field (or its dead letter names the reason)."""
    from tests.conftest import shared_frames
    from tests.venues import conformance

    for rel in expect:
        shared_frames(rel)  # skips clearly when ../shared is absent
        conformance.EXPECT[rel] = expect[rel]
        rows = list(conformance.run_source(conformance.classify(rel)))
        assert rows, f"{rel}: no frames"
        wrong = {why for r in rows for why in r.wrong_why}
        assert not wrong, f"{rel}: {wrong}"
        assert sum(r.right + r.deliberate for r in rows) == sum(r.frames for r in rows), rel
