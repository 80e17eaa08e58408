"""Docs-shaped frames for OKX v5, field by field (how: tests/venues/docs_frames.py)."""

from __future__ import annotations

from typing import Any

import orjson

from collectors.okx import route as okx_route
from normalizer.core import Normalizer
from orderbook.sync import BookState
from orderbook.venues.okx import checksum as okx_checksum
from orderbook.venues.okx import rule_with as okx_rule_with
from streams import schemas, subjects
from tests.venues.docs_frames import MS, RECV_NS, Msg, run


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
