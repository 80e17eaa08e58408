"""The faults, their order, the exact accounting (see the package docstring) and the table."""

from __future__ import annotations

import asyncio
import bisect
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from streams import subjects
from tests.faults.emulator import Key
from tests.faults.pipeline import BACKFILL_VENUE, OURS, STALE_AFTER_S, SYMBOLS, Pipeline

GAP_SLACK_S = 5.0  # a gap is found after the hole (next depth event, next connection)
SETTLE_S = 1.0  # after a fault's last recovery, before the next phase begins
LOST_SLACK_S = 2.0  # venue send -> collector receive, at most, for lost-gap ranges
_LOST_RANGE = re.compile(r"^lost (\d+) frames received (\d+)\.\.(\d+) ns")
BIG_FRAME = 20 * 1024 * 1024
BACKFILL_DAYS = 150


@dataclass
class Phase:
    fault: str
    start: float  # wall seconds; owns the trades generated from here to the next phase
    count: int = 0
    recovery_s: list[float] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # a fault's own check that failed


@dataclass
class Row:
    fault: str
    count: int
    offered: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    unoffered: int = 0  # generated while no collector connection was being served
    in_flight: int = 0  # written to a socket that then died, before the collector read it
    uncovered: int = 0  # unoffered or in flight, with no gap recorded for the hole
    gaps: int = 0
    # received by the collector, then lost (buffer overflow in an outage, store full) with
    # a ``lost`` gap recorded whose time range holds it: counted, never silent
    dropped: int = 0
    recovery_s: float = 0.0
    crashes: list[str] = field(default_factory=list)  # workers that died on their own
    problems: list[str] = field(default_factory=list)


class Suite:
    def __init__(self, p: Pipeline, short: bool, seed: int = 2026, loss_only: bool = False) -> None:
        self.p = p
        self.short = short
        self.loss_only = loss_only
        self.rnd = random.Random(seed)
        self.phases: list[Phase] = [Phase("warm-up", 0.0)]
        self.book_ok: dict[str, str] = {}
        self.down: set[str] = set()  # workers we are killing or restarting on purpose

    async def supervise(self) -> None:
        """What ``make up``'s supervisor does: restart a worker that exited on its own;
        every such exit is recorded against the fault in progress, with its last error."""
        while True:
            await asyncio.sleep(0.2)
            for name, proc in self.p.procs.items():
                if name in self.down or proc.alive():
                    continue
                self.phases[-1].crashes.append(f"{name}: {last_error(proc.log)}")
                proc.start()

    # -- fault driver --------------------------------------------------------------------
    async def _recovered(self, since: float, timeout: float = 90.0) -> float:
        """Seconds from ``since`` until a trade generated after it is in ClickHouse."""
        mark_ms = int(since * 1000) + 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.p.newest_trade_ms() >= mark_ms:
                return time.time() - since
            await asyncio.sleep(0.1)
        raise TimeoutError(f"no trade after the fault reached ClickHouse in {timeout}s")

    async def _book_valid(self, since: float, timeout: float = 60.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            books = [await self.p.book(s) for s in SYMBOLS]
            if all(b is not None and b.get("valid") for b in books):
                return time.time() - since
            await asyncio.sleep(0.1)
        raise TimeoutError(f"order book not valid again within {timeout}s")

    async def run_fault(self, name: str, times: int, act: Callable[[], Awaitable[float]]) -> None:
        phase = Phase(name, time.time())
        self.phases.append(phase)
        for _ in range(times):
            # a random point of the stream
            await asyncio.sleep(
                self.rnd.uniform(0.1, 0.5) if self.short else self.rnd.uniform(0.2, 1.2)
            )
            phase.count += 1
            phase.recovery_s.append(await act())
        # the phase lasts until the fault's consequences are written: data flowing again
        # (recovery) can come before the collector records the hole (after a nats-server
        # restart it closes the venue connection once NATS is back, and that reconnect gap
        # landed in the next phase in one CI run)
        await asyncio.sleep(SETTLE_S)

    def kill(self, worker: str) -> Callable[[], Awaitable[float]]:
        async def act() -> float:
            proc = self.p.procs[worker]
            self.down.add(worker)
            proc.kill9()
            await asyncio.sleep(self.rnd.uniform(0.0, 0.5))
            proc.start()
            self.down.discard(worker)
            t = time.time()
            if worker == "orderbook":
                return await self._book_valid(t)
            return await self._recovered(t)

        return act

    async def nats_restart(self) -> float:
        self.p.nats.stop()
        await asyncio.sleep(self.rnd.uniform(0.2, 1.0))
        self.p.nats.start()
        return await self._recovered(time.time())

    async def drop(self) -> float:
        await self.p.emu.drop_connections()
        t = time.time()
        await self.p.emu.wait_connected(1, timeout=30)
        await self._recovered(t)
        return await self._book_valid(t)

    async def stall(self) -> float:
        self.p.emu.stall()
        t = time.time()
        # stale detection closes it, the collector reconnects, a new connection is served
        await self._recovered(t + STALE_AFTER_S)
        return await self._book_valid(t)

    def insert_outage(self, seconds: float) -> Callable[[], Awaitable[float]]:
        async def act() -> float:
            self.p.fail_file.touch()
            await asyncio.sleep(seconds)
            self.p.fail_file.unlink()
            return await self._recovered(time.time())

        return act

    async def store_full(self) -> float:
        """Another stream fills the JetStream store: every publish gets 503 (err 10023) for
        a while, longer than the collector's buffer lasts at this load."""
        await self.p.fill_store()
        await asyncio.sleep(10.0 if self.short else 20.0)
        await self.p.free_store()
        return await self._recovered(time.time())

    async def nats_down_long(self) -> float:
        """nats-server away longer than the collector's buffer (collector.buffer_frames)."""
        self.p.nats.stop()
        await asyncio.sleep(8.0 if self.short else 20.0)
        self.p.nats.start()
        return await self._recovered(time.time())

    async def big_frame(self) -> float:
        """A 20 MB trade frame (over the 8 MB max_payload): stored whole by reference, the
        trade in ClickHouse like any other (the accounting checks it by id)."""
        key = await self.p.emu.emit_big_trade(SYMBOLS[0], BIG_FRAME)
        t = time.time()
        deadline = time.monotonic() + 60
        q = (f"SELECT count() FROM trades WHERE venue = 'binance' AND symbol = '{key[0]}' "
             f"AND id = '{key[1]}'")  # fmt: skip
        while (await self.p.query(q))[0][0] == 0:
            if time.monotonic() > deadline:
                self.phases[-1].problems.append(f"20 MB trade {key} not stored in 60 s")
                break
            await asyncio.sleep(0.2)
        return await self._recovered(t)

    async def backfill_batch(self) -> float:
        """What a backfill (or replay) of 150 days sends: one raw frame of trades per day,
        published together, so one normalizer batch and one sink block span 150 daily
        partitions. All of them must be stored, and the live feed must keep flowing."""
        assert self.p.nc is not None
        js = self.p.nc.jetstream(timeout=10.0)
        day_ms = 86_400_000
        start = (int(time.time() * 1000) // day_ms - BACKFILL_DAYS) * day_ms
        per_day = 10
        for d in range(BACKFILL_DAYS):
            rows = [{"symbol": "BTC/USDT", "timestamp": start + d * day_ms + i * 1000,
                     "price": 100.0 + d, "amount": 0.5, "id": f"bf{d}-{i}", "side": "buy"}
                    for i in range(per_day)]  # fmt: skip
            headers = {subjects.H_RECV_NS: str(time.time_ns()), subjects.H_CONN: "faults-backfill",
                       subjects.H_MSG_ID: f"ccxt:{BACKFILL_VENUE}:faults-bf-{d}"}  # fmt: skip
            subject = subjects.raw(BACKFILL_VENUE, "ccxt-hist-trades", "BTC/USDT")
            if d < BACKFILL_DAYS - 1:  # core publishes in one burst, the last one acked
                await self.p.nc.publish(subject, orjson.dumps(rows), headers=headers)
            else:
                await js.publish(subject, orjson.dumps(rows), headers=headers)
        t = time.time()
        want = BACKFILL_DAYS * per_day
        deadline = time.monotonic() + 90
        got = 0
        while time.monotonic() < deadline:
            try:
                got = int(
                    (
                        await self.p.query(
                            f"SELECT count() FROM trades WHERE venue = '{BACKFILL_VENUE}'"
                        )
                    )[0][0]
                )
            except Exception:
                got = -1
            if got >= want:
                break
            await asyncio.sleep(0.5)
        if got < want:
            self.phases[-1].problems.append(
                f"150-day batch: {got} of {want} trades stored after 90 s (the sink is stuck?)"
            )
            return time.time() - t
        return await self._recovered(t)

    async def run_loss(self) -> None:
        """The loss faults (issue 15): each ends with every lost frame inside a recorded
        ``lost`` gap (``dropped``) or stored."""
        await self.run_fault("20 MB frame", 1, self.big_frame)
        await self.run_fault("NATS down past the buffer", 1, self.nats_down_long)
        await self.run_fault("JetStream store full", 1, self.store_full)
        await self.run_fault("150-day backfill batch", 1, self.backfill_batch)

    async def run(self) -> None:
        n = 1 if self.short else 10
        await asyncio.sleep(1.5)  # warm-up: books synced, every worker flowing
        if self.loss_only:
            await self.run_loss()
            self.phases.append(Phase("tail (no fault)", time.time()))
            await asyncio.sleep(1.0)
            return
        for worker in ("collector", "normalizer", "sink", "orderbook"):
            await self.run_fault(f"kill -9 {worker}", n, self.kill(worker))
        await self.run_fault("nats-server restart", 1 if self.short else 3, self.nats_restart)
        await self.run_fault("venue drops connection", 1 if self.short else 3, self.drop)
        await self.run_fault("venue stalls connection", 1 if self.short else 3, self.stall)
        outage = 3.0 if self.short else 60.0
        await self.run_fault(f"insert failures {outage:.0f}s", 1, self.insert_outage(outage))
        if not self.short:  # make faults; make test has their short forms in test_no_silent_loss
            await self.run_loss()
        self.phases.append(Phase("tail (no fault)", time.time()))
        await asyncio.sleep(1.0)

    # -- the end: drain, books, accounting -------------------------------------------------
    async def drain(self, timeout: float = 120.0) -> None:
        await self.p.stop_load()
        deadline = time.monotonic() + timeout
        last = -1
        while time.monotonic() < deadline:
            try:
                rows = await self.p.query("SELECT count() FROM trades")
                got = int(rows[0][0])
            except Exception:
                got = -1
            if got == last and got > 0:
                break  # nothing more arriving
            last = got
            await asyncio.sleep(0.8)
        for native in SYMBOLS:
            self.book_ok[native] = await self._book_matches(native)

    async def _book_matches(self, native: str, timeout: float = 20.0) -> str:
        """ "ok", or how the service's book differs from the emulator's true book."""
        bids, asks = self.p.emu.true_book(native)
        deadline = time.monotonic() + timeout
        why = "no answer from book.get"
        while time.monotonic() < deadline:
            book = await self.p.book(native)
            if book is not None and book.get("valid"):
                got_b = [tuple(x) for x in book["bids"]]
                got_a = [tuple(x) for x in book["asks"]]
                if got_b == bids and got_a == asks:
                    return "ok"
                why = (f"valid, seq {book.get('seq')} vs venue {self.p.emu.sims[native].u}; "
                       f"top bid {got_b[:1]} vs {bids[:1]}, top ask {got_a[:1]} vs {asks[:1]}, "
                       f"levels {len(got_b)}/{len(got_a)} vs {len(bids)}/{len(asks)}")  # fmt: skip
            elif book is not None:
                why = f"not valid: {str(book)[:200]}"
            await asyncio.sleep(0.5)
        return why

    async def account(self) -> list[Row]:
        emu = self.p.emu
        emu.close_gone()
        stored: dict[Key, int] = await self.p.stored_trades()
        gap_rows = await self.p.query(
            "SELECT symbol, toUnixTimestamp64Nano(ts_recv), reason, detail FROM gaps"
            " WHERE venue = 'binance'", max_rows=1_000_000, timeout=30,
        )  # fmt: skip
        gaps: dict[str, list[float]] = {}
        # which fault a gap belongs to: when its hole began. A ``lost`` gap is written once
        # the collector knows the frames are gone, which on a loaded machine can fall in the
        # next phase; its detail names the first lost frame's receive time
        born: list[float] = []
        for sym, ns, reason, detail in gap_rows:
            gaps.setdefault(sym, []).append(int(ns) / 1e9)
            m = _LOST_RANGE.match(detail) if reason == "lost" else None
            born.append(min(int(ns), int(m.group(2))) / 1e9 if m else int(ns) / 1e9)
        for v in gaps.values():
            v.sort()
        # ``lost`` gaps of the trade channel: symbol -> [(first s, last s)], and their counts
        lost_rows = await self.p.query(
            "SELECT symbol, detail FROM gaps WHERE venue = 'binance' AND reason = 'lost' "
            "AND channel = 'trade'", max_rows=100_000, timeout=30,
        )  # fmt: skip
        lost_spans: dict[str, list[tuple[float, float]]] = {}
        lost_counted = 0
        for sym, detail in lost_rows:
            m = _LOST_RANGE.match(detail)
            if m:
                lost_counted += int(m.group(1))
                lost_spans.setdefault(sym, []).append(
                    (int(m.group(2)) / 1e9 - LOST_SLACK_S, int(m.group(3)) / 1e9)
                )

        # where each offered trade sits in its connection's ledger
        verdict: dict[Key, str] = {}
        for led in emu.ledgers:
            last = max((i for i, k in enumerate(led.keys) if k in stored), default=-1)
            for i, k in enumerate(led.keys):
                if k in stored:
                    verdict[k] = "stored"
                elif i < last or not led.closed:
                    verdict.setdefault(k, "lost")
                else:
                    verdict.setdefault(k, "in_flight")
        starts = [ph.start for ph in self.phases]
        table = {ph.fault: Row(ph.fault, ph.count) for ph in self.phases}
        for ph in self.phases:
            if ph.recovery_s:
                table[ph.fault].recovery_s = max(ph.recovery_s)
            table[ph.fault].crashes = ph.crashes
            table[ph.fault].problems = ph.problems
        for t in born:
            table[self.phases[bisect.bisect_right(starts, t) - 1].fault].gaps += 1

        by_symbol: dict[str, list[tuple[int, float]]] = {}
        for (sym, tid), t in emu.generated.items():
            by_symbol.setdefault(sym, []).append((tid, t))
        for sym, seq in by_symbol.items():
            seq.sort()
            stored_times = [t for tid, t in seq if (sym, tid) in stored]
            for tid, t in seq:
                key = (sym, tid)
                row = table[self.phases[bisect.bisect_right(starts, t) - 1].fault]
                v = verdict.get(key, "unoffered")
                if v != "unoffered":
                    row.offered += 1
                if key in stored:
                    row.stored += 1
                    row.duplicated += stored[key] - 1
                    continue
                if v == "lost":
                    if any(lo <= t <= hi for lo, hi in lost_spans.get(sym, ())):
                        row.dropped += 1  # received, lost, and recorded as lost
                    else:
                        row.lost += 1
                    continue
                setattr(row, v, getattr(row, v) + 1)
                if not self._covered(t, stored_times, gaps.get(sym, [])):
                    row.uncovered += 1
                    if v == "in_flight":
                        row.lost += 1  # a tail nobody marked: indistinguishable from loss
        rows = [r for r in table.values() if r.offered or r.count]
        dropped = sum(r.dropped for r in rows)
        if dropped > lost_counted:  # each lost trade frame is counted in some lost gap
            rows[-1].problems.append(
                f"{dropped} trades dropped but lost gaps count only {lost_counted} trade frames"
            )
        return rows

    @staticmethod
    def _covered(t: float, stored_times: list[float], gap_times: list[float]) -> bool:
        """A gap recorded between the stored trade before ``t`` and the one after it."""
        i = bisect.bisect_left(stored_times, t)
        lo = stored_times[i - 1] - 0.5 if i > 0 else 0.0
        hi = (stored_times[i] if i < len(stored_times) else time.time()) + GAP_SLACK_S
        j = bisect.bisect_left(gap_times, lo)
        return j < len(gap_times) and gap_times[j] <= hi


HEAD = ("fault", "count", "offered", "stored", "lost", "dup", "unoffered", "in flight",
        "uncovered", "dropped", "gaps", "recovery s", "crashes")  # fmt: skip


def table(rows: list[Row]) -> str:
    cells = [HEAD] + [
        (r.fault, str(r.count), str(r.offered), str(r.stored), str(r.lost), str(r.duplicated),
         str(r.unoffered), str(r.in_flight), str(r.uncovered), str(r.dropped), str(r.gaps),
         f"{r.recovery_s:.2f}" if r.count else "-", str(len(r.crashes)))
        for r in rows
    ]  # fmt: skip
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEAD))]
    lines = []
    for n, c in enumerate(cells):
        pairs = enumerate(zip(c, widths, strict=True))
        lines.append("  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in pairs))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    total = Row("total", sum(r.count for r in rows))
    for r in rows:
        for f in ("offered", "stored", "lost", "duplicated", "unoffered", "in_flight",
                  "uncovered", "dropped", "gaps"):  # fmt: skip
            setattr(total, f, getattr(total, f) + getattr(r, f))
    lines.append(
        f"total: offered {total.offered}, stored {total.stored}, lost {total.lost}, "
        f"duplicated {total.duplicated}, dropped with a lost gap {total.dropped}, "
        f"unoffered {total.unoffered} (gap-covered "
        f"{total.unoffered + total.in_flight - total.uncovered} of "
        f"{total.unoffered + total.in_flight} not delivered by the venue)"
    )
    for r in rows:
        lines += [f"crash during {r.fault!r}: {c}" for c in r.crashes]
        lines += [f"problem in {r.fault!r}: {c}" for c in r.problems]
    return "\n".join(lines)


async def run_suite(
    workdir: Path, *, short: bool, rate: float | None = None, loss_only: bool = False
) -> Result:
    p = Pipeline(workdir, rate or (800.0 if short else 1500.0))
    suite = Suite(p, short, loss_only=loss_only)
    t0 = time.monotonic()
    await p.start()
    watchdog = asyncio.create_task(suite.supervise())
    try:
        p.start_load()
        await suite.run()
        await suite.drain()
        rows = await suite.account()
    finally:
        watchdog.cancel()
        await p.stop()
    return Result(rows, dict(suite.book_ok), time.monotonic() - t0, OURS)


@dataclass
class Result:
    rows: list[Row]
    books_ok: dict[str, str]
    seconds: float
    symbols: dict[str, str]

    def row(self, prefix: str) -> Row:
        return next(r for r in self.rows if r.fault.startswith(prefix))


def last_error(log: Path) -> str:
    """The last traceback's final line (or last line) of a worker's log."""
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "?"
    for line in reversed(lines):
        if line and not line.startswith((" ", "Traceback", "{")):
            return line[:200]
    return lines[-1][:200] if lines else "?"
