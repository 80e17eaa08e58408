"""The order state machine of ARCHITECTURE.md, in one place: every state change of every
order goes through ``check()``, so an illegal transition is an error, never a silent edit."""

from __future__ import annotations

from typing import get_args

from streams.schemas import OrderState

STATES: tuple[OrderState, ...] = get_args(OrderState)
TERMINAL: frozenset[OrderState] = frozenset({"filled", "canceled", "rejected", "expired"})
# Orders the venue may still fill.
LIVE: frozenset[OrderState] = frozenset({"new", "partially_filled", "pending_cancel"})

# Venue outcomes can arrive in any order relative to our own requests (a fill racing a
# cancel, a reconciliation finding a finished order), so the machine allows jumping to any
# outcome the venue can report from where we are; it never leaves a terminal state.
TRANSITIONS: dict[OrderState, frozenset[OrderState]] = {
    "pending_new": frozenset(
        {
            "new",
            "partially_filled",
            "filled",
            "canceled",
            "rejected",
            "expired",
            "unknown",
            "pending_cancel",
        }
    ),
    # unknown -> pending_new: the lookup proved the venue never saw it, so it may be sent.
    "unknown": frozenset(
        {"pending_new", "new", "partially_filled", "filled", "canceled", "rejected", "expired"}
    ),
    "new": frozenset({"partially_filled", "filled", "pending_cancel", "canceled", "expired"}),
    "partially_filled": frozenset(
        {"partially_filled", "filled", "pending_cancel", "canceled", "expired"}
    ),
    # A cancel the venue refuses (order still live) goes back to new/partially_filled.
    "pending_cancel": frozenset(
        {"pending_cancel", "new", "partially_filled", "filled", "canceled", "expired"}
    ),
    "filled": frozenset(),
    "canceled": frozenset(),
    "rejected": frozenset(),
    "expired": frozenset(),
}


class IllegalTransition(ValueError):
    def __init__(self, old: str, new: str, cid: str = "") -> None:
        super().__init__(f"illegal order state transition {old} -> {new} ({cid})")
        self.old, self.new = old, new


def allowed(old: OrderState, new: OrderState) -> bool:
    return new in TRANSITIONS[old]


def check(old: OrderState, new: OrderState, cid: str = "") -> OrderState:
    """Return ``new`` if ``old -> new`` is legal, else raise IllegalTransition."""
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(old, new, cid)
    return new
