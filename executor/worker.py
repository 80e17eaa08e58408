"""The executor process: NATS wiring around one Engine per account.

Commands arrive on ``exec.cmd.<account>`` (durable consumer, acked after the command's
events are stored) and as requests on ``ctl.exec.<account>`` (answered synchronously,
then recorded on ``exec.cmd``, where the consumer sees them as duplicates). The account is
the subject's: a body naming another account is refused, so per-account NATS permissions
hold. Only ``order_command`` messages are commands; anything else on those subjects is
dead-lettered. At start the state is rebuilt from the account's EXEC history (orders and
fills only from ``exec.evt``, which only the executor writes), then reconciled with the venue.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import msgspec
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from executor import metrics as m
from executor.algo.runner import Algos
from executor.algo.tape import Tapes
from executor.engine import Engine, command_msg_id
from executor.killswitch import KillSwitch
from executor.marks import Marks
from executor.model import Reply
from executor.venues.base import Venue
from executor.venues.ccxt_venue import CcxtVenue
from executor.venues.paper import PaperVenue
from executor.venues.private.stream import PrivateStream
from streams import schemas, sql, subjects
from streams.bus.consumer import BatchConsumer
from streams.bus.runtime import Worker
from streams.provision import STREAM_EXEC, STREAM_MARKET
from streams.schemas import (
    AlgoCommand,
    ExecBase,
    Fill,
    Instrument,
    OrderCommand,
    OrderUpdate,
    ParentUpdate,
)
from streams.settings import AccountSettings

log = logging.getLogger("executor")
MARKET_TYPES = ("depth", "bbo", "trade", "mark", "instrument", "gap")
Command = OrderCommand | AlgoCommand
# venue and symbol go into the VWAP profile query as literals: subject tokens only
_SQL_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class JsPublisher:
    """Acked JetStream publishes with a Nats-Msg-Id, so a redelivered command or a restart
    that re-emits an event cannot store it twice."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js

    async def publish(self, subject: str, msg: ExecBase, msg_id: str) -> None:
        await self.js.publish(subject, schemas.encode(msg), headers={subjects.H_MSG_ID: msg_id})

    async def dlq(self, data: bytes, reason: str) -> None:
        m.DLQ.inc()
        await self.js.publish(
            subjects.dlq("executor"),
            data,
            headers={subjects.H_REASON: subjects.one_line(reason, 500)},
        )


def subject_account(subject: str) -> str:
    """The account token of ``exec.cmd.<account>`` or ``ctl.exec.<account>``."""
    parts = subject.split(".")
    return parts[2] if len(parts) == 3 else ""


def command_of(subject: str, data: bytes) -> Command:
    """The order or algo command in a message on an account's command subject, or a
    one-line reason (msgspec.ValidationError) why it is not one."""
    cmd = schemas.decode_exec(data)
    if not isinstance(cmd, OrderCommand | AlgoCommand):
        kind = cmd.__struct_config__.tag  # type: ignore[attr-defined]
        raise msgspec.ValidationError(
            f"only order_command and algo_command messages are accepted on {subject}, not {kind}"
        )
    account = subject_account(subject)
    if cmd.account != account:
        raise msgspec.ValidationError(
            f"account {cmd.account!r} in the body does not match {account!r} of the subject "
            f"{subject}: a command acts on its subject's account"
        )
    return cmd


# What a rebuild takes from each subject kind: commands only as the terms of orders the
# executor's own events describe; orders and fills only from what the executor published.
HISTORY_KINDS: dict[str, tuple[type, ...]] = {
    "cmd": (OrderCommand,),
    "evt": (OrderUpdate, Fill, ParentUpdate),
}


def command_record_id(cmd: Command) -> str:
    """Nats-Msg-Id of a command's record on exec.cmd."""
    if isinstance(cmd, AlgoCommand):
        return f"{cmd.account}:{cmd.parent_id}:algo:{cmd.action}:{cmd.ts_event}"
    return command_msg_id(cmd)


async def read_all(js: JetStreamContext, stream: str, cfg: ConsumerConfig) -> list[Msg]:
    """Every message an ephemeral consumer on ``stream`` has pending now, in stream order.
    Created without a name (``CONSUMER.CREATE.<stream>``, all a worker's NATS user may
    create; nats-py's pull_subscribe would name it) and left to expire after its
    ``inactive_threshold``."""
    info = await js.add_consumer(stream, cfg)
    psub = await js.pull_subscribe_bind(info.name, stream=stream)
    out: list[Msg] = []
    try:
        left = int(info.num_pending or 0)
        while left > 0:
            got = await psub.fetch(min(left, 1000), timeout=5.0)
            left -= len(got)
            out += got
    finally:
        await psub.unsubscribe()
    return out


async def read_history(js: JetStreamContext, account: str) -> list[object]:
    """This account's commands and order events, in stream order. A message whose type does
    not belong on its subject (a fill published on exec.cmd) or that names another account
    is not history: it is skipped, and the count logged."""
    cfg = ConsumerConfig(
        filter_subjects=[subjects.exec_cmd(account), subjects.exec_evt_filter(account)],
        ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=30.0,
    )  # fmt: skip
    out: list[object] = []
    skipped = 0
    for msg in await read_all(js, STREAM_EXEC, cfg):
        try:
            obj = schemas.decode_exec(msg.data)
        except msgspec.DecodeError:
            skipped += 1
            continue  # a foreign message on our subjects is not our history
        kind = msg.subject.split(".")[1]
        if not isinstance(obj, HISTORY_KINDS.get(kind, ())) or obj.account != account:
            skipped += 1
            continue
        out.append(obj)
    if skipped:
        log.warning("history messages skipped: not the executor's own records", extra={
            "account": account, "skipped": skipped})  # fmt: skip
    return out


async def read_instruments(js: JetStreamContext, prefix: str) -> list[Instrument]:
    """The last instrument message of every symbol on MARKET (paper venues need tick and
    lot at once after a restart, not at the collectors' next refresh up to an hour later).
    A backtest (a replay prefix) gets its instruments from the replay instead."""
    if prefix:
        return []
    cfg = ConsumerConfig(filter_subject=subjects.market_filter("instrument", "*", "*"),
                         ack_policy=AckPolicy.NONE,
                         deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
                         inactive_threshold=30.0)  # fmt: skip
    out: list[Instrument] = []
    for msg in await read_all(js, STREAM_MARKET, cfg):
        try:
            obj = schemas.decode(msg.data)
        except msgspec.DecodeError:
            continue
        if isinstance(obj, Instrument):
            out.append(obj)
    return out


def _cmd_id(cmd: Command) -> str:
    return cmd.parent_id if isinstance(cmd, AlgoCommand) else cmd.client_order_id


def _record_done(fut: asyncio.Future[Any]) -> None:
    if fut.cancelled() or fut.exception() is not None:
        m.RECORD_FAILURES.inc()


def make_venue(cfg: AccountSettings, nc: Client | None = None) -> Venue:
    return PaperVenue(cfg) if cfg.venue == "paper" else CcxtVenue(cfg, nc)


class Executor:
    def __init__(self, w: Worker) -> None:
        assert w.js is not None and w.nc is not None
        self.w = w
        self.cfg = w.settings.executor
        self.js = w.js
        self.nc = w.nc
        self.pub = JsPublisher(self.js)
        self.marks = Marks()
        self.engines: dict[str, Engine] = {}
        self.algos: dict[str, Algos] = {}
        self.tapes = Tapes()
        self.papers: list[tuple[PaperVenue, Engine]] = []
        self.killswitch = KillSwitch(self.js, self._halt)
        self.private: list[PrivateStream] = []  # live account streams (ccxt accounts)

    def _clock(self, venue: Venue) -> Callable[[], float]:
        if isinstance(venue, PaperVenue) and self.cfg.market_prefix.startswith("replay."):
            return lambda: venue.now_ns / 1e9  # a backtest runs on the replayed time
        return time.time

    async def start(self) -> None:
        for account, acfg in self.cfg.active_accounts().items():
            venue = make_venue(acfg, self.nc)  # nc: the ccxt venue's shared REST budget
            await venue.start()
            e = Engine(account, acfg, venue, self.pub, self.marks, self._clock(venue))
            history = await read_history(self.js, account)
            e.restore(history)
            log.info("state rebuilt", extra={"account": account, "messages": len(history),
                                             "open": len(e.active)})  # fmt: skip
            self.engines[account] = e
            algos = Algos(e, self.cfg.algo, self.tapes, self._profile, self._record)
            await algos.restore(history)
            self.algos[account] = algos
            if isinstance(venue, PaperVenue):
                self.papers.append((venue, e))
        if self.papers:
            instruments = await read_instruments(self.js, self.cfg.market_prefix)
            for venue, _e in self.papers:
                for ins in instruments:
                    venue.on_market(ins)
            log.info("instruments loaded", extra={"count": len(instruments)})
        for kind in MARKET_TYPES:
            await self.nc.subscribe(
                f"{self.cfg.market_prefix}{subjects.market_filter(kind, '*', '*')}",
                cb=self._on_market,
            )  # fmt: skip
        for account in self.engines:
            await self.nc.subscribe(subjects.exec_req(account), cb=self._on_request)
        # before any reconciliation: a halted executor must not send a write-ahead order
        await self.killswitch.start()
        for e in self.engines.values():
            await e.reconcile(restart=True)
        for account, e in self.engines.items():
            acfg = e.cfg
            if acfg.private.enabled and isinstance(e.venue, CcxtVenue):
                ps = PrivateStream(account, acfg, e.venue, e, self.nc)
                await ps.start()
                self.private.append(ps)

    async def _on_market(self, msg: Msg) -> None:
        try:
            data = schemas.decode(msg.data)
        except msgspec.DecodeError:
            return  # the normalizer dead-letters bad market data; nothing to add here
        self.marks.on_market(data)
        self.tapes.on_market(data)
        for venue, e in self.papers:
            reports = venue.on_market(data)
            if reports:
                await e.on_reports(reports)

    async def _profile(self, venue: str, symbol: str, days: int) -> dict[int, float] | None:
        """Traded volume per UTC hour of day over ``days`` of ClickHouse history (the VWAP
        profile), through the sink's sql.query; None without history or an answer."""
        if not (_SQL_TOKEN.match(venue) and _SQL_TOKEN.match(symbol)):
            return None
        q = (f"SELECT toHour(ts_event) AS h, sum(size) AS v FROM trades "
             f"WHERE venue = '{venue}' AND symbol = '{symbol}' "
             f"AND ts_event >= now() - INTERVAL {int(days)} DAY GROUP BY h ORDER BY h")  # fmt: skip
        try:
            res = await sql.query(self.nc, q, timeout=self.cfg.algo.profile_timeout_s)
        except Exception as exc:  # no sink, no permission, a ClickHouse error: flat profile
            log.warning("vwap profile unavailable", extra={"error": str(exc)[:200]})
            return None
        return {int(h): float(v) for h, v in res.rows} or None

    async def _record(self, cmd: OrderCommand) -> None:
        """Record a child's command on exec.cmd (the order_commands table, and the terms a
        restart rebuild reads), after it was handled: the consumer sees it as a duplicate.
        Never before: a record the consumer met first would send the child itself."""
        fut = await self.js.publish_async(
            subjects.exec_cmd(cmd.account), schemas.encode(cmd),
            headers={subjects.H_MSG_ID: command_msg_id(cmd)},
        )  # fmt: skip
        fut.add_done_callback(_record_done)

    async def dispatch(self, cmd: Command) -> Reply | None:
        """A command to its account's engine (orders) or algos (parents); None when this
        executor does not serve the account."""
        if isinstance(cmd, AlgoCommand):
            a = self.algos.get(cmd.account)
            return await a.handle(cmd) if a is not None else None
        e = self.engines.get(cmd.account)
        if e is None:
            return None
        a = self.algos[cmd.account]
        pid = a.reserved(cmd.client_order_id) if cmd.action == "new" else None
        # a parent's own child (its record redelivered) is a known order: a duplicate below
        if pid is not None and cmd.client_order_id not in e.orders:
            why = f"client_order_id {cmd.client_order_id} is reserved for parent {pid}'s children"
            return Reply(accepted=False, client_order_id=cmd.client_order_id, reason=why)
        if cmd.action == "new":
            a.note_new(cmd.venue, cmd.symbol, cmd.client_order_id)
        return await e.handle(cmd)

    async def _handle(self, msg: Msg) -> tuple[Command | None, Reply | None, str | None]:
        """The command in ``msg``, dispatched: (command, its reply, None). No reply: (None,
        None, why) for a body that is no command; (command, None, the error) when
        dispatching raised (logged here); (command, None, None) for an account not served
        here."""
        try:
            cmd = command_of(msg.subject, msg.data)
        except msgspec.DecodeError as exc:
            return None, None, f"bad command: {exc}"
        try:
            return cmd, await self.dispatch(cmd), None
        except Exception as exc:  # a bug or a venue surprise must not stop the executor
            log.exception("command failed", extra={"command": _cmd_id(cmd)})
            return cmd, None, str(exc)

    async def _on_request(self, msg: Msg) -> None:
        cmd, reply, error = await self._handle(msg)
        if cmd is None:
            await msg.respond(orjson.dumps({"accepted": False, "reason": error}))
            await self.pub.dlq(msg.data, str(error))
            return
        if reply is None:
            why = "unknown account" if error is None else f"internal: {error}"
            await msg.respond(orjson.dumps({"accepted": False, "reason": why}))
            return
        await msg.respond(msgspec.json.encode(reply))
        if not reply.duplicate:
            # The record only: the order's events are already stored, so its ack is not
            # awaited here (that would delay the next request by a round trip).
            fut = await self.js.publish_async(
                subjects.exec_cmd(cmd.account), msg.data,
                headers={subjects.H_MSG_ID: command_record_id(cmd)},
            )  # fmt: skip
            fut.add_done_callback(_record_done)

    async def _halt(self, reason: str | None) -> None:
        for e in self.engines.values():
            done = await e.halt(reason)
            extra = {"account": e.account, "reason": reason, "cancelled": len(done)}
            log.warning("halt" if reason is not None else "resume", extra=extra)

    async def handle_batch(self, batch: list[Msg]) -> None:
        for msg in batch:
            cmd, reply, error = await self._handle(msg)
            if cmd is None:
                await self.pub.dlq(msg.data, str(error))
            elif reply is None:
                why = f"account {cmd.account} not served by this executor" if error is None else (
                    f"command failed: {error}")  # fmt: skip
                await self.pub.dlq(msg.data, why)

    async def close(self) -> None:
        await self.killswitch.stop()
        for ps in self.private:
            await ps.close()
        for e in self.engines.values():
            await e.venue.close()


async def main(w: Worker) -> None:
    ex = Executor(w)
    await ex.start()
    cfg = ex.cfg
    consumer = BatchConsumer(ex.js, STREAM_EXEC, cfg.consumer, filter_subject="exec.cmd.>")
    await consumer.start()
    w.health.set(
        "ok",
        accounts=sorted(ex.engines),
        foreign_orders={a: len(e.recon.foreign) for a, e in ex.engines.items()},
    )
    next_reconcile = time.monotonic() + cfg.reconcile_interval_s
    next_position = time.monotonic() + cfg.position_interval_s
    try:
        while not w.stop.is_set():
            batch = await consumer.fetch(timeout=cfg.timer_interval_s)
            if batch:
                await ex.handle_batch(batch)
                await consumer.ack_through(batch[-1])
            now = time.monotonic()
            reconcile = now >= next_reconcile
            if reconcile:
                next_reconcile = now + cfg.reconcile_interval_s
            for e in ex.engines.values():
                try:
                    await e.tick()
                    await ex.algos[e.account].tick()
                    if reconcile:
                        await e.reconcile()
                except Exception:  # retried at the next round
                    log.exception("timers/reconciliation failed", extra={"account": e.account})
            if now >= next_position:
                next_position = now + cfg.position_interval_s
                for e in ex.engines.values():
                    for key in list(e.positions):
                        await e.emit_position(key, periodic=True)
                w.health.set(open={a: len(e.active) for a, e in ex.engines.items()},
                             private={p.account: "up" if p.up else "down" for p in ex.private},
                             foreign_orders={a: len(e.recon.foreign)
                                             for a, e in ex.engines.items()})  # fmt: skip
    finally:
        await consumer.stop()
        await ex.close()
