"""Kraken v2 frames as the venue really sends them: the nautilus captures field by field
(EXPECT, also read by tests/venues/conformance.py), issue 18's quirk 6 (the ticker of a pair
with an empty book) and quirk 7 (v1 frames named as such), inline frames shaped as Kraken
sends them."""

from __future__ import annotations

import orjson

from tests.recorded import check_expectations, normalize

K = "nautilus/kraken/"
# Kraken WebSocket v2 documentation: trade `side` is the taker's; book levels
# {price, qty}, qty 0 deletes; ticker bid/ask with quantities, 24 h volume in base units.
EXPECT = {
    K + "ws_trade_update.json": [
        ("trade", {"symbol": "BTC-USD", "id": "10218208", "price": 105944.2,
                   "size": 0.00027625, "side": "buy"}),
        ("trade", {"id": "10218209", "price": 105910.5, "size": 0.0001246, "side": "sell"}),
    ],
    K + "ws_ticker_snapshot.json": [
        ("bbo", {"bid_price": 105944.2, "bid_size": 2.5, "ask_price": 105944.3,
                 "ask_size": 3.2}),
        ("ticker", {"last": 105899.4, "high_24h": 106613.1, "low_24h": 104711.0,
                    "volume_24h": 163.28908096}),
    ],
    K + "ws_book_snapshot.json": [("book", {"snapshot": True, "checksum": 2439117997})],
    K + "ws_book_update.json": [("book", {"snapshot": False, "bids": [[105944.2, 0.25]],
                                          "asks": [], "checksum": 2114181697})],
    K + "ws_ohlc_update.json": [("candle", {
        "interval": "1m", "open": 106038.2, "high": 106044.3, "low": 106038.1,
        "close": 106040.1, "trades": 12, "closed": False})],
    K + "ws_pong.json": [], K + "ws_subscribe_response.json": [],
}  # fmt: skip


def test_nautilus_captures_field_by_field() -> None:
    check_expectations(EXPECT)


def test_quirk6_ticker_of_an_empty_book_is_published_not_dead_lettered() -> None:
    """Issue 18 item 6: a new or halted pair has no bid and no ask: Kraken sends 0. The
    frame is valid: the ticker comes out (no price is 0: those are None), no BBO."""
    frame = orjson.dumps({"channel": "ticker", "type": "snapshot", "data": [{
        "symbol": "TREMP/EUR", "bid": 0.0, "bid_qty": 0.0, "ask": 0.0, "ask_qty": 0.0,
        "last": 0.0, "volume": 0.0, "vwap": 0.0, "low": 0.0, "high": 0.0, "change": 0.0,
        "change_pct": 0.0, "timestamp": "2026-04-07T14:30:03.000000Z"}]})  # fmt: skip
    [out] = normalize("kraken", "ticker", "TREMP/EUR", [frame])
    assert isinstance(out, list), out  # not a dead letter
    [ticker] = out
    assert ticker["type"] == "ticker" and ticker["symbol"] == "TREMP-EUR"
    assert (ticker["bid"], ticker["ask"], ticker["last"]) == (None, None, None)
    assert ticker["volume_24h"] == 0.0
    # one side quoted only: still no BBO, the quoted side is in the ticker
    one = frame.replace(b'"bid":0.0,"bid_qty":0.0', b'"bid":0.0123,"bid_qty":1500.0')
    [[ticker]] = normalize("kraken", "ticker", "TREMP/EUR", [one])
    assert (ticker["bid"], ticker["ask"]) == (0.0123, None)


def test_quirk7_v1_frames_are_named() -> None:
    v1_book = b'[1920,{"a":[["0.043150","0.00000000","1618678133.093436"]]},"book-1000","XBT/USD"]'
    heartbeat = b'{"event":"heartbeat"}'
    assert normalize("kraken", "unknown", "ALL", [v1_book, heartbeat]) == [
        "a Kraken v1 WebSocket frame ('book-1000'): jetmarket speaks v2",
        "a Kraken v1 WebSocket frame (event 'heartbeat'): jetmarket speaks v2",
    ]
