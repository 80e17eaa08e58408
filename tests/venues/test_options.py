"""Option coverage (issue 18): the ``option_greeks`` message from Deribit option tickers,
OKX ``opt-summary`` and Bybit v5 option tickers (frames shaped as each venue's documentation
writes them), the Bybit ``option`` category's subscriptions, and the option queries of
docs/sql.md run through the real normalizer and sink
against Deribit ticker frames, their results computed here independently."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from collectors import bybit as bybit_collector
from collectors import okx as okx_collector
from collectors.config import venue_settings
from normalizer.core import Dead, Normalizer
from normalizer.worker import main as normalizer_main
from sinks.clickhouse.worker import main as sink_main
from streams import schemas, sql, subjects
from streams import settings as settings_mod
from streams.bus.server import NatsServer
from tests.conftest import make_settings
from tests.pipeline.test_e2e import wait_rows
from tests.workers import ROOT, inprocess_all

HDR = {subjects.H_RECV_NS: "1700000000000000000"}
MS = 1_000_000


def one(outs: object, kind: str) -> dict:
    assert not isinstance(outs, Dead), outs
    got = [orjson.loads(o.data) for o in outs if orjson.loads(o.data)["type"] == kind]  # type: ignore[attr-defined]
    assert len(got) == 1, outs
    schemas.decode(orjson.dumps(got[0]))
    return got[0]


def deribit_ticker(native: str, ts_ms: int, iv_pct: float, underlying: float) -> bytes:
    """A Deribit option ``ticker`` notification (fields as Deribit documents them)."""
    return orjson.dumps({"jsonrpc": "2.0", "method": "subscription", "params": {
        "channel": f"ticker.{native}.100ms", "data": {
            "timestamp": ts_ms, "stats": {"volume": 12.5, "high": 0.06, "low": 0.04},
            "state": "open", "instrument_name": native, "index_price": underlying - 40.0,
            "underlying_price": underlying, "underlying_index": "BTC-15DEC23",
            "mark_price": 0.0512, "mark_iv": iv_pct, "bid_iv": iv_pct - 1.0,
            "ask_iv": iv_pct + 1.0, "best_bid_price": 0.05, "best_ask_price": 0.0525,
            "best_bid_amount": 3.0, "best_ask_amount": 4.0, "last_price": 0.051,
            "open_interest": 120.5, "interest_rate": 0.0,
            "greeks": {"delta": 0.51234, "gamma": 0.00008, "vega": 41.2, "theta": -55.1,
                       "rho": 12.3}}}})  # fmt: skip


def test_deribit_option_ticker_gives_greeks_in_fractions() -> None:
    n = Normalizer()
    frame = deribit_ticker("BTC-15DEC23-35000-C", 1_700_000_000_123, 52.37, 35100.0)
    outs = n.normalize("raw.deribit.ticker.BTC-15DEC23-35000-C", frame, HDR, 1)
    g = one(outs, "option_greeks")
    assert g["symbol"] == "BTC-USD-20231215-35000-C"
    assert (g["strike"], g["option_type"], g["expiry_ts"]) == (
        35000.0,
        "call",
        int(datetime(2023, 12, 15, 8, tzinfo=UTC).timestamp()) * 10**9,
    )
    assert (g["mark_iv"], g["bid_iv"], g["ask_iv"]) == (0.5237, 0.5137, 0.5337)
    assert (g["delta"], g["gamma"], g["vega"], g["theta"]) == (0.51234, 0.00008, 41.2, -55.1)
    assert (g["underlying_price"], g["index_price"], g["open_interest"]) == (
        35100.0, 35060.0, 120.5)  # fmt: skip
    assert (g["mark_price"], g["bid_price"], g["ask_price"]) == (0.0512, 0.05, 0.0525)
    # a perpetual's ticker has no greeks: no option_greeks message
    perp = orjson.loads(frame)
    d = perp["params"]["data"]
    d["instrument_name"], perp["params"]["channel"] = "BTC-PERPETUAL", "ticker.BTC-PERPETUAL.100ms"
    for k in ("greeks", "mark_iv", "bid_iv", "ask_iv", "underlying_price"):
        del d[k]
    outs = n.normalize("raw.deribit.ticker.BTC-PERPETUAL", orjson.dumps(perp), HDR, 2)
    assert "option_greeks" not in {orjson.loads(o.data)["type"] for o in outs}  # type: ignore[union-attr]


# OKX's documented opt-summary push (https://www.okx.com/docs-v5/en/#public-data-websocket-option-summary-channel)
OKX_OPT = orjson.dumps({"arg": {"channel": "opt-summary", "instFamily": "BTC-USD"}, "data": [{
    "instType": "OPTION", "instId": "BTC-USD-241013-70000-P", "uly": "BTC-USD",
    "delta": "-1.1180902625", "gamma": "2.2361957091", "vega": "0.0000000001",
    "theta": "0.0000032334", "lever": "8.465747567", "markVol": "0.3675503331",
    "bidVol": "0", "askVol": "1.1669998535", "realVol": "", "volLv": "0.2924061237",
    "deltaBS": "-0.9999672034", "gammaBS": "0.0000000002", "thetaBS": "28.2649858387",
    "vegaBS": "0.0000114332", "fwdPx": "62604.6993093463", "ts": "1728703155650",
}]})  # fmt: skip


def test_okx_opt_summary_routes_by_family_and_publishes_black_scholes_greeks() -> None:
    assert okx_collector.route(OKX_OPT) == ("opt-summary", "BTC-USD")
    cfg = venue_settings(settings_mod.from_mapping({"collector": {"okx": {
        "symbols": ["BTC-USD-241013-70000-P", "BTC-USD-241013-60000-C", "BTC-USDT"],
        "channels": ["opt-summary", "trades"]}}}), "okx", okx_collector.OkxSettings)  # fmt: skip
    args = okx_collector.subscription_args(cfg)
    assert [a for a in args if a["channel"] == "opt-summary"] == [
        {"channel": "opt-summary", "instFamily": "BTC-USD"}
    ]  # one per family, options only
    n = Normalizer()
    g = one(n.normalize("raw.okx.opt-summary.BTC-USD", OKX_OPT, HDR, 1), "option_greeks")
    assert (g["symbol"], g["strike"], g["option_type"]) == ("BTC-USD-20241013-70000-P", 70000.0,
                                                            "put")  # fmt: skip
    assert g["ts_event"] == 1728703155650 * MS
    # bidVol "0": no bid, so no bid IV (as Deribit's and Bybit's zeros)
    assert (g["mark_iv"], g["bid_iv"], g["ask_iv"]) == (0.3675503331, None, 1.1669998535)
    assert (g["delta"], g["gamma"], g["theta"], g["vega"]) == (
        -0.9999672034,
        0.0000000002,
        28.2649858387,
        0.0000114332,
    )  # the BS set, not delta..
    assert g["underlying_price"] == 62604.6993093463 and g["open_interest"] is None
    # a row of another family on this subject is refused, not renamed
    bad = OKX_OPT.replace(b'"BTC-USD-241013', b'"ETH-USD-241013')
    dead = n.normalize("raw.okx.opt-summary.BTC-USD", bad, HDR, 2)
    assert isinstance(dead, Dead) and "in an opt-summary of 'BTC-USD'" in dead.reason


# Bybit's documented option ticker (https://bybit-exchange.github.io/docs/v5/websocket/public/ticker)
BYBIT_OPT = orjson.dumps({"id": "tickers.BTC-6JAN23-17500-C-2480334983-1672917511074",
    "topic": "tickers.BTC-6JAN23-17500-C", "ts": 1672917511074, "data": {
        "symbol": "BTC-6JAN23-17500-C", "bidPrice": "0", "bidSize": "0", "bidIv": "0",
        "askPrice": "10", "askSize": "5.1", "askIv": "0.514", "lastPrice": "10",
        "highPrice24h": "25", "lowPrice24h": "5", "markPrice": "7.86976724",
        "indexPrice": "16823.73", "markPriceIv": "0.4896", "underlyingPrice": "16815.1",
        "openInterest": "49.85", "turnover24h": "446802.8473", "volume24h": "26.55",
        "totalVolume": "86", "totalTurnover": "1437431", "delta": "0.047831",
        "gamma": "0.00021453", "vega": "0.81351067", "theta": "-19.9115368",
        "predictedDeliveryPrice": "0", "change24h": "-0.33333334"},
    "type": "snapshot"})  # fmt: skip


def test_bybit_option_category() -> None:
    cfg = venue_settings(settings_mod.from_mapping({"collector": {"bybit": {
        "symbols": ["option:BTC-27DEC25-100000-C", "option:ETH-27DEC25-4000-P-USDT", "BTCUSDT"],
        "channels": ["publicTrade", "orderbook.50", "orderbook.1", "tickers", "kline.1",
                     "allLiquidation"]}}}), "bybit", bybit_collector.BybitSettings)  # fmt: skip
    assert bybit_collector.categories(cfg) == ["linear", "option"]
    tps, natives = bybit_collector.topics(cfg, "option")
    assert natives == ["BTC-27DEC25-100000-C", "ETH-27DEC25-4000-P-USDT"]
    assert tps == [  # trades per base coin, depth 100 for 50, no orderbook.1/kline/liquidations
        "publicTrade.BTC", "publicTrade.ETH", "orderbook.100.BTC-27DEC25-100000-C",
        "orderbook.100.ETH-27DEC25-4000-P-USDT", "tickers.BTC-27DEC25-100000-C",
        "tickers.ETH-27DEC25-4000-P-USDT"]  # fmt: skip
    assert bybit_collector.category_url(cfg.ws_url, "option").endswith("/v5/public/option")
    assert bybit_collector.route(BYBIT_OPT) == ("tickers", "BTC-6JAN23-17500-C")

    n = Normalizer()
    outs = n.normalize("raw.bybit_option.tickers.BTC-6JAN23-17500-C", BYBIT_OPT, HDR, 1)
    g = one(outs, "option_greeks")
    assert g["symbol"] == "BTC-USDC-20230106-17500-C" and g["option_type"] == "call"
    assert (g["mark_iv"], g["bid_iv"], g["ask_iv"]) == (0.4896, None, 0.514)  # no bid: None
    assert (g["delta"], g["theta"], g["underlying_price"], g["open_interest"]) == (
        0.047831, -19.9115368, 16815.1, 49.85)  # fmt: skip
    t = one(outs, "ticker")
    assert (t["bid"], t["ask"], t["last"], t["volume_24h"]) == (None, 10.0, 10.0, 26.55)
    assert one(outs, "open_interest")["open_interest"] == 49.85
    # option trades arrive per base coin: rows of BTC options on publicTrade.BTC
    trade = orjson.dumps({"topic": "publicTrade.BTC", "type": "snapshot", "ts": 1672917511074,
        "data": [{"T": 1672917511074, "s": "BTC-6JAN23-17500-C", "S": "Buy", "v": "0.5",
                  "p": "10", "i": "a1b2", "BT": False}]})  # fmt: skip
    assert bybit_collector.route(trade) == ("publicTrade", "BTC")
    tr = one(n.normalize("raw.bybit_option.publicTrade.BTC", trade, HDR, 2), "trade")
    assert (tr["symbol"], tr["size"], tr["side"]) == ("BTC-USDC-20230106-17500-C", 0.5, "buy")
    eth = trade.replace(b'"s":"BTC-6JAN23', b'"s":"ETH-6JAN23')
    dead = n.normalize("raw.bybit_option.publicTrade.BTC", eth, HDR, 3)
    assert isinstance(dead, Dead) and "published for 'BTC'" in dead.reason


# -- the documented option queries, end to end ---------------------------------------------
T = datetime(2023, 11, 14, 22, 15, tzinfo=UTC).timestamp()  # the queries' "at a time"
EXPIRIES = {"15DEC23": ("2023-12-15", 35100.0), "29DEC23": ("2023-12-29", 36300.0)}
STRIKES = (32500, 35000, 37500)


def iv_pct(exp: str, strike: int, kind: str, k: int) -> float:
    """Snapshot k's mark IV in percent: a smile in the strike, higher for the later expiry."""
    return round(50 + ((strike - 35000) / 1000) ** 2 + (5 if exp == "29DEC23" else 0)
                 + (1 if kind == "P" else 0) + 2 * k, 2)  # fmt: skip


def doc_queries() -> dict[str, str]:
    text = (ROOT / "docs" / "sql.md").read_text()
    found = re.findall(r"<!-- query: (option_\w+) -->\s*```sql\n(.*?)```", text, re.S)
    return dict(found)


async def test_option_queries_through_normalizer_and_sink(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    queries = doc_queries()
    assert set(queries) == {"option_smile", "option_term_structure"}
    settings = make_settings(tmp_path, nats_server.url, sink={"flush_interval_s": 0.1})
    frames = 0
    async with inprocess_all(settings, sink=sink_main, normalizer=normalizer_main):
        # snapshots k=0 (T-60 s), k=1 (T-10 s) count; k=2 (T+60 s) is after the time asked
        for k, dt in enumerate((-60, -10, 60)):
            for exp, (_, under) in EXPIRIES.items():
                for strike in STRIKES:
                    for kind in "CP":
                        native = f"BTC-{exp}-{strike}-{kind}"
                        data = deribit_ticker(native, int((T + dt) * 1000), iv_pct(exp, strike,
                                              kind, k), under + 10 * k)  # fmt: skip
                        await js.publish(
                            f"raw.deribit.ticker.{native}",
                            data,
                            headers={subjects.H_RECV_NS: str(int(T * 1e9))},
                        )
                        frames += 1
        assert await wait_rows(nc, "SELECT count() FROM option_greeks", frames, 60) == frames

        rows = (await sql.query(nc, queries["option_smile"])).rows
        want = [[float(s), kind, round(iv_pct("15DEC23", s, k[0].upper(), 1) / 100, 10), 0.51234]
                for s in STRIKES for k, kind in (("c", "call"), ("p", "put"))]  # fmt: skip
        assert [list(r) for r in rows] == want

        rows = (await sql.query(nc, queries["option_term_structure"])).rows
        want = []
        for exp, (day, under) in EXPIRIES.items():
            expiry = datetime.fromisoformat(day).replace(hour=8, tzinfo=UTC).timestamp()
            atm = min(STRIKES, key=lambda s: abs(s - (under + 10)))  # k=1's underlying
            want.append([expiry, round((expiry - T) / 86400, 2), float(atm),
                         round(iv_pct(exp, atm, "C", 1) / 100, 10)])  # fmt: skip
        got = [[datetime.fromisoformat(str(r[0]).replace("Z", "+00:00")).timestamp(), *r[1:]]
               for r in rows]  # fmt: skip
        assert got == want


def test_option_terms_refuse_non_options() -> None:
    from streams.symbols import option_terms

    with pytest.raises(ValueError):
        option_terms("BTC-USD-PERP")
