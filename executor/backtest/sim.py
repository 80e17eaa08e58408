"""The research backtest engine: a strategy trading a simulated venue over typed market
messages in replay order (``replay.columnar``), synchronous and in one process.

``executor.backtest.runner`` drives the executor's own Engine and PaperVenue (every risk
check and message the live executor makes; a few thousand messages a second). This engine
is for research: the same ``Strategy`` classes, fills from the same validated book, but
plain Python on the replay clock, so a day of data runs in seconds. What it models:

* **Clock.** Time is the receive time of the message being handled (``ctx.now()``);
  nothing reads the wall clock, so the same data and parameters give the same fills.
* **Latency.** An order or cancel the strategy sends at time t reaches the venue at
  ``t + latency_ms`` of replay time: every message received before then is handled first
  (with 0 it acts right after the callback, before the next message).
* **Book.** The latest ``depth`` message per (venue, symbol): the orderbook service's
  validated book (``bbo`` is used when no depth is replayed). Market orders walk it; our
  own fills do not deplete it until the next update.
* **Limit orders.** The marketable part takes liquidity like a market order up to the
  limit (taker fee); the rest rests (GTC; IOC cancels it; POST_ONLY is rejected if it
  would take).
* **Queue position.** A resting order joins the back of its price level: ``queue_ahead``
  = the size the book shows at that price when it arrives (0 at a new level). A trade at
  our price on the side that hits us (a sell print for our bid) eats the queue ahead
  first, then fills us with what is left of its size. A trade through our price (below
  our bid) means the level was taken: we fill completely. A book update showing less at
  our price than ``queue_ahead`` moves us up to that size (cancels are taken from ahead
  of us: the optimistic reading; the pessimistic one never moves us). Resting fills are
  maker fills at our price.
* **Fees.** Per venue tier: ``SimSettings.fees["<venue>:<tier>"]`` (maker/taker in basis
  points of notional), the venue's tier from ``SimSettings.tiers`` (default ``default``),
  falling back to ``"*"``. Negative maker fees (rebates) work.
* **Funding.** A ``funding`` message (perpetuals only) sets the rate and the next funding
  time of its symbol; when the replay clock reaches that time the position pays
  ``size * mark * rate`` (longs pay a positive rate), once per funding time.
* **Marks and PnL.** The mark is the last trade price (or ``mark`` message, if replayed)
  of each (venue, symbol). Equity = initial cash + realized - fees - funding + unrealized,
  sampled every ``curve_interval_s`` of replay time and after every fill.

Several venues and symbols run in one go: everything is keyed by (venue, symbol).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from executor.backtest.strategy import OrderApi, Strategy
from streams.schemas import BBO, Depth, Fill, Funding, Mark, OrderUpdate, Trade

Key = tuple[str, str]
EPS = 1e-12


class FeeTier(msgspec.Struct, frozen=True, kw_only=True):
    maker_bps: float = 2.0
    taker_bps: float = 5.0


def _default_fees() -> dict[str, FeeTier]:
    # public base tiers of the venues we collect (bps); "*" for any other venue
    return {
        "*": FeeTier(maker_bps=2.0, taker_bps=5.0),
        "binance:default": FeeTier(maker_bps=10.0, taker_bps=10.0),
        "binance:vip1": FeeTier(maker_bps=9.0, taker_bps=10.0),
        "binance-perp:default": FeeTier(maker_bps=2.0, taker_bps=5.0),
        "okx:default": FeeTier(maker_bps=8.0, taker_bps=10.0),
        "bybit:default": FeeTier(maker_bps=10.0, taker_bps=10.0),
        "coinbase:default": FeeTier(maker_bps=40.0, taker_bps=60.0),
        "kraken:default": FeeTier(maker_bps=25.0, taker_bps=40.0),
        "deribit:default": FeeTier(maker_bps=0.0, taker_bps=5.0),
    }


class SimSettings(msgspec.Struct, kw_only=True):
    """How the research engine fills and charges. Lives here rather than in
    streams/settings.py until the lead adopts it (``backtest.sim``)."""

    latency_ms: float = 0.0  # order/cancel: strategy -> venue, in replay time
    fees: dict[str, FeeTier] = msgspec.field(default_factory=_default_fees)
    tiers: dict[str, str] = msgspec.field(default_factory=dict)  # venue -> tier name
    initial_cash: float = 100_000.0  # quote currency; returns are relative to it
    curve_interval_s: float = 60.0

    def fee(self, venue: str) -> FeeTier:
        tier = self.tiers.get(venue, "default")
        return self.fees.get(f"{venue}:{tier}") or self.fees.get(venue) or self.fees["*"]


@dataclass(slots=True)
class SimOrder:
    cid: str
    venue: str
    symbol: str
    side: str  # buy | sell
    quantity: float
    price: float | None  # None: market
    tif: str
    arrive_ns: int
    filled: float = 0.0
    cost: float = 0.0
    state: str = "pending_new"
    queue_ahead: float = 0.0

    @property
    def remaining(self) -> float:
        return self.quantity - self.filled


@dataclass(slots=True)
class Pos:
    size: float = 0.0
    avg: float = 0.0
    realized: float = 0.0  # before fees and funding
    fees: float = 0.0
    funding: float = 0.0


@dataclass(slots=True)
class SimFill:
    ts: int
    cid: str
    venue: str
    symbol: str
    side: str
    price: float
    size: float
    fee: float
    liquidity: str
    realized: float  # PnL this fill closed (0 when it only opened)


@dataclass
class Curve:
    ts: list[int] = field(default_factory=list)
    equity: list[float] = field(default_factory=list)
    position: list[float] = field(default_factory=list)  # of the first symbol
    mark: list[float] = field(default_factory=list)  # of the first symbol
    grid: list[bool] = field(default_factory=list)  # a point of the regular grid (not a fill)


class SimContext(OrderApi):
    """What the strategy calls (the same methods as ``strategy.Context``)."""

    def __init__(self, sim: Sim, venue: str, symbol: str) -> None:
        self._sim = sim
        self.account = "sim"
        self.venue, self.symbol = venue, symbol
        self.open: dict[str, Any] = {}  # live orders by client order id (OrderUpdate)
        self.pending: list[tuple[str, Any]] = []
        self._n = 0

    def now(self) -> int:
        return self._sim.now

    def position(self, symbol: str | None = None, venue: str | None = None) -> float:
        p = self._sim.positions.get((venue or self.venue, symbol or self.symbol))
        return p.size if p else 0.0

    def pnl(self, symbol: str | None = None, venue: str | None = None) -> float:
        key = (venue or self.venue, symbol or self.symbol)
        return self._sim.pnl(key)

    def cancel(self, client_order_id: str) -> None:
        self.pending.append(("cancel", client_order_id))

    def _order(  # type: ignore[override]
        self,
        side: str,
        quantity: float | str,
        price: float | str | None,
        *,
        symbol: str | None = None,
        venue: str | None = None,
        time_in_force: str = "GTC",
        **_: Any,
    ) -> str:
        self._n += 1
        cid = f"o{self._n}"
        o = SimOrder(cid, venue or self.venue, symbol or self.symbol, side, float(quantity),
                     None if price is None else float(price), time_in_force,
                     self._sim.now + self._sim.latency_ns)  # fmt: skip
        self.pending.append(("new", o))
        return cid


class Sim:
    def __init__(
        self,
        strategy: type[Strategy],
        *,
        venue: str,
        symbols: list[str],
        params: dict[str, Any] | None = None,
        cfg: SimSettings | None = None,
    ) -> None:
        self.cfg = cfg or SimSettings()
        self.latency_ns = int(self.cfg.latency_ms * 1e6)
        self.now = 0
        self.books: dict[Key, tuple[list[Any], list[Any]]] = {}
        self.marks: dict[Key, float] = {}
        self.positions: dict[Key, Pos] = {}
        self.resting: dict[Key, list[SimOrder]] = {}
        self.inflight: list[tuple[int, int, str, Any]] = []  # (arrive_ns, n, action, order|cid)
        self.orders: dict[str, SimOrder] = {}
        self.funding: dict[Key, tuple[float, int]] = {}  # rate, next funding ts
        self._paid: dict[Key, int] = {}  # the last funding time paid
        self.fills: list[SimFill] = []
        self.curve = Curve()
        self.messages = 0
        self.first_ns: int | None = None
        self._curve_ns = int(self.cfg.curve_interval_s * 1e9)
        self._next_curve = 0
        self._next_event = 2**63 - 1  # earliest in-flight arrival or funding time
        self._primary: Key = (venue, symbols[0])
        self._seq = 0
        self.ctx = SimContext(self, venue, symbols[0])
        self.strategy = strategy(self.ctx, **(params or {}))  # type: ignore[arg-type]
        self.params = {**strategy.parameters(), **(params or {})}
        self._started = False

    # -- accounting --------------------------------------------------------------------
    def pnl(self, key: Key) -> float:
        p = self.positions.get(key)
        if p is None:
            return 0.0
        mark = self.marks.get(key, p.avg)
        return p.realized - p.fees - p.funding + p.size * (mark - p.avg)

    def equity(self) -> float:
        return self.cfg.initial_cash + sum(self.pnl(k) for k in self.positions)

    def _sample(self, ts: int, grid: bool = False) -> None:
        c = self.curve
        c.grid.append(grid)
        c.ts.append(ts)
        c.equity.append(self.equity())
        p = self.positions.get(self._primary)
        c.position.append(p.size if p else 0.0)
        c.mark.append(self.marks.get(self._primary, float("nan")))

    def _fill(self, o: SimOrder, price: float, size: float, maker: bool) -> None:
        key = (o.venue, o.symbol)
        fee_t = self.cfg.fee(o.venue)
        fee = price * size * (fee_t.maker_bps if maker else fee_t.taker_bps) * 1e-4
        p = self.positions.get(key)
        if p is None:
            p = self.positions[key] = Pos()
        signed = size if o.side == "buy" else -size
        realized = 0.0
        if p.size * signed < 0:  # closes (part of) the position
            closing = min(abs(signed), abs(p.size))
            realized = closing * (price - p.avg) * (1.0 if p.size > 0 else -1.0)
            p.realized += realized
            rest = abs(signed) - closing
            p.size += signed
            if abs(p.size) < EPS:
                p.size, p.avg = 0.0, 0.0
            elif rest > EPS:  # flipped: the rest opens at this price
                p.avg = price
        else:
            new = p.size + signed
            p.avg = (p.avg * p.size + price * signed) / new if abs(new) > EPS else 0.0
            p.size = new
        p.fees += fee
        o.filled += size
        o.cost += price * size
        f = SimFill(self.now, o.cid, o.venue, o.symbol, o.side, price, size, fee,
                    "maker" if maker else "taker", realized)  # fmt: skip
        self.fills.append(f)
        self._sample(self.now)
        self.strategy.on_fill(
            Fill(
                account="sim",
                venue=o.venue,
                symbol=o.symbol,
                ts_event=self.now,
                ts_recv=self.now,
                client_order_id=o.cid,
                trade_id=f"{o.cid}-{len(self.fills)}",
                side=o.side,
                price=price,
                size=size,
                fee=fee,
                fee_currency="quote",
                liquidity=f.liquidity,
            )
        )

    def _update(self, o: SimOrder, state: str, reason: str = "") -> None:
        o.state = state
        u = OrderUpdate(
            account="sim", venue=o.venue, symbol=o.symbol, ts_event=self.now, ts_recv=self.now,
            client_order_id=o.cid, state=state, side=o.side,  # type: ignore[arg-type]
            order_type="market" if o.price is None else "limit", quantity=o.quantity,
            price=o.price, filled=o.filled, avg_price=o.cost / o.filled if o.filled else None,
            reason=reason,
        )  # fmt: skip
        if state in ("new", "partially_filled"):
            self.ctx.open[o.cid] = u
        else:
            self.ctx.open.pop(o.cid, None)
        self.strategy.on_order(u)

    # -- matching ----------------------------------------------------------------------
    def _arrive(self, o: SimOrder) -> None:
        key = (o.venue, o.symbol)
        self.orders[o.cid] = o
        if o.quantity <= 0:
            self._update(o, "rejected", "quantity must be > 0")
            return
        bids, asks = self.books.get(key, ((), ()))
        opp = asks if o.side == "buy" else bids
        buy = o.side == "buy"
        lim = o.price
        crosses = bool(opp) and (lim is None or (opp[0][0] <= lim if buy else opp[0][0] >= lim))
        if o.price is None and not opp:
            self._update(o, "rejected", f"no book for {o.venue}/{o.symbol}")
            return
        if o.tif == "POST_ONLY" and crosses:
            self._update(o, "rejected", "post-only order would take liquidity")
            return
        self._update(o, "new")
        if crosses:
            for price, size in opp:
                if lim is not None and (price > lim if buy else price < lim):
                    break
                take = min(size, o.remaining)
                if take > EPS:
                    self._fill(o, price, take, maker=False)
                if o.remaining <= EPS:
                    break
        if o.remaining <= EPS:
            self._update(o, "filled")
        elif o.price is None or o.tif in ("IOC", "FOK"):
            self._update(o, "canceled", "no more liquidity" if o.price is None else "IOC")
        else:
            same = bids if buy else asks
            o.queue_ahead = next((s for p, s in same if p == lim), 0.0)
            self.resting.setdefault(key, []).append(o)
            if o.filled:
                self._update(o, "partially_filled")

    def _cancel(self, cid: str) -> None:
        o = self.orders.get(cid)
        if o is None or o.state not in ("new", "partially_filled"):
            return  # unknown or already done: nothing to cancel (as venues answer)
        book = self.resting.get((o.venue, o.symbol))
        if book and o in book:
            book.remove(o)
        self._update(o, "canceled")

    def _on_trade_resting(self, t: Trade, book: list[SimOrder]) -> None:
        px, left = t.price, t.size
        for o in list(book):
            lim = o.price
            assert lim is not None
            if o.side == "buy":
                through = px < lim
                at = px == lim and t.side == "sell"
            else:
                through = px > lim
                at = px == lim and t.side == "buy"
            if through:
                size = o.remaining
            elif at and left > EPS:
                eat = min(o.queue_ahead, left)
                o.queue_ahead -= eat
                left -= eat
                size = min(o.remaining, left)
                left -= size
            else:
                continue
            if size > EPS:
                self._fill(o, lim, size, maker=True)
                if o.remaining <= EPS:
                    book.remove(o)
                    self._update(o, "filled")
                else:
                    self._update(o, "partially_filled")

    def _on_depth_resting(self, bids: list[Any], asks: list[Any], book: list[SimOrder]) -> None:
        for o in book:
            shown = next((s for p, s in (bids if o.side == "buy" else asks) if p == o.price), 0.0)
            if shown < o.queue_ahead:
                o.queue_ahead = shown

    # -- events on the clock -----------------------------------------------------------
    def _events(self, now: int) -> None:
        """In-flight orders arriving and funding times reached, up to ``now`` (exclusive of
        the message at ``now``, which comes after an arrival at the same time)."""
        while True:
            due = self.inflight[0][0] if self.inflight else 2**63 - 1
            fund = min((ts for _, ts in self.funding.values() if ts), default=2**63 - 1)
            t = min(due, fund)
            if t > now:
                self._next_event = t
                return
            self.now = max(self.now, t)
            if due <= fund:
                _, _, action, what = self.inflight.pop(0)
                if action == "new":
                    self._arrive(what)
                else:
                    self._cancel(what)
            else:
                for key, (rate, ts) in sorted(self.funding.items()):
                    if ts and ts <= t:
                        p = self.positions.get(key)
                        if p is not None and p.size:
                            p.funding += p.size * self.marks.get(key, p.avg) * rate
                        self.funding[key] = (rate, 0)  # once per funding time
                        self._paid[key] = ts
            self._drain()

    def _drain(self) -> None:
        ctx = self.ctx
        rounds = 0
        while ctx.pending:
            rounds += 1
            if rounds > 1000:
                raise RuntimeError("more than 1000 rounds of orders reacting to orders")
            cmds, ctx.pending = ctx.pending, []
            for action, what in cmds:
                if self.latency_ns:
                    self._seq += 1
                    arrive = self.now + self.latency_ns
                    self.inflight.append((arrive, self._seq, action, what))
                    self._next_event = min(self._next_event, arrive)
                elif action == "new":
                    self._arrive(what)
                else:
                    self._cancel(what)

    # -- the loop ----------------------------------------------------------------------
    def start(self) -> None:
        if not self._started:
            self._started = True
            self.strategy.on_start()
            self._drain()

    def run(self, msgs: Iterable[Any]) -> None:
        """Typed market messages in replay order (any iterable: a list, ``Columnar``...)."""
        self.start()
        strategy_on_market = self.strategy.on_market
        books, marks, resting, ctx = self.books, self.marks, self.resting, self.ctx
        n = 0
        for m in msgs:
            now = m.ts_recv
            if now >= self._next_event:
                self._events(now)
            if now >= self._next_curve:
                if self._next_curve:
                    self._sample(self._next_curve, True)  # the state before this message
                else:
                    self.first_ns = now
                self._next_curve = (now // self._curve_ns + 1) * self._curve_ns
            if now > self.now:
                self.now = now
            n += 1
            cls = type(m)
            if cls is Trade:
                key = (m.venue, m.symbol)
                marks[key] = m.price
                book = resting.get(key)
                if book:
                    self._on_trade_resting(m, book)
            elif cls is Depth:
                key = (m.venue, m.symbol)
                books[key] = (m.bids, m.asks)
                book = resting.get(key)
                if book:
                    self._on_depth_resting(m.bids, m.asks, book)
            elif cls is BBO:
                key = (m.venue, m.symbol)
                books[key] = ([(m.bid_price, m.bid_size)], [(m.ask_price, m.ask_size)])
            elif cls is Mark:
                if m.mark_price is not None:
                    marks[(m.venue, m.symbol)] = m.mark_price
            elif cls is Funding and m.next_funding_ts:
                key = (m.venue, m.symbol)
                # venues repeat the same next funding time many times: paid once
                if m.next_funding_ts > self._paid.get(key, 0):
                    self.funding[key] = (m.rate, m.next_funding_ts)
                    self._next_event = min(self._next_event, m.next_funding_ts)
            strategy_on_market(m)
            if ctx.pending:
                self._drain()
        self.messages += n

    def finish(self) -> None:
        self.start()
        self.strategy.on_stop()
        self._drain()
        self._events(self.now)  # orders sent at the end still arrive (latency 0 only)
        self._sample(self.now)

    def digest(self) -> str:
        """sha256 of every fill and every curve point: equal runs, equal digests."""
        h = hashlib.sha256()
        for f in self.fills:
            h.update(f"{f.ts}|{f.cid}|{f.venue}|{f.symbol}|{f.side}|{f.price!r}|{f.size!r}|"
                     f"{f.fee!r}|{f.liquidity}\n".encode())  # fmt: skip
        c = self.curve
        for row in zip(c.ts, c.equity, c.position, strict=True):
            h.update(repr(row).encode())
        return h.hexdigest()
