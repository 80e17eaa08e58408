"""The shared REST budget (streams/bus/budget.py) on a real nats-server: several budgets
on their own connections (as separate processes would be) never pass a window's limit
together; a ban seen by one stops the others for its Retry-After; priorities; breaker
states in metrics and the summary; the local share without the KV."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client
from prometheus_client import REGISTRY

from streams.bus import budget as b
from streams.bus.connect import connect
from streams.settings import Settings


def limits(capacity: int = 100, window_s: float = 1.0, **kw: object) -> b.LimitsSettings:
    return b.LimitsSettings(
        rules=[b.RateLimit(name="weight", capacity=capacity, window_s=window_s)], **kw
    )  # type: ignore[arg-type]


@pytest.fixture
async def conns(settings: Settings) -> AsyncIterator[list[Client]]:
    """Four connections as the collector role (what its permissions allow, nothing more)."""
    out = [await connect(settings.nats, f"collector:{i}", role="collector") for i in range(4)]
    yield out
    for c in out:
        await c.close()


async def _wait_window_start(window_s: float) -> None:
    now = time.time()
    await asyncio.sleep((int(now // window_s) + 1) * window_s - now + 0.01)


async def test_four_processes_never_pass_the_window(conns: list[Client]) -> None:
    """Four budgets hammering one 100-per-second rule for 3 s: per window at most
    capacity x safety granted in total, and close to it (the budget is used, not wasted)."""
    cfg = limits(100, 1.0)
    budgets = [await b.VenueBudget("emu", cfg, c).start() for c in conns]
    granted: dict[int, int] = {}
    await _wait_window_start(1.0)
    end = time.time() + 3.0

    async def hammer(bud: b.VenueBudget) -> None:
        while time.time() < end:
            await bud.acquire("depth", 1)
            w = int(time.time() // 1.0)
            granted[w] = granted.get(w, 0) + 1

    await asyncio.gather(*(hammer(x) for x in budgets for _ in range(3)))
    full = [n for w, n in granted.items() if w < int(end // 1.0)]
    assert full and max(full) <= 90, granted  # 100 x safety 0.9
    assert min(full) >= 60, granted  # leases are small enough that the window gets used
    for x in budgets:
        await x.close()


async def test_lease_makes_calls_local(conns: list[Client]) -> None:
    """A call served from the lease costs no round trip: measure both."""
    bud = await b.VenueBudget("emu", limits(100_000, 60.0, lease=0.01), conns[0]).start()
    t0 = time.perf_counter()
    await bud.acquire("x", 1)  # takes a lease: KV get + update
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(900):
        await bud.acquire("x", 1)
    local = (time.perf_counter() - t0) / 900
    print(f"first call (lease) {first * 1e3:.2f} ms, leased calls {local * 1e6:.1f} us")
    assert local < first / 5
    await bud.close()


async def test_ban_stops_other_processes_for_retry_after(conns: list[Client]) -> None:
    """A 429 with Retry-After: 2 seen by one process: another waits ~2 s (measured), an
    order there fails at once with a clear error, and a third process that starts during
    the ban learns it from the KV."""
    cfg = limits(1000, 1.0)
    a = await b.VenueBudget("emu", cfg, conns[0]).start()
    other = await b.VenueBudget("emu", cfg, conns[1]).start()
    await other.acquire("depth", 1)
    a.observe("depth", 429, {"Retry-After": "2"})
    await asyncio.sleep(0.2)  # the broadcast crosses the server
    with pytest.raises(b.Banned, match="emu: banned for 2 s more"):
        await other.acquire("order", 1, prio=b.ORDERS)
    late = await b.VenueBudget("emu", cfg, conns[2]).start()
    assert late.ban_until > time.time() + 1.0
    t0 = time.monotonic()
    await other.acquire("depth", 1)
    waited = time.monotonic() - t0
    print(f"other process stopped {waited:.2f} s of the 2 s Retry-After (0.2 s passed)")
    assert 1.6 <= waited <= 2.3
    banned = REGISTRY.get_sample_value("jetmarket_budget_bans_total",
                                       {"venue": "emu", "status": "429"})  # fmt: skip
    assert banned == 1.0  # counted once, where it was seen
    for x in (a, other, late):
        await x.close()


async def test_priorities_inside_a_process(conns: list[Client]) -> None:
    """With the window spent, waiting backfill and resync calls: resync goes first when
    the next window opens, in arrival order among equals."""
    bud = await b.VenueBudget("emu", limits(20, 1.0, lease=1.0), conns[0]).start()
    await _wait_window_start(1.0)
    while True:  # spend this window
        try:
            await asyncio.wait_for(bud.acquire("x", 1, prio=b.ORDERS), 0.05)
        except TimeoutError:
            break
    order: list[str] = []

    async def call(name: str, prio: int) -> None:
        await bud.acquire("x", 3, prio=prio)
        order.append(name)

    tasks = [asyncio.create_task(call("backfill1", b.BACKFILL))]
    await asyncio.sleep(0.01)
    tasks += [asyncio.create_task(call(f"resync{i}", b.RESYNC)) for i in range(3)]
    await asyncio.gather(*tasks)
    assert order[:3] == ["resync0", "resync1", "resync2"], order
    await bud.close()


async def test_backfill_in_another_process_yields_to_resync(conns: list[Client]) -> None:
    """A resync lease marks its priority hot: a backfill elsewhere on the IP leases
    nothing until it cools, though the window has room."""
    cfg = limits(10_000, 10.0, hot_s=0.5)
    collector = await b.VenueBudget("emu", cfg, conns[0]).start()
    backfill = await b.VenueBudget("emu", cfg, conns[1], default_priority=b.BACKFILL).start()
    await collector.acquire("depth", 1, prio=b.RESYNC)
    t0 = time.monotonic()
    await backfill.acquire("klines", 1)
    waited = time.monotonic() - t0
    assert 0.3 <= waited <= 1.0, waited
    for x in (collector, backfill):
        await x.close()


async def test_breaker_opens_half_opens_closes() -> None:
    bud = b.VenueBudget("brk", limits(1000, 1.0, breaker_failures=3, breaker_open_s=0.3))
    changes: list[str] = []
    bud.on_change = lambda: changes.append(bud.summary())

    def state() -> float | None:
        return REGISTRY.get_sample_value("jetmarket_budget_breaker_state",
                                         {"venue": "brk", "endpoint": "depth"})  # fmt: skip

    for _ in range(3):
        await bud.acquire("depth", 1)
        bud.observe("depth", 503, {})
    assert state() == 2 and bud.summary() == "brk/depth:open"
    t0 = time.perf_counter()
    with pytest.raises(b.BreakerOpen, match="brk depth: circuit open .* HTTP 503"):
        await bud.acquire("depth", 1)
    assert time.perf_counter() - t0 < 0.01  # fast, not a timeout
    await asyncio.sleep(0.35)
    await bud.acquire("depth", 1)  # the half-open probe
    assert state() == 1
    with pytest.raises(b.BreakerOpen):  # one probe at a time
        await bud.acquire("depth", 1)
    bud.observe("depth", 503, {})  # probe failed: open again
    assert state() == 2
    await asyncio.sleep(0.35)
    await bud.acquire("depth", 1)
    bud.observe("depth", 200, {})
    assert state() == 0 and bud.summary() == ""
    assert changes[-1] == "" and "brk/depth:half_open" in changes


async def test_local_share_without_the_kv() -> None:
    """No NATS: a tenth of the window (fail safe), then it waits for the next window."""
    bud = b.VenueBudget("solo", limits(100, 1.0))
    await _wait_window_start(1.0)
    n = 0
    while True:
        try:
            await asyncio.wait_for(bud.acquire("x", 1), 0.05)
        except TimeoutError:
            break
        n += 1
    assert n == int(100 * 0.1), n  # the share: the room the others' safety margin leaves


async def test_used_weight_header_raises_the_shared_count(conns: list[Client]) -> None:
    """The venue says 50 of 100 are used (someone else on the IP): the shared count rises
    and another process gets only what is left."""
    cfg = limits(100, 3.0, used_headers={"X-MBX-USED-WEIGHT-1M": "weight"}, lease=0.01)
    await _wait_window_start(3.0)
    await asyncio.sleep(0.3)  # a count just after a window begins may be the old one's
    a = await b.VenueBudget("emu", cfg, conns[0]).start()
    await a.acquire("x", 1)
    a.observe("x", 200, {"x-mbx-used-weight-1m": "50"})
    await asyncio.sleep(0.2)
    other = await b.VenueBudget("emu", cfg, conns[1]).start()
    n = 0
    while True:
        try:
            await asyncio.wait_for(other.acquire("x", 1), 0.1)
        except TimeoutError:
            break
        n += 1
    assert n == int(100 * 0.9 * 0.8) - 50, n
    for x in (a, other):
        await x.close()


def test_weights_as_data() -> None:
    from collectors.binance import LIMITS

    assert LIMITS.weight("depth", {"limit": 1000}) == 50
    assert LIMITS.weight("depth", {"limit": 5000}) == 250
    assert LIMITS.weight("depth", {"limit": 100}) == 5
    assert LIMITS.weight("order", {}, "GET") == 4
    assert LIMITS.weight("order", {}, "POST") == 1
    assert LIMITS.weight("exchangeInfo") == 20


def test_partial_limits_keep_the_venue_rules() -> None:
    """``[collector.binance.limits] proxy = ...`` alone keeps Binance's rules and weights."""
    from collectors.binance import BinanceSettings
    from collectors.config import venue_settings
    from streams import settings as settings_mod

    s = settings_mod.from_mapping(
        {"collector": {"binance": {"limits": {"proxy": "socks5://127.0.0.1:1080"}}}}
    )
    cfg = venue_settings(s, "binance", BinanceSettings).limits
    assert cfg.proxy == "socks5://127.0.0.1:1080"
    assert [r.name for r in cfg.rules] == ["weight", "orders10s", "ordersday"]
    assert cfg.weight("depth", {"limit": 1000}) == 50


def test_proxy_with_credentials_in_settings_is_refused() -> None:
    from streams.settings import SettingsError, section

    with pytest.raises(SettingsError, match="must not hold credentials"):
        section({"proxy": "http://u:p@127.0.0.1:8080"}, b.LimitsSettings, "collector.x.limits")
