"""Account truth: what the venue says the account holds, compared with what our fills say.

Balances: a baseline of the venue's totals (free + locked) when the executor starts, moved
by every fill we record (base +/- size, quote -/+ notional, the fee off its currency): that
is ours. Each venue balance (pushed on the private stream, or polled every
``truth_interval_s``) is compared asset by asset; positions (derivatives) likewise against
the engine's positions. A difference beyond tolerance is a drift: a metric, a message on
``account.drift.<account>`` and, with ``halt_on_drift``, the account halted (its open orders
cancelled, new ones refused until an operator resumes). A polled difference must be seen
twice in a row (a fill may be between the venue's answer and our record); a pushed one
comes in order after the fills it includes, so once is enough.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson

from executor import metrics as m
from executor.model import Order, VenueFill
from streams.settings import PrivateStreamSettings

log = logging.getLogger("executor")


@dataclass(slots=True)
class Drift:
    kind: str  # "balance" | "position"
    name: str  # asset or symbol
    venue: float
    ours: float

    @property
    def diff(self) -> float:
        return self.venue - self.ours


def assets(symbol: str) -> tuple[str, str]:
    """Base and quote of one of our symbols (``BTC-USDT``, ``BTC-USDT-PERP``)."""
    parts = symbol.split("-")
    return parts[0], parts[1] if len(parts) > 1 else ""


@dataclass
class Truth:
    account: str
    cfg: PrivateStreamSettings
    publish: Callable[[str, bytes], Awaitable[None]]
    halt: Callable[[str], Awaitable[object]]
    ours: dict[str, float] | None = None  # asset -> expected total; None before a baseline
    suspect: dict[tuple[str, str], float] = field(default_factory=dict)  # polled once
    drifts: list[Drift] = field(default_factory=list)  # every drift raised (tests, status)
    halted: bool = False

    def baseline(self, venue_totals: dict[str, float]) -> None:
        self.ours = dict(venue_totals)

    def on_fill(self, o: Order, f: VenueFill) -> None:
        """Our record of a fill moves our balances (spot: base and quote; a derivative's
        margin moves with PnL we do not model, so only its fee's currency is tracked)."""
        if self.ours is None:
            return
        base, quote = assets(o.symbol)
        s = 1.0 if o.side == "buy" else -1.0
        if not o.symbol.count("-") > 1:  # spot
            self.ours[base] = self.ours.get(base, 0.0) + s * f.size
            self.ours[quote] = self.ours.get(quote, 0.0) - s * f.size * f.price
        if f.fee and f.fee_currency:
            self.ours[f.fee_currency] = self.ours.get(f.fee_currency, 0.0) - f.fee

    def _beyond(self, d: Drift, tol: float, pushed: bool) -> bool:
        m.DRIFT.labels(self.account, d.kind, d.name).set(d.diff)
        key = (d.kind, d.name)
        # plus a relative allowance: ours is a float sum of every fill (1e6 USDT moved by
        # thousands of fills carries ~1e-8 of rounding), the venue's is exact decimal
        tol = tol + 1e-9 * max(abs(d.venue), abs(d.ours))
        if abs(d.diff) <= tol:
            self.suspect.pop(key, None)
            return False
        if pushed:
            return True
        seen = self.suspect.get(key)
        self.suspect[key] = d.diff
        return seen is not None and abs(seen - d.diff) <= tol  # the same difference twice

    async def balances(self, venue: dict[str, float], pushed: bool) -> list[Drift]:
        """Compare the venue's totals of some assets with ours."""
        if self.ours is None:
            return []
        out = [Drift("balance", a, v, self.ours.get(a, 0.0)) for a, v in venue.items()
               if a in self.ours or abs(v) > self.cfg.balance_tolerance]  # fmt: skip
        return await self._raise(
            [d for d in out if self._beyond(d, self.cfg.balance_tolerance, pushed)]
        )

    async def positions(self, venue: dict[str, float], ours: dict[str, float],
                        pushed: bool) -> list[Drift]:  # fmt: skip
        names = set(venue) | {k for k, v in ours.items() if v}
        out = [Drift("position", n, venue.get(n, 0.0), ours.get(n, 0.0)) for n in sorted(names)]
        return await self._raise(
            [d for d in out if self._beyond(d, self.cfg.position_tolerance, pushed)]
        )

    async def _raise(self, drifts: list[Drift]) -> list[Drift]:
        for d in drifts:
            self.drifts.append(d)
            m.DRIFT_EVENTS.labels(self.account, d.kind).inc()
            halt = self.cfg.halt_on_drift
            body = {"account": self.account, "kind": d.kind, "name": d.name,
                    "venue": d.venue, "ours": d.ours, "drift": d.diff,
                    "tolerance": self.cfg.balance_tolerance if d.kind == "balance"
                    else self.cfg.position_tolerance,
                    "halt": halt, "ts": time.time_ns()}  # fmt: skip
            log.warning("account drift", extra={f"drift_{k}": v for k, v in body.items()})
            await self.publish(self.account, orjson.dumps(body))
            if halt and not self.halted:
                self.halted = True
                await self.halt(f"account drift: {d.kind} {d.name} venue {d.venue:g} "
                                f"ours {d.ours:g}")  # fmt: skip
            if d.kind == "balance" and self.ours is not None:
                self.ours[d.name] = d.venue  # raised once: the venue's figure is the new base
        return drifts
