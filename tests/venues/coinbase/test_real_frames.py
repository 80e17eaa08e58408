"""Coinbase Advanced Trade frames as the venue really sends them: the nautilus captures
field by field (EXPECT, also read by tests/venues/conformance.py) and issue 18's quirk 7 (a
retired Coinbase Pro feed frame named as one)."""

from __future__ import annotations

from tests.recorded import check_expectations, normalize, read, shared

C = "nautilus/coinbase/"
# Advanced Trade WebSocket documentation: market_trades side is the maker order's (taker =
# the opposite, see normalizer/venues/coinbase/parse.py); l2_data updates carry new_quantity.
EXPECT = {
    C + "ws_market_trades.json": [
        ("trade", {"symbol": "BTC-USD", "id": "995098700", "price": 68900.5, "size": 0.0015,
                   "side": "sell"}),
        ("trade", {"id": "995098701", "price": 68900.0, "size": 0.05, "side": "buy"}),
    ],
    C + "ws_ticker.json": [
        ("bbo", {"bid_price": 68900.0, "bid_size": 1.5, "ask_price": 68901.0, "ask_size": 0.5}),
        ("ticker", {"last": 68900.5, "high_24h": 69200.0, "low_24h": 67500.0,
                    "volume_24h": 15328.12345678}),
    ],
    C + "ws_l2_data_snapshot.json": [("book", {"snapshot": True, "bids": [
        [68900.0, 1.5], [68899.5, 0.75], [68899.0, 2.3]]})],
    C + "ws_l2_data_update.json": [("book", {"snapshot": False, "bids": [[68900.0, 2.0]],
                                             "asks": [[68901.0, 0.0]]})],
    C + "ws_candles.json": [("candle", {"interval": "5m", "open": 68900.0, "close": 68920.5,
                                        "volume": 42.15})],
    C + "ws_heartbeats.json": [], C + "ws_subscriptions.json": [],
    # futures products: jetmarket's Coinbase venue is spot, so no instrument comes out
    C + "http_products_future.json": [],
}  # fmt: skip


def test_nautilus_captures_field_by_field() -> None:
    check_expectations(EXPECT)


def test_quirk7_coinbase_pro_frames_are_named() -> None:
    pro = (b'{"type":"l2update","product_id":"SKL-USD","changes":[["buy","0.3891","120.5"]],'
           b'"time":"2021-04-17T16:43:37.245593Z"}')  # fmt: skip
    [reason] = normalize("coinbase", "unknown", "ALL", [pro])
    assert reason == ("a Coinbase Pro feed frame (type 'l2update'): jetmarket speaks "
                      "Advanced Trade")  # fmt: skip
    frames = [r.payload.encode() for r in read(shared("cryptofeed/COINBASE.ws.28.0"))
              if r.kind == "recv"]  # fmt: skip
    reasons = normalize("coinbase", "unknown", "ALL", frames)
    assert len(reasons) > 9000
    assert all(isinstance(r, str) and "jetmarket speaks Advanced Trade" in r for r in reasons)
