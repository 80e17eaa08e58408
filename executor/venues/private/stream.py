"""Live account stream of one ccxt account: fills, order updates and balances pushed by the
venue, applied at once; reconciliation polling stays the fallback.

ccxt pro keeps the connection: it signs, subscribes, pings and reconnects as it does for
that venue (Binance spot in ccxt 4.5: the signed WebSocket API ``userDataStream.subscribe.
signature`` on ``urls['api']['ws']['ws-api']['spot']``, no listenKey; futures: listenKey
with keep-alive; OKX: login then ``orders``/``account``/``positions``; Bybit: auth then
``order``/``execution``/``wallet``/``position``). The ``watch_*`` calls only keep those
subscriptions alive: every frame is taken at ccxt's client entry (``handle_message``,
before ccxt parses it), published untouched to RAW on ``raw.private.<account>.<exchange>``
(only the executor may publish there; it replays like any RAW subject), and parsed here
(executor/venues/private/parse.py): a Binance ``executionReport`` is the order's state and
its trade in one frame, so a fill is never applied apart from its order.

A dropped connection is reconciled by polling: when ccxt connects again (and once after the
first subscription), a reconciliation round lists open orders and fills since the last
window; fills are keyed by trade id, so nothing pushed and polled is recorded twice, and
nothing missed while disconnected is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

import ccxt.pro as ccxtpro
import orjson
from nats.aio.client import Client

from executor import metrics as m
from executor.engine import Engine
from executor.model import Order, VenueFill, VenueReport
from executor.venues.ccxt_venue import CcxtVenue, load_keys
from executor.venues.private.parse import PARSERS, Update
from executor.venues.private.truth import Truth
from streams import subjects
from streams.bus.budget import share
from streams.bus.ccxt_tap import tap_client, tap_clients
from streams.settings import AccountSettings

log = logging.getLogger("executor")


def watches(exchange: str) -> list[str]:
    """The ccxt watch calls that subscribe every private channel we parse."""
    if exchange == "binance":
        return ["watch_orders"]  # one user data stream: orders, trades and balances
    return ["watch_orders", "watch_my_trades", "watch_balance", "watch_positions"]


def _set_dotted(tree: dict[str, Any], key: str, value: str) -> None:
    *path, last = key.split(".")
    node = tree
    for p in path:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[last] = value


class PrivateStream:
    def __init__(self, account: str, cfg: AccountSettings, venue: CcxtVenue, engine: Engine,
                 nc: Client) -> None:  # fmt: skip
        self.account, self.cfg, self.venue, self.e, self.nc = account, cfg, venue, engine, nc
        self.exchange = cfg.exchange
        self.parse = PARSERS.get(cfg.exchange)
        self.raw_subject = subjects.raw_private(account, cfg.exchange)
        self.conn = f"private-{account}-{time.time_ns() // 1_000_000:x}"  # this run's frames
        self.ex: Any = None
        self.queue: deque[tuple[bytes, int]] = deque()
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.ids: dict[str, str] = {}  # venue order id -> client order id
        self.up = False
        self.connects = 0
        self.frames = 0
        self.need_reconcile = False
        self.truth = Truth(account, cfg.private, self._publish_drift, engine.halt)
        self._frames_metric = m.PRIVATE_FRAMES.labels(account)  # no label lookup per frame
        hook = engine.fill_hook

        def on_fill(o: Order, f: VenueFill) -> None:  # chained: executor/algo's hook too
            self.truth.on_fill(o, f)
            if hook is not None:
                hook(o, f)

        self._hook = hook
        engine.fill_hook = on_fill

    async def _publish_drift(self, account: str, body: bytes) -> None:
        await self.nc.publish(subjects.account_drift(account), body)

    @property
    def supported(self) -> bool:
        return self.parse is not None and hasattr(ccxtpro, self.exchange)

    async def start(self) -> None:
        if not self.supported:
            log.warning("no private stream for this exchange: polling only",
                        extra={"account": self.account, "exchange": self.exchange})  # fmt: skip
            return
        klass = getattr(ccxtpro, self.exchange)
        self.ex = klass({**load_keys(self.cfg), "options": dict(self.cfg.options),
                         "timeout": int(self.cfg.request_timeout_s * 1000)})  # fmt: skip
        if self.cfg.urls:
            api = self.ex.urls.get("api")
            self.ex.urls["api"] = {**api, **self.cfg.urls} if isinstance(api, dict) else dict(
                self.cfg.urls)  # fmt: skip
        for key, url in self.cfg.private.ws.items():  # e.g. "ws.ws-api.spot", "ws" (OKX)
            _set_dotted(self.ex.urls["api"], key, url)
        # the REST venue loaded the markets through the shared budget: no second load
        self.ex.set_markets(self.venue.ex.markets, self.venue.ex.currencies)
        self._share_budget()
        self._tap()
        await self._baseline()
        self.tasks = [asyncio.create_task(self._apply_loop(), name="private-apply")]
        self.tasks += [asyncio.create_task(self._watch(w), name=f"private-{w}")
                       for w in watches(self.exchange)]  # fmt: skip
        self.tasks.append(asyncio.create_task(self._poll_truth(), name="private-truth"))
        log.info("private stream started", extra={"account": self.account,
                                                  "exchange": self.exchange})  # fmt: skip

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(BaseException):
                await t
        if self.ex is not None:
            with contextlib.suppress(Exception):
                await self.ex.close()
        self.e.fill_hook = self._hook

    def _share_budget(self) -> None:
        """ccxt pro makes REST calls for a private stream too: the positions snapshot OKX's and
        Bybit's watchPositions fetch first, Binance futures' listenKey and its keep-alive.
        They take weight from the account's shared budget and go through its proxy, like the
        REST venue's own calls: a stream reconnecting in a loop cannot spend weight nobody
        counts and get the IP banned."""
        if self.venue.budget is not None:  # None: a venue that was never started (tests)
            share(self.ex, self.venue.budget)

    # -- the tap ---------------------------------------------------------------------------
    def _tap(self) -> None:
        tap_clients(self.ex, self._tap_client)

    def _tap_client(self, c: Any) -> None:
        tap_client(c, self._on_frame, self._on_connected, self._down)

    def _on_frame(self, frame: bytes, recv_ns: int) -> None:
        self.queue.append((frame, recv_ns))
        self.wake.set()

    def _on_connected(self, client: Any) -> None:
        self.connects += 1
        self.up = True
        m.PRIVATE_UP.labels(self.account).set(1)
        self.need_reconcile = True  # whatever happened before this connection: poll it
        self.wake.set()

    def _down(self, why: str) -> None:
        if self.up:
            self.up = False
            m.PRIVATE_UP.labels(self.account).set(0)
            m.PRIVATE_DROPS.labels(self.account).inc()

    # -- loops -----------------------------------------------------------------------------
    async def _watch(self, name: str) -> None:
        """Keep one ccxt subscription alive; its results are ccxt's, ours come from the tap."""
        fn = getattr(self.ex, name, None)
        camel = name.split("_")[0] + "".join(w.title() for w in name.split("_")[1:])
        if fn is None or not self.ex.has.get(camel):
            return
        delay = 0.5
        while True:
            try:
                await fn()
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a drop or a refusal: ccxt reconnects on the next call
                log.warning("private stream: %s failed, retrying", name,
                            extra={"account": self.account, "error": repr(exc)[:200]})  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _apply_loop(self) -> None:
        q = self.queue
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch = []
            while q:
                data, recv = q.popleft()
                batch.append((data, recv))
                try:
                    await self._apply(data, recv)
                except Exception:  # a frame we cannot apply must not stop the stream
                    log.exception("private frame not applied", extra={"account": self.account})
            if self.cfg.private.raw and batch:
                await self._raw(batch)
            if self.need_reconcile:
                self.need_reconcile = False
                try:  # the gap before this connection, by polling
                    await self.e.reconcile()
                except Exception:
                    log.exception("reconciliation after reconnect failed",
                                  extra={"account": self.account})  # fmt: skip
                    self.need_reconcile = True

    async def _raw(self, frames: list[tuple[bytes, int]]) -> None:
        """Into RAW with the headers public frames carry (receive time, connection), after
        they were applied: the copy for replay never delays a fill. Unacked: a lost copy
        loses no fill (those are on EXEC)."""
        for data, recv in frames:
            await self.nc.publish(self.raw_subject, data, headers={
                subjects.H_RECV_NS: str(recv), subjects.H_CONN: self.conn})  # fmt: skip

    async def _apply(self, data: bytes, recv_ns: int) -> None:
        self.frames += 1
        self._frames_metric.inc()
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            return  # pongs and the like
        if not isinstance(msg, dict) or self.parse is None:
            return
        u: Update = self.parse(msg)
        if u.reports:
            self.ids.update({v: c for v, c in u.ids.items() if c})
            for rep in u.reports:
                if not rep.client_order_id:
                    rep.client_order_id = self.ids.get(rep.venue_order_id or "", "")
                self._contracts(rep)
            await self.e.on_reports([r for r in u.reports if r.client_order_id])
            await self._late_fills(u.reports)
        if u.balances:
            await self.truth.balances(u.balances, pushed=True)
        if u.positions is not None:
            await self.truth.positions(self._ours_native(u.positions),
                                       self._our_positions(), pushed=True)  # fmt: skip

    async def _late_fills(self, reports: list[VenueReport]) -> None:
        """Fills of an order already final (Bybit may send the order's ``Filled`` before
        its ``execution``): recorded like reconciliation records them, state untouched."""
        for rep in reports:
            o = self.e.orders.get(rep.client_order_id)
            if o is None or not o.done or not rep.fills:
                continue
            fresh = [f for f in rep.fills if f.trade_id not in o.fill_ids]
            if fresh:
                async with self.e.lock:
                    await self.e.apply(o, VenueReport(o.client_order_id, o.state,
                                                      rep.venue_order_id, o.filled,
                                                      o.avg_price, fresh))  # fmt: skip

    def _contracts(self, rep: Any) -> None:
        o = self.e.orders.get(rep.client_order_id)
        if o is None:
            return
        k = self.venue._contract(o.symbol)
        if k != 1.0:  # derivatives: the venue counts contracts, we count base units
            rep.filled *= k
            for f in rep.fills:
                f.size *= k

    def _ours_native(self, pos: dict[str, float]) -> dict[str, float]:
        by_id = self.venue.ex.markets_by_id or {}
        out = {}
        for vid, size in pos.items():
            ms = by_id.get(vid) or []
            mk = ms[0] if isinstance(ms, list) and ms else ms
            ours = self.venue.ours.get(mk["symbol"]) if isinstance(mk, dict) else None
            if ours:
                out[ours] = out.get(ours, 0.0) + size * float(mk.get("contractSize") or 1.0)
        return out

    def _our_positions(self) -> dict[str, float]:
        return {sym: p.size for (_v, sym), p in self.e.positions.items()
                if sym.count("-") > 1}  # fmt: skip

    # -- account truth by polling ------------------------------------------------------------
    async def _venue_totals(self) -> dict[str, float]:
        bal = await self.venue.ex.fetch_balance()
        return {a: float(v) for a, v in (bal.get("total") or {}).items() if v is not None}

    async def _baseline(self) -> None:
        try:
            async with self.e.lock:  # no fill recorded while the venue answers
                self.truth.baseline(await self._venue_totals())
        except Exception as exc:  # no balances: truth starts at the next poll
            log.warning("account baseline unavailable", extra={
                "account": self.account, "error": repr(exc)[:200]})  # fmt: skip

    async def check_truth(self) -> None:
        """One polled comparison of balances (and positions where the venue has them)."""
        if self.truth.ours is None:
            await self._baseline()
            return
        await self.truth.balances(await self._venue_totals(), pushed=False)
        ours = self._our_positions()
        if ours and self.venue.ex.has.get("fetchPositions"):
            venue: dict[str, float] = {}
            for p in await self.venue.ex.fetch_positions():
                sym = self.venue.ours.get(p.get("symbol"))
                if sym:
                    size = float(p.get("contracts") or 0) * float(p.get("contractSize") or 1)
                    venue[sym] = -size if p.get("side") == "short" else size
            await self.truth.positions(venue, ours, pushed=False)

    async def _poll_truth(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.private.truth_interval_s)
            try:  # unlocked (a halt takes the lock): a polled drift must be seen twice
                await self.check_truth()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("account truth poll failed", extra={
                    "account": self.account, "error": repr(exc)[:200]})  # fmt: skip
