"""Drive the paper engine and a strategy through market messages in replay order.

``Backtest.run_messages(msgs)`` takes typed messages (tests, notebooks);
``Backtest.run_replay(settings, ...)`` reads them with ``replay`` from JetStream or
ClickHouse. Both end in ``finish()``, which returns the ``Summary``; ``store(js)`` then
publishes the results on EXEC. Why it runs in-process: see the package docstring.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext

from executor.backtest.results import Record, Recorder, Summary, store, summarize

# BacktestError and load_strategy live beside Strategy (a research sweep worker imports them
# without this module's engine, NATS and ccxt); re-exported here, where they were
from executor.backtest.strategy import BacktestError as BacktestError
from executor.backtest.strategy import Context, Strategy
from executor.backtest.strategy import load_strategy as load_strategy
from executor.engine import Engine
from executor.marks import Marks
from executor.positions import Pos
from executor.state import LIVE
from executor.venues.paper import PaperVenue
from replay import ReplayClock, replay
from replay.model import format_ns
from streams import subjects
from streams.schemas import Fill, Instrument, OrderUpdate
from streams.settings import BacktestSettings, Settings

log = logging.getLogger("executor.backtest")

# Depth, not BBO: the paper venue keeps one book per symbol from whichever came last, and a
# one-level BBO would hide the depth a market order walks.
DEFAULT_TYPES = ("trade", "depth", "mark", "instrument")
RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
MAX_ROUNDS = 1000  # order -> event -> order rounds on one message before we call it a loop
TICK_S = 0.1  # order timeouts are checked this often, in replayed time


class Backtest:
    def __init__(
        self,
        strategy: type[Strategy],
        *,
        venue: str,
        symbols: Sequence[str],
        params: dict[str, Any] | None = None,
        run_id: str | None = None,
        cfg: BacktestSettings | None = None,
    ) -> None:
        self.cfg = cfg or BacktestSettings()
        self.run_id = run_id or uuid.uuid4().hex[:12]
        if not RUN_ID.match(self.run_id):
            raise BacktestError(f"run id {self.run_id!r}: use 1-40 of A-Z a-z 0-9 _ -")
        if not symbols:
            raise BacktestError("at least one symbol is needed")
        self.account = self.cfg.account_prefix + self.run_id
        subjects.exec_pos(self.account)  # a bad prefix fails here, not at the end
        self.venue, self.symbols = venue, list(symbols)
        self.clock = ReplayClock(None)
        self.paper = PaperVenue(self.cfg.account)
        self.marks = Marks()
        self.rec = Recorder()
        self.engine = Engine(self.account, self.cfg.account, self.paper, self.rec, self.marks,
                             clock=self._seconds)  # fmt: skip
        self.ctx = Context(self.account, venue, self.symbols[0], self.clock.now_ns,
                           self._position, self._pnl)  # fmt: skip
        self.strategy = strategy(self.ctx, **(params or {}))
        self.summary = Summary(self.run_id, self.account, strategy.__name__,
                               {**strategy.parameters(), **(params or {})})  # fmt: skip
        self._curve_ns = int(self.cfg.curve_interval_s * 1e9)
        self._next_curve: int | None = None
        self._next_tick = 0
        self._started = False
        self._t0 = 0.0

    # -- what the context reads --------------------------------------------------------
    def _seconds(self) -> float:
        return self.clock.now_ns() / 1e9

    def _position(self, venue: str, symbol: str) -> float:
        pos = self.engine.positions.get((venue, symbol))
        return pos.size if pos else 0.0

    def _pnl(self, venue: str, symbol: str) -> float:
        pos = self.engine.positions.get((venue, symbol))
        if pos is None:
            return 0.0
        return pos.gross - pos.fees + pos.unrealized(self.marks.get(venue, symbol))

    # -- the loop ----------------------------------------------------------------------
    async def start(self) -> None:
        if not self._started:
            self._started = True
            self._t0 = time.perf_counter()
            self.strategy.on_start()
            await self._drain()

    def preload(self, msg: object) -> None:
        """Instrument specs from before the range (the paper venue needs tick and lot)."""
        if isinstance(msg, Instrument):
            self.paper.on_market(msg)

    async def on_message(self, msg: Any) -> None:
        """One market message, at the replay clock's current time."""
        now = self.clock.now_ns()
        s = self.summary
        s.messages += 1
        if s.first_ns is None:
            s.first_ns = now
            self._next_curve = (now // self._curve_ns + 1) * self._curve_ns
        s.last_ns = now
        if self._next_curve is not None and now >= self._next_curve:
            # the state at the grid time is the state after the previous message
            self._curve_points(self._next_curve, "c")
            self._next_curve = (now // self._curve_ns + 1) * self._curve_ns
        self.paper.now_ns = max(self.paper.now_ns, now)
        if now >= self._next_tick:
            self._next_tick = now + int(TICK_S * 1e9)
            await self.engine.tick()
        self.marks.on_market(msg)
        reports = self.paper.on_market(msg)
        if reports:
            await self.engine.on_reports(reports)
        if self.rec.fresh:
            await self._drain()
        try:
            self.strategy.on_market(msg)
        except Exception as exc:
            raise BacktestError(self._where(f"strategy failed: {exc!r}")) from exc
        if self.ctx.pending:
            await self._drain()

    def _where(self, what: str) -> str:
        return f"{what} (message {self.summary.messages} at {format_ns(self.clock.now_ns())})"

    async def _drain(self) -> None:
        """Run queued commands and show their outcomes to the strategy until both are done."""
        ctx, rec = self.ctx, self.rec
        for _ in range(MAX_ROUNDS):
            for msg in rec.take_fresh():
                self._show(msg)
            if not ctx.pending:
                if not rec.fresh:
                    return
                continue
            cmds, ctx.pending = ctx.pending, []
            for cmd in cmds:
                reply = await self.engine.handle(cmd)
                if not reply.accepted and cmd.action != "new":
                    rec.rejections.append(f"{cmd.action} {cmd.client_order_id}: {reply.reason}")
        raise BacktestError(self._where(f"more than {MAX_ROUNDS} rounds of orders reacting "
                                        "to orders on one message"))  # fmt: skip

    def _show(self, msg: object) -> None:
        try:
            if isinstance(msg, OrderUpdate):
                if msg.state in LIVE or msg.state == "pending_new":
                    self.ctx.open[msg.client_order_id] = msg
                else:
                    self.ctx.open.pop(msg.client_order_id, None)
                self.strategy.on_order(msg)
            elif isinstance(msg, Fill):
                self.strategy.on_fill(msg)
        except Exception as exc:
            raise BacktestError(self._where(f"strategy failed: {exc!r}")) from exc

    def _curve_points(self, ts: int, tag: str) -> None:
        positions: dict[tuple[str, str], Pos] = self.engine.positions
        for (venue, symbol), pos in sorted(positions.items()):
            msg = pos.message(self.account, venue, symbol, self.marks.get(venue, symbol), ts)
            self.rec.records.append(_record(self.account, msg, f"{tag}{ts}"))

    async def finish(self) -> Summary:
        await self.start()
        try:
            self.strategy.on_stop()
        except Exception as exc:
            raise BacktestError(self._where(f"strategy failed in on_stop: {exc!r}")) from exc
        await self._drain()
        self._curve_points(self.clock.now_ns(), "end")
        self.clock.close()
        s = summarize(self.summary, self.rec.records)
        s.rejections = list(self.rec.rejections)
        s.seconds = time.perf_counter() - self._t0
        return s

    # -- sources -----------------------------------------------------------------------
    async def run_messages(self, msgs: Iterable[Any]) -> Summary:
        """Typed market messages, put in replay order (receive time; ties keep list order)."""
        await self.start()
        clock = self.clock
        for msg in sorted(msgs, key=lambda m: m.ts_recv):
            clock.advance(msg.ts_recv)
            await self.on_message(msg)
        return await self.finish()

    async def run_replay(
        self,
        settings: Settings,
        *,
        start: Any = None,
        end: Any = None,
        source: str = "auto",
        types: Sequence[str] = DEFAULT_TYPES,
        nc: Client | None = None,
    ) -> Summary:
        kw: dict[str, Any] = {"venues": [self.venue], "symbols": self.symbols, "source": source,
                              "nc": nc, "progress": False}  # fmt: skip
        if start is not None and "instrument" in types:
            await self._preload(settings, end=start, **kw)
        await self.start()
        # at max speed: results do not depend on pacing, only on order
        rp = replay(settings, start=start, end=end, types=list(types), clock=self.clock, **kw)
        async for chunk in rp.batches():
            for m in chunk:
                if m.msg is not None:
                    self.clock.advance(m.ts_recv)
                    await self.on_message(m.msg)
        if rp.stats.bad:
            self.rec.rejections.append(f"{rp.stats.bad} undecodable messages skipped")
        return await self.finish()

    async def _preload(self, settings: Settings, **kw: Any) -> None:
        try:
            async for chunk in replay(settings, types=["instrument"], **kw).batches():
                for m in chunk:
                    self.preload(m.msg)
        except Exception as exc:  # configured instruments may make up for it
            log.warning("instruments before the range not read", extra={"error": repr(exc)})

    async def store(self, js: JetStreamContext) -> int:
        """Publish the results on EXEC; the sink stores them under this run's account."""
        n = await store(js, self.rec.records, self.cfg.publish_batch)
        self.summary.stored = n
        return n


def _record(account: str, msg: Any, suffix: str) -> Record:
    return Record(subjects.exec_pos(account), msg,
                  f"{account}:curve:{msg.venue}:{msg.symbol}:{suffix}")  # fmt: skip
