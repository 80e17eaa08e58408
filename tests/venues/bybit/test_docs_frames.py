"""Docs-shaped frames for Bybit v5, field by field (how: tests/venues/docs_frames.py)."""

from __future__ import annotations

from typing import Any

import orjson

from collectors.bybit import route as bybit_route
from normalizer.core import Normalizer
from streams import schemas, subjects
from tests.venues.docs_frames import MS, RECV_NS, Msg, run


# == Bybit v5 =============================================================================
# bybit-exchange.github.io/docs/v5: "Market / Get Instruments Info" and the public
# WebSocket topics; the category is part of the raw venue token (bybit_spot/_linear/_inverse).
def bybit(n: Normalizer, category: str, body: dict, seq: int = 1) -> list[Msg]:
    frame = orjson.dumps(body)
    channel, native = ("instruments", "ALL") if "retCode" in body else bybit_route(frame)
    return run(n, subjects.raw(f"bybit_{category}", channel, native), frame, seq)


def bybit_info(category: str, rows: list[dict]) -> dict:
    return {"retCode": 0, "retMsg": "OK",
            "result": {"category": category, "list": rows, "nextPageCursor": ""},
            "retExtInfo": {}, "time": 1711000000000}  # fmt: skip


def bybit_derivative(
    symbol: str, ctype: str, base: str, quote: str, settle: str, delivery: str, tick: str, step: str
) -> dict:
    """An instruments-info row of the linear/inverse category."""
    return {"symbol": symbol, "contractType": ctype, "status": "Trading", "baseCoin": base,
            "quoteCoin": quote, "launchTime": "1585526400000", "deliveryTime": delivery,
            "deliveryFeeRate": "" if delivery == "0" else "0.0005", "priceScale": "2",
            "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00",
                               "leverageStep": "0.01"},
            "priceFilter": {"minPrice": tick, "maxPrice": "1999999.00", "tickSize": tick},
            "lotSizeFilter": {"maxOrderQty": "1000000", "minOrderQty": step, "qtyStep": step,
                              "postOnlyMaxOrderQty": "1000000", "maxMktOrderQty": "100000",
                              "minNotionalValue": "5"},
            "unifiedMarginTrade": True, "fundingInterval": 480 if delivery == "0" else 0,
            "settleCoin": settle, "copyTrading": "both", "upperFundingRate": "0.00375",
            "lowerFundingRate": "-0.00375", "isPreListing": False, "preListingInfo": None,
            "riskParameters": {"priceLimitRatioX": "0.05", "priceLimitRatioY": "0.1"},
            "displayName": ""}  # fmt: skip


BYBIT_SPOT = bybit_info("spot", [{
    "symbol": "BTCUSDT", "baseCoin": "BTC", "quoteCoin": "USDT", "innovation": "0",
    "status": "Trading", "marginTrading": "utaOnly", "stTag": "0",
    "lotSizeFilter": {"basePrecision": "0.000001", "quotePrecision": "0.00000001",
                      "minOrderQty": "0.000048", "maxOrderQty": "71.73956243",
                      "minOrderAmt": "1", "maxOrderAmt": "2000000"},
    "priceFilter": {"tickSize": "0.01"},
    "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"}}])  # fmt: skip
BYBIT_LINEAR = bybit_info("linear", [
    bybit_derivative("BTCUSDT", "LinearPerpetual", "BTC", "USDT", "USDT", "0", "0.10", "0.001"),
    bybit_derivative("BTCUSDT-26DEC25", "LinearFutures", "BTC", "USDT", "USDT", "1766736000000",
                     "0.50", "0.001"),
])  # fmt: skip
BYBIT_INVERSE = bybit_info("inverse", [
    bybit_derivative("BTCUSD", "InversePerpetual", "BTC", "USD", "BTC", "0", "0.50", "1"),
    bybit_derivative("BTCUSDZ25", "InverseFutures", "BTC", "USD", "BTC", "1766736000000",
                     "0.50", "1"),
])  # fmt: skip


def test_bybit_instruments_spot_linear_inverse() -> None:
    n = Normalizer()
    common: dict[str, Any] = dict(venue="bybit", ts_event=1711000000000 * MS, ts_recv=RECV_NS,
                                  base="BTC", contract_size=1.0, strike=None, option_type=None,
                                  active=True)  # fmt: skip
    assert bybit(n, "spot", BYBIT_SPOT, seq=30) == [
        ("market.instrument.bybit.BTC-USDT", "bybit:instrument:BTC-USDT:30",
         schemas.Instrument(symbol="BTC-USDT", native_symbol="BTCUSDT", kind="spot",
                            quote="USDT", settle=None, tick_size=0.01, lot_size=0.000001,
                            expiry_ts=None, **common)),
    ]  # fmt: skip
    assert bybit(n, "linear", BYBIT_LINEAR, seq=31) == [
        ("market.instrument.bybit.BTC-USDT-PERP", "bybit:instrument:BTC-USDT-PERP:31",
         schemas.Instrument(symbol="BTC-USDT-PERP", native_symbol="BTCUSDT", kind="perpetual",
                            quote="USDT", settle="USDT", tick_size=0.1, lot_size=0.001,
                            expiry_ts=None, **common)),
        ("market.instrument.bybit.BTC-USDT-20251226", "bybit:instrument:BTC-USDT-20251226:31",
         schemas.Instrument(symbol="BTC-USDT-20251226", native_symbol="BTCUSDT-26DEC25",
                            kind="future", quote="USDT", settle="USDT", tick_size=0.5,
                            lot_size=0.001, expiry_ts=1766736000000 * MS, **common)),
    ]  # fmt: skip
    # inverse sizes are 1-USD contracts: lot 1 (USD), converted to BTC at the trade price
    assert bybit(n, "inverse", BYBIT_INVERSE, seq=32) == [
        ("market.instrument.bybit.BTC-USD-PERP", "bybit:instrument:BTC-USD-PERP:32",
         schemas.Instrument(symbol="BTC-USD-PERP", native_symbol="BTCUSD", kind="perpetual",
                            quote="USD", settle="BTC", tick_size=0.5, lot_size=1.0,
                            expiry_ts=None, **common)),
        ("market.instrument.bybit.BTC-USD-20251226", "bybit:instrument:BTC-USD-20251226:32",
         schemas.Instrument(symbol="BTC-USD-20251226", native_symbol="BTCUSDZ25",
                            kind="future", quote="USD", settle="BTC", tick_size=0.5,
                            lot_size=1.0, expiry_ts=1766736000000 * MS, **common)),
    ]  # fmt: skip


def bybit_ready() -> Normalizer:
    n = Normalizer()
    for category, body in (("spot", BYBIT_SPOT), ("linear", BYBIT_LINEAR),
                           ("inverse", BYBIT_INVERSE)):  # fmt: skip
        bybit(n, category, body)
    return n


def test_bybit_public_trade_spot_linear_inverse() -> None:
    n = bybit_ready()

    # "Trade": S is the taker side; v is base units on spot/linear, USD contracts on inverse
    def frame(sym: str, ts: int, tid: str, side: str, v: str, p: str) -> dict:
        return {"topic": f"publicTrade.{sym}", "type": "snapshot", "ts": ts + 3, "data": [
            {"T": ts, "s": sym, "S": side, "v": v, "p": p, "L": "PlusTick", "i": tid,
             "BT": False, "RPI": False, "seq": 1783284617}]}  # fmt: skip

    def want(symbol: str, tid: str, ts: int, p: float, size: float, side: str) -> Msg:
        return (f"market.trade.bybit.{symbol}", f"bybit:trade:{symbol}:{tid}",
                schemas.Trade(venue="bybit", symbol=symbol, ts_event=ts * MS, ts_recv=RECV_NS,
                              id=tid, price=p, size=size, side=side))  # type: ignore[arg-type]  # fmt: skip

    tid = "20f43950-d8dd-5b31-9112-a178eb6023af"
    lin = frame("BTCUSDT", 1672304486865, tid, "Buy", "0.001", "16578.50")
    assert bybit(n, "linear", lin) == [want("BTC-USDT-PERP", tid, 1672304486865, 16578.5, 0.001,
                                            "buy")]  # fmt: skip
    spot = frame("BTCUSDT", 1672304486866, "2290000000061666327", "Sell", "0.25", "16578.00")
    assert bybit(n, "spot", spot) == [want("BTC-USDT", "2290000000061666327", 1672304486866,
                                           16578.0, 0.25, "sell")]  # fmt: skip
    # 1000 USD contracts at 50000 USD/BTC
    inv = frame("BTCUSD", 1672304486867, "8c3f2f5e-0b52-5a32-9e04-f1b4f2e6c0a1", "Sell", "1000",
                "50000.00")  # fmt: skip
    assert bybit(n, "inverse", inv) == [want("BTC-USD-PERP", inv["data"][0]["i"], 1672304486867,
                                             50000.0, 0.02, "sell")]  # fmt: skip


def test_bybit_orderbook_snapshot_and_delta() -> None:
    n = bybit_ready()
    # "Orderbook": orderbook.{depth}.{symbol}; u is the update id, seq the cross sequence
    snap = {"topic": "orderbook.50.BTCUSDT", "type": "snapshot", "ts": 1672304484978, "data": {
        "s": "BTCUSDT", "b": [["16493.50", "0.006"], ["16493.00", "0.100"]],
        "a": [["16611.00", "0.029"], ["16612.00", "0.213"]], "u": 18521288,
        "seq": 7961638724}, "cts": 1672304484976}  # fmt: skip
    delta = {"topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": 1672304485078, "data": {
        "s": "BTCUSDT", "b": [["16493.50", "0"]], "a": [["16611.00", "0.050"]],
        "u": 18521289, "seq": 7961638799}, "cts": 1672304485076}  # fmt: skip
    assert bybit(n, "linear", snap) + bybit(n, "linear", delta) == [
        ("market.book.bybit.BTC-USDT-PERP", "bybit:book:BTC-USDT-PERP:snap18521288-1672304484978",
         schemas.Book(venue="bybit", symbol="BTC-USDT-PERP", ts_event=1672304484978 * MS,
                      ts_recv=RECV_NS, snapshot=True, bids=[(16493.5, 0.006), (16493.0, 0.1)],
                      asks=[(16611.0, 0.029), (16612.0, 0.213)], seq=18521288, prev_seq=None,
                      first_seq=18521288, checksum=None)),
        ("market.book.bybit.BTC-USDT-PERP", "bybit:book:BTC-USDT-PERP:18521289",
         schemas.Book(venue="bybit", symbol="BTC-USDT-PERP", ts_event=1672304485078 * MS,
                      ts_recv=RECV_NS, snapshot=False, bids=[(16493.5, 0.0)],
                      asks=[(16611.0, 0.05)], seq=18521289, first_seq=18521289)),
    ]  # fmt: skip
    # inverse levels are USD contracts: BTC = contracts / price
    inv = dict(snap, topic="orderbook.50.BTCUSD",
               data={"s": "BTCUSD", "b": [["50000.00", "2500"]], "a": [["50000.50", "100010"]],
                     "u": 77, "seq": 1})  # fmt: skip
    [(_, _, b)] = bybit(n, "inverse", inv)
    assert isinstance(b, schemas.Book)
    assert (b.symbol, b.bids, b.asks) == ("BTC-USD-PERP", [(50000.0, 0.05)],
                                          [(50000.5, 100010 / 50000.5)])  # fmt: skip


def test_bybit_orderbook_1_is_bbo() -> None:
    n = bybit_ready()
    # "Orderbook" depth 1: a snapshot, then a delta touching one side only
    snap = {"topic": "orderbook.1.BTCUSDT", "type": "snapshot", "ts": 1672304484978, "data": {
        "s": "BTCUSDT", "b": [["16493.50", "0.006"]], "a": [["16611.00", "0.029"]], "u": 100,
        "seq": 7961638724}, "cts": 1672304484976}  # fmt: skip
    delta = {"topic": "orderbook.1.BTCUSDT", "type": "delta", "ts": 1672304484988, "data": {
        "s": "BTCUSDT", "b": [["16494.00", "1.200"]], "a": [], "u": 101,
        "seq": 7961638730}, "cts": 1672304484986}  # fmt: skip

    def want(symbol: str, ts: int, u: int, bid: tuple, ask: tuple) -> Msg:
        return (f"market.bbo.bybit.{symbol}", f"bybit:bbo:{symbol}:{u}-{ts}",
                schemas.BBO(venue="bybit", symbol=symbol, ts_event=ts * MS, ts_recv=RECV_NS,
                            bid_price=bid[0], bid_size=bid[1], ask_price=ask[0],
                            ask_size=ask[1], seq=u))  # fmt: skip

    assert bybit(n, "linear", snap) + bybit(n, "linear", delta) == [
        want("BTC-USDT-PERP", 1672304484978, 100, (16493.5, 0.006), (16611.0, 0.029)),
        want("BTC-USDT-PERP", 1672304484988, 101, (16494.0, 1.2), (16611.0, 0.029)),
    ]
    # spot has the same topic
    assert bybit(n, "spot", snap) == [
        want("BTC-USDT", 1672304484978, 100, (16493.5, 0.006), (16611.0, 0.029)),
    ]


def test_bybit_linear_tickers_snapshot_then_deltas_merge() -> None:
    n = bybit_ready()
    # "Ticker" (linear): a snapshot, then deltas carrying only the fields that changed
    data = {"symbol": "BTCUSDT", "tickDirection": "PlusTick", "price24hPcnt": "0.017103",
            "lastPrice": "17216.00", "prevPrice24h": "16926.50", "highPrice24h": "17281.50",
            "lowPrice24h": "16915.00", "prevPrice1h": "17238.00", "markPrice": "17217.33",
            "indexPrice": "17227.36", "openInterest": "68744.761",
            "openInterestValue": "1183601235.91", "turnover24h": "1570383121.943499",
            "volume24h": "91705.276", "nextFundingTime": "1673280000000",
            "fundingRate": "-0.000212", "bid1Price": "17215.50", "bid1Size": "84.489",
            "ask1Price": "17216.00", "ask1Size": "83.020", "preOpenPrice": "", "preQty": "",
            "curPreListingPhase": ""}  # fmt: skip
    snap = {"topic": "tickers.BTCUSDT", "type": "snapshot", "data": data, "cs": 24987956059,
            "ts": 1673272861686}  # fmt: skip
    ts = 1673272861686 * MS
    sym = "BTC-USDT-PERP"
    base: dict[str, Any] = dict(venue="bybit", symbol=sym, ts_recv=RECV_NS)
    ticker = schemas.Ticker(
        ts_event=ts, last=17216.0, bid=17215.5, ask=17216.0, open_24h=16926.5,
        high_24h=17281.5, low_24h=16915.0, volume_24h=91705.276,
        quote_volume_24h=1570383121.943499, **base,
    )  # fmt: skip
    assert bybit(n, "linear", snap) == [
        (f"market.ticker.bybit.{sym}", f"bybit:ticker:{sym}:1673272861686", ticker),
        (f"market.mark.bybit.{sym}", f"bybit:mark:{sym}:1673272861686",
         schemas.Mark(ts_event=ts, mark_price=17217.33, index_price=17227.36, **base)),
        (f"market.funding.bybit.{sym}", f"bybit:funding:{sym}:1673272861686",
         schemas.Funding(ts_event=ts, rate=-0.000212, next_funding_ts=1673280000000 * MS,
                         predicted_rate=None, **base)),
        (f"market.open_interest.bybit.{sym}", f"bybit:open_interest:{sym}:1673272861686",
         schemas.OpenInterest(ts_event=ts, open_interest=68744.761,
                              open_interest_value=1183601235.91, **base)),
    ]  # fmt: skip
    # a price delta: only the ticker changes; the 24 h range comes from the snapshot
    d1 = {"topic": "tickers.BTCUSDT", "type": "delta", "data": {
        "symbol": "BTCUSDT", "tickDirection": "MinusTick", "price24hPcnt": "0.0168",
        "lastPrice": "17210.50", "turnover24h": "1570400000.5", "volume24h": "91706.276",
        "bid1Price": "17210.00", "bid1Size": "10.1", "ask1Price": "17210.50",
        "ask1Size": "3.2"}, "cs": 24987956060, "ts": 1673272861786}  # fmt: skip
    assert bybit(n, "linear", d1) == [
        (f"market.ticker.bybit.{sym}", f"bybit:ticker:{sym}:1673272861786",
         schemas.Ticker(ts_event=1673272861786 * MS, last=17210.5, bid=17210.0, ask=17210.5,
                        open_24h=16926.5, high_24h=17281.5, low_24h=16915.0,
                        volume_24h=91706.276, quote_volume_24h=1570400000.5, **base)),
    ]  # fmt: skip
    # a mark/open-interest delta: the index price and value carried over where unchanged
    d2 = {"topic": "tickers.BTCUSDT", "type": "delta", "data": {
        "symbol": "BTCUSDT", "markPrice": "17211.10", "openInterest": "68750"},
        "cs": 24987956061, "ts": 1673272861886}  # fmt: skip
    t2 = 1673272861886 * MS
    assert bybit(n, "linear", d2) == [
        (f"market.mark.bybit.{sym}", f"bybit:mark:{sym}:1673272861886",
         schemas.Mark(ts_event=t2, mark_price=17211.1, index_price=17227.36, **base)),
        (f"market.open_interest.bybit.{sym}", f"bybit:open_interest:{sym}:1673272861886",
         schemas.OpenInterest(ts_event=t2, open_interest=68750.0,
                              open_interest_value=1183601235.91, **base)),
    ]  # fmt: skip


def test_bybit_spot_and_inverse_tickers() -> None:
    n = bybit_ready()
    # "Ticker" (spot): snapshots only, no bid/ask, no derivatives fields
    spot = {"topic": "tickers.BTCUSDT", "ts": 1673853746003, "type": "snapshot",
            "cs": 2588407389, "data": {
                "symbol": "BTCUSDT", "lastPrice": "21109.77", "highPrice24h": "21426.99",
                "lowPrice24h": "20575", "prevPrice24h": "20704.93", "volume24h": "6780.866843",
                "turnover24h": "141946527.22907118", "price24hPcnt": "0.0196",
                "usdIndexPrice": "21120.2400136"}}  # fmt: skip
    assert bybit(n, "spot", spot) == [(
        "market.ticker.bybit.BTC-USDT", "bybit:ticker:BTC-USDT:1673853746003",
        schemas.Ticker(venue="bybit", symbol="BTC-USDT", ts_event=1673853746003 * MS,
                       ts_recv=RECV_NS, last=21109.77, bid=None, ask=None, open_24h=20704.93,
                       high_24h=21426.99, low_24h=20575.0, volume_24h=6780.866843,
                       quote_volume_24h=141946527.22907118),
    )]  # fmt: skip
    # "Ticker" (inverse): volume24h and openInterest count USD contracts; turnover24h and
    # openInterestValue are in BTC
    inv = {"topic": "tickers.BTCUSD", "type": "snapshot", "data": {
        "symbol": "BTCUSD", "tickDirection": "PlusTick", "price24hPcnt": "0.011116",
        "lastPrice": "16870.50", "prevPrice24h": "16685.00", "highPrice24h": "16960.50",
        "lowPrice24h": "16526.50", "prevPrice1h": "16852.50", "markPrice": "16870.92",
        "indexPrice": "16865.84", "openInterest": "446023815", "openInterestValue": "26437.38",
        "turnover24h": "7826.04", "volume24h": "130951064", "nextFundingTime": "1673280000000",
        "fundingRate": "0.0001", "bid1Price": "16870.50", "bid1Size": "2018",
        "ask1Price": "16871.00", "ask1Size": "40963"}, "cs": 20856433578,
        "ts": 1673272861686}  # fmt: skip
    ts = 1673272861686 * MS
    sym = "BTC-USD-PERP"
    base: dict[str, Any] = dict(venue="bybit", symbol=sym, ts_event=ts, ts_recv=RECV_NS)
    assert bybit(n, "inverse", inv) == [
        (f"market.ticker.bybit.{sym}", f"bybit:ticker:{sym}:1673272861686",
         schemas.Ticker(last=16870.5, bid=16870.5, ask=16871.0, open_24h=16685.0,
                        high_24h=16960.5, low_24h=16526.5, volume_24h=7826.04,
                        quote_volume_24h=130951064.0, **base)),
        (f"market.mark.bybit.{sym}", f"bybit:mark:{sym}:1673272861686",
         schemas.Mark(mark_price=16870.92, index_price=16865.84, **base)),
        (f"market.funding.bybit.{sym}", f"bybit:funding:{sym}:1673272861686",
         schemas.Funding(rate=0.0001, next_funding_ts=1673280000000 * MS, **base)),
        # base units at the mark price; the value in USD (the quote), as every venue gives it
        (f"market.open_interest.bybit.{sym}", f"bybit:open_interest:{sym}:1673272861686",
         schemas.OpenInterest(open_interest=446023815 / 16870.92,
                              open_interest_value=446023815.0, **base)),
    ]  # fmt: skip


def test_bybit_kline() -> None:
    n = bybit_ready()
    # "Kline": kline.{interval}.{symbol}; interval "5" is 5 minutes
    lin = {"topic": "kline.5.BTCUSDT", "data": [{
        "start": 1672324800000, "end": 1672325099999, "interval": "5", "open": "16649.5",
        "close": "16677", "high": "16677", "low": "16608", "volume": "2.081",
        "turnover": "34666.4005", "confirm": False, "timestamp": 1672324988882}],
        "ts": 1672324988882, "type": "snapshot"}  # fmt: skip
    assert bybit(n, "linear", lin) == [(
        "market.candle.bybit.BTC-USDT-PERP",
        "bybit:candle:BTC-USDT-PERP:5m:1672324800000:1672324988882",
        schemas.Candle(venue="bybit", symbol="BTC-USDT-PERP", ts_event=1672324988882 * MS,
                       ts_recv=RECV_NS, interval="5m", ts_open=1672324800000 * MS,
                       open=16649.5, high=16677.0, low=16608.0, close=16677.0, volume=2.081,
                       closed=False, trades=None),
    )]  # fmt: skip
    # inverse: volume counts USD contracts, turnover is the BTC volume
    inv = {"topic": "kline.1.BTCUSD", "data": [{
        "start": 1672324800000, "end": 1672324859999, "interval": "1", "open": "16650",
        "close": "16660.5", "high": "16661", "low": "16649", "volume": "84000",
        "turnover": "5.04", "confirm": True, "timestamp": 1672324860001}],
        "ts": 1672324860001, "type": "snapshot"}  # fmt: skip
    assert bybit(n, "inverse", inv) == [(
        "market.candle.bybit.BTC-USD-PERP",
        "bybit:candle:BTC-USD-PERP:1m:1672324800000:1672324860001",
        schemas.Candle(venue="bybit", symbol="BTC-USD-PERP", ts_event=1672324860001 * MS,
                       ts_recv=RECV_NS, interval="1m", ts_open=1672324800000 * MS,
                       open=16650.0, high=16661.0, low=16649.0, close=16660.5, volume=5.04,
                       closed=True),
    )]  # fmt: skip


def test_bybit_all_liquidation() -> None:
    n = bybit_ready()
    # "All Liquidation": S is the liquidated position's side; the liquidation order is the
    # opposite side (a Sell/short position is closed by a buy)
    lin = {"topic": "allLiquidation.BTCUSDT", "type": "snapshot", "ts": 1739502303204,
           "data": [{"T": 1739502302929, "s": "BTCUSDT", "S": "Sell", "v": "0.020",
                     "p": "96000.5"}]}  # fmt: skip
    assert bybit(n, "linear", lin, seq=40) == [(
        "market.liquidation.bybit.BTC-USDT-PERP",
        "bybit:liquidation:BTC-USDT-PERP:1739502302929:40:0",
        schemas.Liquidation(venue="bybit", symbol="BTC-USDT-PERP", ts_event=1739502302929 * MS,
                            ts_recv=RECV_NS, side="buy", price=96000.5, size=0.02,
                            id="1739502302929:40:0"),
    )]  # fmt: skip
    # inverse: 5000 USD contracts of a long position at 50000 USD/BTC
    inv = {"topic": "allLiquidation.BTCUSD", "type": "snapshot", "ts": 1739502303300,
           "data": [{"T": 1739502303100, "s": "BTCUSD", "S": "Buy", "v": "5000",
                     "p": "50000"}]}  # fmt: skip
    assert bybit(n, "inverse", inv, seq=41) == [(
        "market.liquidation.bybit.BTC-USD-PERP",
        "bybit:liquidation:BTC-USD-PERP:1739502303100:41:0",
        schemas.Liquidation(venue="bybit", symbol="BTC-USD-PERP", ts_event=1739502303100 * MS,
                            ts_recv=RECV_NS, side="sell", price=50000.0, size=0.1,
                            id="1739502303100:41:0"),
    )]  # fmt: skip
