"""What to replay: subject patterns narrowed by venues, symbols and types.

Raw and market subjects have four tokens (``raw.<venue>.<channel>.<native>``,
``market.<type>.<venue>.<symbol>``), so every selection becomes a set of four-token
filters with ``*`` wildcards. The same filters drive the JetStream consumer
(``filter_subjects``), the ClickHouse ``WHERE`` and the file reader, so every source
selects exactly the same messages. For raw frames ``types`` are channels and ``symbols``
native symbols. ``exec.>`` subjects are selected by pattern only.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import msgspec

from streams.provision import STREAM_EXEC, STREAM_MARKET, STREAM_RAW

ROOT_STREAM = {"raw": STREAM_RAW, "market": STREAM_MARKET, "exec": STREAM_EXEC}
# token index of (venue, type, symbol) per root
POSITIONS = {"raw": (1, 2, 3), "market": (2, 1, 3)}


class Selection(msgspec.Struct, frozen=True):
    """Per stream, the subject filters (tuples of tokens, ``*`` = any, ``>`` = rest)."""

    filters: dict[str, tuple[tuple[str, ...], ...]]

    @property
    def streams(self) -> list[str]:
        order = [STREAM_RAW, STREAM_MARKET, STREAM_EXEC]
        return sorted(self.filters, key=lambda s: order.index(s) if s in order else 9)

    def subjects(self, stream: str) -> list[str]:
        return [".".join(f) for f in self.filters[stream]]

    def matches(self, subject: str) -> bool:
        parts = subject.split(".")
        stream = ROOT_STREAM.get(parts[0])
        if stream is None or stream not in self.filters:
            return False
        return any(token_match(f, parts) for f in self.filters[stream])


def token_match(pattern: Sequence[str], parts: Sequence[str]) -> bool:
    for i, tok in enumerate(pattern):
        if tok == ">":
            return len(parts) > i
        if i >= len(parts) or (tok != "*" and tok != parts[i]):
            return False
    return len(parts) == len(pattern)


def _covers(a: Sequence[str], b: Sequence[str]) -> bool:
    """Every subject ``b`` matches, ``a`` matches too."""
    for i, tok in enumerate(a):
        if tok == ">":
            return True
        if i >= len(b) or b[i] == ">" or (tok != "*" and tok != b[i]):
            return False
    return len(a) == len(b)


def _minimal(filters: Iterable[tuple[str, ...]]) -> tuple[tuple[str, ...], ...]:
    # JetStream refuses overlapping filter subjects; keep only the widest.
    uniq = sorted(set(filters))
    keep = [f for f in uniq if not any(g != f and _covers(g, f) for g in uniq)]
    return tuple(keep)


def select(
    patterns: Sequence[str] | str | None = None,
    venues: Sequence[str] | None = None,
    symbols: Sequence[str] | None = None,
    types: Sequence[str] | None = None,
) -> Selection:
    """Default pattern: ``market.>``. Raises ValueError saying what is wrong."""
    if isinstance(patterns, str):
        patterns = [p for p in patterns.split(",") if p]
    patterns = list(patterns or ["market.>"])
    out: dict[str, list[tuple[str, ...]]] = {}
    for pattern in patterns:
        toks = pattern.strip().split(".")
        if not all(toks) or any(">" in t and t != ">" for t in toks) or ">" in toks[:-1]:
            raise ValueError(f"bad subject pattern {pattern!r}")
        roots = ["raw", "market"] if toks[0] in ("*", ">") else [toks[0]]
        for root in roots:
            if root not in ROOT_STREAM:
                raise ValueError(f"cannot replay {pattern!r}: not a raw, market or exec subject")
            t = [root, *toks[1:]] if toks[0] != ">" else [root, ">"]
            stream = ROOT_STREAM[root]
            if root == "exec":
                if venues or symbols or types:
                    raise ValueError("venues/symbols/types filter raw and market subjects only")
                out.setdefault(stream, []).append(tuple(t))
                continue
            if t[-1] == ">":
                t = t[:-1] + ["*"] * (5 - len(t))
            if len(t) != 4:
                raise ValueError(f"{pattern!r}: {root} subjects have 4 tokens")
            venue_i, type_i, sym_i = POSITIONS[root]
            choices: list[list[str]] = [[tok] for tok in t]
            for idx, values in ((venue_i, venues), (type_i, types), (sym_i, symbols)):
                if not values:
                    continue
                tok = t[idx]
                choices[idx] = list(values) if tok == "*" else [v for v in values if v == tok]
            out.setdefault(stream, []).extend(itertools.product(*choices))
    filters = {s: _minimal(f) for s, f in out.items() if f}
    if not filters:
        raise ValueError("the filters select nothing (pattern tokens and venues/types disagree)")
    return Selection(filters)
