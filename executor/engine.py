"""One account's executor: commands -> checks -> venue -> order states, fills, positions.

The account's orders, fills and positions and the one way a venue report changes them are the
Ledger's (executor/ledger.py); this adds commands, risk, cancels and timers. Recovery (the
restart rebuild and reconciliation, executor/recovery/) works through the Ledger and the
``resolve`` callback only. Calls are serialised by the Ledger's lock per account.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property

from executor import metrics as m
from executor.ledger import Ledger, Publisher
from executor.marks import Marks
from executor.model import Order, Reply, VenueRejected, VenueUnknown
from executor.precision import PrecisionError, parse_decimal
from executor.recovery.rebuild import rebuild
from executor.recovery.reconcile import Reconciler
from executor.risk import Risk
from streams import subjects
from streams.schemas import OrderCommand, encode

__all__ = ["Engine", "Marks", "Publisher", "command_msg_id"]  # Marks: its old home

log = logging.getLogger("executor")

CID = re.compile(r"^[A-Za-z0-9._:/-]{1,36}$")  # what Binance and most venues accept
CANCEL_RETRY_S = 1.0
UNKNOWN_RETRY_S = 0.5


def _subject_ok(account: str, cmd: OrderCommand) -> bool:
    """Whether the order's events have a subject (venue and symbol are subject tokens)."""
    try:
        subjects.exec_evt(account, cmd.venue, cmd.symbol)
    except ValueError:
        return False
    return True


def command_msg_id(cmd: OrderCommand) -> str:
    """Nats-Msg-Id of a command: client order id + action (+ the new terms of a replace,
    so two different replaces of one order are two commands)."""
    base = f"{cmd.account}:{cmd.client_order_id}:{cmd.action}"
    if cmd.action == "replace":
        return f"{base}:{cmd.quantity}:{cmd.price}:{cmd.stop_price}"
    return base


@dataclass(slots=True)
class _Terms:
    """A validated new order before it is an Order."""

    order: Order
    ref_price: float | None


class Engine(Ledger):
    """Commands, risk, cancels and timers on top of the account's Ledger (whose constructor
    it keeps: what it adds below needs no arguments of its own)."""

    halted: str | None = None  # the kill switch's reason while trading is halted

    @cached_property
    def risk(self) -> Risk:
        return Risk(self.cfg.risk)

    @cached_property
    def recon(self) -> Reconciler:
        return Reconciler(self, self.resolve)

    # -- commands --------------------------------------------------------------------------
    async def handle(self, cmd: OrderCommand) -> Reply:
        async with self.lock:
            t0 = time.perf_counter()
            if cmd.account != self.account:
                reply = Reply(accepted=False, client_order_id=cmd.client_order_id,
                              reason=f"account {cmd.account} is not served here")  # fmt: skip
            elif cmd.action == "new":
                reply = await self._new(cmd)
            elif cmd.action == "cancel":
                reply = await self._cancel_cmd(cmd)
            elif cmd.action == "replace":
                reply = await self._replace(cmd)
            else:
                reply = await self._cancel_all(cmd)
            result = "duplicate" if reply.duplicate else (
                "accepted" if reply.accepted else "rejected")  # fmt: skip
            m.COMMANDS.labels(self.account, cmd.action, result).inc()
            m.COMMAND_SECONDS.observe(time.perf_counter() - t0)
            return reply

    def _reply(self, o: Order, duplicate: bool = False, **kw: object) -> Reply:
        return Reply(
            accepted=o.state != "rejected", client_order_id=o.client_order_id, state=o.state,
            reason=o.reason, venue_order_id=o.venue_order_id, filled=o.filled,
            duplicate=duplicate, **kw,  # type: ignore[arg-type]
        )  # fmt: skip

    async def _reject(self, cmd: OrderCommand, reason: str) -> Reply:
        """A refused new order: recorded as ``rejected`` when it can be described as an
        order (so a resend gets the same answer), else dead-lettered."""
        if (
            cmd.side is None
            or cmd.order_type is None
            or not CID.match(cmd.client_order_id)
            or not _subject_ok(self.account, cmd)
        ):
            await self.pub.dlq(encode(cmd), reason)
            return Reply(accepted=False, client_order_id=cmd.client_order_id, reason=reason)
        try:
            qty = float(Decimal(cmd.quantity or "0"))
        except Exception:
            qty = 0.0
        if not math.isfinite(qty):  # a refused absurd quantity must still encode
            qty = 0.0
        o = Order(self.account, cmd.venue, cmd.symbol, cmd.client_order_id, cmd.side,
                  cmd.order_type, qty, reason=reason)  # fmt: skip
        o.move("rejected", self.clock())
        self.orders[o.client_order_id] = o
        await self.emit(o)
        return self._reply(o)

    async def _terms(self, cmd: OrderCommand) -> _Terms | str:
        """Validate and round a new order; a string is the reason it is refused."""
        if not CID.match(cmd.client_order_id):
            return "client_order_id must be 1-36 characters of A-Z a-z 0-9 . _ : / -"
        if cmd.side is None or cmd.order_type is None:
            return "side and order_type are required"
        if not cmd.symbol:
            return "symbol is required"
        allow = self.cfg.risk.allow_symbols
        if allow and cmd.symbol not in allow:
            return f"symbol {cmd.symbol} not in the allow-list"
        if self.cfg.venue != "paper" and cmd.venue != self.cfg.market_venue:
            return f"account {self.account} trades on {self.cfg.market_venue}, not {cmd.venue}"
        kind = cmd.order_type
        if kind == "market" and cmd.price is not None:
            return "a market order takes no price"
        if kind in ("limit", "stop_limit") and cmd.price is None:
            return f"a {kind} order needs a price"
        if kind in ("stop", "stop_limit", "take_profit") and cmd.stop_price is None:
            return f"a {kind} order needs a stop_price"
        if kind in ("market", "stop", "take_profit") and cmd.time_in_force == "POST_ONLY":
            return "post-only needs a limit price"
        if kind == "stop_limit" and cmd.time_in_force == "POST_ONLY":
            return "post-only applies to limit orders, not stop_limit"
        try:
            spec = await self.venue.spec(cmd.venue, cmd.symbol)
            qty = parse_decimal("quantity", cmd.quantity)
            # venues count derivatives in contracts; commands are in base units
            csize = Decimal(repr(spec.contract_size))
            qty_str = spec.round_qty(qty / csize)
            price_str = spec.round_price(parse_decimal("price", cmd.price)) if cmd.price else None
            stop_str = (spec.round_price(parse_decimal("stop_price", cmd.stop_price))
                        if cmd.stop_price else None)  # fmt: skip
        except (PrecisionError, VenueRejected) as exc:
            return str(exc)
        quantity = float(Decimal(qty_str) * csize)
        price = float(price_str) if price_str else None
        stop = float(stop_str) if stop_str else None
        ref = price or stop or self.marks.get(cmd.venue, cmd.symbol)
        if spec.min_notional and ref is not None and quantity * ref < spec.min_notional:
            return f"notional {quantity * ref:g} below the venue minimum {spec.min_notional:g}"
        o = Order(
            self.account, cmd.venue, cmd.symbol, cmd.client_order_id, cmd.side, kind,
            quantity, price, stop, cmd.time_in_force, cmd.reduce_only, qty_str, price_str,
            stop_str, since=self.clock(),
        )  # fmt: skip
        check = getattr(self.venue, "check", None)  # what this venue takes (ccxt features)
        if check is not None and (why := check(o)) is not None:
            return why
        timeout = cmd.timeout_s if cmd.timeout_s is not None else self.default_timeout(o)
        if timeout is not None:
            if timeout <= 0:
                return "timeout_s must be > 0"
            o.deadline = self.clock() + timeout
        return _Terms(o, ref)

    async def _new(self, cmd: OrderCommand) -> Reply:
        known = self.orders.get(cmd.client_order_id)
        if known is not None:
            return self._reply(known, duplicate=True)
        terms = await self._terms(cmd)
        if isinstance(terms, str):
            return await self._reject(cmd, terms)
        o = terms.order
        pos = self.positions.get((o.venue, o.symbol))
        why = self.risk.check(
            symbol=o.symbol, side=o.side, order_type=o.order_type, quantity=o.quantity,
            price=o.price, stop_price=o.stop_price, mark=self.marks.get(o.venue, o.symbol),
            position=pos.size if pos else 0.0, working=self._working(o),
            open_orders=len(self.active), reduce_only=o.reduce_only, halted=self.halted,
            now=self.clock(),
        )  # fmt: skip
        if why is not None:
            m.RISK_REJECTS.labels(self.account).inc()
            return await self._reject(cmd, why)
        self.orders[o.client_order_id] = o
        self.active[o.client_order_id] = o
        if self.venue.write_ahead:
            await self.emit(o)  # durable before it leaves: a crash now is found at restart
        await self._submit(o)
        return self._reply(o)

    async def _submit(self, o: Order) -> None:
        t0 = time.perf_counter()
        try:
            rep = await self.venue.submit(o)
            o.ack_ms = (time.perf_counter() - t0) * 1e3
        except VenueRejected as exc:
            o.reason = str(exc)
            o.move("rejected", self.clock())
            await self.emit(o)
            return
        except VenueUnknown as exc:
            m.UNKNOWN.labels(self.account).inc()
            o.reason = f"submission outcome unknown ({exc}): resolving by lookup"
            o.move("unknown", self.clock())
            await self.emit(o)
            return
        await self.apply(o, rep)

    async def _cancel_cmd(self, cmd: OrderCommand) -> Reply:
        o = self.orders.get(cmd.client_order_id)
        if o is None:
            return Reply(accepted=False, client_order_id=cmd.client_order_id,
                         reason="unknown client_order_id")  # fmt: skip
        if o.done:
            return Reply(accepted=False, client_order_id=o.client_order_id, state=o.state,
                         reason=f"order already {o.state}", filled=o.filled)  # fmt: skip
        if o.state == "pending_cancel":
            return self._reply(o, duplicate=True)
        if o.state in ("pending_new", "unknown"):
            return Reply(accepted=False, client_order_id=o.client_order_id, state=o.state,
                         reason="order not acknowledged by the venue yet; retry")  # fmt: skip
        await self._cancel(o, "cancelled on request")
        return self._reply(o)

    async def _cancel(self, o: Order, reason: str, timed_out: bool = False) -> None:
        """Request a cancel, then verify the outcome with a lookup (the venue's answer to
        a cancel can race a fill, and a lost answer says nothing)."""
        if o.done or o.state in ("pending_new", "unknown"):
            return
        if o.state != "pending_cancel":
            o.timed_out = o.timed_out or timed_out
            o.reason = reason
            o.move("pending_cancel", self.clock())
            await self.emit(o)
        o.since = self.clock()
        try:
            answer = await self.venue.cancel(o)
        except VenueUnknown:
            return  # the timer loop verifies again
        except VenueRejected:
            answer = None
        try:
            found = await self.venue.lookup(o)
        except VenueUnknown:
            return
        rep = found or answer
        if rep is None:
            return
        if rep.status in ("new", "partially_filled"):
            # the venue still has it live: the cancel did not take; back to live, retried
            # by the timer for a timed-out order
            await self.apply(o, rep)
            o.move("partially_filled" if o.filled > 0 else "new", self.clock())
            o.reason = "cancel not confirmed by the venue"
            await self.emit(o)
            return
        await self.apply(o, rep)

    async def _replace(self, cmd: OrderCommand) -> Reply:
        o = self.orders.get(cmd.client_order_id)
        if o is None or o.done or not o.live or o.state == "pending_cancel":
            state = o.state if o else "unknown client_order_id"
            return Reply(accepted=False, client_order_id=cmd.client_order_id,
                         reason=f"cannot replace: order {state}")  # fmt: skip
        new_cid = self._replacement_id(o.client_order_id)
        if new_cid is None:
            return Reply(accepted=False, client_order_id=cmd.client_order_id,
                         reason="cannot replace: no free replacement client id")  # fmt: skip
        await self._cancel(o, f"replaced by {new_cid}")
        if o.state != "canceled":
            return Reply(accepted=False, client_order_id=o.client_order_id, state=o.state,
                         reason=f"cannot replace: order is {o.state} after cancel")  # fmt: skip
        qty = cmd.quantity or repr(o.quantity - o.filled)
        new = OrderCommand(
            account=cmd.account, venue=o.venue, symbol=o.symbol, ts_event=cmd.ts_event,
            ts_recv=cmd.ts_recv, action="new", client_order_id=new_cid, side=o.side,
            order_type=o.order_type, quantity=qty,
            price=cmd.price or o.price_str, stop_price=cmd.stop_price or o.stop_str,
            time_in_force=o.time_in_force, reduce_only=o.reduce_only,  # type: ignore[arg-type]
            timeout_s=cmd.timeout_s,
        )  # fmt: skip
        reply = await self._new(new)
        reply.related = [o.client_order_id]
        return reply

    def _replacement_id(self, cid: str) -> str | None:
        """The first ``<cid>.r<n>`` not used yet, the cid cut so the whole stays a valid
        client id. Found before the old order is cancelled: a taken id would cancel it and
        then answer "duplicate" with no new order (a cut long id repeats otherwise)."""
        for n in range(1, 100_000):
            tail = f".r{n}"
            new_cid = cid[: 36 - len(tail)] + tail
            if new_cid not in self.orders:
                return new_cid
        return None

    async def _cancel_all(self, cmd: OrderCommand) -> Reply:
        if cmd.client_order_id in self.cancel_alls:
            return Reply(accepted=True, client_order_id=cmd.client_order_id, duplicate=True)
        self.cancel_alls.add(cmd.client_order_id)
        done = await self._cancel_every(cmd.symbol, "cancel-all")
        return Reply(accepted=True, client_order_id=cmd.client_order_id, related=done)

    async def _cancel_every(self, symbol: str, reason: str) -> list[str]:
        done = []
        for o in list(self.active.values()):
            if symbol in ("", "*") or o.symbol == symbol:
                await self._cancel(o, reason)
                done.append(o.client_order_id)
        return done

    async def halt(self, reason: str | None) -> list[str]:
        """Kill switch: block new orders and cancel every open one (None lifts it)."""
        async with self.lock:
            self.halted = reason
            if reason is None:
                return []
            return await self._cancel_every("*", f"halted: {reason}")

    # -- timers and reconciliation ---------------------------------------------------------
    async def tick(self) -> None:
        now = self.clock()
        if not any(self._due(o, now) for o in self.active.values()):
            return
        async with self.lock:
            for o in list(self.active.values()):
                if not self._due(o, now):
                    continue
                if o.state == "unknown":
                    await self.resolve(o)
                elif o.state == "pending_cancel":
                    await self._cancel(o, o.reason, o.timed_out)
                else:
                    await self._cancel(o, "timeout", timed_out=True)

    def _due(self, o: Order, now: float) -> bool:
        if o.state == "unknown":
            return now - max(o.since, o.checked) >= UNKNOWN_RETRY_S
        if o.state == "pending_cancel":
            return now - o.since >= CANCEL_RETRY_S
        return o.live and o.deadline is not None and now >= o.deadline

    async def resolve(self, o: Order, restart: bool = False) -> None:
        """Find out what happened to a submission before doing anything else with it."""
        o.checked = self.clock()
        try:
            rep = await self.venue.lookup(o)
        except VenueUnknown:
            o.since = self.clock()
            return
        log.info("resolved by lookup", extra={
            "account": self.account, "client_order_id": o.client_order_id, "state": o.state,
            "found": rep.status if rep is not None else None, "restart": restart})  # fmt: skip
        if rep is not None:
            o.reason = ""
            await self.apply(o, rep)
            if self.halted is not None and o.live:
                await self._cancel(o, f"halted: {self.halted}")
            return
        if restart and o.state == "pending_new":
            if self.halted is not None:
                # a halted executor sends nothing: the order never reached the venue, so it
                # is rejected (a trader resends it after the resume if still wanted)
                o.reason = f"halted: {self.halted}"
                o.move("rejected", self.clock())
                await self.emit(o)
                return
            # stored but the process died before (or while) sending; the venue has no such
            # order, so sending it now is the first and only submission
            await self._submit(o)
        elif o.state == "unknown" and self.clock() - o.since >= self.cfg.unknown_grace_s:
            o.reason = "submission outcome unknown and the order is not at the venue"
            o.move("rejected", self.clock())
            await self.emit(o)

    async def reconcile(self, restart: bool = False) -> None:
        """Match our orders with the venue's open orders and recent fills, by client order
        id (executor/recovery/reconcile.py), then publish positions that moved."""
        await self.recon.run(restart=restart)

    # -- restart ---------------------------------------------------------------------------
    def restore(self, history: list[object]) -> None:
        """Rebuild orders, fills and positions from this account's EXEC history
        (executor/recovery/rebuild.py), then hand live orders back to the venue."""
        rebuild(self, history)
