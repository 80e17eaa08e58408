"""docs/sql.md's positioning analyses (``pos_*`` queries) against data put through the real
ClickHouse sink, each result checked against the same numbers computed here in Python."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from sinks.clickhouse.worker import main as sink_main
from streams import schemas, sql, subjects
from streams.bus.server import NatsServer
from tests.conftest import make_settings
from tests.pipeline.test_e2e import wait_rows
from tests.workers import ROOT, inprocess_all

T0 = 1_700_000_100  # seconds, a 5-minute boundary (15 minutes past an hour)
H0 = 1_699_999_200  # the hour it lies in
NS = 10**9
PERIODS = 12


def doc_queries() -> dict[str, str]:
    text = (ROOT / "docs" / "sql.md").read_text()
    return dict(re.findall(r"<!-- query: (pos_\w+) -->\s*```sql\n(.*?)```", text, re.S))


def at(venue: str, symbol: str, ts: float) -> dict:
    return {"venue": venue, "symbol": symbol, "ts_event": int(ts * NS), "ts_recv": int(ts * NS)}


def perp_price(k: int, j: int) -> float:
    """Binance perp trade j (0..4, a minute apart) of 5-minute period k."""
    return 65000 + 37 * math.sin(k * 1.3) + 11 * j * (-1) ** k + k


def deribit_price(m: int) -> float:
    """The last Deribit perp trade of minute m (from H0)."""
    return round(64000 + 120 * math.sin(m / 7) + 15 * math.cos(m * 1.7), 1)


def dataset() -> list[schemas.Base]:
    out: list[schemas.Base] = []
    sym = "BTC-USDT-PERP"
    for k in range(PERIODS):
        t = T0 + 300 * k
        for j in range(5):
            out.append(schemas.Trade(**at("binance", sym, t + 60 * j + 1), id=f"{k}-{j}",
                                     price=perp_price(k, j), size=0.5, side="buy"))  # fmt: skip
        ratio = 1 + k / 10
        long, short = round(ratio / (1 + ratio), 4), round(1 / (1 + ratio), 4)
        out.append(schemas.LongShortRatio(**at("binance", sym, t), kind="global_accounts",
                                          period="5m", ratio=ratio, long_share=long,
                                          short_share=short))  # fmt: skip
        # another kind at the same times: the query must not mix it in
        out.append(schemas.LongShortRatio(**at("binance", sym, t), kind="top_positions",
                                          period="5m", ratio=9.0))  # fmt: skip
        out.append(schemas.TakerVolume(**at("binance", sym, t), period="5m",
                                       buy_volume=100 + 13 * k,
                                       sell_volume=180 - 9 * k))  # fmt: skip
    # Deribit: 3 hours of minute trades (two a minute: the later is the close), DVOL candles
    for m in range(180):
        t = H0 + 60 * m
        out.append(schemas.Trade(**at("deribit", "BTC-USD-PERP", t + 5), id=f"d{m}a",
                                 price=deribit_price(m) - 3, size=1, side="sell"))  # fmt: skip
        out.append(schemas.Trade(**at("deribit", "BTC-USD-PERP", t + 50), id=f"d{m}b",
                                 price=deribit_price(m), size=1, side="buy"))  # fmt: skip
    for h in range(3):
        out.append(schemas.VolatilityIndex(**at("deribit", "BTC-USD", H0 + 3600 * h),
                                           index_name="dvol", interval="1h", value=50.5 + h,
                                           open=50.0, high=53.0, low=49.0))  # fmt: skip
    out.append(
        schemas.VolatilityIndex(**at("deribit", "BTC-USD", H0 + 30), index_name="dvol", value=99.0)
    )  # fmt: skip  (a live value: not a candle)
    return out


async def test_positioning_queries(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    queries = doc_queries()
    assert set(queries) == {"pos_long_short_vs_price", "pos_taker_imbalance_vs_returns",
                            "pos_taker_imbalance_corr", "pos_dvol_vs_realized"}  # fmt: skip
    settings = make_settings(tmp_path, nats_server.url, sink={"flush_interval_s": 0.1})
    data = dataset()
    async with inprocess_all(settings, sink=sink_main):
        for i, msg in enumerate(data):
            subject = subjects.market(msg.__struct_config__.tag, msg.venue, msg.symbol)  # type: ignore[arg-type]
            await js.publish(subject, schemas.encode(msg), headers={subjects.H_MSG_ID: str(i)})
        trades = sum(isinstance(m, schemas.Trade) for m in data)
        assert await wait_rows(nc, "SELECT count() FROM trades", trades, 60) == trades
        assert await wait_rows(nc, "SELECT count() FROM volatility_index", 4, 30) == 4
        assert await wait_rows(nc, "SELECT count() FROM taker_volume", PERIODS, 30) == PERIODS

        # positioning vs the next five minutes' return
        rows = (await sql.query(nc, queries["pos_long_short_vs_price"])).rows
        want = []
        for k in range(PERIODS):
            ratio = 1 + k / 10
            o, c = perp_price(k, 0), perp_price(k, 4)
            want.append([ratio, round(ratio / (1 + ratio), 4), o, c, (c - o) / o * 10000])
        assert len(rows) == PERIODS
        for r, w in zip(rows, want, strict=True):
            assert r[1:5] == w[:4] and r[5] == pytest.approx(w[4], abs=1e-4)

        # taker imbalance vs the same period's return, and their correlation
        rows = (await sql.query(nc, queries["pos_taker_imbalance_vs_returns"])).rows
        imb = [((100 + 13 * k) - (180 - 9 * k)) / (280 + 4 * k) for k in range(PERIODS)]
        ret = [(perp_price(k, 4) - perp_price(k, 0)) / perp_price(k, 0) for k in range(PERIODS)]
        assert [r[1] for r in rows] == pytest.approx(imb, abs=1e-6)
        assert [r[2] for r in rows] == pytest.approx([x * 10000 for x in ret], abs=1e-4)
        [(n, corr)] = (await sql.query(nc, queries["pos_taker_imbalance_corr"])).rows
        assert n == PERIODS and corr == pytest.approx(statistics.correlation(imb, ret), abs=1e-6)

        # DVOL vs realised: minute closes, log returns within each hour (the first return
        # of an hour spans from the previous hour's last minute; the very first has none)
        rows = (await sql.query(nc, queries["pos_dvol_vs_realized"])).rows
        assert len(rows) == 3
        for h, r in enumerate(rows):
            minutes = range(max(1, 60 * h), 60 * h + 60)
            rets = [math.log(deribit_price(m) / deribit_price(m - 1)) for m in minutes]
            realized = statistics.pstdev(rets) * math.sqrt(525600) * 100
            assert r[1] == 50.5 + h and r[4] == len(rets)
            assert r[2] == pytest.approx(realized, abs=1e-4)
            assert r[3] == pytest.approx(50.5 + h - realized, abs=1e-4)
