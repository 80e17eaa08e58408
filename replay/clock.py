"""The replay clock: time as the replayed data says it is.

``now_ns()`` is the ``ts_recv`` of the last message replayed. The replayer calls
``wall_delay(ts)`` before handing out a message (how long to wait so that 1x/Nx pacing
holds; always 0 at max speed) and then ``advance(ts)``. Anything simulated on replayed
data (the paper venue in a backtest) reads ``now_ns()`` instead of the system clock and
waits with ``sleep_until``/``sleep``, which complete when the replay reaches that time, so
a backtest behaves the same at 1x and at max speed.

In one process, pass the same clock to ``Replay(clock=...)`` and to the simulation. A
component in another process that reads a replay from ``replay.<name>.>`` keeps its own
``ReplayClock()`` (max speed: no pacing of its own) and calls ``advance(msg.ts_recv)`` for
every message it takes: the replay publishes in ``ts_recv`` order, so both clocks agree.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time


class ReplayClock:
    def __init__(self, speed: float | None = None) -> None:
        """``speed``: replay seconds per wall second (1.0 = real time); None = max speed."""
        if speed is not None and speed <= 0:
            raise ValueError("speed must be > 0 (or None for max)")
        self.speed = speed
        self._now = 0
        self._anchor_ts: int | None = None
        self._anchor_wall = 0.0
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._ids = itertools.count()
        self.closed = False

    def now_ns(self) -> int:
        return self._now

    def wall_delay(self, ts_ns: int) -> float:
        """Seconds of wall time until a message received at ``ts_ns`` is due."""
        if self.speed is None:
            return 0.0
        if self._anchor_ts is None:
            self._anchor_ts, self._anchor_wall = ts_ns, time.perf_counter()
            return 0.0
        due = self._anchor_wall + (ts_ns - self._anchor_ts) / 1e9 / self.speed
        return max(0.0, due - time.perf_counter())

    def advance(self, ts_ns: int) -> None:
        """The replay reached ``ts_ns`` (never moves back: a late message keeps the clock)."""
        if ts_ns > self._now:
            self._now = ts_ns
            sleepers = self._sleepers
            while sleepers and sleepers[0][0] <= ts_ns:
                fut = heapq.heappop(sleepers)[2]
                if not fut.done():
                    fut.set_result(None)

    async def sleep_until(self, ts_ns: int) -> None:
        """Until replay time reaches ``ts_ns``, or the replay ends (``close()``)."""
        if ts_ns <= self._now or self.closed:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (ts_ns, next(self._ids), fut))
        await fut

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + int(seconds * 1e9))

    def close(self) -> None:
        """The replay ended: wake every sleeper (their time will never come)."""
        self.closed = True
        for _, _, fut in self._sleepers:
            if not fut.done():
                fut.set_result(None)
        self._sleepers.clear()
