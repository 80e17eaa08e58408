"""Deribit frames as the venue really sends them: the nautilus captures field by field
(EXPECT, also read by tests/venues/conformance.py) and issue 18's quirk 2 (a fractional strike
written with Deribit's lowercase ``d``) with an inline frame shaped as Deribit sends it."""

from __future__ import annotations

import orjson

from collectors.deribit import route
from tests.recorded import check_expectations, normalize

N = "nautilus/deribit/"
USD = 1.0  # inverse (BTC-PERPETUAL) amounts are USD: base units = USD / price
# Deribit API v2 documentation: trades `direction` is the taker's; inverse `amount` is USD;
# ticker `funding_8h`/`current_funding`; `open_interest` in USD for inverse contracts.
EXPECT = {
    N + "ws_trades.json": [
        ("trade", {"symbol": "BTC-USD-PERP", "id": "403691824", "price": 92294.5,
                   "size": 10.0 * USD / 92294.5, "side": "sell",
                   "ts_event": 1765531356452 * 10**6}),
        ("trade", {"id": "403691825", "price": 92288.5, "size": 750.0 / 92288.5,
                   "side": "sell"}),
    ],
    N + "ws_quote.json": [("bbo", {
        "bid_price": 92288.0, "bid_size": 133440.0 / 92288.0, "ask_price": 92288.5,
        "ask_size": 99470.0 / 92288.5, "ts_event": 1765541767174 * 10**6})],
    N + "ws_ticker.json": [
        ("ticker", {"last": 92283.5, "high_24h": 93612.0, "low_24h": 89277.5,
                    "volume_24h": 11897.27640428}),
        ("mark", {"mark_price": 92281.78, "index_price": 92263.55}),
        ("open_interest", {"open_interest": 1132329370.0 / 92281.78,
                           "open_interest_value": 1132329370.0}),
        ("funding", {"rate": 0.00001742, "predicted_rate": 0.0, "next_funding_ts": None}),
    ],
    N + "ws_book_snapshot.json": [("book", {"snapshot": True, "seq": 123456789})],
    N + "ws_book_delta.json": [("book", {
        "snapshot": False, "seq": 123456790, "prev_seq": 123456789})],
    N + "ws_chart.json": [("candle", {
        "interval": "1m", "ts_open": 1767200040000 * 10**6, "open": 87490.0, "high": 87500.0,
        "low": 87465.0, "close": 87474.0, "volume": 0.95978896, "closed": False})],
    # a combo is not a single instrument; a grouped book is not the channel we subscribe
    N + "ws_trades_option_combo.json": [("dead", {"reason": "a Deribit combo"})],
    N + "ws_book_grouped_snapshot.json": [("dead", {"reason": "a grouped book notification"})],
    N + "ws_error.json": [], N + "ws_subscribe_response.json": [], N + "ws_test_request.json": [],
}  # fmt: skip


def test_nautilus_captures_field_by_field() -> None:
    check_expectations(EXPECT)


FRACTIONAL = orjson.dumps({"jsonrpc": "2.0", "method": "subscription", "params": {
    "channel": "trades.MATIC_USDC-9MAR24-1d02-C.100ms",
    "data": [{"trade_seq": 12, "trade_id": "MATIC_USDC-3158", "timestamp": 1709712000123,
              "tick_direction": 0, "price": 0.0123, "mark_price": 0.0121, "iv": 71.4,
              "instrument_name": "MATIC_USDC-9MAR24-1d02-C", "index_price": 1.0512,
              "direction": "buy", "amount": 150.0, "contracts": 150.0}],
}})  # fmt: skip


def test_quirk2_a_fractional_strike_is_routed_and_named() -> None:
    """Issue 18 item 2: Deribit writes a strike's decimal point as ``d``; the collector used
    to route such frames to ``unknown`` (dead-lettered as an unknown channel)."""
    channel, native = route(FRACTIONAL)
    assert (channel, native) == ("trades", "MATIC_USDC-9MAR24-1d02-C")
    [out] = normalize("deribit", channel, native, [FRACTIONAL])
    assert [(m["symbol"], m["price"], m["size"], m["side"]) for m in out] == [  # type: ignore[union-attr,index]
        ("MATIC-USDC-20240309-1d02-C", 0.0123, 150.0, "buy")  # linear option: base units
    ]
    # still no lowercase letter other than the strike's d gets through the router
    assert route(FRACTIONAL.replace(b"1d02", b"1x02")) == ("unknown", "ALL")
