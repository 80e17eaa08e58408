"""Binance frames as the venue really sends them: the nautilus captures field by field
(EXPECT, also read by tests/venues/conformance.py), and issue 18's quirks 4 and 5 with the
one frame each needs, inline and shaped exactly as Binance sends it."""

from __future__ import annotations

import orjson
from prometheus_client import REGISTRY

from tests.recorded import check_expectations, normalize

D = "nautilus/binance/futures/market_data_json/"
# Binance USDⓈ-M WebSocket market streams documentation: `m` true = the buyer is the maker,
# so the taker sold; prices/quantities are decimal strings; E = event time, T = trade time.
EXPECT = {
    D + "trade_stream.json": [("trade", {
        "symbol": "BTC-USDT-PERP", "id": "5933014", "price": 0.001, "size": 100.0,
        "side": "sell", "ts_event": 123456785 * 10**6, "aggregated": False})],
    D + "agg_trade_stream.json": [("trade", {
        "symbol": "BTC-USDT-PERP", "id": "a5933014", "price": 0.001, "size": 100.0,
        "side": "sell", "ts_event": 123456785 * 10**6, "aggregated": True})],
    D + "book_ticker_stream.json": [("bbo", {
        "symbol": "BNB-USDT-PERP", "bid_price": 25.3519, "bid_size": 31.21,
        "ask_price": 25.3652, "ask_size": 40.66, "seq": 400900217,
        "ts_event": 1568014460893 * 10**6})],
    D + "depth_update_stream.json": [("book", {
        "symbol": "BTC-USDT-PERP", "snapshot": False, "bids": [[0.0024, 10.0]],
        "asks": [[0.0026, 100.0]], "first_seq": 157, "seq": 160, "prev_seq": 149})],
    D + "kline_stream_closed.json": [("candle", {
        "interval": "1m", "ts_open": 1638747660000 * 10**6, "open": 0.001, "high": 0.0025,
        "low": 0.001, "close": 0.002, "volume": 1000.0, "closed": True, "trades": 100})],
    D + "kline_stream_open.json": [("candle", {"closed": False, "low": 0.0015})],
    # forceOrder: S is the liquidation order's side; ap the average fill price, z the filled
    # quantity (the documentation's fields for what actually traded)
    D + "liquidation_stream.json": [("liquidation", {
        "symbol": "BTC-USDT-PERP", "side": "sell", "price": 9910.12345678, "size": 0.014,
        "ts_event": 1568014460893 * 10**6})],
    D + "mark_price_stream.json": [
        ("mark", {"mark_price": 11794.15, "index_price": 11784.62659091}),
        ("funding", {"rate": 0.00038167, "next_funding_ts": 1562306400000 * 10**6}),
    ],
    D + "ticker_stream.json": [("ticker", {
        "last": 16584.6, "open_24h": 16716.0, "high_24h": 16764.89, "low_24h": 16456.51,
        "volume_24h": 122474.816, "quote_volume_24h": 2036102085.697464})],
    "nautilus/binance/spot/http_json/depth_response.json": [("book", {
        "symbol": "BTC-USDT", "snapshot": True, "seq": 1027024, "bids": [[4.0, 431.0]],
        "asks": [[4.000002, 12.0]]})],
    # its one symbol has no PRICE_FILTER/LOT_SIZE filters: nothing tradable to describe
    "nautilus/binance/spot/http_json/exchange_info_response.json": [],
}  # fmt: skip


def test_nautilus_captures_field_by_field() -> None:
    check_expectations(EXPECT)


def _stream(stream: str, event: dict[str, object]) -> bytes:
    return orjson.dumps({"stream": stream, "data": event})


def test_quirk4_delivery_contract_mark_price_gives_no_funding() -> None:
    """Issue 18 item 4: a dated USDⓈ-M contract's markPrice carries "r":"0.00000000",
    "T":0. No funding applies (no next funding time), so only the mark comes out."""
    frame = _stream("btcusdt_250627@markPrice@1s", {
        "e": "markPriceUpdate", "E": 1719475200000, "s": "BTCUSDT_250627", "p": "61234.50000000",
        "P": "61240.12000000", "i": "61200.10000000", "r": "0.00000000", "T": 0,
    })  # fmt: skip
    [out] = normalize("binanceusdm", "markPrice", "BTCUSDT_250627", [frame])
    assert [m["type"] for m in out] == ["mark"], out  # type: ignore[index,union-attr]
    assert out[0]["mark_price"] == 61234.5  # type: ignore[index]
    # a perpetual's markPrice still gives both
    perp = _stream("btcusdt@markPrice@1s", {
        "e": "markPriceUpdate", "E": 1719475200000, "s": "BTCUSDT", "p": "61234.5",
        "P": "61240.1", "i": "61200.1", "r": "0.00010000", "T": 1719504000000,
    })  # fmt: skip
    [out] = normalize("binanceusdm", "markPrice", "BTCUSDT", [perp])
    assert [m["type"] for m in out] == ["mark", "funding"]  # type: ignore[union-attr]


def _skipped(reason: str) -> float:
    v = REGISTRY.get_sample_value(
        "jetmarket_normalizer_skipped_total", {"venue": "binanceusdm", "reason": reason}
    )
    return v or 0.0


def test_quirk5_insurance_fund_trades_are_dropped_and_counted() -> None:
    """Issue 18 item 5: a USDⓈ-M trade with "X":"INSURANCE_FUND" is an off-book print; it
    must not enter trades (VWAP, candles). Dropped, counted by reason, not dead-lettered."""

    def trade(x: str, tid: int) -> bytes:
        return _stream("btcusdt@trade", {
            "e": "trade", "E": 1719475200123, "T": 1719475200120, "s": "BTCUSDT", "t": tid,
            "p": "61234.50", "q": "0.150", "X": x, "m": True,
        })  # fmt: skip

    reason = "off-book trade X=INSURANCE_FUND"
    before, adl_before = _skipped(reason), _skipped("off-book trade X=ADL")
    market, fund, adl = normalize("binanceusdm", "trade", "BTCUSDT",
                                  [trade("MARKET", 1), trade("INSURANCE_FUND", 2),
                                   trade("ADL", 3)])  # fmt: skip
    assert [m["id"] for m in market] == ["1"]  # type: ignore[union-attr]
    assert fund == [] and adl == []  # published nothing, and not a dead letter (a str)
    assert _skipped(reason) == before + 1
    assert _skipped("off-book trade X=ADL") == adl_before + 1
