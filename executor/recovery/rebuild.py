"""The restart rebuild: an account's orders, fills and positions from its EXEC history.

The history is what executor/worker.py's ``read_history`` let through: order commands from
``exec.cmd.<account>`` and the executor's own order updates and fills from
``exec.evt.<account>.>``. Commands only supply the terms an update does not carry (stop
price, time in force, reduce-only, timeout); orders and fills come from the updates and fills
alone. Everything is written into the Ledger; reconciliation with the venue follows.
"""

from __future__ import annotations

from executor import metrics as m
from executor.ledger import Ledger
from executor.model import Order
from executor.positions import Pos, fee_in_quote
from streams.schemas import Fill, OrderCommand, OrderUpdate


def rebuild(led: Ledger, history: list[object]) -> None:
    """Rebuild orders, fills and positions from this account's EXEC history (commands,
    order updates, fills in stream order), then hand live orders back to the venue."""
    commands: dict[str, OrderCommand] = {}
    fills_by_cid: dict[str, list[Fill]] = {}
    for msg in history:
        if isinstance(msg, OrderCommand):
            if msg.action == "new":
                commands.setdefault(msg.client_order_id, msg)
            elif msg.action == "cancel_all":
                led.cancel_alls.add(msg.client_order_id)
        elif isinstance(msg, OrderUpdate):
            _update(led, msg, commands.get(msg.client_order_id))
        elif isinstance(msg, Fill):
            fills_by_cid.setdefault(msg.client_order_id, []).append(msg)
            key = (msg.venue, msg.symbol)
            fee = fee_in_quote(msg.symbol, msg.fee, msg.fee_currency, msg.price)
            led.positions.setdefault(key, Pos()).apply(msg.side, msg.price, msg.size, fee)
    for cid, fills in fills_by_cid.items():
        o = led.orders.get(cid)
        if o is not None:
            o.fill_ids.update(f.trade_id for f in fills)
            o.filled = max(o.filled, sum(f.size for f in fills))
    led.active = {cid: o for cid, o in led.orders.items() if not o.done}
    for o in led.active.values():
        led.track(o)
        if o.live:
            led.venue.restore(o)
    m.OPEN.labels(led.account).set(len(led.active))


def _update(led: Ledger, u: OrderUpdate, cmd: OrderCommand | None) -> None:
    o = led.orders.get(u.client_order_id)
    ts = u.ts_event / 1e9
    if o is None:
        o = Order(led.account, u.venue, u.symbol, u.client_order_id, u.side, u.order_type,
                  u.quantity, u.price, since=ts)  # fmt: skip
        o.qty_str = repr(u.quantity)
        o.price_str = repr(u.price) if u.price is not None else None
        if cmd is not None:
            o.stop_price = float(cmd.stop_price) if cmd.stop_price else None
            o.stop_str = cmd.stop_price
            o.time_in_force = cmd.time_in_force
            o.reduce_only = cmd.reduce_only
        timeout = cmd.timeout_s if cmd is not None and cmd.timeout_s is not None else (
            led.default_timeout(o))  # fmt: skip
        if timeout is not None:
            o.deadline = ts + timeout
        led.orders[o.client_order_id] = o
    # history is what happened: no transition check, the last word wins
    if u.state != o.state:
        o.since = ts
    o.state = u.state
    o.filled = u.filled
    o.avg_price = u.avg_price
    o.venue_order_id = u.venue_order_id or o.venue_order_id
    o.reason = u.reason
    o.timed_out = o.timed_out or u.reason.startswith("timeout")
