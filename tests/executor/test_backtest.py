"""Backtests: the paper engine and a strategy over replayed data (real nats-server, real
chdb through the sink): deterministic runs, hand-computed PnL, rows in ClickHouse under the
run's account, every timestamp from the replay clock."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from executor.backtest import Backtest, BacktestError, Strategy, load_strategy
from executor.backtest.results import Record
from streams import schemas, sql, subjects
from streams.bus.server import NatsServer
from streams.schemas import Depth, Fill, Instrument, OrderUpdate, Position, Trade
from streams.settings import BacktestSettings, Settings, to_toml_env
from tests.conftest import make_settings
from tests.pipeline.test_e2e import wait_rows
from tests.workers import ROOT, Proc

T0 = 1_700_000_000_000_000_000  # Nov 2023: far from any wall-clock "now" of a test run
S = 1_000_000_000
MS = 1_000_000
SMA = load_strategy(str(ROOT / "examples" / "sma_cross.py") + ":SmaCross")
ACCOUNT = {"maker_fee": 0.001, "taker_fee": 0.002}


def cfg(**kw: Any) -> BacktestSettings:
    import msgspec

    return msgspec.convert({"account": ACCOUNT, **kw}, BacktestSettings)


def _b(i_ns: int) -> dict[str, Any]:
    return {"venue": "binance", "symbol": "BTC-USDT", "ts_event": i_ns - MS, "ts_recv": i_ns}


def instrument(ts: int) -> Instrument:
    return Instrument(**_b(ts), native_symbol="BTCUSDT", kind="spot", base="BTC", quote="USDT",
                      tick_size=0.01, lot_size=0.001)  # fmt: skip


def depth(ts: int, bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> Depth:
    return Depth(**_b(ts), bids=bids, asks=asks, seq=ts, levels=len(bids))  # type: ignore[arg-type]


def trade(ts: int, price: float, size: float) -> Trade:
    return Trade(**_b(ts), id=str(ts), price=price, size=size, side="buy")


def market_stream(n: int = 2400, seed: int = 7) -> list[Any]:
    """A random walk: a trade every 100 ms and a 5-level book every 300 ms (4 minutes)."""
    rnd = random.Random(seed)
    mid = 30_000.0
    out: list[Any] = [instrument(T0)]
    for i in range(1, n + 1):
        ts = T0 + i * 100 * MS
        mid = round(mid + rnd.choice((-1, 1)) * rnd.randint(0, 40) * 0.5, 2)
        if i % 3 == 1:
            bids = [(round(mid - 0.5 - k, 2), 0.05 + 0.01 * k) for k in range(5)]
            asks = [(round(mid + 0.5 + k, 2), 0.05 + 0.01 * k) for k in range(5)]
            out.append(depth(ts, bids, asks))
        out.append(
            trade(ts + MS, round(mid + rnd.choice((-0.5, 0.5)), 2), 0.01 * rnd.randint(1, 9))
        )
    return out


async def publish(nc: Client, js: JetStreamContext, msgs: list[Any]) -> None:
    for m in msgs:
        subject = subjects.market(m.__struct_config__.tag, m.venue, m.symbol)
        await nc.publish(subject, schemas.encode(m))
    # an acked publish on the same connection: MARKET holds everything before it
    await js.publish(subjects.market("trade", "test", "SYNC"), schemas.encode(trade(T0 - S, 1, 1)))


def fills(records: list[Record]) -> list[tuple[str, int, float, float, float, str]]:
    return [(f.msg.client_order_id, f.msg.ts_event, f.msg.price, f.msg.size, f.msg.fee,
             f.msg.liquidity) for f in records if isinstance(f.msg, Fill)]  # fmt: skip


async def test_example_backtest_is_identical_on_two_replays(
    settings: Settings, nc: Client, js: JetStreamContext
) -> None:
    data = market_stream()
    await publish(nc, js, data)
    runs = []
    for run_id in ("first", "second"):
        bt = Backtest(SMA, venue="binance", symbols=["BTC-USDT"], run_id=run_id, cfg=cfg(),
                      params={"fast": 3, "slow": 8})  # fmt: skip
        summary = await bt.run_replay(settings, source="jetstream", nc=nc)
        runs.append((bt, summary))
    (a, sa), (b, sb) = runs
    assert sa.messages == len(data)  # every message of the range, the SYNC one filtered out
    assert sa.fills >= 20, sa.text()  # the example does trade on this walk
    assert sa.digest == sb.digest
    assert fills(a.rec.records) == fills(b.rec.records)
    assert (sa.realized, sa.unrealized, sa.fees) == (sb.realized, sb.unrealized, sb.fees)
    assert sa.account == "bt-first" and sb.account == "bt-second"
    # the same messages handed over as a list give the same run: replay order is list order
    c = Backtest(
        SMA, venue="binance", symbols=["BTC-USDT"], cfg=cfg(), params={"fast": 3, "slow": 8}
    )
    assert (await c.run_messages(data)).digest == sa.digest
    # and a different strategy parameter gives a different run
    d = Backtest(
        SMA, venue="binance", symbols=["BTC-USDT"], cfg=cfg(), params={"fast": 4, "slow": 8}
    )
    assert (await d.run_messages(data)).digest != sa.digest


class Script(Strategy):
    """Buy 1.5 at market on the first trade; once filled, offer 1.0 at 103; sell 0.3 at
    market on the trade at 105."""

    def on_start(self) -> None:
        self.trades = 0

    def on_trade(self, trade: Trade) -> None:
        self.trades += 1
        if self.trades == 1:
            self.ctx.buy(1.5)
        elif trade.price == 105.0:
            self.ctx.sell(0.3)

    def on_order(self, update: OrderUpdate) -> None:
        if update.client_order_id == "o1" and update.state == "filled":
            self.ctx.sell(1, 103)


SCRIPT = [
    instrument(T0),
    depth(T0 + 1 * S, [(99.0, 1.0), (98.0, 2.0)], [(100.0, 1.0), (101.0, 2.0)]),
    trade(T0 + 2 * S, 99.5, 0.1),  # -> buy 1.5 at market: 1.0 @ 100 + 0.5 @ 101 (taker)
    trade(T0 + 3 * S, 102.0, 1.0),
    trade(T0 + 4 * S, 103.0, 2.0),  # at the offer, not through it: no fill
    trade(T0 + 5 * S, 103.5, 0.4),  # through: 0.4 @ 103 (maker)
    depth(T0 + 6 * S, [(103.0, 1.0)], [(104.0, 1.0)]),
    trade(T0 + 7 * S, 104.0, 5.0),  # the remaining 0.6 @ 103 (maker)
    depth(T0 + 8 * S, [(104.0, 2.0), (103.0, 1.0)], [(106.0, 1.0)]),
    trade(T0 + 9 * S, 105.0, 0.2),  # -> sell 0.3 at market: 0.3 @ 104 (taker)
    depth(T0 + 10 * S, [(100.0, 1.0)], [(102.0, 1.0)]),
    trade(T0 + 11 * S, 101.0, 1.0),
    trade(T0 + 12 * S, 100.0, 1.0),  # the last mark: 100
]


async def test_pnl_on_a_scripted_stream_equals_the_hand_computed_value() -> None:
    bt = Backtest(Script, venue="binance", symbols=["BTC-USDT"], run_id="script", cfg=cfg())
    s = await bt.run_messages(SCRIPT)
    got = [(cid, ts, p, q, liq) for cid, ts, p, q, _, liq in fills(bt.rec.records)]
    assert got == [
        ("o1", T0 + 2 * S, 100.0, 1.0, "taker"), ("o1", T0 + 2 * S, 101.0, 0.5, "taker"),
        ("o2", T0 + 5 * S, 103.0, 0.4, "maker"), ("o2", T0 + 7 * S, 103.0, 0.6, "maker"),
        ("o3", T0 + 9 * S, 104.0, 0.3, "taker"),
    ]  # fmt: skip
    avg = (1.0 * 100 + 0.5 * 101) / 1.5  # 100.3333...
    gross = (103 - avg) * 1.0 + (104 - avg) * 0.3  # closing PnL of the 1.3 sold: 3.766667
    fees = (150.5 * 0.002) + (0.4 * 103 * 0.001) + (0.6 * 103 * 0.001) + (0.3 * 104 * 0.002)
    assert fees == pytest.approx(0.4664)  # 0.301 + 0.0412 + 0.0618 + 0.0624
    unrealized = (100.0 - avg) * 0.2  # 0.2 left long, marked at the last trade
    assert s.fees == pytest.approx(fees)
    assert s.realized == pytest.approx(gross - fees)  # 3.300267
    assert s.unrealized == pytest.approx(unrealized)  # -0.066667
    assert s.pnl == pytest.approx(3.2336)
    assert s.positions == {"binance:BTC-USDT": pytest.approx(0.2)}
    assert s.orders == {"filled": 3} and s.fills == 5
    states = [u.msg.state for u in bt.rec.records
              if isinstance(u.msg, OrderUpdate) and u.msg.client_order_id == "o2"]  # fmt: skip
    assert states == ["new", "partially_filled", "filled"]
    # the PnL curve: every fill's position, a point per curve step (60 s: none here), the end
    end = [r.msg for r in bt.rec.records if isinstance(r.msg, Position)][-1]
    assert end.ts_event == T0 + 12 * S and end.mark_price == 100.0
    assert end.realized_pnl + end.unrealized_pnl == pytest.approx(3.2336)


async def test_strategy_errors_and_bad_runs_say_why() -> None:
    class Broken(Strategy):
        def on_trade(self, trade: Trade) -> None:
            raise ZeroDivisionError("oops")

    with pytest.raises(BacktestError, match=r"strategy failed: ZeroDivisionError.*message 3 at"):
        await Backtest(Broken, venue="binance", symbols=["BTC-USDT"]).run_messages(SCRIPT)

    class Loop(Strategy):
        def on_order(self, update: OrderUpdate) -> None:
            self.ctx.buy(1, 1)  # rejected (no instrument) -> buy again -> ...

        def on_trade(self, trade: Trade) -> None:
            self.ctx.buy(1, 1)

    with pytest.raises(BacktestError, match="rounds of orders reacting"):
        await Backtest(Loop, venue="binance", symbols=["ETH-USDT"]).run_messages(SCRIPT[2:])
    with pytest.raises(BacktestError, match="run id"):
        Backtest(Script, venue="binance", symbols=["BTC-USDT"], run_id="a.b")
    with pytest.raises(TypeError, match="no parameter 'fats'"):
        Backtest(SMA, venue="binance", symbols=["BTC-USDT"], params={"fats": 1})
    with pytest.raises(BacktestError, match="not a Strategy subclass"):
        load_strategy("examples/sma_cross.py:deque")

    class Unknown(Strategy):
        def on_trade(self, trade: Trade) -> None:
            if trade.price == 102.0:
                self.ctx.buy(1, symbol="DOGE-USDT")

    bt = Backtest(Unknown, venue="binance", symbols=["BTC-USDT"], cfg=cfg())
    s = await bt.run_messages(SCRIPT)
    rejected = [r.msg for r in bt.rec.records if isinstance(r.msg, OrderUpdate)]
    assert s.orders == {"rejected": 1}
    assert "unknown instrument binance/DOGE-USDT" in rejected[0].reason


async def test_cli_results_land_in_clickhouse_under_the_run_id_on_replay_time(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    settings = make_settings(tmp_path, nats_server.url, sink={"flush_interval_s": 0.1},
                             backtest={"account": ACCOUNT})  # fmt: skip
    data = market_stream(n=1200)
    await publish(nc, js, data)
    sink = Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log").start()
    try:
        env = {**os.environ, **to_toml_env(settings)}
        start, end = T0 + 10 * S, T0 + 110 * S  # the instrument (at T0) is before the range
        out = subprocess.run(
            [sys.executable, "-m", "ops", "backtest", "--strategy",
             "examples/sma_cross.py:SmaCross", "--venue", "binance", "--symbol", "BTC-USDT",
             "--start", str(start), "--end", str(end), "--source", "jetstream",
             "--run-id", "ch1", "--param", "fast=3", "--param", "slow=8",
             "--curve-interval-s", "10"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert "backtest ch1  account bt-ch1" in out.stdout and "stored" in out.stdout
        # what the same run gives in-process
        bt = Backtest(SMA, venue="binance", symbols=["BTC-USDT"], run_id="ch1",
                      params={"fast": 3, "slow": 8}, cfg=cfg(curve_interval_s=10))  # fmt: skip
        bt.preload(data[0])
        s = await bt.run_messages([m for m in data if start <= m.ts_recv < end])
        assert f"digest       {s.digest}" in out.stdout
        assert s.fills > 5
        n_pos = sum(isinstance(r.msg, Position) for r in bt.rec.records)
        n_upd = sum(isinstance(r.msg, OrderUpdate) for r in bt.rec.records)
        assert await wait_rows(nc, "SELECT count() FROM positions WHERE account = 'bt-ch1'",
                               n_pos, 60) == n_pos  # fmt: skip
        where = "WHERE account = 'bt-ch1'"
        for table, n in (("fills", s.fills), ("orders", n_upd)):
            assert await wait_rows(nc, f"SELECT count() FROM {table} {where}", n, 30) == n
        res = await sql.query(nc, f"SELECT round(sum(fee), 9), round(sum(size), 9), "
                                  f"uniqExact(client_order_id) FROM fills {where}")  # fmt: skip
        fees = sum(f[4] for f in fills(bt.rec.records))
        size = sum(f[3] for f in fills(bt.rec.records))
        assert res.rows[0][:2] == [pytest.approx(fees), pytest.approx(size)]
        assert res.rows[0][2] == len({f[0] for f in fills(bt.rec.records)})
        res = await sql.query(nc, "SELECT realized_pnl + unrealized_pnl FROM positions "
                                  f"{where} ORDER BY ts_event DESC LIMIT 1")  # fmt: skip
        assert res.rows[0][0] == pytest.approx(s.pnl)
        # the PnL curve: a point every 10 s of replayed time
        on_grid = f"toUnixTimestamp64Nano(ts_event) % {10 * S} = 0"
        res = await sql.query(nc, f"SELECT count() FROM positions {where} AND {on_grid}")
        assert res.rows[0][0] >= 8
        # every timestamp is replayed time: inside the data's range, nowhere near now
        now = time.time_ns()
        for table in ("fills", "orders", "positions"):
            res = await sql.query(nc, "SELECT toUnixTimestamp64Nano(min(ts_event)), "
                                      "toUnixTimestamp64Nano(max(ts_event)), "
                                      f"toUnixTimestamp64Nano(max(ts_recv)) FROM {table} "
                                      f"{where}")  # fmt: skip
            lo, hi, hi_recv = (int(v) for v in res.rows[0])
            assert start - MS <= lo <= hi < end + MS, table  # float seconds: sub-us rounding
            assert hi_recv < end + MS and now - hi > 365 * 86400 * S, table
        # another run is separable by account
        res = await sql.query(nc, "SELECT DISTINCT account FROM fills")
        assert res.rows == [["bt-ch1"]]
        # the same range replayed from ClickHouse (through the sink) is the same backtest
        assert await wait_rows(nc, "SELECT count() FROM trades", 1201, 30) == 1201
        assert await wait_rows(nc, "SELECT count() FROM depth", 400, 30) == 400
        ch = Backtest(SMA, venue="binance", symbols=["BTC-USDT"], run_id="ch2",
                      params={"fast": 3, "slow": 8}, cfg=cfg(curve_interval_s=10))  # fmt: skip
        got = await ch.run_replay(settings, start=start, end=end, source="clickhouse", nc=nc)
        assert got.messages == s.messages and got.digest == s.digest
    finally:
        assert sink.stop() == 0
