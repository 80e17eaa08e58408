"""Private (account) frames of a venue -> what the engine applies: order reports with their
fills, balances and positions. One frame in, one ``Update`` out; nothing here does I/O.

Shapes (the venues' docs and the real payloads under ../shared/frames/nautilus/):
- Binance spot user data (WebSocket API ``{"subscriptionId", "event"}`` or a bare event):
  ``executionReport`` carries the order's state AND the trade of ``x = TRADE`` in one frame,
  so a fill is never seen apart from its order; ``outboundAccountPosition`` the balances
  that changed (free + locked).
- OKX ``orders`` (state plus the last fill: ``tradeId``/``fillSz``/``fillPx``, ``fee``
  negative when charged), ``account`` (``details[].cashBal``), ``positions`` (``pos``).
- Bybit ``order`` (state), ``execution``/``execution.fast`` (fills), ``wallet``
  (``coin[].walletBalance``), ``position`` (``size``, ``side``).
Trade ids are the venue's own, as the REST fill lists give them, so a fill pushed here and
the same fill found by a reconciliation poll are one fill (``Order.fill_ids``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from executor.model import VenueFill, VenueReport
from streams.schemas import OrderState

_BINANCE: dict[str, OrderState] = {
    "NEW": "new", "PARTIALLY_FILLED": "partially_filled", "FILLED": "filled",
    "CANCELED": "canceled", "PENDING_CANCEL": "pending_cancel", "REJECTED": "rejected",
    "EXPIRED": "expired", "EXPIRED_IN_MATCH": "expired",
}  # fmt: skip
_OKX: dict[str, OrderState] = {
    "live": "new", "partially_filled": "partially_filled", "filled": "filled",
    "canceled": "canceled", "mmp_canceled": "canceled",
}  # fmt: skip
_BYBIT: dict[str, OrderState] = {
    "New": "new", "PartiallyFilled": "partially_filled", "Filled": "filled",
    "Cancelled": "canceled", "PartiallyFilledCanceled": "canceled", "Rejected": "rejected",
    "Deactivated": "canceled", "Untriggered": "new", "Triggered": "new",
}  # fmt: skip


@dataclass(slots=True)
class Update:
    reports: list[VenueReport] = field(default_factory=list)
    # venue order id -> client order id, for orders whose reports carry both
    ids: dict[str, str] = field(default_factory=dict)
    balances: dict[str, float] | None = None  # asset -> total (free + locked), changed ones
    positions: dict[str, float] | None = None  # venue symbol -> signed size (contracts)
    kind: str = ""  # what the frame was ("" for control frames: acks, pongs)


def _f(v: Any) -> float:
    try:
        return float(v) if v not in (None, "") else 0.0
    except (TypeError, ValueError):
        return 0.0


def binance(msg: dict[str, Any]) -> Update:
    ev = msg.get("event") if isinstance(msg.get("event"), dict) else msg
    e = ev.get("e")
    if e == "executionReport":
        status = _BINANCE.get(str(ev.get("X")), "new")
        # a cancel's report names the cancel request in `c` and the order in `C`
        cid = str(ev.get("C") or "") if status == "canceled" else ""
        cid = cid or str(ev.get("c") or "")
        fills: list[VenueFill] = []
        if ev.get("x") == "TRADE" and int(ev.get("t") or -1) >= 0:
            fills.append(VenueFill(
                trade_id=str(ev["t"]), price=_f(ev.get("L")), size=_f(ev.get("l")),
                fee=_f(ev.get("n")), fee_currency=str(ev.get("N") or ""),
                liquidity="maker" if ev.get("m") else "taker",
                ts_ns=int(ev.get("T") or 0) * 1_000_000,
            ))  # fmt: skip
        filled, quote = _f(ev.get("z")), _f(ev.get("Z"))
        vid = str(ev.get("i"))
        why = str(ev.get("r") or "") if status == "rejected" else ""
        rep = VenueReport(cid, status, vid, filled, quote / filled if filled else None, fills, why)
        return Update([rep], {vid: cid}, kind="order")
    if e == "outboundAccountPosition":
        bal = {str(b["a"]): _f(b.get("f")) + _f(b.get("l")) for b in ev.get("B") or []}
        return Update(balances=bal, kind="balance")
    return Update()


def okx(msg: dict[str, Any]) -> Update:
    channel = (msg.get("arg") or {}).get("channel")
    data = msg.get("data") or []
    if channel == "orders":
        out = Update(kind="order")
        for d in data:
            cid, vid = str(d.get("clOrdId") or ""), str(d.get("ordId") or "")
            fills = []
            if d.get("tradeId") and _f(d.get("fillSz")) > 0:
                fills.append(VenueFill(
                    trade_id=str(d["tradeId"]), price=_f(d.get("fillPx")),
                    size=_f(d.get("fillSz")), fee=-_f(d.get("fillFee") or d.get("fee")),
                    fee_currency=str(d.get("fillFeeCcy") or d.get("feeCcy") or ""),
                    liquidity={"M": "maker", "T": "taker"}.get(d.get("execType"), "unknown"),
                    ts_ns=int(_f(d.get("fillTime"))) * 1_000_000,
                ))  # fmt: skip
            avg = _f(d.get("avgPx")) or None
            state = _OKX.get(str(d.get("state")), "new")
            out.reports.append(VenueReport(cid, state, vid, _f(d.get("accFillSz")), avg, fills))
            out.ids[vid] = cid
        return out
    if channel == "account":
        bal = {str(x["ccy"]): _f(x.get("cashBal")) for a in data for x in a.get("details") or []}
        return Update(balances=bal, kind="balance")
    if channel == "positions":
        pos: dict[str, float] = {}
        for p in data:
            size = _f(p.get("pos"))
            pos[str(p.get("instId"))] = -abs(size) if p.get("posSide") == "short" else size
        return Update(positions=pos, kind="position")
    return Update()


def bybit(msg: dict[str, Any]) -> Update:
    topic = str(msg.get("topic") or "").split(".")[0]
    data = msg.get("data") or []
    if topic == "order":
        out = Update(kind="order")
        for d in data:
            cid, vid = str(d.get("orderLinkId") or ""), str(d.get("orderId") or "")
            state = _BYBIT.get(str(d.get("orderStatus")), "new")
            avg = _f(d.get("avgPrice")) or None
            out.reports.append(VenueReport(cid, state, vid, _f(d.get("cumExecQty")), avg, []))
            out.ids[vid] = cid
        return out
    if topic == "execution":
        out = Update(kind="fill")
        for d in data:
            cid, vid = str(d.get("orderLinkId") or ""), str(d.get("orderId") or "")
            fill = VenueFill(
                trade_id=str(d.get("execId")), price=_f(d.get("execPrice")),
                size=_f(d.get("execQty")), fee=_f(d.get("execFee")),
                fee_currency=str(d.get("feeCurrency") or ""),
                liquidity="maker" if d.get("isMaker") else "taker",
                ts_ns=int(_f(d.get("execTime"))) * 1_000_000,
            )  # fmt: skip
            # a fill alone: its order's state comes on the `order` topic
            out.reports.append(VenueReport(cid, "partially_filled", vid, 0.0, None, [fill]))
            out.ids[vid] = cid
        return out
    if topic == "wallet":
        coins = [c for a in data for c in a.get("coin") or []]
        bal = {str(c["coin"]): _f(c.get("walletBalance")) for c in coins}
        return Update(balances=bal, kind="balance")
    if topic == "position":
        pos = {}
        for p in data:
            size = _f(p.get("size"))
            pos[str(p.get("symbol"))] = -size if p.get("side") == "Sell" else size
        return Update(positions=pos, kind="position")
    return Update()


PARSERS = {"binance": binance, "okx": okx, "bybit": bybit}
