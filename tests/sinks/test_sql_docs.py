"""Every query in docs/sql.md runs against generated data through the live sink, and its
result is checked against the same numbers computed here in Python."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from streams import schemas, sql, subjects
from streams.bus.server import NatsServer
from tests.conftest import make_settings
from tests.pipeline.test_e2e import wait_rows
from tests.workers import ROOT, Proc

T0 = 1_700_000_040  # a minute boundary, seconds
NS = 10**9
DOC = ROOT / "docs" / "sql.md"


def doc_queries() -> dict[str, str]:
    text = DOC.read_text()
    # option_*, exec_* and pos_* queries run against their own data in
    # tests/venues/test_options.py, tests/executor/test_tca_report.py and
    # tests/venues/test_positioning_sql.py
    found = re.findall(r"<!-- query: (\w+) -->\s*```sql\n(.*?)```", text, re.S)
    return {k: q for k, q in found if not k.startswith(("option_", "exec_", "pos_"))}


def base(venue: str, symbol: str, ts: float) -> dict:
    return {"venue": venue, "symbol": symbol, "ts_event": int(ts * NS), "ts_recv": int(ts * NS)}


def dataset() -> list[schemas.Base]:
    out: list[schemas.Base] = []
    for i in range(120):
        for venue, sym, px in (
            ("binance", "BTC-USDT", 100 + i % 7),
            ("okx", "BTC-USDT", 100.5 + i % 7),
            ("binance", "BTC-USDT-PERP", 200 + i % 5),
        ):
            size = 1 + i % 3 if sym == "BTC-USDT" else 1
            out.append(schemas.Trade(**base(venue, sym, T0 + i), id=str(i), price=px, size=size,
                                     side="buy"))  # fmt: skip
    for i in range(10):
        bid = 100 + i / 10
        out.append(schemas.BBO(**base("binance", "BTC-USDT", T0 + i), bid_price=bid, bid_size=1,
                               ask_price=bid + 0.2, ask_size=1, seq=i))  # fmt: skip
    for k in range(3):
        bids = [(100.0 - j, float(j + 1 + k)) for j in range(6)]
        asks = [(101.0 + j, float(2 * (j + 1))) for j in range(6)]
        out.append(schemas.Depth(**base("binance", "BTC-USDT", T0 + k), bids=bids, asks=asks,
                                 seq=k, levels=6))  # fmt: skip
    for k, rate in enumerate([0.0001, -0.0002, 0.0003]):
        out.append(schemas.Funding(**base("binance", "BTC-USDT-PERP", T0 + k * 8 * 3600),
                                   rate=rate))  # fmt: skip
    for ts, oi in ((T0 + 30, 1000.0), (T0 + 90, 1100.0)):
        out.append(schemas.OpenInterest(**base("binance", "BTC-USDT-PERP", ts), open_interest=oi))
    for j, (side, px, size) in enumerate([("sell", 9910, 0.5), ("sell", 9950, 1.0),
                                          ("buy", 10020, 0.2), ("sell", 9905, 0.3),
                                          ("buy", 10090, 0.1)]):  # fmt: skip
        out.append(schemas.Liquidation(**base("binance", "BTC-USDT-PERP", T0 + j), side=side,
                                       price=px, size=size, id=str(j)))  # fmt: skip
    return out


def epoch(v: object) -> float:
    if isinstance(v, str):
        return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
    raise TypeError(v)


def trades(venue: str, sym: str, lo: float = 0, hi: float = 1e18) -> list[tuple[float, float]]:
    return [(100 + i % 7 if venue == "binance" else 100.5 + i % 7, 1 + i % 3)
            for i in range(120) if lo <= T0 + i < hi and sym == "BTC-USDT"]  # fmt: skip


def ohlcv(tr: list[tuple[float, float]]) -> tuple:
    prices = [p for p, _ in tr]
    return prices[0], max(prices), min(prices), prices[-1], sum(s for _, s in tr)


def vw(tr: list[tuple[float, float]]) -> float:
    return sum(p * s for p, s in tr) / sum(s for _, s in tr)


async def publish(js: JetStreamContext, msgs: list[schemas.Base]) -> None:
    futs = []
    for m in msgs:
        tag = type(m).__struct_config__.tag  # type: ignore[attr-defined]
        futs.append(
            await js.publish_async(subjects.market(tag, m.venue, m.symbol), schemas.encode(m))
        )
    await asyncio.gather(*futs)


def approx(rows: list[list], expected: list[list]) -> None:
    assert len(rows) == len(expected), (rows, expected)
    for got, want in zip(rows, expected, strict=True):
        assert got == pytest.approx(want, rel=1e-6, abs=1e-6), (got, want)


async def test_every_documented_query(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    queries = doc_queries()
    assert set(queries) == {"ohlcv", "ohlcv_15s", "vwap", "spread", "imbalance", "funding",
                            "oi_vs_price", "liquidations", "divergence"}  # fmt: skip
    settings = make_settings(tmp_path, nats_server.url, sink={"flush_interval_s": 0.1})
    sink = Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log").start()
    try:
        data = dataset()
        await publish(js, data)
        assert await wait_rows(nc, "SELECT count() FROM liquidations", 5, 60) == 5
        assert await wait_rows(nc, "SELECT count() FROM trades", 360, 30) == 360

        async def run(name: str) -> list[list]:
            return (await sql.query(nc, queries[name])).rows

        bn = trades("binance", "BTC-USDT")
        rows = await run("ohlcv")
        approx([[epoch(r[0]), *r[1:]] for r in rows], [
            [T0 + 60 * m, *ohlcv(trades("binance", "BTC-USDT", T0 + 60 * m, T0 + 60 * m + 60)),
             60, round(vw(trades("binance", "BTC-USDT", T0 + 60 * m, T0 + 60 * m + 60)), 6)]
            for m in range(2)])  # fmt: skip

        rows = await run("ohlcv_15s")
        approx([[epoch(r[0]), *r[1:]] for r in rows], [
            [T0 + 15 * q, *ohlcv(trades("binance", "BTC-USDT", T0 + 15 * q, T0 + 15 * q + 15))]
            for q in range(8)])  # fmt: skip

        perp = [(200 + i % 5, 1) for i in range(120)]
        approx([r[2:] for r in await run("vwap")], [
            [round(vw(bn), 6), sum(s for _, s in bn)], [round(vw(perp), 6), 120],
            [round(vw(trades("okx", "BTC-USDT")), 6), sum(s for _, s in bn)]])  # fmt: skip
        assert [r[:2] for r in await run("vwap")] == [
            ["binance", "BTC-USDT"], ["binance", "BTC-USDT-PERP"], ["okx", "BTC-USDT"]]  # fmt: skip

        bbo = [(100 + i / 10, 100 + i / 10 + 0.2) for i in range(10)]
        spread = sum((a - b) / ((a + b) / 2) for b, a in bbo) / 10 * 1e4
        approx(
            [r[1:] for r in await run("spread")],
            [[round(spread, 4), (bbo[-1][0] + bbo[-1][1]) / 2]],
        )

        want = []
        for k in range(3):
            b = sum(j + 1 + k for j in range(5))
            a = sum(2 * (j + 1) for j in range(5))
            want.append([b, a, round(b / (a + b), 6)])
        approx([r[1:] for r in await run("imbalance")], want)

        rates = [0.0001, -0.0002, 0.0003]
        approx([r[1:] for r in await run("funding")],
               [[r, round(r * 3 * 365 * 100, 4), round(sum(rates[: k + 1]), 8)]
                for k, r in enumerate(rates)])  # fmt: skip

        rows = await run("oi_vs_price")
        approx([[epoch(r[0]), *r[1:]] for r in rows],
               [[T0, 1000.0, 200 + 59 % 5], [T0 + 60, 1100.0, 200 + 119 % 5]])  # fmt: skip

        rows = await run("liquidations")
        assert [r[:3] for r in rows] == [["sell", 9900, 3], ["buy", 10000, 2]]
        approx([[r[3]] for r in rows], [[1.8], [0.3]])

        rows = await run("divergence")
        want = []
        for m in range(2):
            b = vw(trades("binance", "BTC-USDT", T0 + 60 * m, T0 + 60 * m + 60))
            o = vw(trades("okx", "BTC-USDT", T0 + 60 * m, T0 + 60 * m + 60))
            want.append([T0 + 60 * m, round((o - b) / b * 1e4, 4)])
        approx([[epoch(r[0]), r[1]] for r in rows], want)
        assert all(r[2:] == ["okx", "binance"] for r in rows)
    finally:
        assert sink.stop() == 0


def test_result_conversions() -> None:
    r = sql.SqlResult(columns=["a", "b"], types=["Int64", "String"], rows=[[1, "x"], [2, "y"]])
    assert sql.to_arrow(r).to_pydict() == {"a": [1, 2], "b": ["x", "y"]}
    assert sql.to_pandas(r)["b"].tolist() == ["x", "y"]
    assert sql.format_json(r) == '[{"a":1,"b":"x"},{"a":2,"b":"y"}]'
