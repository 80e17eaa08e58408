"""Parent orders of one account: algorithms that work a quantity through child orders sent
through the account's Engine, so every child has every guarantee an order has (checks,
risk, rounding, write-ahead, timeouts, reconciliation, idempotent client ids).

Children are ``<parent_id>.<n>``, n = 1, 2, ... A parent sends a child only when none of its
children is working (pending, unknown or live), so what it sends is at most what is left.
After a restart the next n is one above every ``<parent_id>.<n>`` in the account's history
(the Engine's rebuilt orders), so no child is ever sent twice, and quantities are the
children's own (exact). A parent's record (ParentUpdate on ``exec.evt``) carries its terms,
profile and progress; the newest record per parent is its state after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from executor.algo import params, schedule
from executor.algo.route import Quote, route
from executor.algo.tape import Tape, Tapes
from executor.algo.tca import figures
from executor.engine import Engine
from executor.model import Order, Reply, VenueFill
from executor.positions import fee_in_quote
from streams import subjects
from streams.schemas import AlgoCommand, Fill, OrderCommand, ParentUpdate, Tca
from streams.settings import AlgoSettings

log = logging.getLogger("executor.algo")

TERMINAL = frozenset({"filled", "canceled", "expired", "rejected"})
# profile(venue, symbol, days) -> {UTC hour: traded volume} or None (no history / no answer)
ProfileSource = Callable[[str, str, int], Awaitable[dict[int, float] | None]]
Recorder = Callable[[OrderCommand], Awaitable[None]]


MAX_STANDALONE = 100_000  # orders awaiting their TCA at most (beyond: no TCA, no growth)


@dataclass(slots=True)
class Standalone:
    ts_ns: int  # accepted
    arrival_mid: float | None
    volume: float  # the tape's cumulative volume/notional then
    notional: float
    fills: list[tuple[float, float, float]] = field(default_factory=list)
    last_fill_ns: int = 0
    final: bool = False


@dataclass(slots=True)
class Parent:
    rec: ParentUpdate
    lot: float
    tick: float
    cids: list[str] = field(default_factory=list)  # children, in order sent
    open: list[str] = field(default_factory=list)  # children not final yet
    done_filled: float = 0.0  # filled and cost of the final children (summed once each)
    done_cost: float = 0.0
    fills: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    sent: dict[str, tuple[float, float | None, float, float]] = field(default_factory=dict)
    ack_ms: dict[str, float] = field(default_factory=dict)
    tca_done: set[str] = field(default_factory=set)
    last_child: float = -1e18  # clock seconds of the last child sent (or re-priced)
    vol0: float | None = None  # tape volume/notional when this process began counting
    notional0: float = 0.0
    base_volume: float = 0.0  # market_volume/notional counted before that (restored)
    base_notional: float = 0.0
    last_fill_ns: int = 0
    child_fill_ns: dict[str, int] = field(default_factory=dict)  # last fill of each child
    refusals: int = 0  # children refused in a row: the next waits longer (backoff)
    final: bool = False  # the terminal record and TCA are published
    dirty: bool = False


def _q(x: float) -> str:
    return repr(round(x, 12))


@dataclass(eq=False, repr=False)  # compared and hashed by identity, like the Engine
class Algos:
    """The parents of one account. ``handle`` takes AlgoCommands, ``tick`` (the executor's
    timer loop) moves every parent on; both are serialised by the Engine's command path."""

    e: Engine
    cfg: AlgoSettings
    tapes: Tapes
    profile: ProfileSource | None = None
    record: Recorder | None = None
    parents: dict[str, Parent] = field(init=False, default_factory=dict)
    working: dict[str, Parent] = field(init=False, default_factory=dict)  # not final yet
    children_sent: int = field(init=False, default=0)
    pending_tca: list[tuple[Parent, Order]] = field(init=False, default_factory=list)
    # commands and the timer never interleave on a parent
    lock: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)
    # per venue: moving average of child acks
    latency_ms: dict[str, float] = field(init=False, default_factory=dict)
    # orders sent outside a parent: what their TCA needs, from acceptance to final
    standalone: dict[str, Standalone] = field(init=False, default_factory=dict)
    finished: list[tuple[Order, Standalone]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.e.fill_hook = self._on_fill
        self.e.done_hook = self._on_done

    def reserved(self, client_order_id: str) -> str | None:
        """The parent whose child ids include ``client_order_id`` (``<parent>.<n>``): an
        order sent by hand under that id is refused, so a parent's children are its own."""
        pid, _, n = client_order_id.rpartition(".")
        return pid if n.isdigit() and pid in self.parents else None

    # -- fills (called by the Ledger for every fill it records) ----------------------------
    def note_new(self, venue: str, symbol: str, client_order_id: str) -> None:
        """An order command from outside a parent is about to be handled: the arrival
        figures of its TCA (``done_hook`` publishes it when the order is final)."""
        if client_order_id in self.e.orders or len(self.standalone) >= MAX_STANDALONE:
            return
        tape = self.tapes.get(venue, symbol)
        mid = tape.mid or self.e.marks.get(venue, symbol)
        self.standalone[client_order_id] = Standalone(self.e.ts(), mid, tape.volume,
                                                      tape.notional)  # fmt: skip

    def _on_done(self, o: Order) -> None:
        # kept until the next tick: the final update is emitted before its fills
        s = self.standalone.get(o.client_order_id)
        if s is None or s.final:
            return
        if o.state == "rejected" and o.filled == 0:
            del self.standalone[o.client_order_id]  # a refused order has no cost to analyse
            return
        s.final = True
        self.finished.append((o, s))

    def _on_fill(self, o: Order, f: VenueFill) -> None:
        pid = o.client_order_id.rpartition(".")[0]
        p = self.working.get(pid)
        s = self.standalone.get(o.client_order_id) if p is None else None
        if s is not None:
            fee = fee_in_quote(o.symbol, f.fee, f.fee_currency, f.price)
            s.fills.append((f.price, f.size, fee))
            s.last_fill_ns = max(s.last_fill_ns, f.ts_ns or self.e.ts())
        if p is not None:
            fee = fee_in_quote(o.symbol, f.fee, f.fee_currency, f.price)
            p.fills.setdefault(o.client_order_id, []).append((f.price, f.size, fee))
            ts = f.ts_ns or self.e.ts()
            p.last_fill_ns = max(p.last_fill_ns, ts)
            p.child_fill_ns[o.client_order_id] = ts

    # -- commands --------------------------------------------------------------------------
    async def handle(self, cmd: AlgoCommand) -> Reply:
        try:
            async with self.lock:
                return await self._handle(cmd)
        except params.Invalid as exc:
            return Reply(accepted=False, client_order_id=cmd.parent_id, reason=str(exc))

    def _reply(self, p: Parent, duplicate: bool = False, reason: str = "") -> Reply:
        r = p.rec
        return Reply(accepted=r.state != "rejected", client_order_id=r.parent_id,
                     state=r.state, reason=reason or r.reason, filled=r.filled,
                     duplicate=duplicate)  # fmt: skip

    async def _handle(self, cmd: AlgoCommand) -> Reply:
        if cmd.account != self.e.account:
            raise params.Invalid(f"account {cmd.account} is not served here")
        p = self.parents.get(cmd.parent_id)
        if cmd.action == "new":
            if p is not None:
                return self._reply(p, duplicate=True)
            return await self._new(cmd)
        if p is None:
            raise params.Invalid(f"unknown parent_id {cmd.parent_id!r}")
        if cmd.ts_event <= p.rec.cmd_ts:
            return self._reply(p, duplicate=True)  # a replayed or out-of-date command
        if p.rec.state in TERMINAL:
            raise params.Invalid(f"parent already {p.rec.state}")
        if cmd.action == "pause":
            if p.rec.state == "paused":
                return self._reply(p, duplicate=True)
            p.rec.state = "paused"
            await self._cancel_children(p, "parent paused")
        elif cmd.action == "resume":
            if p.rec.state == "working":
                return self._reply(p, duplicate=True)
            p.rec.state = "working"
        elif cmd.action == "amend":
            spec = await self.e.venue.spec(p.rec.venue, p.rec.symbol)
            changed = params.amend(p.rec, cmd, spec, self.e.ts())
            p.rec.reason = "amended: " + ", ".join(changed)
            # a resting child at the old terms is replaced at the next step
            if p.rec.algo in ("iceberg", "peg"):
                await self._cancel_children(p, "parent amended")
        else:  # cancel
            await self._cancel_children(p, "parent cancelled")
            p.rec.state = "canceled"
            p.rec.reason = "cancelled on request"
        p.rec.cmd_ts = cmd.ts_event
        await self._publish(p)
        return self._reply(p)

    async def _new(self, cmd: AlgoCommand) -> Reply:
        if len(self.working) >= self.cfg.max_parents:
            raise params.Invalid(f"at most {self.cfg.max_parents} working parents "
                                 "(executor.algo.max_parents)")  # fmt: skip
        if not cmd.symbol or not cmd.venue:
            raise params.Invalid("venue and symbol are required")
        try:
            subjects.exec_evt(self.e.account, cmd.venue, cmd.symbol)
        except ValueError:
            raise params.Invalid("venue and symbol are required") from None
        allow = self.e.cfg.risk.allow_symbols
        if allow and cmd.symbol not in allow:
            raise params.Invalid(f"symbol {cmd.symbol} not in the allow-list")
        others = [v for v in cmd.venues if v != self.e.cfg.market_venue]
        if self.e.cfg.venue != "paper" and others:
            only = self.e.cfg.market_venue
            raise params.Invalid(f"venues: account {self.e.account} trades on {only} only, "
                                 f"not {', '.join(others)}")  # fmt: skip
        if self.e.cfg.venue != "paper" and cmd.venue != self.e.cfg.market_venue:
            raise params.Invalid(f"account {self.e.account} trades on "
                                 f"{self.e.cfg.market_venue}, not {cmd.venue}")  # fmt: skip
        try:
            spec = await self.e.venue.spec(cmd.venue, cmd.symbol)
        except Exception as exc:  # VenueRejected: unknown instrument; VenueUnknown
            raise params.Invalid(str(exc)) from None
        now_ns = self.e.ts()
        rec = params.new_parent(cmd, spec, now_ns, self.cfg)
        prefix = rec.parent_id + "."
        taken = next((c for c in self.e.orders if c.startswith(prefix)), None)
        if taken is not None:  # its children's ids would collide with an existing order
            raise params.Invalid(
                f"parent_id {rec.parent_id} clashes with order {taken}: child ids are "
                "<parent_id>.<n>; choose another parent_id"
            )
        lot = float(spec.lot) * spec.contract_size
        if rec.algo == "vwap":
            assert rec.end_ts is not None
            hourly = None
            if self.profile is not None:
                hourly = await self.profile(cmd.venue, cmd.symbol, self.cfg.profile_days)
            rec.profile, rec.reason = schedule.vwap_profile(
                hourly, rec.start_ts, rec.end_ts, rec.slices)  # fmt: skip
        tape = self.tapes.get(cmd.venue, cmd.symbol)
        rec.arrival_mid = tape.mid or self.e.marks.get(cmd.venue, cmd.symbol)
        p = Parent(rec, lot=lot, tick=float(spec.tick))
        self.parents[rec.parent_id] = p
        self.working[rec.parent_id] = p
        if rec.start_ts <= now_ns:
            self._start_counting(p, tape)
        await self._publish(p)
        return self._reply(p)

    async def _cancel_children(self, p: Parent, reason: str) -> None:
        for cid in list(p.open):
            o = self.e.orders.get(cid)
            if o is not None and o.live and o.state != "pending_cancel":
                async with self.e.lock:
                    await self.e._cancel(o, reason)

    # -- the timer -------------------------------------------------------------------------
    async def tick(self) -> None:
        if self.finished:
            await self._standalone_tca()
        if not self.working:
            return
        async with self.lock:
            now = self.e.clock()
            for p in list(self.working.values()):
                try:
                    await self._step(p, now)
                except Exception:  # one parent's surprise must not stop the others
                    log.exception("parent step failed", extra={"parent_id": p.rec.parent_id})
                if p.dirty:
                    await self._publish(p)

    def _start_counting(self, p: Parent, tape: Tape) -> None:
        p.vol0, p.notional0 = tape.volume, tape.notional

    def _market(self, p: Parent, tape: Tape) -> None:
        if p.vol0 is None:
            return
        vol = p.base_volume + tape.volume - p.vol0
        if vol != p.rec.market_volume:
            p.rec.market_volume = vol
            p.rec.market_notional = p.base_notional + tape.notional - p.notional0

    def _progress(self, p: Parent) -> list[Order]:
        """Fold the children into the record; the children still working."""
        r = p.rec
        filled, cost = p.done_filled, p.done_cost
        live: list[Order] = []
        still: list[str] = []
        for cid in p.open:  # only the open ones: a final child was summed once, below
            o = self.e.orders.get(cid)
            if o is None:  # refused before it was an order (dead-lettered): nothing sent
                continue
            part = o.filled * o.avg_price if o.filled and o.avg_price is not None else 0.0
            filled += o.filled
            cost += part
            if not o.done:
                live.append(o)
                still.append(cid)
                continue
            p.done_filled += o.filled
            p.done_cost += part
            if cid not in p.tca_done:
                p.tca_done.add(cid)
                self.pending_tca.append((p, o))
        p.open = still
        filled = round(filled, 12)
        if filled != r.filled:
            r.filled = filled
            r.avg_price = cost / filled if filled > 0 else None
            p.dirty = True
        return live

    async def _step(self, p: Parent, now: float) -> None:
        r = p.rec
        tape = self.tapes.get(r.venue, r.symbol)
        now_ns = int(now * 1e9)
        if p.vol0 is None and now_ns >= r.start_ts:
            self._start_counting(p, tape)
        self._market(p, tape)
        self.pending_tca = []
        async with self.e.lock:  # no report half applied (its fills come after its update)
            live = self._progress(p)
        for parent, o in self.pending_tca:
            await self._order_tca(parent, o)
        if r.state in TERMINAL:
            if live:
                await self._cancel_children(p, f"parent {r.state}")
            elif not p.final:
                await self._final(p)
            return
        left = r.quantity - r.filled
        if left <= max(p.lot, 1e-12) * 1e-6:
            if not live:
                r.state, r.reason = "filled", ""
                await self._final(p)
            return
        if r.state == "paused" or now_ns < r.start_ts or self.e.halted is not None:
            return
        if (
            r.end_ts is not None
            and r.algo != "peg"
            and now_ns >= r.end_ts + self.cfg.end_grace_s * 1e9
        ):
            if live:
                await self._cancel_children(p, "parent horizon ended")
                return
            r.state = "expired"
            r.reason = f"horizon ended: filled {r.filled:g} of {r.quantity:g}"
            await self._final(p)
            return
        if live:
            if r.algo == "peg":
                await self._repeg(p, live[0], tape, now, now_ns)
            return
        if now - p.last_child < self.cfg.min_child_interval_s:
            return
        await self._next_child(p, tape, now, now_ns, left)

    def _target(self, p: Parent, now_ns: int) -> float:
        r = p.rec
        if r.algo == "twap":
            assert r.end_ts is not None
            return schedule.twap_target(r.quantity, now_ns, r.start_ts, r.end_ts, r.slices)
        if r.algo == "vwap":
            assert r.end_ts is not None
            return schedule.vwap_target(r.quantity, now_ns, r.start_ts, r.end_ts, r.profile)
        if r.algo == "pov":
            assert r.participation is not None
            return schedule.pov_target(r.quantity, r.participation, r.market_volume)
        return r.quantity  # iceberg, peg: all of it, shown a slice / worked passively

    async def _next_child(
        self, p: Parent, tape: Tape, now: float, now_ns: int, left: float
    ) -> None:
        r = p.rec
        qty = min(self._target(p, now_ns) - r.filled, left)
        if r.participation is not None and r.algo != "pov":
            qty = min(qty, r.participation * r.market_volume - r.filled)
        if r.algo == "iceberg":
            assert r.display is not None
            qty = min(qty, r.display)
        qty = schedule.floor_lot(qty, p.lot)
        if qty <= 0:
            return
        if r.algo == "iceberg":
            await self._send(p, qty, "limit", r.limit_price, "GTC", self.cfg.child_timeout_s, now)
        elif r.algo == "peg":
            deadline = r.end_ts is not None and now_ns >= r.end_ts
            if deadline:  # cross: take what is left, within the limit
                await self._take(p, qty, now)
            elif tape.usable():
                assert tape.bid is not None and tape.ask is not None
                px = schedule.peg_price(r.side, tape.bid, tape.ask, p.tick, r.offset_ticks,
                                        r.limit_price)  # fmt: skip
                await self._send(p, qty, "limit", px, "POST_ONLY", self.cfg.child_timeout_s, now)
        else:
            await self._take(p, qty, now)

    async def _take(self, p: Parent, qty: float, now: float) -> None:
        """A marketable child: market, or IOC at the parent's limit (never beyond it); to
        the venue routing picks when the parent names several."""
        venue = None
        if p.rec.venues:
            leg = self._route(p, qty)
            if leg is None:
                return
            venue, qty = leg
        limit = p.rec.limit_price
        if limit is None:
            await self._send(p, qty, "market", None, "GTC", None, now, venue)
        else:
            await self._send(p, qty, "limit", limit, "IOC", None, now, venue)

    def _route(self, p: Parent, qty: float) -> tuple[str, float] | None:
        """The best venue for the next child and how much of ``qty`` it takes there (its
        first leg); None when no named venue has a usable book (in gap, empty, no room)."""
        r = p.rec
        quotes = []
        for v in r.venues:
            tape = self.tapes.get(v, r.symbol)
            room = math.inf
            cap = self.cfg.venue_max_position.get(v)
            if cap is not None:
                pos = self.e.positions.get((v, r.symbol))
                size = pos.size if pos is not None else 0.0
                room = max(cap - size if r.side == "buy" else cap + size, 0.0)
            quotes.append(Quote(v, tape.levels(r.side),
                                self.cfg.venue_fees.get(v, self.e.cfg.taker_fee),
                                self.latency_ms.get(v, 0.0), room, tape.in_gap))  # fmt: skip
        legs = route(r.side, qty, quotes, self.cfg.drift_bps_per_ms)
        if not legs:
            why = f"routing: no usable book on {', '.join(r.venues)} (gap, empty or no room)"
            if r.reason != why:
                r.reason, p.dirty = why, True
            return None
        q = schedule.floor_lot(legs[0].quantity, p.lot)
        return (legs[0].venue, q) if q > 0 else None

    async def _repeg(self, p: Parent, o: Order, tape: Tape, now: float, now_ns: int) -> None:
        """Cancel a resting peg child whose price left the touch (or at the deadline); the
        next step sends the replacement once the cancel is confirmed."""
        if (
            o.state not in ("new", "partially_filled")
            or now - p.last_child < self.cfg.min_child_interval_s
        ):
            return
        r = p.rec
        if r.end_ts is not None and now_ns >= r.end_ts:
            why = "peg deadline: crossing"
        elif tape.usable():
            assert tape.bid is not None and tape.ask is not None
            px = schedule.peg_price(r.side, tape.bid, tape.ask, p.tick, r.offset_ticks,
                                    r.limit_price)  # fmt: skip
            if o.price is not None and abs(px - o.price) < p.tick / 2:
                return
            why = "peg: touch moved"
        else:
            return  # no usable book (in a gap): leave the child, decide on a valid book
        p.last_child = now
        async with self.e.lock:
            await self.e._cancel(o, why)

    async def _send(
        self, p: Parent, qty: float, kind: str, price: float | None, tif: str,
        timeout: float | None, now: float, venue: str | None = None,
    ) -> None:  # fmt: skip
        r = p.rec
        venue = venue or r.venue
        n = r.children + 1
        cid = f"{r.parent_id}.{n}"
        ts = self.e.ts()
        cmd = OrderCommand(
            account=r.account, venue=venue, symbol=r.symbol, ts_event=ts, ts_recv=ts,
            action="new", client_order_id=cid, side=r.side, order_type=kind,  # type: ignore[arg-type]
            quantity=_q(qty), price=_q(price) if price is not None else None,
            time_in_force=tif, timeout_s=timeout,  # type: ignore[arg-type]
        )  # fmt: skip
        tape = self.tapes.get(venue, r.symbol)
        p.sent[cid] = (now, tape.mid, tape.volume, tape.notional)
        p.cids.append(cid)
        p.open.append(cid)
        r.children = n
        p.last_child = now
        p.dirty = True
        t0 = time.perf_counter()
        reply = await self.e.handle(cmd)
        ack = p.ack_ms[cid] = (time.perf_counter() - t0) * 1e3
        old = self.latency_ms.get(venue)
        self.latency_ms[venue] = ack if old is None else 0.8 * old + 0.2 * ack
        self.children_sent += 1
        if reply.duplicate:  # cannot happen unless an order took the id (reserved: worker.py)
            r.reason = f"child {cid} is an existing order, not this parent's: skipped"
            p.cids.remove(cid)
            p.open.remove(cid)
            log.error("child id taken", extra={"parent_id": r.parent_id, "cid": cid})
        elif reply.accepted:
            p.refusals = 0
        else:
            r.reason = f"child {cid} refused: {reply.reason}"
            # a refusal repeats until something changes: back off up to 32 intervals
            p.refusals += 1
            p.last_child = now + self.cfg.min_child_interval_s * (2 ** min(p.refusals, 5) - 1)
        if self.record is not None:
            await self.record(cmd)

    # -- records ---------------------------------------------------------------------------
    async def _publish(self, p: Parent) -> None:
        r = p.rec
        r.version += 1
        r.ts_event = r.ts_recv = self.e.ts()
        p.dirty = False
        await self.e.pub.publish(
            subjects.exec_evt(r.account, r.venue, r.symbol), r,
            f"{r.account}:parent:{r.parent_id}:{r.version}",
        )  # fmt: skip

    async def _final(self, p: Parent) -> None:
        p.final = True
        self.working.pop(p.rec.parent_id, None)
        await self._publish(p)
        await self._parent_tca(p)

    async def _order_tca(self, p: Parent, o: Order) -> None:
        sent = p.sent.get(o.client_order_id)
        tape = self.tapes.get(o.venue, o.symbol)
        fills = p.fills.get(o.client_order_id, [])
        end_ns = self.e.ts()
        t_start = int(sent[0] * 1e9) if sent else end_ns
        arrival = sent[1] if sent else None
        vol = tape.volume - sent[2] if sent else 0.0
        notional = tape.notional - sent[3] if sent else 0.0
        last = p.child_fill_ns.get(o.client_order_id)
        fig = figures(o.side, o.quantity, fills, arrival, vol, notional, tape.mid)
        await self._publish_tca(
            scope="order", id=o.client_order_id, parent_id=p.rec.parent_id, algo=p.rec.algo,
            venue=o.venue, symbol=o.symbol, side=o.side, quantity=o.quantity,
            filled=o.filled, arrival_mid=arrival, end_mid=tape.mid, fig=fig, children=0,
            ts_start=t_start, ts_end=end_ns,
            time_to_fill_s=(max(last - t_start, 0) / 1e9
                            if last and o.state == "filled" and sent else None),
            ack=p.ack_ms.get(o.client_order_id),
        )  # fmt: skip

    async def _standalone_tca(self) -> None:
        async with self.e.lock:  # no report half applied (its fills come after its update)
            done, self.finished = self.finished, []
        for o, s in done:
            self.standalone.pop(o.client_order_id, None)
            tape = self.tapes.get(o.venue, o.symbol)
            end_ns = self.e.ts()
            fig = figures(o.side, o.quantity, s.fills, s.arrival_mid, tape.volume - s.volume,
                          tape.notional - s.notional, tape.mid)  # fmt: skip
            await self._publish_tca(
                scope="order", id=o.client_order_id, venue=o.venue, symbol=o.symbol,
                side=o.side, quantity=o.quantity, filled=o.filled, arrival_mid=s.arrival_mid,
                end_mid=tape.mid, fig=fig, children=0, ts_start=s.ts_ns, ts_end=end_ns,
                time_to_fill_s=(max(s.last_fill_ns - s.ts_ns, 0) / 1e9
                                if o.state == "filled" and s.last_fill_ns else None),
                ack=o.ack_ms,
            )  # fmt: skip

    async def _parent_tca(self, p: Parent) -> None:
        r = p.rec
        tape = self.tapes.get(r.venue, r.symbol)
        fills = [f for cid in p.cids for f in p.fills.get(cid, [])]
        fig = figures(r.side, r.quantity, fills, r.arrival_mid, r.market_volume,
                      r.market_notional, tape.mid)  # fmt: skip
        acks = [p.ack_ms[c] for c in p.cids if c in p.ack_ms]
        end_ns = self.e.ts()
        ttf = (
            (p.last_fill_ns - r.start_ts) / 1e9 if r.state == "filled" and p.last_fill_ns else None
        )
        await self._publish_tca(
            scope="parent", id=r.parent_id, parent_id=r.parent_id, algo=r.algo, venue=r.venue,
            symbol=r.symbol, side=r.side, quantity=r.quantity, filled=r.filled,
            arrival_mid=r.arrival_mid, end_mid=tape.mid, fig=fig, children=len(p.cids),
            ts_start=r.start_ts, ts_end=end_ns, time_to_fill_s=ttf,
            ack=math.fsum(acks) / len(acks) if acks else None,
        )  # fmt: skip

    async def _publish_tca(self, *, fig: Any, ack: float | None, **kw: Any) -> None:
        ts = self.e.ts()
        msg = Tca(
            account=self.e.account, ts_event=ts, ts_recv=ts, avg_price=fig.avg_price,
            interval_vwap=fig.interval_vwap, slippage_bps=fig.slippage_bps,
            vwap_slippage_bps=fig.vwap_slippage_bps, shortfall=fig.shortfall,
            shortfall_bps=fig.shortfall_bps, fill_ratio=fig.fill_ratio, fees=fig.fees,
            ack_latency_ms=ack, **kw,
        )  # fmt: skip
        await self.e.pub.publish(
            subjects.exec_evt(self.e.account, msg.venue, msg.symbol), msg,
            f"{self.e.account}:tca:{msg.scope}:{msg.id}",
        )  # fmt: skip

    # -- restart ---------------------------------------------------------------------------
    async def restore(self, history: list[object]) -> None:
        """Parents from their newest records in this account's history; children from the
        Engine's rebuilt orders (so the next child number is above every one ever used)
        and their fills from the history's Fill messages."""
        latest: dict[str, ParentUpdate] = {}
        for msg in history:
            if isinstance(msg, ParentUpdate):
                old = latest.get(msg.parent_id)
                if old is None or msg.version >= old.version:
                    latest[msg.parent_id] = msg
        if not latest:
            return
        for pid, rec in latest.items():
            rec = msgspec.structs.replace(rec)
            try:
                spec = await self.e.venue.spec(rec.venue, rec.symbol)
                lot, tick = float(spec.lot) * spec.contract_size, float(spec.tick)
            except Exception:  # instrument not known yet: the lot is only a rounding floor
                lot, tick = 0.0, 0.0
            p = Parent(rec, lot=lot, tick=tick, base_volume=rec.market_volume,
                       base_notional=rec.market_notional)  # fmt: skip
            self.parents[pid] = p
            self.working[pid] = p  # a final one leaves again below
        prefix_of = {pid + ".": p for pid, p in self.parents.items()}
        numbered: dict[str, list[tuple[int, str]]] = {}
        for cid, o in self.e.orders.items():
            pid, _, n = cid.rpartition(".")
            if n.isdigit() and pid + "." in prefix_of:
                numbered.setdefault(pid, []).append((int(n), cid))
                if o.done:
                    prefix_of[pid + "."].tca_done.add(cid)
        for pid, items in numbered.items():
            p = self.parents[pid]
            items.sort()
            p.cids = [c for _, c in items]
            p.open = list(p.cids)  # summed (once) at the first step
            p.rec.children = max(p.rec.children, items[-1][0])
        for msg in history:
            if isinstance(msg, Fill):
                pid = msg.client_order_id.rpartition(".")[0]
                p = self.parents.get(pid)
                if p is not None:
                    fee = fee_in_quote(msg.symbol, msg.fee, msg.fee_currency, msg.price)
                    p.fills.setdefault(msg.client_order_id, []).append((msg.price, msg.size, fee))
                    p.last_fill_ns = max(p.last_fill_ns, msg.ts_event)
        for pid, p in list(self.working.items()):
            live = any(not self.e.orders[c].done for c in p.cids)
            if p.rec.state in TERMINAL and not live:
                p.final = True  # its final record was published before the restart
                del self.working[pid]
        log.info("parents restored", extra={"account": self.e.account,
                                            "working": len(self.working)})  # fmt: skip
