"""Docs-shaped frames for Binance spot and USDⓈ-M, field by field (tests/venues/docs_frames.py)."""

from __future__ import annotations

from typing import Any

import orjson

from collectors.binance import CHANNELS as BINANCE_CHANNELS
from collectors.binance import route as binance_route
from collectors.binanceusdm import CHANNELS as USDM_CHANNELS
from normalizer.core import Normalizer
from streams import schemas, subjects
from tests.venues.docs_frames import MS, RECV_NS, Msg, run


# == Binance ==============================================================================
# Combined-stream frames: {"stream": "<name>", "data": <the documented event>}.
def bn(n: Normalizer, raw_venue: str, stream: str, data: dict, seq: int = 1) -> list[Msg]:
    frame = orjson.dumps({"stream": stream, "data": data})
    channels = USDM_CHANNELS if raw_venue == "binanceusdm" else BINANCE_CHANNELS
    channel, native = binance_route(frame, channels)
    return run(n, subjects.raw(raw_venue, channel, native), frame, seq)


def test_binance_spot_trade_and_aggtrade() -> None:
    n = Normalizer()
    # Spot "Trade Streams" (developers.binance.com/docs/binance-spot-api-docs/web-socket-streams)
    trade = {"e": "trade", "E": 1712000000150, "s": "BNBBTC", "t": 4711, "p": "0.00123400",
             "q": "25.50000000", "T": 1712000000148, "m": True, "M": True}  # fmt: skip
    # m: the buyer was the maker, so the taker sold
    assert bn(n, "binance", "bnbbtc@trade", trade) == [(
        "market.trade.binance.BNB-BTC", "binance:trade:BNB-BTC:4711",
        schemas.Trade(venue="binance", symbol="BNB-BTC", ts_event=1712000000148 * MS,
                      ts_recv=RECV_NS, id="4711", price=0.001234, size=25.5, side="sell"),
    )]  # fmt: skip
    # the taker bought when the buyer was not the maker
    [(_, _, buy)] = bn(n, "binance", "bnbbtc@trade", dict(trade, t=4712, m=False))
    assert isinstance(buy, schemas.Trade) and (buy.id, buy.side) == ("4712", "buy")

    # Spot "Aggregate Trade Streams"
    agg = {"e": "aggTrade", "E": 1712000000250, "s": "BNBBTC", "a": 90001, "p": "0.00123500",
           "q": "3.00000000", "f": 5000, "l": 5004, "T": 1712000000249, "m": False,
           "M": True}  # fmt: skip
    assert bn(n, "binance", "bnbbtc@aggTrade", agg) == [(
        "market.trade.binance.BNB-BTC", "binance:trade:BNB-BTC:a90001",
        schemas.Trade(venue="binance", symbol="BNB-BTC", ts_event=1712000000249 * MS,
                      ts_recv=RECV_NS, id="a90001", price=0.001235, size=3.0, side="buy",
                      aggregated=True),
    )]  # fmt: skip


def test_binance_usdm_aggtrade() -> None:
    # USDⓈ-M "Aggregate Trade Streams" (developers.binance.com/docs/derivatives/
    # usds-margined-futures/websocket-market-streams/Aggregate-Trade-Streams): no "M"
    agg = {"e": "aggTrade", "E": 1712000001000, "s": "BTCUSDT", "a": 5933014, "p": "69123.40",
           "q": "0.250", "f": 100, "l": 105, "T": 1712000000998, "m": True}  # fmt: skip
    assert bn(Normalizer(), "binanceusdm", "btcusdt@aggTrade", agg) == [(
        "market.trade.binance.BTC-USDT-PERP", "binance:trade:BTC-USDT-PERP:a5933014",
        schemas.Trade(venue="binance", symbol="BTC-USDT-PERP", ts_event=1712000000998 * MS,
                      ts_recv=RECV_NS, id="a5933014", price=69123.4, size=0.25, side="sell",
                      aggregated=True),
    )]  # fmt: skip


def test_binance_depth_updates_and_rest_snapshots() -> None:
    n = Normalizer()
    # Spot "Diff. Depth Stream": U/u, no pu
    spot = {"e": "depthUpdate", "E": 1712000002000, "s": "BNBBTC", "U": 157, "u": 160,
            "b": [["0.0024", "10"], ["0.0023", "0"]], "a": [["0.0026", "100"]]}  # fmt: skip
    assert bn(n, "binance", "bnbbtc@depth@100ms", spot) == [(
        "market.book.binance.BNB-BTC", "binance:book:BNB-BTC:160",
        schemas.Book(venue="binance", symbol="BNB-BTC", ts_event=1712000002000 * MS,
                     ts_recv=RECV_NS, snapshot=False, bids=[(0.0024, 10.0), (0.0023, 0.0)],
                     asks=[(0.0026, 100.0)], seq=160, prev_seq=None, first_seq=157),
    )]  # fmt: skip
    # Spot REST "Order book" GET /api/v3/depth: no exchange time, so ts_event = receive time
    snap = {"lastUpdateId": 1027024, "bids": [["4.00000000", "431.00000000"]],
            "asks": [["4.00000200", "12.00000000"]]}  # fmt: skip
    assert run(n, "raw.binance.snapshot.BNBBTC", snap) == [(
        "market.book.binance.BNB-BTC", "binance:book:BNB-BTC:snap1027024",
        schemas.Book(venue="binance", symbol="BNB-BTC", ts_event=RECV_NS, ts_recv=RECV_NS,
                     snapshot=True, bids=[(4.0, 431.0)], asks=[(4.000002, 12.0)], seq=1027024),
    )]  # fmt: skip

    # USDⓈ-M "Diff. Book Depth Streams": T (transaction time) and pu (previous final id)
    fut = {"e": "depthUpdate", "E": 1712000003000, "T": 1712000002995, "s": "BTCUSDT",
           "U": 157, "u": 160, "pu": 149, "b": [["69000.10", "1.500"]],
           "a": [["69000.20", "0.000"], ["69001.00", "2.125"]]}  # fmt: skip
    assert bn(n, "binanceusdm", "btcusdt@depth@100ms", fut) == [(
        "market.book.binance.BTC-USDT-PERP", "binance:book:BTC-USDT-PERP:160",
        schemas.Book(venue="binance", symbol="BTC-USDT-PERP", ts_event=1712000003000 * MS,
                     ts_recv=RECV_NS, snapshot=False, bids=[(69000.1, 1.5)],
                     asks=[(69000.2, 0.0), (69001.0, 2.125)], seq=160, prev_seq=149,
                     first_seq=157),
    )]  # fmt: skip
    # USDⓈ-M REST "Order Book" GET /fapi/v1/depth: carries E and T
    fsnap = {"lastUpdateId": 1027024, "E": 1589436922972, "T": 1589436922959,
             "bids": [["69000.10", "1.500"]], "asks": [["69000.20", "3.000"]]}  # fmt: skip
    assert run(n, "raw.binanceusdm.snapshot.BTCUSDT", fsnap) == [(
        "market.book.binance.BTC-USDT-PERP", "binance:book:BTC-USDT-PERP:snap1027024",
        schemas.Book(venue="binance", symbol="BTC-USDT-PERP", ts_event=1589436922972 * MS,
                     ts_recv=RECV_NS, snapshot=True, bids=[(69000.1, 1.5)],
                     asks=[(69000.2, 3.0)], seq=1027024),
    )]  # fmt: skip


def test_binance_book_ticker() -> None:
    n = Normalizer()
    # Spot "Individual Symbol Book Ticker Streams": no event time -> receive time
    spot = {"u": 400900217, "s": "BNBUSDT", "b": "25.35190000", "B": "31.21000000",
            "a": "25.36520000", "A": "40.66000000"}  # fmt: skip
    assert bn(n, "binance", "bnbusdt@bookTicker", spot) == [(
        "market.bbo.binance.BNB-USDT", "binance:bbo:BNB-USDT:400900217",
        schemas.BBO(venue="binance", symbol="BNB-USDT", ts_event=RECV_NS, ts_recv=RECV_NS,
                    bid_price=25.3519, bid_size=31.21, ask_price=25.3652, ask_size=40.66,
                    seq=400900217),
    )]  # fmt: skip
    # USDⓈ-M "Individual Symbol Book Ticker Streams": e, E and T besides
    fut = {"e": "bookTicker", "u": 400900218, "E": 1712000004000, "T": 1712000003999,
           "s": "BNBUSDT", "b": "601.250", "B": "12.50", "a": "601.260", "A": "0.75"}  # fmt: skip
    assert bn(n, "binanceusdm", "bnbusdt@bookTicker", fut) == [(
        "market.bbo.binance.BNB-USDT-PERP", "binance:bbo:BNB-USDT-PERP:400900218",
        schemas.BBO(venue="binance", symbol="BNB-USDT-PERP", ts_event=1712000004000 * MS,
                    ts_recv=RECV_NS, bid_price=601.25, bid_size=12.5, ask_price=601.26,
                    ask_size=0.75, seq=400900218),
    )]  # fmt: skip


def test_binance_24hr_ticker() -> None:
    n = Normalizer()
    # Spot "Individual Symbol Ticker Streams"
    spot = {"e": "24hrTicker", "E": 1712000005000, "s": "BNBBTC", "p": "0.0015", "P": "250.00",
            "w": "0.0018", "x": "0.0009", "c": "0.0025", "Q": "10", "b": "0.0024", "B": "10",
            "a": "0.0026", "A": "100", "o": "0.0010", "h": "0.0026", "l": "0.0009",
            "v": "10000", "q": "18", "O": 0, "C": 86400000, "F": 0, "L": 18150,
            "n": 18151}  # fmt: skip
    assert bn(n, "binance", "bnbbtc@ticker", spot) == [(
        "market.ticker.binance.BNB-BTC", "binance:ticker:BNB-BTC:1712000005000",
        schemas.Ticker(venue="binance", symbol="BNB-BTC", ts_event=1712000005000 * MS,
                       ts_recv=RECV_NS, last=0.0025, bid=0.0024, ask=0.0026, open_24h=0.001,
                       high_24h=0.0026, low_24h=0.0009, volume_24h=10000.0,
                       quote_volume_24h=18.0),
    )]  # fmt: skip
    # USDⓈ-M "Individual Symbol Ticker Streams": no x, b, B, a, A
    fut = {"e": "24hrTicker", "E": 1712000006000, "s": "BTCUSDT", "p": "1200.50",
           "P": "1.770", "w": "68500.12", "c": "69000.50", "Q": "0.010", "o": "67800.00",
           "h": "69500.00", "l": "67000.00", "v": "150000.123", "q": "10275000000.50",
           "O": 1711913600000, "C": 1712000005999, "F": 100, "L": 18150,
           "n": 18051}  # fmt: skip
    assert bn(n, "binanceusdm", "btcusdt@ticker", fut) == [(
        "market.ticker.binance.BTC-USDT-PERP", "binance:ticker:BTC-USDT-PERP:1712000006000",
        schemas.Ticker(venue="binance", symbol="BTC-USDT-PERP", ts_event=1712000006000 * MS,
                       ts_recv=RECV_NS, last=69000.5, bid=None, ask=None, open_24h=67800.0,
                       high_24h=69500.0, low_24h=67000.0, volume_24h=150000.123,
                       quote_volume_24h=10275000000.5),
    )]  # fmt: skip


def test_binance_kline() -> None:
    n = Normalizer()
    # "Kline/Candlestick Streams" (spot and USDⓈ-M share the shape)
    k = {"t": 1712000040000, "T": 1712000099999, "s": "BNBBTC", "i": "1m", "f": 100, "L": 200,
         "o": "0.0010", "c": "0.0020", "h": "0.0025", "l": "0.0009", "v": "1000", "n": 101,
         "x": False, "q": "1.0000", "V": "500", "Q": "0.500", "B": "123456"}  # fmt: skip
    kline = {"e": "kline", "E": 1712000061000, "s": "BNBBTC", "k": k}
    assert bn(n, "binance", "bnbbtc@kline_1m", kline) == [(
        "market.candle.binance.BNB-BTC", "binance:candle:BNB-BTC:1m:1712000040000:1712000061000",
        schemas.Candle(venue="binance", symbol="BNB-BTC", ts_event=1712000061000 * MS,
                       ts_recv=RECV_NS, interval="1m", ts_open=1712000040000 * MS,
                       open=0.001, high=0.0025, low=0.0009, close=0.002, volume=1000.0,
                       closed=False, trades=101),
    )]  # fmt: skip
    fk = dict(k, s="BTCUSDT", o="69000.0", c="69010.5", h="69020.0", l="68990.0", v="12.345",
              n=345, x=True)  # fmt: skip
    fkline = {"e": "kline", "E": 1712000100001, "s": "BTCUSDT", "k": fk}
    [(subject, _, c)] = bn(n, "binanceusdm", "btcusdt@kline_1m", fkline)
    assert subject == "market.candle.binance.BTC-USDT-PERP"
    assert c == schemas.Candle(
        venue="binance", symbol="BTC-USDT-PERP", ts_event=1712000100001 * MS, ts_recv=RECV_NS,
        interval="1m", ts_open=1712000040000 * MS, open=69000.0, high=69020.0, low=68990.0,
        close=69010.5, volume=12.345, closed=True, trades=345,
    )  # fmt: skip


def test_binance_usdm_mark_price_becomes_mark_and_funding() -> None:
    n = Normalizer()
    # USDⓈ-M "Mark Price Stream"
    mark = {"e": "markPriceUpdate", "E": 1712000007000, "s": "BTCUSDT", "p": "69010.15000000",
            "i": "69001.62659091", "P": "69005.25641265", "r": "-0.00012500",
            "T": 1712016000000}  # fmt: skip
    ts = 1712000007000 * MS
    assert bn(n, "binanceusdm", "btcusdt@markPrice@1s", mark) == [
        ("market.mark.binance.BTC-USDT-PERP", "binance:mark:BTC-USDT-PERP:1712000007000",
         schemas.Mark(venue="binance", symbol="BTC-USDT-PERP", ts_event=ts, ts_recv=RECV_NS,
                      mark_price=69010.15, index_price=69001.62659091)),
        ("market.funding.binance.BTC-USDT-PERP", "binance:funding:BTC-USDT-PERP:1712000007000",
         schemas.Funding(venue="binance", symbol="BTC-USDT-PERP", ts_event=ts, ts_recv=RECV_NS,
                         rate=-0.000125, next_funding_ts=1712016000000 * MS,
                         predicted_rate=None)),
    ]  # fmt: skip


def test_binance_usdm_mark_price_of_a_delivery_contract() -> None:
    """A dated contract has no funding: the derivatives "Mark Price Stream" pages show
    ``"r": ""`` and ``"T": 0`` for delivery symbols. The mark price still counts."""
    n = Normalizer()
    mark = {"e": "markPriceUpdate", "E": 1712000007000, "s": "BTCUSDT_250627",
            "p": "71234.50000000", "i": "69001.62659091", "P": "69005.25641265", "r": "",
            "T": 0}  # fmt: skip
    frame = orjson.dumps({"stream": "btcusdt_250627@markPrice@1s", "data": mark})
    assert run(n, "raw.binanceusdm.markPrice.BTCUSDT_250627", frame) == [
        ("market.mark.binance.BTC-USDT-20250627", "binance:mark:BTC-USDT-20250627:1712000007000",
         schemas.Mark(venue="binance", symbol="BTC-USDT-20250627", ts_event=1712000007000 * MS,
                      ts_recv=RECV_NS, mark_price=71234.5, index_price=69001.62659091)),
    ]  # fmt: skip


def test_binance_usdm_force_order_and_open_interest() -> None:
    n = Normalizer()
    # USDⓈ-M "Liquidation Order Streams": S is the liquidation order's side
    liq = {"e": "forceOrder", "E": 1712000008000, "o": {
        "s": "BTCUSDT", "S": "SELL", "o": "LIMIT", "f": "IOC", "q": "0.014", "p": "68910.10",
        "ap": "68950.00", "X": "FILLED", "l": "0.010", "z": "0.014",
        "T": 1712000007998}}  # fmt: skip
    natural = "1712000007998:SELL:5"  # trade time, side, RAW sequence
    # price and size: the average fill price and filled quantity, not the order's limit
    assert bn(n, "binanceusdm", "btcusdt@forceOrder", liq, seq=5) == [(
        "market.liquidation.binance.BTC-USDT-PERP", f"binance:liquidation:BTC-USDT-PERP:{natural}",
        schemas.Liquidation(venue="binance", symbol="BTC-USDT-PERP",
                            ts_event=1712000007998 * MS, ts_recv=RECV_NS, side="sell",
                            price=68950.0, size=0.014, id=natural),
    )]  # fmt: skip
    # USDⓈ-M REST "Open Interest" GET /fapi/v1/openInterest (polled by the collector)
    oi = {"openInterest": "10659.509", "symbol": "BTCUSDT", "time": 1589437530011}
    assert run(n, "raw.binanceusdm.openInterest.BTCUSDT", oi) == [(
        "market.open_interest.binance.BTC-USDT-PERP",
        "binance:open_interest:BTC-USDT-PERP:1589437530011",
        schemas.OpenInterest(venue="binance", symbol="BTC-USDT-PERP",
                             ts_event=1589437530011 * MS, ts_recv=RECV_NS,
                             open_interest=10659.509, open_interest_value=None),
    )]  # fmt: skip


def _price_lot(tick: str, step: str) -> list[dict[str, Any]]:
    return [
        {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00000000",
         "tickSize": tick},
        {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "9000.00000000", "stepSize": step},
        {"filterType": "MIN_NOTIONAL", "minNotional": "5.00000000", "applyToMarket": True,
         "avgPriceMins": 5},
        {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
    ]  # fmt: skip


def test_binance_spot_exchange_info() -> None:
    # Spot REST "Exchange information" GET /api/v3/exchangeInfo
    def row(symbol: str, base: str, quote: str, status: str, tick: str, step: str) -> dict:
        return {"symbol": symbol, "status": status, "baseAsset": base, "baseAssetPrecision": 8,
                "quoteAsset": quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
                "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"], "icebergAllowed": True,
                "ocoAllowed": True, "quoteOrderQtyMarketAllowed": True,
                "allowTrailingStop": False, "cancelReplaceAllowed": False,
                "isSpotTradingAllowed": True, "isMarginTradingAllowed": True,
                "filters": _price_lot(tick, step), "permissions": [], "permissionSets": [["SPOT"]],
                "defaultSelfTradePreventionMode": "NONE",
                "allowedSelfTradePreventionModes": ["NONE"]}  # fmt: skip

    body = {"timezone": "UTC", "serverTime": 1712000009000,
            "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                            "intervalNum": 1, "limit": 6000}],
            "exchangeFilters": [],
            "symbols": [
                row("ETHBTC", "ETH", "BTC", "TRADING", "0.00001000", "0.00010000"),
                row("LUNAUSDT", "LUNA", "USDT", "BREAK", "0.00010000", "0.01000000"),
            ]}  # fmt: skip
    ts = 1712000009000 * MS
    assert run(Normalizer(), "raw.binance.instruments.ALL", body, raw_seq=7) == [
        ("market.instrument.binance.ETH-BTC", "binance:instrument:ETH-BTC:7",
         schemas.Instrument(venue="binance", symbol="ETH-BTC", ts_event=ts, ts_recv=RECV_NS,
                            native_symbol="ETHBTC", kind="spot", base="ETH", quote="BTC",
                            settle=None, tick_size=0.00001, lot_size=0.0001, contract_size=1.0,
                            expiry_ts=None, strike=None, option_type=None, active=True)),
        ("market.instrument.binance.LUNA-USDT", "binance:instrument:LUNA-USDT:7",
         schemas.Instrument(venue="binance", symbol="LUNA-USDT", ts_event=ts, ts_recv=RECV_NS,
                            native_symbol="LUNAUSDT", kind="spot", base="LUNA", quote="USDT",
                            tick_size=0.0001, lot_size=0.01, active=False)),
    ]  # fmt: skip


def test_binance_usdm_exchange_info() -> None:
    # USDⓈ-M REST "Exchange Information" GET /fapi/v1/exchangeInfo
    def row(symbol: str, pair: str, ctype: str, delivery: int) -> dict:
        return {"symbol": symbol, "pair": pair, "contractType": ctype, "deliveryDate": delivery,
                "onboardDate": 1569398400000, "status": "TRADING",
                "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000",
                "baseAsset": "BTC", "quoteAsset": "USDT", "marginAsset": "USDT",
                "pricePrecision": 2, "quantityPrecision": 3, "baseAssetPrecision": 8,
                "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": ["PoW"],
                "settlePlan": 0, "triggerProtect": "0.0500",
                "filters": [
                    {"filterType": "PRICE_FILTER", "maxPrice": "4529764", "minPrice": "556.80",
                     "tickSize": "0.10"},
                    {"filterType": "LOT_SIZE", "maxQty": "1000", "minQty": "0.001",
                     "stepSize": "0.001"},
                    {"filterType": "MARKET_LOT_SIZE", "maxQty": "120", "minQty": "0.001",
                     "stepSize": "0.001"},
                    {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                    {"filterType": "MIN_NOTIONAL", "notional": "100"},
                    {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500",
                     "multiplierDown": "0.9500", "multiplierDecimal": "4"}],
                "orderTypes": ["LIMIT", "MARKET", "STOP"], "timeInForce": ["GTC", "IOC"],
                "liquidationFee": "0.012500", "marketTakeBound": "0.05"}  # fmt: skip

    body = {"exchangeFilters": [], "rateLimits": [], "serverTime": 1712000010000,
            "assets": [{"asset": "USDT", "marginAvailable": True,
                        "autoAssetExchange": "-10000"}],
            "symbols": [row("BTCUSDT", "BTCUSDT", "PERPETUAL", 4133404800000),
                        row("BTCUSDT_250627", "BTCUSDT", "CURRENT_QUARTER", 1751011200000)],
            "timezone": "UTC"}  # fmt: skip
    common: dict[str, Any] = dict(
        venue="binance", ts_event=1712000010000 * MS, ts_recv=RECV_NS, base="BTC", quote="USDT",
        settle="USDT", tick_size=0.1, lot_size=0.001, contract_size=1.0, strike=None,
        option_type=None, active=True,
    )  # fmt: skip
    assert run(Normalizer(), "raw.binanceusdm.instruments.ALL", body, raw_seq=8) == [
        ("market.instrument.binance.BTC-USDT-PERP", "binance:instrument:BTC-USDT-PERP:8",
         schemas.Instrument(symbol="BTC-USDT-PERP", native_symbol="BTCUSDT", kind="perpetual",
                            expiry_ts=None, **common)),
        ("market.instrument.binance.BTC-USDT-20250627", "binance:instrument:BTC-USDT-20250627:8",
         schemas.Instrument(symbol="BTC-USDT-20250627", native_symbol="BTCUSDT_250627",
                            kind="future", expiry_ts=1751011200000 * MS, **common)),
    ]  # fmt: skip
