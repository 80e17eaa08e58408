"""A run's results: every exec message the engine emitted, the PnL curve, the summary, and
storing it all on EXEC under the run's account, where the ClickHouse sink picks it up.

Stored rows (tables ``orders``, ``fills``, ``positions``) carry ``account = bt-<run_id>``;
the PnL curve is the ``positions`` rows of that account (one per symbol every
``backtest.curve_interval_s`` of replayed time, after every fill, and at the end)::

    SELECT ts_event, sum(realized_pnl + unrealized_pnl) AS pnl FROM positions
    WHERE account = 'bt-<run_id>' GROUP BY ts_event ORDER BY ts_event
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.js import JetStreamContext

from replay.model import format_ns
from streams import schemas, subjects
from streams.schemas import ExecBase, Fill, OrderUpdate, Position


@dataclass(slots=True)
class Record:
    subject: str
    msg: ExecBase
    msg_id: str


class Recorder:
    """The engine's publisher in a backtest: keeps every message in emission order (which
    is replay order, so deterministic) and hands new ones to the strategy."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.fresh: list[ExecBase] = []  # not yet shown to the strategy
        self.rejections: list[str] = []  # commands the executor could not even record

    async def publish(self, subject: str, msg: ExecBase, msg_id: str) -> None:
        self.records.append(Record(subject, msg, msg_id))
        self.fresh.append(msg)

    async def dlq(self, data: bytes, reason: str) -> None:
        self.rejections.append(f"{reason}: {data[:200]!r}")

    def take_fresh(self) -> list[ExecBase]:
        out, self.fresh = self.fresh, []
        return out


@dataclass(slots=True)
class Summary:
    run_id: str
    account: str
    strategy: str
    params: dict[str, Any]
    messages: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    orders: dict[str, int] = field(default_factory=dict)  # final state -> count
    fills: int = 0
    volume: float = 0.0  # base units traded
    notional: float = 0.0
    fees: float = 0.0
    realized: float = 0.0  # net of fees
    unrealized: float = 0.0
    max_drawdown: float = 0.0
    positions: dict[str, float] = field(default_factory=dict)  # "venue:symbol" -> size
    digest: str = ""
    seconds: float = 0.0
    stored: int = 0
    rejections: list[str] = field(default_factory=list)

    @property
    def pnl(self) -> float:
        return self.realized + self.unrealized

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]
        out["pnl"] = self.pnl
        return out

    def text(self) -> str:
        rate = self.messages / self.seconds if self.seconds > 0 else 0.0
        orders = ", ".join(f"{k} {v}" for k, v in sorted(self.orders.items())) or "none"
        pos = ", ".join(f"{k} {v:g}" for k, v in sorted(self.positions.items())) or "flat"
        params = " ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        lines = [
            f"backtest {self.run_id}  account {self.account}",
            f"  strategy     {self.strategy} {params}".rstrip(),
            f"  data         {format_ns(self.first_ns)} .. {format_ns(self.last_ns)}",
            f"  messages     {self.messages}  ({self.seconds:.2f} s, {rate:,.0f} msg/s)",
            f"  orders       {orders}",
            f"  fills        {self.fills}  volume {self.volume:g}  notional {self.notional:,.2f}",
            f"  fees         {self.fees:,.4f}",
            f"  pnl          {self.pnl:,.4f}  (realized {self.realized:,.4f}, "
            f"unrealized {self.unrealized:,.4f})",
            f"  max drawdown {self.max_drawdown:,.4f}",
            f"  positions    {pos}",
            f"  digest       {self.digest}",
        ]
        if self.stored:
            lines.append(f"  stored       {self.stored} messages on EXEC (account {self.account})")
        for r in self.rejections[:5]:
            lines.append(f"  dead letter  {r}")
        return "\n".join(lines)


def digest(records: list[Record]) -> str:
    """sha256 of every emitted message with the account blanked, so two runs of the same
    data and strategy compare equal whatever their run ids."""
    h = hashlib.sha256()
    for r in records:
        data = schemas.encode(msgspec.structs.replace(r.msg, account=""))
        h.update(len(data).to_bytes(4, "big"))
        h.update(data)
    return h.hexdigest()


def summarize(s: Summary, records: list[Record]) -> Summary:
    final: dict[str, str] = {}
    last_pos: dict[tuple[str, str], Position] = {}
    equity: dict[int, dict[tuple[str, str], float]] = {}
    for r in records:
        m = r.msg
        if isinstance(m, OrderUpdate):
            final[m.client_order_id] = m.state
        elif isinstance(m, Fill):
            s.fills += 1
            s.volume += m.size
            s.notional += m.price * m.size
        elif isinstance(m, Position):
            key = (m.venue, m.symbol)
            last_pos[key] = m
            equity.setdefault(m.ts_event, {})[key] = m.realized_pnl + m.unrealized_pnl
    s.orders = dict(Counter(final.values()))
    s.fees = sum(p.fees for p in last_pos.values())
    s.realized = sum(p.realized_pnl for p in last_pos.values())
    s.unrealized = sum(p.unrealized_pnl for p in last_pos.values())
    s.positions = {f"{v}:{sym}": p.size for (v, sym), p in last_pos.items()}
    # the curve: total PnL each time any symbol's position was reported
    current: dict[tuple[str, str], float] = {}
    peak = 0.0
    for ts in sorted(equity):
        current.update(equity[ts])
        total = sum(current.values())
        peak = max(peak, total)
        s.max_drawdown = max(s.max_drawdown, peak - total)
    s.digest = digest(records)
    return s


async def store(js: JetStreamContext, records: list[Record], batch: int) -> int:
    """Publish the run's messages on EXEC (acked per batch). ``Nats-Msg-Id`` includes the
    run's account, so storing the same run twice within the duplicate window stores once."""
    done = 0
    for i in range(0, len(records), batch):
        futs = [
            await js.publish_async(
                r.subject, schemas.encode(r.msg), headers={subjects.H_MSG_ID: r.msg_id}
            )
            for r in records[i : i + batch]
        ]
        await asyncio.gather(*futs)
        done += len(futs)
    return done
