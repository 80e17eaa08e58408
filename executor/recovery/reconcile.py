"""Bulk reconciliation: the venue's open orders and recent fills, matched to our records.

Per-order lookups only ever find orders the executor knows. A round here lists the
account's open orders and fills on every traded symbol, so it also finds orders placed
under our client-id prefix that the executor has no record of (a lost EXEC record, a
previous instance) and fills that happened while the executor was down. Everything goes
through ``Ledger.apply``: the state machine and its stale-report guard decide, and fills
are keyed by trade id (``Order.fill_ids``, and ``Nats-Msg-Id`` on EXEC), so overlapping
windows and restarts never record a fill twice. Matching runs under the engine's lock; the
venue listing does not.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from executor import metrics as m
from executor.ledger import Ledger
from executor.model import Order, VenueFill, VenueOrder, VenueTrade, VenueUnknown

log = logging.getLogger("executor")

ADOPTED = "adopted by reconciliation"
# Each round asks for fills from a little before the previous one: the venue's clock and
# late-booked trades must not open a hole between two windows (duplicates are dropped).
OVERLAP_MS = 60_000


def _merge(a: list[VenueFill], b: list[VenueFill]) -> list[VenueFill]:
    seen: set[str] = set()
    out = []
    for f in (*a, *b):
        if f.trade_id not in seen:
            seen.add(f.trade_id)
            out.append(f)
    return out


@dataclass(slots=True)
class Listing:
    symbols: list[str]
    open: list[VenueOrder]
    trades: list[VenueTrade]


class Reconciler:
    def __init__(self, ledger: Ledger, resolve: Callable[[Order, bool], Awaitable[None]]) -> None:
        self.e = ledger
        # the engine's lookup-before-resend of a pending_new/unknown submission
        self._resolve = resolve
        self.since_ms: int | None = None  # start of the next fills window
        self.foreign: set[str] = set()  # venue order ids of other clients' orders
        self.rounds = 0

    def symbols(self) -> list[str]:
        """Traded symbols: the allow-list, open orders and positions."""
        e = self.e
        syms = set(e.cfg.risk.allow_symbols)
        syms.update(o.symbol for o in e.active.values())
        syms.update(sym for _venue, sym in e.positions)
        return sorted(syms)

    def ours(self, cid: str) -> bool:
        prefix = self.e.cfg.client_id_prefix
        return bool(prefix) and cid.startswith(prefix)

    async def resolve(self, restart: bool = False) -> None:
        """Unknown submissions first: nothing may resend them before a lookup. Locked."""
        for o in list(self.e.active.values()):
            if o.state in ("pending_new", "unknown"):
                await self._resolve(o, restart)

    async def run(self, restart: bool = False) -> None:
        """One round: resolve unknown submissions, list the venue (unlocked), match the
        listing, then publish positions that moved."""
        e = self.e
        async with e.lock:
            await self.resolve(restart=restart)
        listing = await self.fetch()
        async with e.lock:
            if listing is not None:
                await self.apply(listing)
            for key in list(e.positions):
                await e.emit_position(key, periodic=True)

    async def fetch(self) -> Listing | None:
        """The venue's open orders and recent fills. Not under the engine's lock: with
        the venue's rate limiter this takes a while (Binance weighs myTrades 20), and
        commands must not wait for it; ``apply`` copes with what changed meanwhile."""
        e = self.e
        symbols = self.symbols()
        now_ms = int(e.clock() * 1000)
        since = self.since_ms
        if since is None:
            since = now_ms - int(e.cfg.reconcile_lookback_s * 1000)
        try:
            listed = await e.venue.open_orders(symbols)
            # after the listing: a fill counted in a listed order is also in this list
            trades = await e.venue.recent_fills(symbols, since)
        except VenueUnknown as exc:
            log.warning("reconciliation listing failed", extra={
                "account": e.account, "error": str(exc)})  # fmt: skip
            return None
        self.since_ms = now_ms - OVERLAP_MS
        return Listing(symbols, listed, trades)

    async def apply(self, listing: Listing) -> None:
        """Match a listing with our records. Locked. An order placed or finished since the
        listing was taken is either missing from it (looked up one by one) or reported
        in an older state (the stale-report guard keeps ours)."""
        self.rounds += 1
        fills: dict[str, list[VenueFill]] = {}
        sym_of: dict[str, str] = {}
        for t in listing.trades:
            fills.setdefault(t.venue_order_id, []).append(t.fill)
            sym_of[t.venue_order_id] = t.symbol
        seen: set[str] = set()
        for lo in listing.open:
            vid = lo.report.venue_order_id or ""
            lo.report.fills = _merge(lo.report.fills, fills.pop(vid, []))
            seen.add(lo.report.client_order_id)
            await self._match(lo, vid)
        await self._closed(seen, fills, set(listing.symbols))
        await self._orphan_fills(fills, sym_of)
        m.FOREIGN.labels(self.e.account).set(len(self.foreign))

    async def _match(self, lo: VenueOrder, vid: str) -> None:
        """One venue order: update ours, adopt one in our namespace, skip another's."""
        cid = lo.report.client_order_id
        o = self.e.orders.get(cid)
        if o is not None:
            await self.e.apply(o, lo.report)
        elif self.ours(cid):
            await self._adopt(lo)
        elif vid:
            self.foreign.add(vid)

    async def _closed(self, seen: set[str], fills: dict[str, list[VenueFill]],
                      symbols: set[str]) -> None:  # fmt: skip
        """Orders we hold as live that the venue no longer lists: look each one up."""
        e = self.e
        for o in list(e.active.values()):
            if o.client_order_id in seen or not o.live or o.symbol not in symbols:
                continue
            try:
                rep = await e.venue.lookup(o)
            except VenueUnknown:
                continue
            if o.venue_order_id:
                fills.pop(o.venue_order_id, None)  # the lookup brought this order's fills
            if rep is None:
                o.reason = "not found at the venue during reconciliation"
                o.move("canceled" if not o.timed_out else "expired", e.clock())
                await e.emit(o)
            else:
                await e.apply(o, rep)

    async def _orphan_fills(self, fills: dict[str, list[VenueFill]],
                            sym_of: dict[str, str]) -> None:  # fmt: skip
        """Fills of orders that are not open: new ones are looked up by venue order id."""
        e = self.e
        by_vid: dict[str, Order] = {o.venue_order_id: o for o in e.orders.values()
                                    if o.venue_order_id}  # fmt: skip
        for vid, fs in fills.items():
            o = by_vid.get(vid)
            if vid in self.foreign or (o is not None and
                                       all(f.trade_id in o.fill_ids for f in fs)):  # fmt: skip
                continue
            try:
                lo = await e.venue.order_by_id(sym_of[vid], vid)
            except VenueUnknown:
                continue  # next round
            if lo is None:
                continue
            lo.report.fills = _merge(lo.report.fills, fs)
            await self._match(lo, vid)

    async def _adopt(self, lo: VenueOrder) -> None:
        e = self.e
        rep = lo.report
        o = Order(
            e.account, e.cfg.market_venue, lo.symbol, rep.client_order_id, lo.side,
            lo.order_type, lo.quantity, lo.price, lo.stop_price, lo.time_in_force,
            qty_str=repr(lo.quantity), price_str=repr(lo.price) if lo.price else None,
            stop_str=repr(lo.stop_price) if lo.stop_price else None, reason=ADOPTED,
            since=e.clock(),
        )  # fmt: skip
        timeout = e.default_timeout(o)  # counted from now: we only just learned of it
        if timeout is not None:
            o.deadline = e.clock() + timeout
        e.orders[o.client_order_id] = o
        await e.apply(o, rep)
        m.ADOPTED.labels(e.account).inc()
        log.warning("order adopted by reconciliation", extra={
            "account": e.account, "client_order_id": o.client_order_id, "symbol": o.symbol,
            "venue_order_id": o.venue_order_id, "state": o.state, "filled": o.filled})  # fmt: skip
