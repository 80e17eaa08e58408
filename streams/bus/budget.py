"""One request budget per venue limit, shared by every process on the machine's IP.

Why here: collectors, ``jetmarket backfill`` and the executor all call venues over REST and
must count against the same limit, but components may not import each other; this is
plumbing on NATS like the rest of ``streams/bus``.

The model (docs/ratelimits.md has the long version):

* **Rules.** A venue's limits are data (:class:`LimitsSettings`, a ``limits`` sub-section of
  the venue's collector settings): each rule is ``capacity`` units per fixed ``window_s``
  window, per IP or per account, over all endpoints or some; an endpoint costs its weight
  (``weights`` / ``weights_by_limit``, e.g. Binance's depth weight by ``limit``).
* **Shared state: JetStream KV, no limiter process.** Each rule's window lives in one key of
  the ``JM_BUDGET`` bucket: ``{"w": window, "u": units granted, "hot": {...}}``. A process
  takes a *lease* (a slice of the window, ``lease`` x capacity) with one compare-and-set and
  spends it locally, so a call pays no round trip while its lease lasts (measured in
  tests/streams/test_budget.py: ~1 µs local vs ~1 ms per lease). Why not a limiter service on
  request/reply: the KV already is replicated state (R3 in the cluster), so there is no
  process whose restart loses the count, no leader to elect and nothing more to supervise;
  a CAS conflict just retries. What a limiter would add (a central priority queue) is done
  with reserves and "hot" marks below.
* **Never over budget.** Units are counted when leased, not when spent: a lease lost to a
  crash or the window's end is counted as used. ``safety`` keeps a margin for clock skew and
  for requests we do not see. Without the KV (NATS down, bucket missing) a process falls back
  to ``fallback_share`` (0.1 = 1 - safety) of each window, counted locally: the room the
  processes still on the KV leave (slower, never over while one process is cut off).
* **Priorities.** ORDERS > RESYNC (book snapshots) > POLL (instruments, polls) > BACKFILL.
  Inside a process waiters are served strictly by (priority, urgency, arrival). Across
  processes priority p may only lease up to ``1 - reserve[p]`` of a window (orders always
  find room), and a RESYNC or POLL lease marks its priority "hot" for ``hot_s``: lower
  priorities lease nothing while a higher one is hot, so backfill and pollers yield to a
  resync storm anywhere on the IP and resume after it.
* **Learning from the venue.** A used-weight header (``used_headers``, e.g.
  ``X-MBX-USED-WEIGHT-1M``) above our shared count raises the count (someone else on the IP
  spends too). A 429/418 (``ban_statuses``) or ccxt's RateLimitExceeded/DDoSProtection stops
  the venue for ``Retry-After`` (or ``default_ban_s``) in every process at once: the ban is
  written to the KV (late joiners read it) and broadcast on ``budget.ban.<venue>``; logged
  once, counted, and an error line to alert on.
* **Breakers.** Per venue endpoint, per process: ``breaker_failures`` failures in a row open
  it for ``breaker_open_s`` (callers get :class:`BreakerOpen` at once instead of piling up
  timeouts); then one half-open probe closes it on success or re-opens it. State in the
  metric ``jetmarket_budget_breaker_state`` and the worker's health (``jetmarket status``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import orjson
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from prometheus_client import Counter, Gauge, Histogram

from streams import subjects
from streams.bus import secrets
from streams.settings import Section, SettingsError

log = logging.getLogger("budget")

BUCKET = "JM_BUDGET"
STREAM = f"KV_{BUCKET}"

ORDERS, RESYNC, POLL, BACKFILL = 0, 1, 2, 3
GUARD_S = 0.25  # no grant this close to a window's end (request latency), orders aside
SPEC_RECHECK_S = 5.0  # on ccxt's default limits: how often to look for the published ones
PRIORITY_NAMES = ("orders", "resync", "poll", "backfill")
# the priority of REST calls made in this task (set with `priority()`), POLL by default
# (-1: the budget's own default, POLL unless the process says otherwise, e.g. the executor)
_PRIORITY: contextvars.ContextVar[tuple[int, float]] = contextvars.ContextVar(
    "jm_budget_priority", default=(-1, 0.0)
)

GRANTED = Counter("jetmarket_budget_units_total", "units spent", ["venue", "rule", "priority"])
LEASES = Counter("jetmarket_budget_leases_total", "leases taken", ["venue", "rule", "how"])
WAIT = Histogram(
    "jetmarket_budget_wait_seconds", "time a call waited for budget", ["venue", "priority"],
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)  # fmt: skip
BANS = Counter("jetmarket_budget_bans_total", "venue bans (429/418) seen", ["venue", "status"])
BANNED = Gauge("jetmarket_budget_banned_seconds", "seconds of venue ban left", ["venue"])
USED = Gauge("jetmarket_budget_used_ratio", "shared window use / capacity", ["venue", "rule"])
BREAKER = Gauge(
    "jetmarket_budget_breaker_state", "0 closed, 1 half-open, 2 open", ["venue", "endpoint"]
)
BREAKER_OPENED = Counter("jetmarket_budget_breaker_open_total", "opens", ["venue", "endpoint"])


# -- settings ---------------------------------------------------------------------------
class RateLimit(Section):
    """One limit: ``capacity`` units per ``window_s`` (fixed windows aligned on the epoch,
    as Binance counts; ``sliding`` venues get half the capacity per half window, so no
    sliding window can see more than ``capacity``). ``applies``: endpoint names ("depth") or
    "METHOD endpoint" ("POST order") it counts; empty = every REST call of the venue."""

    name: str
    capacity: int
    window_s: float
    scope: Literal["ip", "account"] = "ip"
    applies: list[str] = msgspec.field(default_factory=list)
    sliding: bool = False
    count: Literal["weight", "requests"] = "weight"  # Binance's order limits count requests

    def _check(self, prefix: str) -> None:
        if self.capacity < 1 or self.window_s <= 0:
            raise SettingsError(f"{prefix}: need capacity >= 1 and window_s > 0")

    def effective(self) -> tuple[int, float]:
        """(capacity, window) actually counted."""
        if self.sliding:
            return max(1, self.capacity // 2), self.window_s / 2
        return self.capacity, self.window_s


class LimitsSettings(Section):
    """``[collector.<venue>.limits]``: the venue's REST limits as data (defaults in the
    venue's module cite its documentation), plus how we stay under them."""

    rules: list[RateLimit] = msgspec.field(default_factory=list)
    weights: dict[str, int] = msgspec.field(default_factory=dict)  # endpoint -> weight
    # endpoint -> [[max "limit" param, weight], ...] ascending (Binance depth)
    weights_by_limit: dict[str, list[list[int]]] = msgspec.field(default_factory=dict)
    default_weight: int = 1
    used_headers: dict[str, str] = msgspec.field(default_factory=dict)  # header -> rule
    ban_statuses: list[int] = msgspec.field(default_factory=lambda: [418, 429])
    default_ban_s: float = 60.0  # when the venue gives no Retry-After
    safety: float = 0.9  # share of each window we use at most
    lease: float = 0.05  # share of a window one lease takes
    # share of a window a process uses alone while the KV is unreachable: at most 1 - safety,
    # the room the processes still on the KV leave, so one process cut off cannot push
    # the IP over the limit (several cut off share it: slower, the design's choice)
    fallback_share: float = 0.1
    # share of each window priority orders/resync/poll/backfill may NOT use
    reserve: list[float] = msgspec.field(default_factory=lambda: [0.0, 0.1, 0.2, 0.3])
    hot_s: float = 1.0  # a resync/poll lease holds lower priorities off this long
    breaker_failures: int = 5
    breaker_open_s: float = 10.0
    # WebSocket limits of the venue (connections per window, control messages/s,
    # subscriptions per connection): data for docs and the collector's own checks
    ws: dict[str, float] = msgspec.field(default_factory=dict)
    # proxy for REST and WebSocket: http://host:port, https://..., socks5://...; no
    # credentials here: they come from proxy_auth_file (0600, "user:password") or the
    # environment JETMARKET_PROXY_AUTH_<VENUE>; JETMARKET_PROXY_<VENUE> overrides the URL
    proxy: str = ""
    proxy_auth_file: str = ""

    def _check(self, prefix: str) -> None:
        if not 0 < self.safety <= 1 or not 0 < self.lease <= 1:
            raise SettingsError(f"{prefix}: need 0 < safety <= 1 and 0 < lease <= 1")
        if not 0 < self.fallback_share <= 1:
            raise SettingsError(f"{prefix}.fallback_share must be in (0, 1]")
        if len(self.reserve) != 4 or not all(0 <= r < 1 for r in self.reserve):
            raise SettingsError(f"{prefix}.reserve needs 4 shares in [0, 1)")
        if self.proxy and not self.proxy.startswith(("http://", "https://", "socks5://",
                                                     "socks5h://")):  # fmt: skip
            raise SettingsError(f"{prefix}.proxy must be http://, https:// or socks5://")
        if "@" in self.proxy:
            raise SettingsError(
                f"{prefix}.proxy must not hold credentials: use proxy_auth_file or "
                "JETMARKET_PROXY_AUTH_<VENUE>"
            )
        names = {r.name for r in self.rules}
        for h, rule in self.used_headers.items():
            if rule not in names:
                raise SettingsError(f"{prefix}.used_headers.{h}: no rule named {rule!r}")

    def weight(self, endpoint: str, params: dict[str, Any] | None = None, method: str = "") -> int:
        """The cost of one call: ``weights_by_limit`` by its ``limit`` parameter, else
        ``weights`` of "METHOD endpoint" or "endpoint", else ``default_weight``."""
        if method and f"{method.upper()} {endpoint}" in self.weights:
            return self.weights[f"{method.upper()} {endpoint}"]
        table = self.weights_by_limit.get(endpoint)
        if table and params and "limit" in params:
            limit = int(params["limit"])
            for upto, w in table:
                if limit <= upto:
                    return w
            return table[-1][1]
        if table:
            return table[0][1] if not params or "limit" not in params else table[-1][1]
        return self.weights.get(endpoint, self.default_weight)


def ccxt_default(exchange: Any) -> LimitsSettings:
    """The long tail: ccxt's ``rateLimit`` (ms per unit of cost) as one per-IP rule in
    ccxt's own cost units, one minute windows."""
    per_min = max(1, int(60_000 / max(1.0, float(getattr(exchange, "rateLimit", 1000)))))
    return LimitsSettings(rules=[RateLimit(name="ccxt", capacity=per_min, window_s=60.0)])


def proxy_url(venue: str, cfg: LimitsSettings) -> str | None:
    """The venue's proxy with credentials filled in, or None; every credential read is
    registered as a secret, so the URL prints as ``***`` in logs."""
    env = venue.upper().replace("-", "_")
    url = secrets.from_env(f"JETMARKET_PROXY_{env}") or cfg.proxy
    if not url:
        return None
    auth = secrets.from_env(f"JETMARKET_PROXY_AUTH_{env}")
    if auth is None and cfg.proxy_auth_file:
        auth = secrets.read_file(cfg.proxy_auth_file)
    if auth and "@" not in url:
        scheme, _, rest = url.partition("://")
        url = f"{scheme}://{auth}@{rest}"
        from streams.bus import logs

        logs.register_secret(url)
    return url


# -- errors ----------------------------------------------------------------------------
class BudgetError(RuntimeError):
    """A call refused by the budget; the message says why in one line."""


class Banned(BudgetError):
    pass


class BreakerOpen(BudgetError):
    pass


class ProxyUnreachable(ConnectionError):
    """A call through the venue's proxy got no answer; the message names the proxy
    (without its credentials)."""


def safe_url(url: str) -> str:
    """``url`` without user:password, for messages."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url.rpartition("@")[2]


# -- priorities ------------------------------------------------------------------------
@contextlib.contextmanager
def priority(level: int, urgency: float = 0.0) -> Iterator[None]:
    """REST calls made inside (this task and the tasks it starts) take ``level``; among
    equals a lower ``urgency`` goes first (e.g. the book that has waited longest)."""
    token = _PRIORITY.set((level, urgency))
    try:
        yield
    finally:
        _PRIORITY.reset(token)


# -- breaker ---------------------------------------------------------------------------
@dataclass
class Breaker:
    venue: str
    endpoint: str
    failures_to_open: int
    open_s: float
    state: Literal["closed", "open", "half_open"] = "closed"
    failures: int = 0
    until: float = 0.0
    probing: bool = False
    last_error: str = ""
    on_change: Callable[[], None] | None = None

    def check(self) -> None:
        """Let a call through, or raise BreakerOpen at once."""
        if self.state == "closed":
            return
        now = time.monotonic()
        if self.state == "open" and now >= self.until:
            self._set("half_open")
        if self.state == "half_open" and not self.probing:
            self.probing = True  # this call is the probe
            return
        left = max(0.0, self.until - now)
        raise BreakerOpen(
            f"{self.venue} {self.endpoint}: circuit open ({self.failures} failures, "
            f"retry in {left:.1f} s): {self.last_error[:200]}"
        )

    def success(self) -> None:
        self.failures = 0
        self.probing = False
        if self.state != "closed":
            self._set("closed")

    def failure(self, error: str) -> None:
        self.failures += 1
        self.last_error = error
        self.probing = False
        if self.state == "half_open" or self.failures >= self.failures_to_open:
            self.until = time.monotonic() + self.open_s
            if self.state != "open":
                BREAKER_OPENED.labels(self.venue, self.endpoint).inc()
                log.warning(
                    f"{self.venue} {self.endpoint}: circuit opened",
                    extra={"failures": self.failures, "error": error[:300]},
                )
            self._set("open")

    def _set(self, state: Literal["closed", "open", "half_open"]) -> None:
        self.state = state
        BREAKER.labels(self.venue, self.endpoint).set(
            {"closed": 0, "half_open": 1, "open": 2}[state]
        )
        if self.on_change is not None:
            self.on_change()


# -- the shared budget -----------------------------------------------------------------
@dataclass
class _Lease:
    key: str
    rule: RateLimit
    window: int = -1
    # units leased and not spent in this window, per priority: a backfill call must not
    # spend what an order leased
    have: dict[int, int] = field(default_factory=dict)
    shared_used: int = 0  # the shared count as of our last look
    local_used: int = 0  # fallback mode: what this process spent alone


@dataclass(order=True)
class _Waiter:
    prio: int
    urgency: float
    seq: int
    weight: int = field(compare=False)


class VenueBudget:
    """The budget of one venue (one account, for account rules) in this process."""

    def __init__(
        self,
        venue: str,
        cfg: LimitsSettings,
        nc: Client | None = None,
        *,
        account: str = "",
        kv_timeout_s: float = 2.0,
        on_change: Callable[[], None] | None = None,
        default_priority: int = POLL,
        ccxt_units: bool = False,
    ) -> None:
        self.venue, self.cfg, self.nc, self.account = venue, cfg, nc, account
        self.default_priority = default_priority
        self.ccxt_units = ccxt_units  # weights are ccxt's costs (the long-tail default)
        self.kv_timeout_s = kv_timeout_s
        self.on_change = on_change
        self.leases = self._leases()
        self.breakers: dict[str, Breaker] = {}
        self.ban_until = 0.0  # wall clock
        self.ban_reason = ""
        self._kv: Any = None
        self._kv_down_until = 0.0  # monotonic: fall back to the local share until then
        self._queue: list[_Waiter] = []
        self._cond = asyncio.Condition()
        self._seq = itertools.count()
        self._sub: Any = None
        self._fixes: set[asyncio.Task[None]] = set()
        self._spec_checked = time.monotonic()
        self._topping: set[str] = set()  # order leases being renewed in the background

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> VenueBudget:
        """Open the bucket, read a ban in force, listen for new ones. Without NATS or the
        bucket the budget still works, on the local share."""
        if self.nc is None:
            return self
        with contextlib.suppress(Exception):
            self._sub = await self.nc.subscribe(
                subjects.budget_ban(self.venue), cb=self._on_ban_msg
            )
        kv = await self._bucket()
        if kv is not None:
            try:
                entry = await asyncio.wait_for(kv.get(f"{self.venue}.ban"), self.kv_timeout_s)
                self._apply_ban(orjson.loads(entry.value or b"{}"), announce=False)
            except KeyNotFoundError:
                pass
            except Exception as exc:
                self._kv_failed(exc)
        return self

    async def bind(self, nc: Client) -> VenueBudget:
        """Join the shared budget once NATS is connected (a process that calls the venue
        before it connects, like the backfill's load_markets, starts on the local share).
        Limits taken from ccxt's default give way to the ones the venue's collector
        published."""
        self.nc = nc
        if self.ccxt_units:
            spec = await published_limits(nc, self.venue)
            if spec is not None and spec.rules:
                spec.proxy, spec.proxy_auth_file = self.cfg.proxy, self.cfg.proxy_auth_file
                self.cfg, self.ccxt_units = spec, False
                self.leases = self._leases()
        return await self.start()

    async def _adopt_spec(self) -> None:
        """On ccxt's default limits (started before the venue's collector published its
        own): look again every SPEC_RECHECK_S, and count in the shared units once there."""
        if time.monotonic() - self._spec_checked < SPEC_RECHECK_S:
            return
        self._spec_checked = time.monotonic()
        spec = await published_limits(self.nc, self.venue)
        if spec is not None and spec.rules:
            spec.proxy, spec.proxy_auth_file = self.cfg.proxy, self.cfg.proxy_auth_file
            self.cfg, self.ccxt_units = spec, False
            self.leases = self._leases()
            log.info(f"{self.venue} budget: the collector's published limits adopted")

    def _leases(self) -> list[_Lease]:
        acc = self.account.replace(".", "_") or "none"
        return [
            _Lease(f"{self.venue}.{r.name}" + (f".{acc}" if r.scope == "account" else ""), r)
            for r in self.cfg.rules
        ]

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        for t in list(self._fixes):
            t.cancel()

    async def _bucket(self) -> Any:
        if self._kv is not None or self.nc is None:
            return self._kv
        if time.monotonic() < self._kv_down_until:
            return None
        try:
            js: JetStreamContext = self.nc.jetstream(timeout=self.kv_timeout_s)
            self._kv = await js.key_value(BUCKET)
        except Exception as exc:
            self._kv_failed(exc)
        return self._kv

    def _kv_failed(self, exc: BaseException) -> None:
        if time.monotonic() >= self._kv_down_until:
            log.warning(
                f"{self.venue} budget: shared state unreachable, using the local share",
                extra={"error": f"{type(exc).__name__}: {exc}"[:300],
                       "share": self.cfg.fallback_share},
            )  # fmt: skip
        # a while (not per call: each would wait for the timeout); then the KV again
        self._kv_down_until = time.monotonic() + 10.0
        self._kv = None

    # -- the call path -----------------------------------------------------------------
    def rules_for(self, endpoint: str, method: str = "GET") -> list[_Lease]:
        key = f"{method.upper()} {endpoint}"
        return [
            lease for lease in self.leases
            if not lease.rule.applies or endpoint in lease.rule.applies
            or key in lease.rule.applies
        ]  # fmt: skip

    def breaker(self, endpoint: str) -> Breaker:
        b = self.breakers.get(endpoint)
        if b is None:
            b = Breaker(self.venue, endpoint, self.cfg.breaker_failures,
                        self.cfg.breaker_open_s, on_change=self.on_change)  # fmt: skip
            self.breakers[endpoint] = b
        return b

    async def acquire(
        self, endpoint: str, weight: int, method: str = "GET", prio: int | None = None,
        urgency: float | None = None,
    ) -> None:  # fmt: skip
        """Wait until ``weight`` units of every rule ``endpoint`` counts against are ours.
        Raises Banned for orders during a ban (an order must not wait minutes); other
        priorities wait the ban out. The breaker is checked first."""
        self.breaker(endpoint).check()
        if self.ccxt_units and self.nc is not None:
            await self._adopt_spec()
        level, urg = _PRIORITY.get()
        if prio is None:
            prio = level if level >= 0 else self.default_priority
        urgency = urg if urgency is None else urgency
        leases = self.rules_for(endpoint, method)
        started = time.monotonic()
        me = _Waiter(prio, urgency, next(self._seq), weight)
        heapq.heappush(self._queue, me)
        try:
            async with self._cond:
                while True:
                    wait: float | None = None
                    if self._queue[0] is me:
                        wait = await self._try(leases, me)
                        if wait <= 0:
                            break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._cond.wait(), wait)
        finally:
            self._queue.remove(me)
            heapq.heapify(self._queue)
            async with self._cond:
                self._cond.notify_all()
        WAIT.labels(self.venue, PRIORITY_NAMES[prio]).observe(time.monotonic() - started)

    async def _try(self, leases: list[_Lease], me: _Waiter) -> float:
        """Take ``me.weight`` from every lease; 0 when done, else seconds to wait."""
        now = time.time()
        if now < self.ban_until:
            if me.prio == ORDERS:
                raise Banned(f"{self.venue}: banned for {self.ban_until - now:.0f} s more "
                             f"({self.ban_reason}); order not sent")  # fmt: skip
            return self.ban_until - now
        for lease in leases:
            capacity, window_s = lease.rule.effective()
            window = int(now // window_s)
            if lease.window != window:
                lease.window, lease.have, lease.local_used = window, {}, 0
            # the window's last moments: a call granted now would reach the venue in the
            # next window and count there (measured: 199 of 200 without this); orders go
            left = (window + 1) * window_s - now
            if me.prio != ORDERS and left < min(GUARD_S, window_s * 0.05):
                return left + 0.01
            if lease.have.get(me.prio, 0) >= _units(lease, me):
                continue
            wait = await self._lease(lease, me, capacity, window_s, now)
            if wait > 0:
                return wait
        for lease in leases:
            units = _units(lease, me)
            lease.have[me.prio] -= units
            GRANTED.labels(self.venue, lease.rule.name, PRIORITY_NAMES[me.prio]).inc(units)
            short = lease.have[me.prio] < units
            if me.prio == ORDERS and short and lease.key not in self._topping:
                # the next order must not wait for a KV round trip (~1 ms, seconds on a
                # starved server): lease again now, off the order's path
                self._topping.add(lease.key)
                task = asyncio.get_running_loop().create_task(self._top_up(lease, units))
                self._fixes.add(task)
                task.add_done_callback(self._fixes.discard)
        return 0.0

    async def _top_up(self, lease: _Lease, weight: int) -> None:
        try:
            now = time.time()
            capacity, window_s = lease.rule.effective()
            if lease.window == int(now // window_s):
                me = _Waiter(ORDERS, 0.0, next(self._seq), weight)
                with contextlib.suppress(Exception):
                    await self._lease(lease, me, capacity, window_s, now)
        finally:
            self._topping.discard(lease.key)

    async def _lease(
        self, lease: _Lease, me: _Waiter, capacity: int, window_s: float, now: float
    ) -> float:
        """More units for ``lease`` from the shared window (or the local share)."""
        end = (lease.window + 1) * window_s
        # orders may use half the safety margin the others leave; at least 1: a limit of 1
        # per second (Kraken public) must still serve a call
        safety = self.cfg.safety
        if me.prio == ORDERS:  # half the margin: orders are never the ones to wait
            safety = (1 + safety) / 2
        share = safety * (1 - self.cfg.reserve[me.prio])
        limit = max(1, int(capacity * share))
        need = _units(lease, me) - lease.have.get(me.prio, 0)
        want = max(need, int(capacity * self.cfg.lease * (0.5 if me.prio == ORDERS else 1)))
        kv = await self._bucket()
        if kv is None:  # fail safe: our share of the window, counted here
            limit = max(1, int(capacity * self.cfg.fallback_share))
            grant = min(want, limit - lease.local_used)
            if grant < need:
                return end - now + 0.01
            lease.local_used += grant
            lease.have[me.prio] = lease.have.get(me.prio, 0) + grant
            LEASES.labels(self.venue, lease.rule.name, "local").inc()
            return 0.0
        for _ in range(20):  # compare-and-set; a conflict means another process leased
            try:
                try:
                    entry = await asyncio.wait_for(kv.get(lease.key), self.kv_timeout_s)
                    state, rev = orjson.loads(entry.value or b"{}"), entry.revision
                except KeyNotFoundError:
                    state, rev = {}, None
                used = int(state.get("u", 0)) if state.get("w") == lease.window else 0
                hot = {int(p): t for p, t in state.get("hot", {}).items() if t > now}
                blocked = [t for p, t in hot.items() if RESYNC <= p < me.prio]
                lease.shared_used = used
                USED.labels(self.venue, lease.rule.name).set(used / capacity)
                if blocked:
                    return min(min(blocked) - now, end - now) + 0.005
                grant = min(want, limit - used)
                if grant < need:
                    if me.prio in (RESYNC, POLL) and hot.get(me.prio, 0) < now + 0.5:
                        hot[me.prio] = end  # waiting for the next window: hold lower ones off
                        await self._put(kv, lease.key, lease.window, used, hot, rev)
                    return end - now + 0.01
                if me.prio in (RESYNC, POLL):
                    hot[me.prio] = now + self.cfg.hot_s
                await self._put(kv, lease.key, lease.window, used + grant, hot, rev)
                lease.have[me.prio] = lease.have.get(me.prio, 0) + grant
                lease.shared_used = used + grant
                LEASES.labels(self.venue, lease.rule.name, "shared").inc()
                return 0.0
            except KeyWrongLastSequenceError:
                continue
            except BudgetError:
                raise
            except Exception as exc:
                self._kv_failed(exc)
                return await self._lease(lease, me, capacity, window_s, now)
        return 0.05  # heavy contention: let the others through, then retry

    async def _put(
        self, kv: Any, key: str, window: int, used: int, hot: dict[int, float], rev: int | None
    ) -> None:
        value = orjson.dumps({"w": window, "u": used, "hot": {str(p): t for p, t in hot.items()}})
        if rev is None:
            await asyncio.wait_for(kv.create(key, value), self.kv_timeout_s)
        else:
            await asyncio.wait_for(kv.update(key, value, last=rev), self.kv_timeout_s)

    # -- what the venue says -----------------------------------------------------------
    def observe(self, endpoint: str, status: int, headers: dict[str, str]) -> None:
        """After a response: used-weight headers, bans, and the breaker's verdict."""
        low = {k.lower(): v for k, v in headers.items()}
        for header, rule in self.cfg.used_headers.items():
            raw = low.get(header.lower())
            if raw is not None and raw.isdigit():
                self._correct(rule, int(raw))
        if status in self.cfg.ban_statuses:
            self.ban(status, _retry_after(low.get("retry-after"), self.cfg.default_ban_s),
                     f"HTTP {status} on {endpoint}")  # fmt: skip
        if status >= 500:
            self.breaker(endpoint).failure(f"HTTP {status}")
        elif status:
            self.breaker(endpoint).success()

    def _correct(self, rule: str, used: int) -> None:
        """The venue counts more than we granted: someone else on the IP spends too. The
        count belongs to the window the answer came in; just after a window begins it may
        still be the old window's (the venue's clock and the way back), so it is skipped."""
        now = time.time()
        for lease in self.leases:
            if lease.rule.name == rule and used > lease.shared_used:
                window_s = lease.rule.effective()[1]
                window = int(now // window_s)
                if now - window * window_s < min(GUARD_S, window_s * 0.05):
                    continue
                lease.shared_used = used
                task = asyncio.get_running_loop().create_task(
                    self._raise_count(lease, used, window)
                )
                self._fixes.add(task)
                task.add_done_callback(self._fixes.discard)

    async def _raise_count(self, lease: _Lease, used: int, window: int) -> None:
        kv = await self._bucket()
        if kv is None:
            lease.local_used = max(lease.local_used, used)
            return
        for _ in range(10):
            if int(time.time() // lease.rule.effective()[1]) != window:
                return  # that window is over: its count must not land in the next one
            try:
                try:
                    entry = await kv.get(lease.key)
                    state, rev = orjson.loads(entry.value or b"{}"), entry.revision
                except KeyNotFoundError:
                    state, rev = {}, None
                now_used = int(state.get("u", 0)) if state.get("w") == window else 0
                if now_used >= used:
                    return
                hot = {int(p): t for p, t in state.get("hot", {}).items()}
                await self._put(kv, lease.key, window, used, hot, rev)
                log.info(f"{self.venue} {lease.rule.name}: venue counts {used}, we had "
                         f"{now_used}; shared count raised")  # fmt: skip
                return
            except KeyWrongLastSequenceError:
                continue
            except Exception as exc:
                self._kv_failed(exc)
                return

    def ban(self, status: int, seconds: float, reason: str) -> None:
        """The venue refused us for ``seconds``: stop here now, and everywhere (KV + bus)."""
        ban = {"until": time.time() + seconds, "status": status, "reason": reason,
               "pid": os.getpid()}  # fmt: skip
        if self._apply_ban(ban, announce=True):
            task = asyncio.get_running_loop().create_task(self._spread_ban(ban))
            self._fixes.add(task)
            task.add_done_callback(self._fixes.discard)

    def _apply_ban(self, ban: dict[str, Any], announce: bool) -> bool:
        until = float(ban.get("until", 0))
        if until <= self.ban_until or until <= time.time():
            return False
        fresh = self.ban_until < time.time()  # a new ban, not an extension: log it once
        self.ban_until = until
        self.ban_reason = f"{ban.get('reason', '?')}, pid {ban.get('pid', '?')}"
        BANNED.labels(self.venue).set(until - time.time())
        if announce:
            BANS.labels(self.venue, str(ban.get("status", "?"))).inc()
        if fresh:
            log.error(f"{self.venue}: venue rate-limit ban, all REST calls stop",
                      extra={"seconds": round(until - time.time(), 1),
                             "reason": self.ban_reason})  # fmt: skip
        if self.on_change is not None:
            self.on_change()
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().create_task(self._wake())
        return True

    async def _wake(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    async def _spread_ban(self, ban: dict[str, Any]) -> None:
        data = orjson.dumps(ban)
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.publish(subjects.budget_ban(self.venue), data)
                await self.nc.flush(timeout=1)
        kv = await self._bucket()
        if kv is not None:
            try:
                await asyncio.wait_for(kv.put(f"{self.venue}.ban", data), self.kv_timeout_s)
            except Exception as exc:
                self._kv_failed(exc)

    async def _on_ban_msg(self, msg: Any) -> None:
        with contextlib.suppress(Exception):
            self._apply_ban(orjson.loads(msg.data), announce=False)

    def summary(self) -> str:
        """For health/status: the ban and every breaker not closed, e.g.
        ``binance/depth:open``; empty when all is well."""
        parts = [f"{self.venue}/{e}:{b.state}" for e, b in sorted(self.breakers.items())
                 if b.state != "closed"]  # fmt: skip
        left = self.ban_until - time.time()
        if left > 0:
            parts.append(f"{self.venue}:banned {left:.0f}s")
        return " ".join(parts)


def _units(lease: _Lease, me: _Waiter) -> int:
    return me.weight if lease.rule.count == "weight" else 1


def _retry_after(value: str | None, default: float) -> float:
    try:
        return max(1.0, float(value)) if value else default
    except ValueError:
        return default


# -- provisioning ----------------------------------------------------------------------
async def ensure_bucket(js: JetStreamContext, replicas: int = 1) -> str:
    """The ``JM_BUDGET`` bucket (one value per key; memory would lose the count on a
    server restart, so file storage), created by the admin at provisioning."""
    try:
        await js.stream_info(STREAM)
        return f"{STREAM}: exists"
    except Exception:
        await js.create_key_value(
            KeyValueConfig(bucket=BUCKET, history=1, storage=StorageType.FILE, replicas=replicas,
                           description="shared REST budgets (streams/bus/budget.py)")
        )  # fmt: skip
        return f"{STREAM}: created"


# -- ccxt -------------------------------------------------------------------------------
_CCXT_BAN_ERRORS = ("RateLimitExceeded", "DDoSProtection")
_CCXT_TRANSPORT_ERRORS = ("RequestTimeout", "ExchangeNotAvailable", "NetworkError")


def attach(exchange: Any, budget: VenueBudget) -> Any:
    """Every REST call of the ccxt ``exchange`` goes through ``budget``: its weight (our
    table, or ccxt's own cost for the ccxt default limits) is acquired first, at the priority of
    the calling task; the response's headers and status feed ``observe``; transport errors
    count for the endpoint's breaker. ccxt's own per-process limiter is switched off: the
    shared budget replaces it."""
    fetch2 = exchange.fetch2
    on_response = exchange.on_rest_response
    exchange.enableRateLimit = False
    exchange.enableLastResponseHeaders = True
    current: contextvars.ContextVar[str] = contextvars.ContextVar("jm_endpoint", default="")
    answered: contextvars.ContextVar[int] = contextvars.ContextVar("jm_status", default=0)

    async def budgeted(path: str, api: Any = "public", method: str = "GET",
                       params: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
                       ) -> Any:  # fmt: skip
        params = params or {}
        endpoint = path.strip("/")
        if budget.ccxt_units:
            weight = max(1, round(exchange.calculate_rate_limiter_cost(
                api, method, path, params, config or {})))  # fmt: skip
        else:
            weight = budget.cfg.weight(endpoint, params, method)
        await budget.acquire(endpoint, weight, method)
        token = current.set(endpoint)
        answered.set(0)
        try:
            return await fetch2(path, api, method, params, config or {})
        except BudgetError:
            raise
        except Exception as exc:
            name = type(exc).__name__
            kinds = {c.__name__ for c in type(exc).__mro__}
            if kinds & set(_CCXT_BAN_ERRORS) and not budget.ban_until > time.time():
                # the venue's own rate-limit error code (OKX 50011, Deribit 10028, Kraken
                # EAPI:Rate limit exceeded ...) without a ban status: stop for the default
                budget.ban(429, budget.cfg.default_ban_s, f"{name} on {endpoint}")
            elif not answered.get() and (
                kinds & set(_CCXT_TRANSPORT_ERRORS) or isinstance(exc, OSError)
                or any("Proxy" in k for k in kinds)):  # fmt: skip
                # no HTTP answer at all (an answer's status was judged in observe)
                budget.breaker(endpoint).failure(f"{name}: {exc}"[:300])
                proxy = exchange.httpProxy or exchange.httpsProxy or exchange.socksProxy
                if proxy and name != "RequestTimeout":
                    raise ProxyUnreachable(
                        f"{budget.venue} {endpoint}: no answer through proxy "
                        f"{safe_url(proxy)} ({name}); is the proxy up?"
                    ) from exc
            raise
        finally:
            current.reset(token)

    def on_rest_response(code: Any, reason: Any, url: Any, method: Any, headers: Any,
                         body: Any, *rest: Any) -> Any:  # fmt: skip
        with contextlib.suppress(Exception):
            answered.set(int(code or 0))
            budget.observe(current.get() or "?", int(code or 0), dict(headers or {}))
        return on_response(code, reason, url, method, headers, body, *rest)

    exchange.fetch2 = budgeted
    exchange.on_rest_response = on_rest_response
    return exchange


def set_proxy(exchange: Any, url: str | None) -> None:
    """Point a ccxt exchange's REST at ``url`` (http(s):// or socks5://)."""
    if not url:
        return
    if url.startswith("socks"):
        exchange.socksProxy = url
    elif url.startswith("https"):
        exchange.httpsProxy = url
    else:
        exchange.httpProxy = url


async def open_budget(
    nc: Client | None, venue: str, cfg: LimitsSettings | None, exchange: Any = None, *,
    account: str = "", on_change: Callable[[], None] | None = None,
    default_priority: int = POLL,
) -> VenueBudget:  # fmt: skip
    """A started budget for ``venue``, attached to ccxt ``exchange`` when given. Without
    a ``cfg``: the venue's limits as its collector published them (KV ``<venue>.spec``),
    else ccxt's rateLimit of ``exchange`` in ccxt's cost units. The proxy of ``cfg`` (or
    the environment's) is set on ``exchange`` too."""
    ccxt_units = False
    if cfg is None or not cfg.rules:
        cfg = await published_limits(nc, venue) or cfg
    if (cfg is None or not cfg.rules) and exchange is not None:
        proxy = cfg.proxy if cfg else ""
        cfg, ccxt_units = ccxt_default(exchange), True
        cfg.proxy = proxy
    cfg = cfg or LimitsSettings()
    budget = VenueBudget(venue, cfg, nc, account=account, on_change=on_change,
                         default_priority=default_priority, ccxt_units=ccxt_units)  # fmt: skip
    if exchange is not None:
        share(exchange, budget)
    return await budget.start()


def share(exchange: Any, budget: VenueBudget) -> None:
    """Every REST call of the ccxt ``exchange`` through ``budget`` and the venue's proxy: the
    client ``open_budget`` is given, and any other client of the same venue and account (the
    executor's private stream, whose ccxt pro client makes REST calls of its own)."""
    set_proxy(exchange, proxy_url(budget.venue, budget.cfg))
    attach(exchange, budget)


async def publish_limits(nc: Client, venue: str, cfg: LimitsSettings) -> None:
    """The collector says what its venue's limits are, for processes that do not hold the
    collector's settings (executor, backfill): the KV key ``<venue>.spec``."""
    with contextlib.suppress(Exception):
        kv = await nc.jetstream(timeout=2.0).key_value(BUCKET)
        await kv.put(f"{venue}.spec", msgspec.json.encode(cfg))


async def published_limits(nc: Client | None, venue: str) -> LimitsSettings | None:
    if nc is None:
        return None
    try:
        kv = await nc.jetstream(timeout=2.0).key_value(BUCKET)
        entry = await kv.get(f"{venue}.spec")
        return msgspec.json.decode(entry.value or b"", type=LimitsSettings)
    except Exception:
        return None


async def shared_state(nc: Client) -> dict[str, Any]:
    """Every key of the bucket decoded (for ``jetmarket status``); {} without it."""
    out: dict[str, Any] = {}
    try:
        kv = await nc.jetstream(timeout=2.0).key_value(BUCKET)
        for key in await kv.keys():
            if key.endswith(".spec"):
                continue
            with contextlib.suppress(Exception):
                out[key] = orjson.loads((await kv.get(key)).value or b"{}")
    except Exception:
        return {}
    return out


def render_shared(state: dict[str, Any]) -> list[str]:
    """``jetmarket status`` lines: each venue's ban in force and each rule's use of its
    current window (breakers are per process: in each worker's ``budget=`` health field)."""
    if not state:
        return []
    now = time.time()
    lines = ["REST budgets (shared by every process on this IP)"]
    for key, v in sorted(state.items()):
        if key.endswith(".ban"):
            left = float(v.get("until", 0)) - now
            if left > 0:
                lines.append(f"  {key[:-4]:<28} BANNED {left:.0f}s more: {v.get('reason', '?')}")
        elif "w" in v:
            lines.append(f"  {key:<28} window {v['w']}: {v.get('u', 0)} units granted")
    return lines
