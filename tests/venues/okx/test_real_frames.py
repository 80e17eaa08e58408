"""OKX v5 frames as the venue really sends them: the nautilus captures field by field
(EXPECT, also read by tests/venues/conformance.py), issue 18's quirk 3 (a funding-rate push
without fundingRate) and quirk 7 (an OKEx v3 frame named as one), inline frames shaped as
OKX sends them."""

from __future__ import annotations

import orjson

from tests.recorded import check_expectations, normalize

X = "nautilus/okx/"
# OKX v5 WebSocket documentation: trades `side` is the taker's; books rows
# [px, sz, deprecated, orders]; tickers vol24h is base units for SPOT; funding-rate
# fundingTime is the settlement the fundingRate applies to, nextFundingRate the forecast.
EXPECT = {
    X + "ws_trades.json": [("trade", {
        "symbol": "BTC-USD", "id": "130639474", "price": 42219.9, "size": 0.12060306,
        "side": "buy", "ts_event": 1630048897897 * 10**6})],
    X + "ws_bbo_tbt.json": [("bbo", {
        "bid_price": 8476.97, "bid_size": 256.0, "ask_price": 8476.98, "ask_size": 415.0,
        "seq": 123456})],
    X + "ws_books_snapshot.json": [("book", {"snapshot": True, "seq": 123456})],
    X + "ws_books_update.json": [("book", {"snapshot": False, "seq": 123457,
                                           "prev_seq": 123456})],
    X + "ws_tickers.json": [("ticker", {
        "last": 9999.99, "bid": 8888.88, "ask": 9999.99, "open_24h": 9000.0,
        "high_24h": 10000.0, "low_24h": 8888.88, "volume_24h": 2222.0})],
    X + "ws_funding_rate.json": [("funding", {
        "symbol": "BTC-USDT-PERP", "rate": 0.0001, "predicted_rate": 0.0002,
        "next_funding_ts": 1744590349506 * 10**6})],
    # channels jetmarket's collector does not subscribe: named in the dead letter
    X + "ws_candle.json": [("dead", {"reason": "channel 'candle1D'"})],
    X + "ws_instruments.json": [("dead", {"reason": "channel 'instruments'"})],
    # opt-summary: the capture writes deltaBs..vegaBs; OKX's documentation (and ccxt's
    # recorded answers) write deltaBS..vegaBS. The documentation decides: the Black-Scholes
    # greeks of this capture are not read (None), the volatilities and forward price are
    X + "ws_opt_summary.json": [
        ("option_greeks", {"symbol": "BTC-USD-20250328-92000-C", "strike": 92000.0,
                           "option_type": "call", "mark_iv": 0.53, "bid_iv": 0.52,
                           "ask_iv": 0.55, "underlying_price": 92150.5, "delta": None,
                           "ts_event": 1711612800000 * 10**6}),
        ("option_greeks", {"symbol": "BTC-USD-20250328-92000-P", "option_type": "put",
                           "mark_iv": 0.52, "bid_iv": 0.5, "ask_iv": 0.54}),
    ],
}  # fmt: skip


def test_nautilus_captures_field_by_field() -> None:
    check_expectations(EXPECT)


def _funding(row: dict[str, str]) -> bytes:
    arg = {"channel": "funding-rate", "instId": "BTC-USDT-SWAP"}
    return orjson.dumps({"arg": arg, "data": [{"instId": "BTC-USDT-SWAP", **row}]})


def test_quirk3_funding_push_without_funding_rate_keeps_time_and_forecast() -> None:
    """Issue 18 item 3: a push carrying only fundingTime and nextFundingRate is not lost:
    the rate is the instrument's last one on this stream (unchanged), the next funding time
    and the forecast are the push's own."""
    full = _funding({"fundingRate": "0.000125", "nextFundingRate": "0.0001",
                     "fundingTime": "1744617600000", "nextFundingTime": "1744646400000",
                     "method": "current_period", "ts": "1744590349506"})  # fmt: skip
    partial = _funding({"fundingTime": "1744646400000", "nextFundingRate": "0.00009",
                        "ts": "1744617601000"})  # fmt: skip
    first, second = normalize("okx", "funding-rate", "BTC-USDT-SWAP", [full, partial])
    assert [(m["rate"], m["next_funding_ts"], m["predicted_rate"]) for m in second] == [  # type: ignore[union-attr,index]
        (0.000125, 1744646400000 * 10**6, 0.00009)
    ]
    assert first[0]["rate"] == 0.000125  # type: ignore[index]


def test_quirk3_no_earlier_rate_is_a_precise_reason() -> None:
    partial = _funding({"fundingTime": "1744646400000", "nextFundingRate": "0.00009",
                        "ts": "1744617601000"})  # fmt: skip
    [reason] = normalize("okx", "funding-rate", "BTC-USDT-SWAP", [partial])
    assert isinstance(reason, str) and "without fundingRate" in reason, reason


def test_quirk7_an_okex_v3_frame_is_named() -> None:
    v3 = (b'{"table":"spot/trade","data":[{"side":"sell","trade_id":"2778148208082944",'
          b'"price":"5556.3","size":"0.0116","instrument_id":"BTC-USDT",'
          b'"timestamp":"2019-04-09T08:38:14.416Z"}]}')  # fmt: skip
    [reason] = normalize("okx", "unknown", "ALL", [v3])
    assert reason == "an OKEx v3 frame (table 'spot/trade'): jetmarket speaks OKX v5"
