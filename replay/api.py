"""``replay()``: history from JetStream or ClickHouse, in one deterministic order, at a speed.

    async for m in replay(settings, start="2h", subjects=["market.trade.>"], speed="max"):
        m.subject, m.seq, m.ts_recv, m.msg   # typed message (streams.schemas)

Order: ``ts_recv``, then stream (RAW < MARKET < EXEC), then stream sequence; identical on
every run and from either source. ``order="stream"`` keeps one stream's sequence order
instead (what the normalizer saw; used by re-normalization).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from nats.aio.client import Client
from nats.js.errors import NotFoundError
from tqdm import tqdm

from replay.clickhouse import ClickHouseSource, DirectFetch, Fetch, NatsFetch
from replay.clock import ReplayClock
from replay.jetstream import JetStreamSource, stream_bounds
from replay.model import ReplayMsg, ReplayStats, parse_time
from replay.order import merge
from replay.output import Republisher
from replay.selection import Selection, select
from streams import sql, subjects
from streams.bus.connect import connect
from streams.settings import Settings

log = logging.getLogger("replay")

Source = Literal["auto", "jetstream", "clickhouse"]


def parse_speed(speed: str | float | None) -> float | None:
    """``max``/None -> None (as fast as possible); ``1x``, ``10x``, ``0.5x``, 10 -> factor."""
    if speed is None or speed == "max":
        return None
    value = float(speed[:-1] if isinstance(speed, str) and speed.endswith("x") else speed)
    if value <= 0:
        raise ValueError(f"speed must be > 0 or 'max', not {speed!r}")
    return value


class Replay:
    """One replay. Iterate it (``async for``) for typed messages, paced by ``speed``;
    ``batches()`` for unpaced chunks; ``publish(name)`` to put it on ``replay.<name>.>``.
    ``clock`` is the replay clock (replay/clock.py); ``stats`` fills as it runs."""

    def __init__(
        self,
        settings: Settings,
        *,
        start: Any = None,
        end: Any = None,
        subjects: Sequence[str] | str | None = None,
        venues: Sequence[str] | None = None,
        symbols: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        speed: str | float | None = "max",
        source: Source = "auto",
        start_seq: int | None = None,
        nc: Client | None = None,
        clock: ReplayClock | None = None,
        progress: bool | None = None,
        order: Literal["time", "stream"] = "time",
        from_replay: str | None = None,
        clickhouse: Literal["auto", "sink", "direct"] = "auto",
        from_file: str | None = None,
    ) -> None:
        self.settings = settings
        if subjects is None and from_file:
            subjects = ">"  # a recording plays back whole unless told otherwise
        self.selection: Selection = select(subjects, venues, symbols, types)
        now = time.time_ns()
        self.start_ns = parse_time(start, now)
        self.end_ns = parse_time(end, now)
        if self.start_ns is not None and self.end_ns is not None and self.end_ns <= self.start_ns:
            raise ValueError("end must be after start")
        self.source = source
        self.start_seq = start_seq
        self.clock = clock or ReplayClock(parse_speed(speed))
        self.progress = settings.replay.progress if progress is None else progress
        self.order = order
        self.from_replay = from_replay
        self.clickhouse = clickhouse
        self.from_file = from_file
        if order == "stream" and len(self.selection.filters) != 1:
            raise ValueError('order="stream" needs subjects of a single stream')
        if from_replay and source == "clickhouse":
            raise ValueError("replays of replay streams come from JetStream only")
        self.stats = ReplayStats()
        self._nc = nc
        self._own_nc = False
        self._closers: list[Any] = []

    # -- sources ----------------------------------------------------------------------
    async def _client(self) -> Client:
        if self._nc is None:
            self._nc = await connect(self.settings.nats, "replay", max_reconnect_attempts=0)
            self._own_nc = True
        return self._nc

    async def _choose(self, nc: Client, stream: str) -> str:
        """JetStream when it still holds the whole range, else ClickHouse."""
        if self.source != "auto":
            return self.source
        if self.start_seq or self.from_replay:
            return "jetstream"
        try:
            first_seq, _, first_ts = await stream_bounds(nc.jetstream(), stream)
        except NotFoundError:
            return "clickhouse"
        if first_ts is None:
            return "clickhouse"
        if first_seq <= 1:
            return "jetstream"  # nothing has expired yet: the stream holds all there is
        start = self.start_ns if self.start_ns is not None else -1
        return "jetstream" if start >= first_ts else "clickhouse"

    async def _fetcher(self, nc: Client) -> Fetch:
        dsn = self.settings.clickhouse.dsn
        page = self.settings.replay.page_rows
        if not dsn.startswith("chdb://") or self.clickhouse == "direct":
            fetch = DirectFetch(dsn)
            self._closers.append(fetch.close)
            return fetch
        via_sink = NatsFetch(nc, page)
        if self.clickhouse == "sink":
            return via_sink
        try:
            await sql.query(nc, "SELECT 1", timeout=2.0)
            return via_sink
        except sql.SqlError:
            # no sink running: nobody owns the chdb path, read it here
            fetch = DirectFetch(dsn)
            self._closers.append(fetch.close)
            return fetch

    async def _open(self) -> tuple[list[AsyncIterator[list[ReplayMsg]]], int | None]:
        if self.from_file:
            from replay.record import file_chunks, read_header

            head = read_header(self.from_file)
            self.stats.source = f"file:{self.from_file}"
            chunks = file_chunks(self.from_file, self.selection, self.start_ns, self.end_ns)
            return [chunks], head.get("messages")
        nc = await self._client()
        window = int(self.settings.replay.reorder_window_s * 1e9)
        sources: list[AsyncIterator[list[ReplayMsg]]] = []
        total = 0
        chosen: dict[str, str] = {}
        to_ch: dict[str, tuple[tuple[str, ...], ...]] = {}
        for stream in self.selection.streams:
            where = await self._choose(nc, stream)
            chosen[stream if not self.from_replay else f"replay.{self.from_replay}"] = where
            if where == "clickhouse":
                to_ch[stream] = self.selection.filters[stream]
                continue
            filters = self.selection.subjects(stream)
            name = stream
            strip = ""
            if self.from_replay:
                from streams.provision import replay_stream

                strip = subjects.replay_prefix(self.from_replay)
                filters = [strip + f for f in filters]
                name = replay_stream(self.from_replay)
            src = JetStreamSource(
                nc.jetstream(timeout=10.0),
                name,
                filters,
                start_ns=self.start_ns,
                end_ns=self.end_ns,
                window_ns=window,
                stats=self.stats,
                start_seq=self.start_seq,
                strip=strip,
                keep_order=self.order == "stream",
            )
            self._closers.append(src.close)
            total += await src.open()
            sources.append(src.chunks())
        if to_ch:
            ch = ClickHouseSource(
                await self._fetcher(nc),
                Selection(to_ch),
                start_ns=self.start_ns,
                end_ns=self.end_ns,
                page_rows=self.settings.replay.page_rows,
                by_seq=self.order == "stream",
            )
            total += await ch.open()
            sources.append(ch.chunks())
        self.stats.source = ",".join(f"{s}:{w}" for s, w in chosen.items())
        return sources, total

    async def _close(self) -> None:
        for close in self._closers:
            res = close()
            if asyncio.iscoroutine(res):
                await res
        self._closers.clear()
        self.clock.close()
        if self._own_nc and self._nc is not None:
            await self._nc.close()
            self._nc = None

    # -- outputs ----------------------------------------------------------------------
    async def batches(self) -> AsyncIterator[list[ReplayMsg]]:
        """Chunks in replay order, unpaced (the clock still advances)."""
        t0 = time.perf_counter()
        bar: tqdm[Any] | None = None
        try:
            sources, total = await self._open()
            if self.progress:
                bar = tqdm(total=total, unit="msg", unit_scale=True, mininterval=0.5,
                           desc=f"replay {self.stats.source}")  # fmt: skip
            async for chunk in merge(sources):
                self.stats.messages += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
                yield chunk
        finally:
            self.stats.seconds = time.perf_counter() - t0
            if bar is not None:
                bar.close()
            await self._close()
            if self.stats.bad:
                log.warning(
                    "undecodable messages skipped",
                    extra={"count": self.stats.bad, "first": self.stats.first_bad[:300]},
                )

    async def __aiter__(self) -> AsyncIterator[ReplayMsg]:
        clock = self.clock
        paced = clock.speed is not None
        sleep = asyncio.sleep
        async for chunk in self.batches():
            for m in chunk:
                if paced:
                    delay = clock.wall_delay(m.ts_recv)
                    if delay > 0.0005:
                        await sleep(delay)
                clock.advance(m.ts_recv)
                yield m

    async def publish(self, name: str | None, *, stream: str | None = None) -> ReplayStats:
        """Republish under ``replay.<name>.<original subject>``, paced; into ``stream``
        (acked in bursts) when given, else core NATS. ``name=None`` publishes on the
        original subjects (a recording back onto RAW), confirmed by the stream that holds
        them; then the frames are new frames, without ``Jm-Replay-Seq``."""
        nc = await self._client()
        if name is None:
            out = Republisher(nc, "", add_seq=False, acked=True)
        else:
            out = Republisher(nc, subjects.replay_prefix(name), stream=stream)
        own, self._own_nc = self._own_nc, False  # keep the connection until flushed
        try:
            if self.clock.speed is None:
                async for chunk in self.batches():
                    await out.send(chunk)
                    if chunk:
                        self.clock.advance(chunk[-1].ts_recv)
            else:
                batch: list[ReplayMsg] = []
                async for m in self:
                    batch.append(m)
                    await out.send(batch)
                    batch.clear()
            await out.close()
        finally:
            if own:
                await nc.close()
                self._nc = None
        return self.stats


def replay(settings: Settings, **kwargs: Any) -> Replay:
    """See ``Replay``; ``async for m in replay(settings, start=..., speed="10x")``."""
    return Replay(settings, **kwargs)
