"""The kill switch, durable in the EXEC stream.

``exec.ctl.halt`` halts every account (its body's ``reason`` is reported); only
``exec.ctl.resume`` lifts a halt, so NATS permissions can let traders halt and keep the
resume to operators. ``{"halt": false}`` on the halt subject is refused and logged: it used to
resume, which let anyone who may trade undo an operator's halt.

Both subjects are in EXEC and read with an ordered JetStream consumer from the start of the
stream, not a core subscription: a halt published while the executor was stopped or
disconnected is still seen (the consumer resumes after the last message it delivered), and a
refused ``{"halt": false}`` cannot hide an earlier halt the way a last-value read would. At
start the whole history is folded first and only the final state is applied, so old halts do
not cancel today's orders.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import orjson
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from streams import subjects
from streams.provision import STREAM_EXEC

log = logging.getLogger("executor")

# a lost consumer (server restart, long disconnect) is re-created after 2 missed heartbeats
HEARTBEAT_S = 2.0
DEFAULT_REASON = "kill switch"


def decide(subject: str, data: bytes, halted: str | None) -> tuple[str | None, str]:
    """The halt state after one control message, and what it did (for the log)."""
    try:
        body = orjson.loads(data) if data else {}
    except orjson.JSONDecodeError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    reason = str(body.get("reason") or "")[:200]
    if subject == subjects.EXEC_RESUME:
        return None, "resume"
    if subject != subjects.EXEC_HALT:
        return halted, f"ignored: {subject} is not a control subject"
    if body.get("halt", True) is False:
        return halted, (
            'refused: {"halt": false} on exec.ctl.halt does not resume; an operator '
            "publishes on exec.ctl.resume"
        )
    # anything else on the halt subject halts, a malformed body included: fail safe
    return reason or DEFAULT_REASON, "halt"


class KillSwitch:
    def __init__(
        self, js: JetStreamContext, apply: Callable[[str | None], Awaitable[None]]
    ) -> None:
        self.js = js
        self.apply = apply  # called with the reason (halt) or None (resume)
        self.halted: str | None = None
        self.seq = 0  # stream sequence of the last control message folded in
        self.live = False  # past the history read at start: changes are applied
        self.caught_up = asyncio.Event()
        self._target = 0
        self._sub: object | None = None

    async def _last_seq(self) -> int:
        last = 0
        for subject in (subjects.EXEC_HALT, subjects.EXEC_RESUME):
            try:
                msg = await self.js.get_last_msg(STREAM_EXEC, subject)
            except NotFoundError:
                continue
            last = max(last, msg.seq or 0)
        return last

    async def start(self, timeout: float = 30.0) -> None:
        """Subscribe from the start of EXEC and return once the history is folded in."""
        self._target = await self._last_seq()
        if self._target == 0:
            self.caught_up.set()
        self._sub = await self.js.subscribe(
            subjects.EXEC_CTL, stream=STREAM_EXEC, ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL, idle_heartbeat=HEARTBEAT_S, cb=self._on_msg,
        )  # fmt: skip
        await asyncio.wait_for(self.caught_up.wait(), timeout)
        self.live = True
        if self.halted is not None:
            log.warning("halted at start", extra={"reason": self.halted})
            await self.apply(self.halted)

    async def _on_msg(self, msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        if seq <= self.seq:
            return  # a re-created consumer may start at what we have
        self.seq = seq
        before = self.halted
        self.halted, what = decide(msg.subject, msg.data, before)
        if self.live:
            level = logging.INFO if what in ("halt", "resume") else logging.WARNING
            log.log(level, f"kill switch: {what}", extra={
                "subject": msg.subject, "reason": self.halted, "seq": seq})  # fmt: skip
            if what == "halt" or (what == "resume" and before is not None):
                await self.apply(self.halted)
        elif seq >= self._target:
            self.caught_up.set()

    async def stop(self) -> None:
        sub = self._sub
        if sub is not None:
            try:
                await sub.unsubscribe()  # type: ignore[attr-defined]
            except Exception:  # closing while disconnected: nothing to undo
                pass
