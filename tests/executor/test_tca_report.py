"""The execution-quality SQL (docs/sql.md) and
``jetmarket exec report`` against rows the live sink stored, each figure checked against the
same numbers computed here (and, for TCA, against executor/algo/tca.py)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from executor.algo.tca import figures
from executor.report import ReportError, report_sql, rows_as_dicts, run_query
from streams import schemas, sql, subjects
from streams.bus.server import NatsServer
from streams.settings import to_toml_env
from tests.conftest import make_settings
from tests.pipeline.test_e2e import wait_rows
from tests.workers import ROOT, Proc

T0 = 1_700_000_040
NS = 10**9
DOCS = [ROOT / "docs" / "sql.md"]


def exec_queries() -> dict[str, str]:
    """The exec_* queries of docs/sql.md."""
    for doc in DOCS:
        if doc.exists():
            found = dict(re.findall(r"<!-- query: (exec_\w+) -->\s*```sql\n(.*?)```",
                                    doc.read_text(), re.S))  # fmt: skip
            if found:
                return found
    raise AssertionError("no exec_* queries in docs/sql.md")


def b(ts: float, symbol: str = "BTC-USDT") -> dict[str, Any]:
    return {"account": "desk", "venue": "binance", "symbol": symbol, "ts_event": int(ts * NS),
            "ts_recv": int(ts * NS)}  # fmt: skip


TRADES = [(T0 + i * 0.5, 100.2 + (i % 5) * 0.1, 1.0 + i % 3) for i in range(20)]
TW_FILLS = [(100.5 + 0.1 * k, 0.25, 0.25 * (100.5 + 0.1 * k) * 0.001) for k in range(4)]
PG_FILLS = [(100.6, 0.2, 0.0)]
ACKS = {"tw1.1": 1.0, "tw1.2": 2.0, "tw1.3": 3.0, "tw1.4": 4.0, "pg1.1": 1.5, "pg1.2": 2.5}


def market_vwap(lo: float, hi: float) -> tuple[float, float]:
    sel = [(p, s) for t, p, s in TRADES if lo <= t <= hi]
    return sum(s for _, s in sel), sum(p * s for p, s in sel)


def dataset() -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    out: list[tuple[str, Any]] = []
    for t, p, s in TRADES:
        m = schemas.Trade(**{k: v for k, v in b(t).items() if k != "account"}, id=f"t{t}",
                          price=p, size=s, side="buy")  # fmt: skip
        out.append((subjects.market("trade", "binance", "BTC-USDT"), m))
    evt = subjects.exec_evt("desk", "binance", "BTC-USDT")
    rec = {"algo": "twap", "side": "buy", "quantity": 1.0, "start_ts": T0 * NS, "slices": 4}
    for v in range(1, 6):
        filled = 0.25 * (v - 1)
        cost = sum(p * s for p, s, _ in TW_FILLS[: v - 1])
        out.append((evt, schemas.ParentUpdate(
            **b(T0 + 2 * (v - 1)), parent_id="tw1", state="working", filled=filled,
            avg_price=cost / filled if filled else None, children=v - 1, version=v,
            **rec)))  # fmt: skip
    avg = sum(p * s for p, s, _ in TW_FILLS) / 1.0
    out.append((evt, schemas.ParentUpdate(**b(T0 + 8), parent_id="tw1", state="filled",
                                          filled=1.0, avg_price=avg, children=4, version=6,
                                          **rec)))  # fmt: skip
    peg = {"algo": "peg", "side": "sell", "quantity": 0.5, "start_ts": (T0 + 1) * NS}
    out.append((evt, schemas.ParentUpdate(**b(T0 + 1), parent_id="pg1", state="working",
                                          version=1, **peg)))  # fmt: skip
    out.append((evt, schemas.ParentUpdate(**b(T0 + 5), parent_id="pg1", state="canceled",
                                          filled=0.2, avg_price=100.6, children=2, version=2,
                                          **peg)))  # fmt: skip
    for k, (p, s, fee) in enumerate(TW_FILLS):
        out.append((evt, schemas.Fill(**b(T0 + 2 * k + 0.1), client_order_id=f"tw1.{k + 1}",
                                      trade_id=f"f{k}", side="buy", price=p, size=s, fee=fee,
                                      fee_currency="USDT")))  # fmt: skip
    out.append((evt, schemas.Fill(**b(T0 + 3), client_order_id="pg1.2", trade_id="g1",
                                  side="sell", price=100.6, size=0.2, fee=0.0,
                                  fee_currency="USDT")))  # fmt: skip
    # TCA rows as the executor computes them
    tw_fig = figures("buy", 1.0, TW_FILLS, 100.25, *market_vwap(T0, T0 + 8), 100.9)
    pg_fig = figures("sell", 0.5, PG_FILLS, 100.55, *market_vwap(T0 + 1, T0 + 5), 100.4)
    for pid, algo, side, q, filled, fig, arrival, end, n, t0, t1, ttf in (
        ("tw1", "twap", "buy", 1.0, 1.0, tw_fig, 100.25, 100.9, 4, T0, T0 + 8, 6.1),
        ("pg1", "peg", "sell", 0.5, 0.2, pg_fig, 100.55, 100.4, 2, T0 + 1, T0 + 5, None),
    ):
        acks = [a for c, a in ACKS.items() if c.startswith(pid)]
        out.append((evt, schemas.Tca(
            **b(t1), scope="parent", id=pid, parent_id=pid, algo=algo, side=side, quantity=q,
            filled=filled, avg_price=fig.avg_price, arrival_mid=arrival,
            interval_vwap=fig.interval_vwap, end_mid=end, slippage_bps=fig.slippage_bps,
            vwap_slippage_bps=fig.vwap_slippage_bps, shortfall=fig.shortfall,
            shortfall_bps=fig.shortfall_bps, fill_ratio=fig.fill_ratio, fees=fig.fees,
            children=n, ts_start=t0 * NS, ts_end=t1 * NS, time_to_fill_s=ttf,
            ack_latency_ms=sum(acks) / len(acks))))  # fmt: skip
    for i, (cid, ack) in enumerate(ACKS.items()):
        out.append((evt, schemas.Tca(
            **b(T0 + i), scope="order", id=cid, parent_id=cid.split(".")[0],
            algo="twap" if cid.startswith("tw") else "peg", side="buy", quantity=0.25,
            filled=0.25, ts_start=(T0 + i) * NS, ts_end=(T0 + i) * NS,
            ack_latency_ms=ack)))  # fmt: skip
    return out, {"tw1": tw_fig, "pg1": pg_fig}


def approx(rows: list[list], expected: list[list]) -> None:
    assert len(rows) == len(expected), (rows, expected)
    for got, want in zip(rows, expected, strict=True):
        assert got == pytest.approx(want, rel=1e-6, abs=1e-6), (got, want)


async def test_execution_queries_and_exec_report(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    queries = exec_queries()
    assert set(queries) == {
        "exec_tca_parents", "exec_slippage_by_algo", "exec_ack_latency", "exec_parent_state",
        "exec_child_fills", "exec_interval_vwap"}  # fmt: skip
    settings = make_settings(tmp_path, nats_server.url, sink={"flush_interval_s": 0.1})
    sink = Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log").start()
    try:
        msgs, fig = dataset()
        futs = [await js.publish_async(s, schemas.encode(m)) for s, m in msgs]
        await asyncio.gather(*futs)
        assert await wait_rows(nc, "SELECT count() FROM tca", 8, 60) == 8
        assert await wait_rows(nc, "SELECT count() FROM trades", 20, 30) == 20

        async def run(name: str) -> list[list]:
            return (await sql.query(nc, queries[name])).rows

        tw, pg = fig["tw1"], fig["pg1"]
        # the hand figures of tw1: avg 100.65; arrival 100.25 -> 39.9 bps; fees 0.10065
        assert tw.avg_price == pytest.approx(100.65) and tw.fees == pytest.approx(0.10065)
        assert tw.slippage_bps == pytest.approx((100.65 - 100.25) / 100.25 * 1e4)
        rows = await run("exec_tca_parents")
        assert [r[:3] for r in rows] == [["pg1", "peg", "sell"], ["tw1", "twap", "buy"]]
        assert rows[1][5:] == pytest.approx([1.0, round(tw.avg_price, 6), 100.25,
                                             round(tw.slippage_bps, 3),
                                             round(tw.vwap_slippage_bps, 3),
                                             round(tw.shortfall_bps, 3), round(tw.fees, 6), 4,
                                             6.1])  # fmt: skip
        assert rows[0][5:13] == pytest.approx([0.4, 100.6, 100.55, round(pg.slippage_bps, 3),
                                               round(pg.vwap_slippage_bps, 3),
                                               round(pg.shortfall_bps, 3), 0.0, 2])  # fmt: skip
        assert rows[0][13] is None  # not filled: no time to fill

        weighted = {a: f.slippage_bps for a, f in (("peg", pg), ("twap", tw))}
        approx([r[1:] for r in await run("exec_slippage_by_algo")],
               [[1, round(weighted["peg"], 3), 0.0], [1, round(weighted["twap"], 3),
                                                      round(tw.fees, 6)]])  # fmt: skip
        acks = sorted(ACKS.values())
        approx(await run("exec_ack_latency"), [[6, acks[3], 4.0]])
        assert await run("exec_parent_state") == [["pg1", "canceled", 0.2, 2, 2],
                                                  ["tw1", "filled", 1.0, 4, 6]]  # fmt: skip
        approx([r[1:] for r in await run("exec_child_fills")],
               [[1, s, round(p, 6), round(f, 6)] for p, s, f in TW_FILLS])  # fmt: skip
        rows = await run("exec_interval_vwap")
        want = []
        for side, avg, lo, hi in ((-1, 100.6, T0 + 1, T0 + 5), (1, tw.avg_price, T0, T0 + 8)):
            vol, notional = market_vwap(lo, hi)
            v = notional / vol
            want.append([round(v, 6), round(avg, 6), round(side * (avg - v) / v * 1e4, 3)])
        assert [r[0] for r in rows] == ["pg1", "tw1"]
        approx([r[1:] for r in rows], want)
        # the stored interval VWAP is the executor's figure: the same as from trades
        assert want[1][0] == pytest.approx(tw.interval_vwap, abs=1e-6)

        # jetmarket exec report: the same parents, as JSON through the command line
        got = rows_as_dicts(await run_query(settings, report_sql(account="desk")))
        assert [(r["id"], r["children"]) for r in got] == [("tw1", 4), ("pg1", 2)]
        assert got[0]["slippage_bps"] == pytest.approx(round(tw.slippage_bps, 3))
        env = {**os.environ, **to_toml_env(settings)}
        out = subprocess.run(
            [sys.executable, "-m", "executor", "report", "--scope", "all", "--parent", "tw1",
             "--format", "json"], cwd=ROOT, env=env,
            capture_output=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        ids = sorted(r["id"] for r in orjson.loads(out.stdout))
        assert ids == ["tw1", "tw1.1", "tw1.2", "tw1.3", "tw1.4"]
        csv = subprocess.run(
            [sys.executable, "-m", "executor", "report", "--format", "csv"], cwd=ROOT,
            env=env, capture_output=True, timeout=60,
        )  # fmt: skip
        assert csv.returncode == 0 and csv.stdout.decode().splitlines()[0].startswith("scope,id")
    finally:
        assert sink.stop() == 0


@pytest.mark.parametrize(
    ("kw", "why"),
    [({"account": "x' OR 1=1 --"}, "--account"), ({"since": "5 DAY"}, "--since"),
     ({"scope": "both"}, "--scope"), ({"limit": 0}, "--limit")],
)  # fmt: skip
def test_report_refuses_what_it_cannot_quote(kw: dict[str, Any], why: str) -> None:
    with pytest.raises(ReportError, match=why):
        report_sql(**kw)
