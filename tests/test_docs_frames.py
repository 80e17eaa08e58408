"""Docs-shaped frames for Binance (spot + USDⓈ-M), OKX v5 and Bybit v5, field by field.

Every frame below has the field names, nesting and value types of the example in the
venue's own API documentation (the page is named above each frame); the values are ours.
Frames go through ``Normalizer.normalize`` exactly as the worker calls it, routed to their
raw subject by the collector's own ``route`` where the venue pushes them over WebSocket,
and every field of each resulting typed message is compared against a value worked out by
hand (whole-struct equality, so a field added, dropped or changed fails the test).
"""

from __future__ import annotations

from typing import Any

import orjson

from collectors.binance import CHANNELS as BINANCE_CHANNELS
from collectors.binance import route as binance_route
from collectors.binanceusdm import CHANNELS as USDM_CHANNELS
from collectors.bybit import route as bybit_route
from collectors.okx import route as okx_route
from normalizer.core import Dead, Normalizer
from orderbook.sync import BookState
from orderbook.venues.okx import checksum as okx_checksum
from orderbook.venues.okx import rule_with as okx_rule_with
from streams import schemas, subjects

RECV_NS = 1700000000000000001
RECV = {subjects.H_RECV_NS: str(RECV_NS)}
MS = 1_000_000
Msg = tuple[str, str, schemas.Base]  # (subject, Nats-Msg-Id, typed message)


def run(n: Normalizer, subject: str, body: dict | bytes, raw_seq: int = 1) -> list[Msg]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    out = n.normalize(subject, data, RECV, raw_seq)
    assert not isinstance(out, Dead), f"{subject} rejected: {out.reason}"
    return [(o.subject, o.msg_id, schemas.decode(o.data)) for o in out]


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


# == OKX v5 ===============================================================================
# www.okx.com/docs-v5/en: "Public Data / REST API / Get instruments" and the WebSocket
# public channels, each push shaped {"arg": {"channel", "instId"}, "data": [...]}.
def okx(n: Normalizer, body: dict, seq: int = 1) -> list[Msg]:
    frame = orjson.dumps(body)
    # REST bodies reach RAW from the collector's REST call, pushes through the WebSocket
    channel, target = ("instruments", "ALL") if "code" in body else okx_route(frame)
    return run(n, subjects.raw("okx", channel, target), frame, seq)


def okx_push(channel: str, inst: str, data: list, **extra: Any) -> dict:
    return {"arg": {"channel": channel, "instId": inst}, **extra, "data": data}


def okx_instrument(inst_type: str, inst_id: str, **fields: Any) -> dict:
    """One "Get instruments" row: every field a string, "" where it does not apply."""
    row: dict[str, Any] = {
        "alias": "", "auctionEndTime": "", "baseCcy": "", "category": "1", "contTdSwTime": "",
        "ctMult": "", "ctType": "", "ctVal": "", "ctValCcy": "", "expTime": "",
        "futureSettlement": False, "instFamily": "", "instId": inst_id, "instType": inst_type,
        "lever": "", "listTime": "1606468572000", "lotSz": "1", "maxIcebergSz": "9999999999",
        "maxLmtAmt": "20000000", "maxLmtSz": "9999999999", "maxMktAmt": "1000000",
        "maxMktSz": "10000", "maxStopSz": "10000", "maxTriggerSz": "9999999999",
        "maxTwapSz": "9999999999", "minSz": "1", "openType": "", "optType": "", "quoteCcy": "",
        "ruleType": "normal", "settleCcy": "", "state": "live", "stk": "", "tickSz": "0.1",
        "uly": "",
    }  # fmt: skip
    row.update(fields)
    return row


OKX_INSTRUMENTS = {
    "SPOT": [okx_instrument("SPOT", "BTC-USDT", baseCcy="BTC", quoteCcy="USDT", lever="10",
                            lotSz="0.00000001", minSz="0.00001", tickSz="0.1")],
    "SWAP": [
        okx_instrument("SWAP", "BTC-USDT-SWAP", ctMult="1", ctType="linear", ctVal="0.01",
                       ctValCcy="BTC", instFamily="BTC-USDT", uly="BTC-USDT", lever="100",
                       lotSz="0.01", minSz="0.01", settleCcy="USDT", tickSz="0.1"),
        okx_instrument("SWAP", "BTC-USD-SWAP", ctMult="1", ctType="inverse", ctVal="100",
                       ctValCcy="USD", instFamily="BTC-USD", uly="BTC-USD", lever="100",
                       settleCcy="BTC", tickSz="0.1"),
    ],
    "FUTURES": [okx_instrument("FUTURES", "BTC-USD-250926", alias="quarter", ctMult="1",
                               ctType="inverse", ctVal="100", ctValCcy="USD",
                               expTime="1758873600000", instFamily="BTC-USD", uly="BTC-USD",
                               settleCcy="BTC", tickSz="0.1")],
    "OPTION": [okx_instrument("OPTION", "BTC-USD-250926-100000-C", ctMult="1", ctVal="0.01",
                              ctValCcy="BTC", expTime="1758873600000", instFamily="BTC-USD",
                              uly="BTC-USD", optType="C", settleCcy="BTC", stk="100000",
                              tickSz="0.0005")],
}  # fmt: skip


def okx_with_instruments() -> tuple[Normalizer, dict[str, schemas.Instrument]]:
    """A normalizer that has seen one instruments body per instType, as the collector
    publishes them before subscribing (derivative sizes need the contract values)."""
    n = Normalizer()
    out: dict[str, schemas.Instrument] = {}
    for i, rows in enumerate(OKX_INSTRUMENTS.values()):
        for _, _, m in okx(n, {"code": "0", "msg": "", "data": rows}, seq=100 + i):
            assert isinstance(m, schemas.Instrument)
            out[m.symbol] = m
    return n, out


def test_okx_instruments_every_type() -> None:
    n = Normalizer()
    msgs = [okx(n, {"code": "0", "msg": "", "data": rows}, seq=100 + i)
            for i, rows in enumerate(OKX_INSTRUMENTS.values())]  # fmt: skip
    common: dict[str, Any] = dict(venue="okx", ts_event=RECV_NS, ts_recv=RECV_NS, active=True)
    assert msgs == [
        [("market.instrument.okx.BTC-USDT", "okx:instrument:BTC-USDT:100",
          schemas.Instrument(symbol="BTC-USDT", native_symbol="BTC-USDT", kind="spot",
                             base="BTC", quote="USDT", settle=None, tick_size=0.1,
                             lot_size=0.00000001, contract_size=1.0, expiry_ts=None,
                             strike=None, option_type=None, **common))],
        [("market.instrument.okx.BTC-USDT-PERP", "okx:instrument:BTC-USDT-PERP:101",
          schemas.Instrument(symbol="BTC-USDT-PERP", native_symbol="BTC-USDT-SWAP",
                             kind="perpetual", base="BTC", quote="USDT", settle="USDT",
                             tick_size=0.1, lot_size=0.01, contract_size=0.01, **common)),
         ("market.instrument.okx.BTC-USD-PERP", "okx:instrument:BTC-USD-PERP:101",
          schemas.Instrument(symbol="BTC-USD-PERP", native_symbol="BTC-USD-SWAP",
                             kind="perpetual", base="BTC", quote="USD", settle="BTC",
                             tick_size=0.1, lot_size=1.0, contract_size=100.0, **common))],
        [("market.instrument.okx.BTC-USD-20250926", "okx:instrument:BTC-USD-20250926:102",
          schemas.Instrument(symbol="BTC-USD-20250926", native_symbol="BTC-USD-250926",
                             kind="future", base="BTC", quote="USD", settle="BTC",
                             tick_size=0.1, lot_size=1.0, contract_size=100.0,
                             expiry_ts=1758873600000 * MS, **common))],
        [("market.instrument.okx.BTC-USD-20250926-100000-C",
          "okx:instrument:BTC-USD-20250926-100000-C:103",
          schemas.Instrument(symbol="BTC-USD-20250926-100000-C",
                             native_symbol="BTC-USD-250926-100000-C", kind="option",
                             base="BTC", quote="USD", settle="BTC", tick_size=0.0005,
                             lot_size=1.0, contract_size=0.01, expiry_ts=1758873600000 * MS,
                             strike=100000.0, option_type="call", **common))],
    ]  # fmt: skip


def test_okx_trades_spot_linear_inverse_option() -> None:
    n, _ = okx_with_instruments()

    # "Trades channel": sz is base units on spot, contracts on derivatives
    def trade(inst: str, tid: str, px: str, sz: str, side: str, ts: str) -> dict:
        return okx_push("trades", inst, [{"instId": inst, "tradeId": tid, "px": px, "sz": sz,
                                          "side": side, "ts": ts, "count": "3", "source": "0",
                                          "seqId": 1234}])  # fmt: skip

    def want(symbol: str, tid: str, ts: int, px: float, size: float, side: str) -> Msg:
        return (f"market.trade.okx.{symbol}", f"okx:trade:{symbol}:{tid}",
                schemas.Trade(venue="okx", symbol=symbol, ts_event=ts * MS, ts_recv=RECV_NS,
                              id=tid, price=px, size=size, side=side))  # type: ignore[arg-type]  # fmt: skip

    spot = trade("BTC-USDT", "130639474", "42219.9", "0.12060306", "buy", "1630048897897")
    assert okx(n, spot) == [want("BTC-USDT", "130639474", 1630048897897, 42219.9, 0.12060306,
                                 "buy")]  # fmt: skip
    # 3 contracts x 0.01 BTC
    lin = trade("BTC-USDT-SWAP", "2001", "65000.1", "3", "sell", "1700000000123")
    assert okx(n, lin) == [want("BTC-USDT-PERP", "2001", 1700000000123, 65000.1, 0.03, "sell")]
    # 2 contracts x 100 USD at 50000 USD/BTC
    inv = trade("BTC-USD-SWAP", "3001", "50000", "2", "buy", "1700000000124")
    assert okx(n, inv) == [want("BTC-USD-PERP", "3001", 1700000000124, 50000.0, 0.004, "buy")]
    # 5 option contracts x 0.01 BTC
    opt = trade("BTC-USD-250926-100000-C", "4001", "0.0465", "5", "buy", "1700000000125")
    assert okx(n, opt) == [want("BTC-USD-20250926-100000-C", "4001", 1700000000125, 0.0465,
                                0.05, "buy")]  # fmt: skip


def _okx_book(
    inst: str,
    action: str,
    bids: list,
    asks: list,
    ts: str,
    seq: int,
    prev: int,
    full: tuple[list, list],
) -> dict:
    """A "books" push; the checksum is OKX's CRC32 over the full book after the change."""
    crc = okx_checksum([(p, s) for p, s, *_ in full[0]], [(p, s) for p, s, *_ in full[1]])
    data = [{"asks": asks, "bids": bids, "ts": ts, "checksum": crc, "prevSeqId": prev,
             "seqId": seq}]  # fmt: skip
    return okx_push("books", inst, data, action=action)


def test_okx_books_snapshot_and_update_with_checksum() -> None:
    n, inst = okx_with_instruments()
    # "Order book channel": [price, size, "0" (deprecated), order count]; snapshot prevSeqId -1
    bids = [["8476.97", "256", "0", "12"], ["8475.55", "101", "0", "1"]]
    asks = [["8476.98", "415", "0", "13"], ["8477", "7", "0", "2"]]
    snap = _okx_book("BTC-USDT", "snapshot", bids, asks, "1597026383085", 123456, -1,
                     (bids, asks))  # fmt: skip
    ub, ua = [["8476.97", "300", "0", "14"]], [["8476.98", "0", "0", "0"]]
    after = ([["8476.97", "300"], ["8475.55", "101"]], [["8477", "7"]])
    upd = _okx_book("BTC-USDT", "update", ub, ua, "1597026383185", 123457, 123456, after)
    [(s_subj, s_id, s)] = okx(n, snap, seq=3)
    [(u_subj, u_id, u)] = okx(n, upd, seq=4)
    assert (s_subj, s_id, u_subj, u_id) == (
        "market.book.okx.BTC-USDT", "okx:book:BTC-USDT:snap123456",
        "market.book.okx.BTC-USDT", "okx:book:BTC-USDT:123457")  # fmt: skip
    assert s == schemas.Book(
        venue="okx", symbol="BTC-USDT", ts_event=1597026383085 * MS, ts_recv=RECV_NS,
        snapshot=True, bids=[(8476.97, 256.0), (8475.55, 101.0)],
        asks=[(8476.98, 415.0), (8477.0, 7.0)], seq=123456, prev_seq=-1, first_seq=None,
        checksum=snap["data"][0]["checksum"],
    )  # fmt: skip
    assert u == schemas.Book(
        venue="okx", symbol="BTC-USDT", ts_event=1597026383185 * MS, ts_recv=RECV_NS,
        snapshot=False, bids=[(8476.97, 300.0)], asks=[(8476.98, 0.0)], seq=123457,
        prev_seq=123456, first_seq=None, checksum=upd["data"][0]["checksum"],
    )  # fmt: skip
    # the order-book service accepts both: the sequence chains and the CRC32 matches
    assert isinstance(s, schemas.Book) and isinstance(u, schemas.Book)
    st = BookState(okx_rule_with("BTC-USDT", inst["BTC-USDT"]))
    assert st.feed(s) is None and st.feed(u) is None and st.valid

    # a linear swap book: contract counts become BTC (x 0.01), checksum still verifiable
    sb, sa = [["65000.1", "120", "0", "3"]], [["65000.2", "45", "0", "1"]]
    swap = _okx_book("BTC-USDT-SWAP", "snapshot", sb, sa, "1700000000200", 9001, -1, (sb, sa))
    [(_, _, w)] = okx(n, swap)
    assert w == schemas.Book(
        venue="okx", symbol="BTC-USDT-PERP", ts_event=1700000000200 * MS, ts_recv=RECV_NS,
        snapshot=True, bids=[(65000.1, 1.2)], asks=[(65000.2, 0.45)], seq=9001, prev_seq=-1,
        checksum=swap["data"][0]["checksum"],
    )  # fmt: skip
    assert isinstance(w, schemas.Book)
    st = BookState(okx_rule_with("BTC-USDT-PERP", inst["BTC-USDT-PERP"]))
    assert st.feed(w) is None and st.valid


def test_okx_bbo_tbt() -> None:
    n, _ = okx_with_instruments()
    # "Order book channel" bbo-tbt: one level a side, no action, no prevSeqId
    frame = okx_push("bbo-tbt", "BTC-USDT-SWAP", [{
        "asks": [["65000.2", "55", "0", "2"]], "bids": [["65000.1", "57", "0", "2"]],
        "ts": "1670324386802", "seqId": 363996337}])  # fmt: skip
    assert okx(n, frame) == [(
        "market.bbo.okx.BTC-USDT-PERP", "okx:bbo:BTC-USDT-PERP:363996337",
        schemas.BBO(venue="okx", symbol="BTC-USDT-PERP", ts_event=1670324386802 * MS,
                    ts_recv=RECV_NS, bid_price=65000.1, bid_size=0.57, ask_price=65000.2,
                    ask_size=0.55, seq=363996337),
    )]  # fmt: skip


def test_okx_tickers_spot_and_swap() -> None:
    n = Normalizer()

    # "Tickers channel": vol24h is base on spot, contracts on derivatives (volCcy24h: base)
    def row(inst_type: str, inst: str, vol: str, vol_ccy: str) -> dict:
        return {"instType": inst_type, "instId": inst, "last": "9999.99", "lastSz": "0.1",
                "askPx": "9999.99", "askSz": "11", "bidPx": "8888.88", "bidSz": "5",
                "open24h": "9000", "high24h": "10000", "low24h": "8888.88", "volCcy24h": vol_ccy,
                "vol24h": vol, "sodUtc0": "9500", "sodUtc8": "9600",
                "ts": "1597026383085"}  # fmt: skip

    common: dict[str, Any] = dict(
        venue="okx", ts_event=1597026383085 * MS, ts_recv=RECV_NS, last=9999.99, bid=8888.88,
        ask=9999.99, open_24h=9000.0, high_24h=10000.0, low_24h=8888.88,
    )  # fmt: skip
    spot = okx_push("tickers", "BTC-USDT", [row("SPOT", "BTC-USDT", "2222", "21000000")])
    assert okx(n, spot) == [(
        "market.ticker.okx.BTC-USDT", "okx:ticker:BTC-USDT:1597026383085",
        schemas.Ticker(symbol="BTC-USDT", volume_24h=2222.0, quote_volume_24h=21000000.0,
                       **common),
    )]  # fmt: skip
    swap = okx_push("tickers", "BTC-USDT-SWAP",
                    [row("SWAP", "BTC-USDT-SWAP", "222200", "2222")])  # fmt: skip
    assert okx(n, swap) == [(
        "market.ticker.okx.BTC-USDT-PERP", "okx:ticker:BTC-USDT-PERP:1597026383085",
        schemas.Ticker(symbol="BTC-USDT-PERP", volume_24h=2222.0, quote_volume_24h=None,
                       **common),
    )]  # fmt: skip


def test_okx_candle1m() -> None:
    n = Normalizer()
    # "Candlesticks channel": [ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]; the push
    # carries no event time, so ts_event is the receive time
    row = ["1597026360000", "8533.02", "8553.74", "8527.17", "8548.26", "45247", "529.5858061",
           "529.5858061", "0"]  # fmt: skip
    assert okx(n, okx_push("candle1m", "BTC-USDT", [row]), seq=11) == [(
        "market.candle.okx.BTC-USDT", "okx:candle:BTC-USDT:1m:1597026360000:r11",
        schemas.Candle(venue="okx", symbol="BTC-USDT", ts_event=RECV_NS, ts_recv=RECV_NS,
                       interval="1m", ts_open=1597026360000 * MS, open=8533.02, high=8553.74,
                       low=8527.17, close=8548.26, volume=45247.0, closed=False),
    )]  # fmt: skip
    # a derivative: vol counts contracts, volCcy is the base volume; confirm "1" = closed
    drow = ["1597026360000", "65000", "65100.5", "64950", "65050", "1200", "12", "780600", "1"]
    assert okx(n, okx_push("candle1m", "BTC-USDT-SWAP", [drow]), seq=12) == [(
        "market.candle.okx.BTC-USDT-PERP", "okx:candle:BTC-USDT-PERP:1m:1597026360000:r12",
        schemas.Candle(venue="okx", symbol="BTC-USDT-PERP", ts_event=RECV_NS, ts_recv=RECV_NS,
                       interval="1m", ts_open=1597026360000 * MS, open=65000.0, high=65100.5,
                       low=64950.0, close=65050.0, volume=12.0, closed=True),
    )]  # fmt: skip


def test_okx_funding_rate_and_open_interest() -> None:
    n = Normalizer()
    # "Funding rate channel": fundingTime is the settlement the current rate applies to
    fr = okx_push("funding-rate", "BTC-USD-SWAP", [{
        "formulaType": "withRate", "fundingRate": "0.0001875391284828",
        "fundingTime": "1700726400000", "impactValue": "20000", "instId": "BTC-USD-SWAP",
        "instType": "SWAP", "interestRate": "0.0001", "maxFundingRate": "0.00375",
        "method": "current_period", "minFundingRate": "-0.00375",
        "nextFundingRate": "0.0002", "nextFundingTime": "1700755200000",
        "premium": "0.0001233824646391", "settFundingRate": "0.0001699799259033",
        "settState": "settled", "ts": "1700724675402"}])  # fmt: skip
    assert okx(n, fr) == [(
        "market.funding.okx.BTC-USD-PERP", "okx:funding:BTC-USD-PERP:1700726400000:"
        f"{1700724675402 * MS}",
        schemas.Funding(venue="okx", symbol="BTC-USD-PERP", ts_event=1700724675402 * MS,
                        ts_recv=RECV_NS, rate=0.0001875391284828,
                        next_funding_ts=1700726400000 * MS, predicted_rate=0.0002),
    )]  # fmt: skip
    # "Open interest channel": oi in contracts, oiCcy in base units, oiUsd in USD
    oi = okx_push("open-interest", "BTC-USD-SWAP", [{
        "instType": "SWAP", "instId": "BTC-USD-SWAP", "oi": "5000", "oiCcy": "555.55",
        "oiUsd": "50000", "ts": "1597026383085"}])  # fmt: skip
    assert okx(n, oi) == [(
        "market.open_interest.okx.BTC-USD-PERP", "okx:open_interest:BTC-USD-PERP:1597026383085",
        schemas.OpenInterest(venue="okx", symbol="BTC-USD-PERP", ts_event=1597026383085 * MS,
                             ts_recv=RECV_NS, open_interest=555.55, open_interest_value=50000.0),
    )]  # fmt: skip


def test_okx_liquidation_orders() -> None:
    n, _ = okx_with_instruments()
    # "Liquidation orders channel": subscribed per instType; side is the liquidation
    # order's side (a short position is closed by a buy), sz in contracts
    frame = {"arg": {"channel": "liquidation-orders", "instType": "SWAP"}, "data": [{
        "details": [{"bkLoss": "0", "bkPx": "64000.5", "ccy": "", "posSide": "short",
                     "side": "buy", "sz": "13", "ts": "1692266434010"}],
        "instFamily": "BTC-USDT", "instId": "BTC-USDT-SWAP", "instType": "SWAP",
        "uly": "BTC-USDT"}]}  # fmt: skip
    natural = "1692266434010:buy:short:r21:0"
    assert okx(n, frame, seq=21) == [(
        "market.liquidation.okx.BTC-USDT-PERP", f"okx:liquidation:BTC-USDT-PERP:{natural}",
        schemas.Liquidation(venue="okx", symbol="BTC-USDT-PERP", ts_event=1692266434010 * MS,
                            ts_recv=RECV_NS, side="buy", price=64000.5, size=0.13, id=natural),
    )]  # fmt: skip


def test_okx_mark_price_and_index_tickers() -> None:
    n = Normalizer()
    # "Mark price channel"
    mark = okx_push("mark-price", "BTC-USDT-SWAP", [{
        "instType": "SWAP", "instId": "BTC-USDT-SWAP", "markPx": "42310.6",
        "ts": "1630049139746"}])  # fmt: skip
    assert okx(n, mark) == [(
        "market.mark.okx.BTC-USDT-PERP", "okx:mark:BTC-USDT-PERP:1630049139746",
        schemas.Mark(venue="okx", symbol="BTC-USDT-PERP", ts_event=1630049139746 * MS,
                     ts_recv=RECV_NS, mark_price=42310.6, index_price=None),
    )]  # fmt: skip
    # "Index tickers channel": the index has its own name (the pair)
    idx = okx_push("index-tickers", "BTC-USDT", [{
        "instId": "BTC-USDT", "idxPx": "42300.1", "high24h": "43000", "low24h": "41000.5",
        "open24h": "41500", "sodUtc0": "41600", "sodUtc8": "41700",
        "ts": "1630049139800"}])  # fmt: skip
    assert okx(n, idx) == [(
        "market.mark.okx.BTC-USDT", "okx:mark:BTC-USDT:idx1630049139800",
        schemas.Mark(venue="okx", symbol="BTC-USDT", ts_event=1630049139800 * MS,
                     ts_recv=RECV_NS, mark_price=None, index_price=42300.1),
    )]  # fmt: skip


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
