"""Checks of an algo command's terms: each refusal is one line saying what to change."""

from __future__ import annotations

import re
from decimal import Decimal

from executor.algo.schedule import NS
from executor.precision import PrecisionError, Spec, parse_decimal
from streams.schemas import AlgoCommand, ParentUpdate
from streams.settings import AlgoSettings

# no '.': a child's client id is ``<parent>.<n>``, so the parent is everything before the dot
PARENT_ID = re.compile(r"^[A-Za-z0-9_:-]+$")
VENUE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MAX_VENUES = 8
MAX_SLICES = 10_000
DEFAULT_SLICES = 10


class Invalid(ValueError):
    """A refused algo command; the message is the one-line reason."""


def _qty(name: str, value: str | None, spec: Spec) -> float:
    try:
        d = parse_decimal(name, value)
        return float(Decimal(spec.round_qty(d / Decimal(repr(spec.contract_size))))
                     * Decimal(repr(spec.contract_size)))  # fmt: skip
    except PrecisionError as exc:
        raise Invalid(str(exc)) from None


def _price(name: str, value: str | None, spec: Spec) -> float | None:
    if value is None:
        return None
    try:
        return float(spec.round_price(parse_decimal(name, value)))
    except PrecisionError as exc:
        raise Invalid(str(exc)) from None


def parent_id_error(pid: str, cfg: AlgoSettings) -> str | None:
    if not pid or len(pid) > cfg.max_parent_id or not PARENT_ID.match(pid):
        return (f"parent_id must be 1-{cfg.max_parent_id} characters of A-Z a-z 0-9 _ : - "
                "(its children are <parent_id>.<n>)")  # fmt: skip
    return None


def new_parent(cmd: AlgoCommand, spec: Spec, now_ns: int, cfg: AlgoSettings) -> ParentUpdate:
    """The first record of a parent from a ``new`` command, or Invalid."""
    if (why := parent_id_error(cmd.parent_id, cfg)) is not None:
        raise Invalid(why)
    if cmd.algo is None or cmd.side is None:
        raise Invalid("algo and side are required (algo: twap, vwap, pov, iceberg, peg)")
    algo = cmd.algo
    venues = list(dict.fromkeys(cmd.venues))  # order kept (ties go to the first), once each
    if venues:
        if algo not in ("twap", "vwap", "pov"):
            raise Invalid(f"venues (smart routing) apply to twap, vwap and pov, not {algo}")
        if len(venues) > MAX_VENUES or not all(v and VENUE.match(v) for v in venues):
            raise Invalid(f"venues: 1-{MAX_VENUES} venue names (A-Z a-z 0-9 _ -)")
    quantity = _qty("quantity", cmd.quantity, spec)
    limit = _price("limit_price", cmd.limit_price, spec)
    start = cmd.start_ts if cmd.start_ts is not None else now_ns
    end = cmd.end_ts
    if end is not None and end <= max(start, now_ns):
        raise Invalid("end_ts must be after start_ts and in the future")
    slices = 0
    if algo in ("twap", "vwap"):
        if end is None:
            raise Invalid(f"a {algo} parent needs end_ts (its horizon)")
        slices = cmd.slices if cmd.slices is not None else DEFAULT_SLICES
        if not 1 <= slices <= MAX_SLICES:
            raise Invalid(f"slices must be 1-{MAX_SLICES}")
        if (end - start) / slices < cfg.min_child_interval_s * NS:
            raise Invalid(f"slices shorter than algo.min_child_interval_s "
                          f"({cfg.min_child_interval_s:g} s): use fewer slices")  # fmt: skip
    elif cmd.slices is not None:
        raise Invalid(f"slices apply to twap and vwap, not {algo}")
    part = cmd.participation
    if algo == "pov" and part is None:
        raise Invalid("a pov parent needs participation (a share of traded volume, 0-0.5]")
    if part is not None:
        top = 0.5 if algo == "pov" else 1.0
        if not 0 < part <= top:
            raise Invalid(f"participation must be in (0, {top:g}]")
    display = None
    if algo == "iceberg":
        if cmd.display is None or limit is None:
            raise Invalid("an iceberg parent needs display (the visible quantity) and limit_price")
        display = _qty("display", cmd.display, spec)
        if display > quantity:
            raise Invalid("display must not exceed quantity")
    elif cmd.display is not None:
        raise Invalid(f"display applies to iceberg, not {algo}")
    if cmd.offset_ticks and algo != "peg":
        raise Invalid(f"offset_ticks applies to peg, not {algo}")
    if not 0 <= cmd.offset_ticks <= 1000:
        raise Invalid("offset_ticks must be 0-1000")
    return ParentUpdate(
        account=cmd.account, venue=cmd.venue, symbol=cmd.symbol, ts_event=now_ns,
        ts_recv=now_ns, parent_id=cmd.parent_id, algo=algo, state="working", side=cmd.side,
        quantity=quantity, limit_price=limit, start_ts=start, end_ts=end, slices=slices,
        participation=part, display=display, offset_ticks=cmd.offset_ticks,
        cmd_ts=cmd.ts_event, venues=venues,
    )  # fmt: skip


def amend(rec: ParentUpdate, cmd: AlgoCommand, spec: Spec, now_ns: int) -> list[str]:
    """Apply an ``amend`` to ``rec`` in place (all or nothing); the names changed."""
    for name in ("algo", "side", "start_ts", "slices"):
        if getattr(cmd, name) is not None:
            raise Invalid(f"{name} cannot be amended (cancel and send a new parent)")
    if cmd.offset_ticks or cmd.venues:
        raise Invalid("offset_ticks and venues cannot be amended")
    new: dict[str, object] = {}
    if cmd.quantity is not None:
        q = _qty("quantity", cmd.quantity, spec)
        if q < rec.filled:
            raise Invalid(f"quantity {q:g} is below what is already filled ({rec.filled:g})")
        new["quantity"] = q
    if cmd.limit_price is not None:
        new["limit_price"] = _price("limit_price", cmd.limit_price, spec)
    if cmd.end_ts is not None:
        if cmd.end_ts <= now_ns:
            raise Invalid("end_ts must be in the future")
        new["end_ts"] = cmd.end_ts
    if cmd.participation is not None:
        top = 0.5 if rec.algo == "pov" else 1.0
        if not 0 < cmd.participation <= top:
            raise Invalid(f"participation must be in (0, {top:g}]")
        new["participation"] = cmd.participation
    if cmd.display is not None:
        if rec.algo != "iceberg":
            raise Invalid(f"display applies to iceberg, not {rec.algo}")
        new["display"] = _qty("display", cmd.display, spec)
    if not new:
        raise Invalid("amend names nothing to change (quantity, limit_price, end_ts, "
                      "participation, display)")  # fmt: skip
    quantity = new.get("quantity", rec.quantity)
    display = new.get("display", rec.display)
    if display is not None and display > quantity:  # type: ignore[operator]
        raise Invalid("display must not exceed quantity")
    for k, v in new.items():
        setattr(rec, k, v)
    return sorted(new)
