"""Bybit v5 frames as the venue really sends them: the nautilus captures field by field
(EXPECT, also read by tests/venues/conformance.py), issue 18's quirk 1 (orderbook.1 -> BBO)
and quirk 7 (a v2 frame named as one), with inline frames shaped exactly as Bybit sends them."""

from __future__ import annotations

import orjson

from collectors.bybit import route
from tests.recorded import check_expectations, normalize, read, shared

B = "nautilus/bybit/"
# Bybit v5 public WebSocket documentation: publicTrade S = taker side; orderbook b/a rows
# [price, size], size 0 deletes; tickers deltas carry only changed fields; kline interval
# "5" = 5 minutes, confirm = closed.
EXPECT = {
    B + "ws_kline.json": [("candle", {
        "symbol": "BTC-USDT-PERP", "interval": "5m", "ts_open": 1672324800000 * 10**6,
        "open": 16649.5, "high": 16677.0, "low": 16608.0, "close": 16677.0, "volume": 2.081,
        "closed": False})],
    # orderbook.1 snapshot: its rows are sorted best first, so the best bid is the first
    B + "ws_orderbook_snapshot.json": [("bbo", {
        "bid_price": 27450.0, "bid_size": 0.5, "ask_price": 27451.0, "ask_size": 0.75,
        "seq": 123456789})],
    # a delta alone (no snapshot before it on this fresh stream): no side known, no BBO
    B + "ws_orderbook_delta.json": [],
    B + "ws_ticker_linear.json": [
        ("ticker", {"last": 17216.0, "bid": 17215.5, "ask": 17216.0, "high_24h": 17281.5,
                    "low_24h": 16915.0, "volume_24h": 91705.276}),
        ("mark", {"mark_price": 17217.33, "index_price": 17227.36}),
        ("funding", {"rate": -0.000212, "next_funding_ts": 1673280000000 * 10**6}),
        ("open_interest", {"open_interest": 68744.761, "open_interest_value": 1183601235.91}),
    ],
    # The documentation names the public trade topic publicTrade.<symbol>; this capture's
    # "trade.linear.BTCUSDT" is not a v5 topic (nautilus shaped some files by hand), so the
    # documentation decides: not routed, and the dead letter says what it is.
    B + "ws_public_trade.json": [("dead", {"reason": "collector does not subscribe"})],
    B + "ws_subscription_ack.json": [],
    B + "ws_subscription_failure.json": [],
    # the documentation has result.category and a string nextPageCursor; captures omit the
    # category (the subject's category then decides) or write a null cursor: both accepted
    B + "http_get_instruments_linear.json": [
        ("instrument", {"symbol": "BTC-USDT-PERP", "kind": "perpetual"}),
        ("instrument", {"symbol": "ETH-USDT-PERP", "kind": "perpetual"}),
    ],
    # Bybit v5 option ticker (documentation: always a snapshot; IVs are fractions, greeks
    # Black-Scholes): ticker, mark, open interest and the option's analytics; bidPrice/bidIv
    # "0" mean no bid
    B + "ws_ticker_option.json": [
        ("ticker", {"symbol": "BTC-USDC-20230106-17500-C", "last": 10.0, "bid": None,
                    "ask": 10.0, "high_24h": 25.0, "low_24h": 5.0, "volume_24h": 26.55}),
        ("mark", {"mark_price": 7.86976724, "index_price": 16823.73}),
        ("open_interest", {"open_interest": 49.85}),
        ("option_greeks", {"strike": 17500.0, "option_type": "call", "mark_iv": 0.4896,
                           "bid_iv": None, "ask_iv": 0.514, "delta": 0.047831,
                           "gamma": 0.00021453, "vega": 0.81351067, "theta": -19.9115368,
                           "underlying_price": 16815.1, "index_price": 16823.73,
                           "open_interest": 49.85, "ts_event": 1672917511074 * 10**6}),
    ],
    # quoteCoin "USD" (the documentation's example too) for USDC-settled options: the symbol
    # says USDC, what the premium is paid in
    B + "http_get_instruments_option.json": [("instrument", {
        "symbol": "ETH-USDC-20260626-16000-P", "kind": "option", "strike": 16000.0,
        "option_type": "put", "settle": "USDC", "expiry_ts": 1780005000000 * 10**6})],
    B + "http_get_instruments_option_symbol_id.json": [("instrument", {
        "symbol": "BTC-USDC-20250630-100000-C", "kind": "option", "quote": "USDC",
        "strike": 100000.0, "option_type": "call"})],
    B + "http_get_instruments_spot.json": [
        ("instrument", {"kind": "spot", "symbol": "BTC-USDT"}),
        ("instrument", {"kind": "spot", "symbol": "ETH-USDT"}),
    ],
}  # fmt: skip


def test_nautilus_captures_field_by_field() -> None:
    check_expectations(EXPECT)


def _ob1(kind: str, u: int, b: list[list[str]], a: list[list[str]], ts: int) -> bytes:
    return orjson.dumps({"topic": "orderbook.1.BTCUSDT", "type": kind, "ts": ts,
                         "data": {"s": "BTCUSDT", "b": b, "a": a, "u": u, "seq": 7000 + u},
                         "cts": ts - 2})  # fmt: skip


def test_quirk1_orderbook1_delta_starting_with_a_removal_moves_the_bbo() -> None:
    """Issue 18 item 1: a depth-1 delta whose bid list starts with the removal of the old
    best ("b":[["27994.60","0"],["27991.70","0.777"]]) moves the bid to the new level; the
    ask-only delta after it keeps that bid."""
    frames = [
        _ob1("snapshot", 100, [["27994.60", "0.512"]], [["27994.70", "1.204"]], 1700000000000),
        _ob1("delta", 101, [["27994.60", "0"], ["27991.70", "0.777"]], [], 1700000000010),
        _ob1("delta", 102, [], [["27994.70", "0"], ["27993.10", "0.050"]], 1700000000020),
        _ob1("delta", 103, [], [["27993.10", "0.300"]], 1700000000030),
    ]
    outs = normalize("bybit_linear", "orderbook", "BTCUSDT", frames)
    quotes = [
        (m["bid_price"], m["bid_size"], m["ask_price"], m["ask_size"])  # type: ignore[index]
        for out in outs
        for m in out
    ]  # type: ignore[union-attr]
    assert quotes == [
        (27994.6, 0.512, 27994.7, 1.204),
        (27991.7, 0.777, 27994.7, 1.204),
        (27991.7, 0.777, 27993.1, 0.05),
        (27991.7, 0.777, 27993.1, 0.3),
    ]


def test_quirk1_a_removal_of_another_price_keeps_the_side() -> None:
    frames = [
        _ob1("snapshot", 1, [["100.0", "1"]], [["101.0", "1"]], 1700000000000),
        _ob1("delta", 2, [["99.0", "0"]], [], 1700000000010),  # not the held level
    ]
    _, out = normalize("bybit_linear", "orderbook", "BTCUSDT", frames)
    assert [(m["bid_price"], m["ask_price"]) for m in out] == [(100.0, 101.0)]  # type: ignore[union-attr,index]


V2_TRADE = (b'{"topic":"trade.BTCUSD","data":[{"trade_time_ms":1618677791538,"timestamp":'
            b'"2021-04-17T16:43:11.000Z","symbol":"BTCUSD","side":"Sell","size":1,"price":'
            b'61700.5,"tick_direction":"MinusTick","trade_id":"9a6b3a44-3c54-5b5d-9a3c-'
            b'3b7cfd6d1ba0","cross_seq":5945617766}]}')  # fmt: skip


def test_quirk7_a_bybit_v2_frame_is_named() -> None:
    """Issue 18 item 7: a v2 frame is dead-lettered as what it is, not "unknown channel"."""
    assert route(V2_TRADE) == ("unknown", "ALL")
    [reason] = normalize("bybit_linear", "unknown", "ALL", [V2_TRADE])
    assert reason == "a Bybit v2 frame (topic 'trade.BTCUSD'): jetmarket speaks v5"


def test_quirk7_every_recorded_v2_frame_is_named() -> None:
    frames = [r.payload.encode() for name in ("BYBIT.ws.25.0", "BYBIT.ws.26.0")
              for r in read(shared(f"cryptofeed/{name}")) if r.kind == "recv"]  # fmt: skip
    assert len(frames) > 4000
    reasons = normalize("bybit_linear", "unknown", "ALL", frames)
    assert all(isinstance(r, str) and r.endswith("jetmarket speaks v5") for r in reasons)
