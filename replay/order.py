"""Deterministic order: (ts_recv, stream, stream sequence), identical on every run.

A stream delivers in sequence order, which is nearly but not exactly receive-time order
(two collectors, a REST snapshot stamped before the frames published ahead of it, the
order book's messages stored a little after the normalizer's). ``Reorder`` holds messages
for ``window_ns`` of receive time and releases them sorted. It decides only from the
messages themselves, never from when they arrived, so the same stored messages give the
same output every time, however the network delivers them. A message later than the
window is not lost: it is counted as late and ordered as if received at the latest time
already released (``ReplayMsg.order_ts``), so each stream's output stays sorted. At most
``max_held`` messages are held (a dense feed can put millions in a window): past that the
oldest are released early, again decided by the messages alone.

Several streams, each already sorted, are then merged by ``merge``; again only the
messages decide the order.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import AsyncIterator, Callable

from replay.model import ReplayMsg


class Reorder:
    def __init__(self, window_ns: int, max_held: int = 100_000) -> None:
        self.window_ns = window_ns
        self.max_held = max_held
        self._heap: list[tuple[int, int, ReplayMsg]] = []
        self._max_ts = -(2**63)
        self._last_ts = -(2**63)
        self.late = 0

    def push(self, msgs: list[ReplayMsg]) -> list[ReplayMsg]:
        """Add messages (in stream order); returns those now due, sorted."""
        out: list[ReplayMsg] = []
        heap = self._heap
        push, pop = heapq.heappush, heapq.heappop
        window = self.window_ns
        last_ts = self._last_ts
        max_ts = self._max_ts
        for m in msgs:
            ts = m.ts_recv
            if ts < last_ts:
                # already past its place (sequences only grow within a stream, so equal
                # times are fine): next in line, at the latest time released
                self.late += 1
                ts = m.order_ts = last_ts
            push(heap, (ts, m.seq, m))
            if ts > max_ts:
                max_ts = ts
            horizon = max_ts - window
            while heap and (heap[0][0] < horizon or len(heap) > self.max_held):
                last_ts, _, m0 = pop(heap)
                out.append(m0)
        self._last_ts = last_ts
        self._max_ts = max_ts
        return out

    def drain(self) -> list[ReplayMsg]:
        heap, self._heap = self._heap, []
        heap.sort(key=lambda e: (e[0], e[1]))
        if heap:
            self._last_ts = heap[-1][0]
        return [e[2] for e in heap]


async def merge(
    sources: list[AsyncIterator[list[ReplayMsg]]],
    key: Callable[[ReplayMsg], tuple[int, ...]] | None = None,
) -> AsyncIterator[list[ReplayMsg]]:
    """Merge sorted chunk streams by ``key`` (``ReplayMsg.key()``), chunk by chunk.

    Everything up to the smallest last key buffered by a source that is not finished is
    final: no source can still deliver anything below it. That part of every buffer is
    merged in one sort (k sorted runs: timsort merges them in C), instead of a heap
    operation per message; keys are unique, so the result never depends on chunking."""
    key = key or ReplayMsg.key
    if len(sources) == 1:
        async for batch in sources[0]:
            if batch:
                yield batch
        return
    bufs: list[list[ReplayMsg]] = [[] for _ in sources]
    live = [True] * len(sources)

    async def refill(i: int) -> None:
        while live[i] and not bufs[i]:
            try:
                bufs[i] = await anext(sources[i])
            except StopAsyncIteration:
                live[i] = False

    while True:
        for i in range(len(sources)):
            await refill(i)
        limits = [key(bufs[i][-1]) for i in range(len(sources)) if live[i]]
        if not limits:  # every source finished: what is left is final
            rest = [m for b in bufs for m in b]
            if rest:
                rest.sort(key=key)
                yield rest
            return
        horizon = min(limits)
        out: list[ReplayMsg] = []
        for i, buf in enumerate(bufs):
            if buf:
                cut = bisect.bisect_right(buf, horizon, key=key)
                if cut:
                    out.extend(buf[:cut])
                    bufs[i] = buf[cut:]
        if not out:  # only if a source broke its promise to be sorted: fail, never spin
            raise RuntimeError("replay merge: a source delivered out of order")
        out.sort(key=key)
        yield out
