"""The research engine (executor/backtest/sim.py) on the columnar replay: the same run twice,
and columnar vs today's ``replay()``, give identical fills and PnL digests; the fill model
(queue position, latency, fees per tier, funding, several symbols) by hand-computed cases."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from executor.backtest.research import arrow_for_sweep, metrics, parse_grid, run_one, sweep
from executor.backtest.sim import FeeTier, Sim, SimSettings
from executor.backtest.strategy import Strategy
from replay import Replay
from replay.export import export
from sinks.clickhouse.store import Store
from sinks.clickhouse.tables import columns, to_columns
from streams import schemas
from streams.schemas import Depth, Funding, Trade
from streams.settings import Settings
from streams.tables import TABLES
from tests.replay.test_columnar import store_market
from tests.workers import ROOT

S = 1_000_000_000
MS = 1_000_000
T0 = 1_760_000_000 * S
SMA = f"{ROOT / 'examples' / 'sma_cross.py'}:SmaCross"
PARAMS = {"fast": 2, "slow": 5, "bar_s": 0.5, "size": 0.01}


def market(seed: int = 3, n: int = 3000) -> list[schemas.Base]:
    """A seeded random walk: trades and depth of a spot and a perpetual symbol, funding of
    the perpetual every 20 s (its next funding time repeated, as venues do)."""
    rnd = random.Random(seed)
    out: list[schemas.Base] = []
    px = {"BTC-USDT": 65000.0, "BTC-USDT-PERP": 65010.0}
    for i in range(n):
        ts = T0 + i * 10 * MS + (i % 3) * MS // 2
        for sym in px:
            px[sym] = round(px[sym] + rnd.choice((-1, 1)) * rnd.random() * 5, 1)
            p = px[sym]
            if i % 4 == 0:
                out.append(Depth(venue="binance", symbol=sym, ts_event=ts, ts_recv=ts,
                                 bids=[(round(p - 0.5 - k, 1), 0.05 + k / 10) for k in range(5)],
                                 asks=[(round(p + 0.5 + k, 1), 0.04 + k / 10) for k in range(5)],
                                 seq=i, levels=5))  # fmt: skip
            else:
                out.append(Trade(venue="binance", symbol=sym, ts_event=ts, ts_recv=ts,
                                 id=f"{sym}{i}", price=p, size=round(rnd.random() / 10, 4),
                                 side=rnd.choice(("buy", "sell"))))  # fmt: skip
        if i % 50 == 0:
            nxt = (ts // (20 * S) + 1) * 20 * S
            out.append(Funding(venue="binance", symbol="BTC-USDT-PERP", ts_event=ts, ts_recv=ts,
                               rate=0.0001 * (1 + i % 3), next_funding_ts=nxt))  # fmt: skip
    return out


@pytest.fixture
def loaded(settings: Settings) -> Settings:
    store_market(settings.clickhouse.dsn, market())
    return settings


def kw(settings: Settings, **more: Any) -> dict[str, Any]:
    return {"dsn": settings.clickhouse.dsn, "venue": "binance",
            "symbols": ["BTC-USDT-PERP", "BTC-USDT"], **more}  # fmt: skip


async def test_same_run_twice_and_columnar_vs_replay(
    loaded: Settings, nc: Client, tmp_path: Path
) -> None:
    cfg = SimSettings(latency_ms=3.0, curve_interval_s=1.0)
    a = run_one(SMA, PARAMS, source="clickhouse", cfg=cfg, **kw(loaded))
    b = run_one(SMA, PARAMS, source="clickhouse", cfg=cfg, **kw(loaded))
    assert a.metrics["fills"] >= 10 and a.messages == 6000 + 60
    assert a.metrics["funding"] != 0.0  # the perpetual's funding reached the position
    assert (a.digest, a.fills, a.curve) == (b.digest, b.fills, b.curve)
    # today's replay() (JetStream-or-ClickHouse API, JSON rows) feeding the same engine
    sim = Sim(SMA_CLS(), venue="binance", symbols=["BTC-USDT-PERP", "BTC-USDT"], params=PARAMS,
              cfg=cfg)  # fmt: skip
    rp = Replay(loaded, source="clickhouse", clickhouse="direct", nc=nc, progress=False,
                venues=["binance"], types=["trade", "depth", "funding", "mark"])  # fmt: skip
    sim.start()
    async for chunk in rp.batches():
        sim.run([m.msg for m in chunk])
    sim.finish()
    assert sim.digest() == a.digest and metrics(sim) == a.metrics
    # and from a Parquet export of the range
    out = tmp_path / "pq"
    export(loaded.clickhouse.dsn, out, [TABLES[t] for t in ("trade", "depth", "funding")])
    c = run_one(SMA, PARAMS, source=str(out), cfg=cfg, **kw(loaded))
    assert c.digest == a.digest
    # a sweep reads an Arrow copy of the export, mapped by every worker: same runs
    arrow = arrow_for_sweep(str(out), tmp_path / "cache")
    assert sorted(p.name for p in Path(arrow).iterdir()) == [
        "depth.arrow",
        "done",
        "funding.arrow",
        "trades.arrow",
    ]
    made = (Path(arrow) / "trades.arrow").stat().st_mtime_ns
    assert arrow_for_sweep(str(out), tmp_path / "cache") == arrow  # made once
    assert (Path(arrow) / "trades.arrow").stat().st_mtime_ns == made
    runs = sweep(SMA, [{}, {"slow": 7}], PARAMS, source=str(out), workers=2, cfg=cfg,
                 cache_dir=tmp_path / "cache", **kw(loaded))  # fmt: skip
    assert runs[0].source == arrow and runs[0].digest == a.digest and runs[0].fills == a.fills
    # a different parameter is a different run (the digest is not blind)
    d = run_one(SMA, {**PARAMS, "slow": 7}, source=str(out), cfg=cfg, **kw(loaded))
    assert d.digest != a.digest and runs[1].digest == d.digest
    # one process, both runs over one pass of the data: each as if alone
    one = sweep(SMA, [{}, {"slow": 7}], PARAMS, source=str(out), workers=1, cfg=cfg,
                cache_dir=tmp_path / "cache2", **kw(loaded))  # fmt: skip
    assert [(r.digest, r.fills, r.curve, r.metrics) for r in one] == [
        (r.digest, r.fills, r.curve, r.metrics) for r in (c, d)
    ]
    assert one[0].source == str(out) and not (tmp_path / "cache2").exists()  # no copy needed


def test_sweep_range_resolved_once_and_cache_follows_the_data(
    loaded: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every run of a sweep gets one absolute range ("--start 1d" is read once, not by each
    run), and the ClickHouse export a sweep caches is made again when rows were added to its
    range since (a backfill), never reused stale."""
    import pyarrow.parquet as pq

    from executor.backtest import research

    dsn = loaded.clickhouse.dsn
    sel = {"venue": "binance", "symbols": ["BTC-USDT"], "types": ["trade"],
           "start": T0, "end": T0 + 3600 * S}  # fmt: skip
    a = research.export_for_sweep(dsn, tmp_path / "cache", sel)
    assert research.export_for_sweep(dsn, tmp_path / "cache", sel) == a  # cached
    before = pq.read_table(Path(a) / "trades.parquet").num_rows
    t = T0 + 5 * S
    late = [Trade(venue="binance", symbol="BTC-USDT", ts_event=t, ts_recv=t, id=f"late{i}",
                  price=65000.0, size=0.1, side="buy") for i in range(3)]  # fmt: skip
    store = Store(dsn)  # a backfill into the range, after the first sweep
    store.insert("trades", columns(Trade), to_columns(Trade, late, [10**6 + i for i in range(3)]),
                 "backfill")  # fmt: skip
    store.close()
    b = research.export_for_sweep(dsn, tmp_path / "cache", sel)
    assert b != a and pq.read_table(Path(b) / "trades.parquet").num_rows == before + 3

    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(research, "_sweep_worker", lambda job: seen.append(job[2]) or [None])
    research.sweep(SMA, [{}], PARAMS, source=a, workers=1, start="1d", venue="binance",
                   symbols=["BTC-USDT"], dsn=dsn)  # fmt: skip
    assert isinstance(seen[0]["start"], int) and seen[0]["end"] is None


def test_sweep_cache_keeps_the_newest_and_the_one_in_use(tmp_path: Path) -> None:
    """Every sweep of a relative range exports anew: the cache keeps the CACHE_KEEP most
    recently used entries, and always the current sweep's, however old."""
    import os

    from executor.backtest.research import CACHE_KEEP, prune_cache

    cache = tmp_path / "cache"
    dirs = [cache / f"e{i:02d}" for i in range(CACHE_KEEP + 4)]
    for i, d in enumerate(dirs):
        d.mkdir(parents=True)
        (d / "trades.parquet").write_bytes(b"x")
        os.utime(d, ns=(10**18 + i * 10**9, 10**18 + i * 10**9))
    prune_cache(cache, keep={str(dirs[0])})
    left = sorted(p.name for p in cache.iterdir())
    assert left == ["e00"] + [d.name for d in dirs[-CACHE_KEEP:]]
    prune_cache(tmp_path / "none", keep=set())  # no cache yet: nothing to do


def SMA_CLS() -> type[Strategy]:
    from executor.backtest.research import load

    return load(SMA)


class Script(Strategy):
    """Places the orders a test gives, at given message counts."""

    plan: dict[int, list[tuple[str, tuple, dict]]] = {}

    def on_start(self) -> None:
        self.n = 0
        self.updates: list[tuple[str, str, float]] = []

    def on_market(self, msg: object) -> None:
        self.n += 1
        for method, args, kwargs in self.plan.get(self.n, []):
            getattr(self.ctx, method)(*args, **kwargs)

    def on_order(self, u: Any) -> None:
        self.updates.append((u.client_order_id, u.state, u.filled))


def depth(ts: int, bids: list, asks: list, sym: str = "X-USD", venue: str = "v") -> Depth:
    return Depth(venue=venue, symbol=sym, ts_event=ts, ts_recv=ts, bids=bids, asks=asks, seq=ts,
                 levels=5)  # fmt: skip


def trade(ts: int, price: float, size: float, side: str, sym: str = "X-USD",
          venue: str = "v") -> Trade:  # fmt: skip
    return Trade(venue=venue, symbol=sym, ts_event=ts, ts_recv=ts, id=str(ts), price=price,
                 size=size, side=side)  # type: ignore[arg-type]  # fmt: skip


def sim_of(plan: dict, **cfg: Any) -> Sim:
    Script.plan = plan
    fees = {"*": FeeTier(maker_bps=1.0, taker_bps=4.0), "v:vip": FeeTier(maker_bps=-1.0,
            taker_bps=2.0)}  # fmt: skip
    return Sim(Script, venue="v", symbols=["X-USD"], cfg=SimSettings(fees=fees, **cfg))


def test_queue_position_and_maker_fees() -> None:
    s = sim_of({1: [("limit", ("buy", 1.0, 100.0), {})]})
    s.run([
        depth(1, [(100.0, 2.0), (99.0, 5.0)], [(101.0, 1.0)]),  # we join behind 2.0 at 100
        trade(2, 100.0, 1.5, "sell"),  # queue 2.0 -> 0.5, nothing for us
        trade(3, 100.0, 1.0, "buy"),  # a buy print at our bid is not a fill for a bid
        depth(4, [(100.0, 0.2), (99.0, 5.0)], [(101.0, 1.0)]),  # cancels ahead: queue 0.2
        trade(5, 100.0, 0.5, "sell"),  # 0.2 ahead, 0.3 to us
        trade(6, 99.5, 0.1, "sell"),  # through our price: the rest (0.7) fills
    ])  # fmt: skip
    s.finish()
    got = [(f.ts, f.price, f.size, f.liquidity) for f in s.fills]
    assert got == [(5, 100.0, pytest.approx(0.3), "maker"),
                   (6, 100.0, pytest.approx(0.7), "maker")]  # fmt: skip
    assert s.fills[0].fee == pytest.approx(100.0 * 0.3 * 1e-4)  # "*" maker 1 bp
    assert [u[1] for u in s.strategy.updates] == ["new", "partially_filled", "filled"]
    assert s.positions[("v", "X-USD")].size == pytest.approx(1.0)


def test_latency_market_walk_taker_tier_and_ioc() -> None:
    plan = {1: [("buy", (1.5,), {}), ("limit", ("sell", 1.0, 98.0), {"tif": "IOC"})]}
    s = sim_of(plan, latency_ms=5.0, tiers={"v": "vip"})
    s.run([
        depth(0, [(99.0, 0.5)], [(101.0, 1.0), (102.0, 2.0)]),
        depth(4 * MS, [(99.5, 0.4), (98.0, 1.0)], [(103.0, 1.0), (104.0, 2.0)]),  # before arrival
        depth(5 * MS, [(90.0, 9.0)], [(200.0, 9.0)]),  # at the arrival time: after it
    ])  # fmt: skip
    s.finish()
    # the orders met the book of 4 ms, not the one they were sent against
    got = [(f.ts, f.side, f.price, f.size) for f in s.fills]
    assert got == [(5 * MS, "buy", 103.0, 1.0), (5 * MS, "buy", 104.0, 0.5),
                   (5 * MS, "sell", 99.5, 0.4), (5 * MS, "sell", 98.0, 0.6)]  # fmt: skip
    assert s.fills[0].fee == pytest.approx(103.0 * 2e-4)  # tier vip: taker 2 bp
    assert ("o2", "filled", 1.0) in s.strategy.updates


def test_funding_once_per_time_and_two_symbols() -> None:
    plan = {2: [("buy", (2.0,), {}), ("sell", (1.0,), {"symbol": "Y-PERP", "venue": "w"})]}
    s = sim_of(plan)
    f = {"venue": "w", "symbol": "Y-PERP", "rate": 0.001}
    s.run([
        depth(1, [(99.0, 5.0)], [(100.0, 5.0)]),
        depth(1, [(49.0, 5.0)], [(50.0, 5.0)], sym="Y-PERP", venue="w"),
        trade(2, 50.0, 1.0, "buy", sym="Y-PERP", venue="w"),
        Funding(**f, ts_event=3, ts_recv=3, next_funding_ts=10),
        Funding(**f, ts_event=8, ts_recv=8, next_funding_ts=10),  # the same time again
        trade(11, 60.0, 1.0, "buy", sym="Y-PERP", venue="w"),  # funding at 10, at mark 50
        Funding(**f, ts_event=12, ts_recv=12, next_funding_ts=10),  # stale: ignored
    ])  # fmt: skip
    s.finish()
    perp = s.positions[("w", "Y-PERP")]
    assert perp.size == -1.0 and perp.funding == pytest.approx(-1.0 * 50.0 * 0.001)
    assert s.positions[("v", "X-USD")].size == 2.0
    # short 1 at 49, marked 60: -11; funding received 0.05; taker fees 4 bp
    assert s.pnl(("w", "Y-PERP")) == pytest.approx(-11.0 + 0.05 - 49.0 * 4e-4)


def test_grid_parsing() -> None:
    cls = SMA_CLS()
    grid = parse_grid("fast=2,3 slow=5,8,13", cls)
    assert len(grid) == 6 and grid[0] == {"fast": 2, "slow": 5} and grid[-1]["slow"] == 13
    with pytest.raises(ValueError, match="NAME one of"):
        parse_grid("nope=1", cls)
    with pytest.raises(ValueError, match="must be int"):
        parse_grid("fast=a", cls)


def test_hostile_inputs(loaded: Settings, tmp_path: Path) -> None:
    """Quotes in a symbol stay a value (no SQL), a sweep cannot explode, a run id cannot
    name a file outside the report directory, and report text is escaped."""
    import subprocess
    import sys

    from executor.backtest.report import run_report
    from replay.columnar import Columnar
    from streams.settings import to_toml_env

    sneaky = ["BTC-USDT' OR '1'='1", "BTC-USDT\\' OR 1=1 --"]
    assert list(Columnar(loaded, symbols=sneaky)) == []
    assert export(loaded.clickhouse.dsn, tmp_path / "x", ["trades"], symbols=sneaky) == {
        "trades": 0}  # fmt: skip
    with pytest.raises(ValueError, match="at most 10000"):
        parse_grid("fast=" + ",".join(map(str, range(200))) + " slow=" +
                   ",".join(map(str, range(100))), SMA_CLS())  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "executor.backtest", "--strategy", SMA, "--venue", "binance",
         "--symbol", "BTC-USDT", "--columnar", "clickhouse", "--run-id", "../../evil",
         "--report-dir", str(tmp_path / "r")], env=to_toml_env(loaded), cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1 and "run id '../../evil'" in out.stderr, out.stderr[-500:]
    r = run_one(SMA, PARAMS, source="clickhouse", **kw(loaded))
    r.strategy = "<script>alert(1)</script>"
    page = run_report(r, tmp_path / "r").read_text()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


def test_newcomer_mistakes_are_one_line(loaded: Settings, tmp_path: Path) -> None:
    """A missing export directory is one line, not a traceback; a symbol or range without
    data still runs, with a warning that nothing was replayed."""
    import subprocess
    import sys

    from streams.settings import to_toml_env

    def backtest(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "executor.backtest", "--strategy", SMA, "--venue",
               "binance", "--report-dir", str(tmp_path / "r"), *args]  # fmt: skip
        return subprocess.run(cmd, env=to_toml_env(loaded), cwd=ROOT, capture_output=True,
                              text=True, timeout=60)  # fmt: skip

    for extra in ((), ("--grid", "fast=5,10", "--workers", "2")):
        out = backtest("--symbol", "BTC-USDT", "--columnar", str(tmp_path / "none"), *extra)
        assert out.returncode == 1, out.stderr[-500:]
        assert out.stderr.strip() == f"jetmarket backtest: no Parquet files at {tmp_path / 'none'}"
    out = backtest("--symbol", "XYZ-USDT", "--columnar", "clickhouse")
    assert out.returncode == 0, out.stderr[-500:]
    assert "warning: no market data for binance XYZ-USDT" in out.stderr, out.stderr[-500:]
    out = backtest("--symbol", "BTC-USDT", "--columnar", "clickhouse")
    assert out.returncode == 0 and "warning" not in out.stderr, out.stderr[-500:]


def test_default_sweep_workers_are_the_idle_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --workers a sweep runs a process per idle core: all cores on an idle machine,
    one process (one pass for every run) on a busy one (measured the faster there)."""
    import os

    from executor.backtest.research import default_workers

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    for load, want in ((0.0, 4), (1.2, 3), (3.6, 1), (40.0, 1)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
        assert default_workers() == want, load
