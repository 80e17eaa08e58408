"""Binance spot parsing: generated frames, recorded real frames, and rejects."""

from __future__ import annotations

import re
from decimal import Decimal

import orjson
import pytest

from normalizer.core import Dead, Normalizer
from streams import schemas, subjects
from streams.symbols import binance as symbols
from streams.symbols.binance import binance_spot, binance_spot_native
from tests import recorded
from tests.conftest import shared_frames

RECV = {subjects.H_RECV_NS: "1700000000000000001"}


def trade_frame(tid: int, price: str, qty: str, maker: bool = True, sym: str = "BTCUSDT") -> bytes:
    data = {"e": "trade", "E": 1700000000123, "s": sym, "t": tid, "p": price, "q": qty,
            "T": 1700000000120, "m": maker, "M": True}  # fmt: skip
    return orjson.dumps({"stream": f"{sym.lower()}@trade", "data": data})


def test_symbols_both_ways() -> None:
    for native, ours in [("BTCUSDT", "BTC-USDT"), ("ETHBTC", "ETH-BTC"), ("XFDUSD", "X-FDUSD"),
                         ("RUNEEUR", "RUNE-EUR"), ("NKNUSDT", "NKN-USDT")]:  # fmt: skip
        assert binance_spot(native) == ours
        assert binance_spot_native(ours) == native
    with pytest.raises(ValueError):
        binance_spot("USDT")


def test_trade_keeps_decimal_strings_and_taker_side() -> None:
    n = Normalizer()
    out = n.normalize("raw.binance.trade.BTCUSDT", trade_frame(7, "65000.10", "0.00120"), RECV, 5)
    assert not isinstance(out, Dead)
    [o] = out
    assert o.subject == "market.trade.binance.BTC-USDT"
    assert o.msg_id == "binance:trade:BTC-USDT:7"
    msg = schemas.decode(o.data)
    assert isinstance(msg, schemas.Trade)
    assert Decimal(repr(msg.price)) == Decimal("65000.10")
    assert Decimal(repr(msg.size)) == Decimal("0.00120")
    assert msg.side == "sell"  # buyer was maker: the taker sold
    assert msg.ts_event == 1700000000120 * 1_000_000
    assert msg.ts_recv == 1700000000000000001


def test_depth_and_snapshot() -> None:
    n = Normalizer()
    depth = orjson.dumps({"stream": "btcusdt@depth@100ms", "data": {
        "e": "depthUpdate", "E": 1700000000100, "s": "BTCUSDT", "U": 11, "u": 13,
        "b": [["65000.00", "1.5"], ["64999.99", "0.00000000"]],
        "a": [["65000.01", "2"]]}})  # fmt: skip
    [o] = n.normalize("raw.binance.depth.BTCUSDT", depth, RECV, 9)  # type: ignore[misc]
    book = schemas.decode(o.data)
    assert isinstance(book, schemas.Book)
    assert (book.snapshot, book.first_seq, book.seq) == (False, 11, 13)
    assert book.bids == [(65000.0, 1.5), (64999.99, 0.0)] and book.asks == [(65000.01, 2.0)]
    snap = b'{"lastUpdateId":10,"bids":[["65000.00","1"]],"asks":[["65000.02","3"]]}'
    [s] = n.normalize("raw.binance.snapshot.BTCUSDT", snap, RECV, 10)  # type: ignore[misc]
    sb = schemas.decode(s.data)
    assert isinstance(sb, schemas.Book) and sb.snapshot and sb.seq == 10
    assert s.msg_id == "binance:book:BTC-USDT:snap10"


BAD = [
    (b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTC', "malformed"),
    (trade_frame(1, "abc", "1"), "invalid"),
    (trade_frame(1, "-5", "1"), "invalid"),
    (trade_frame(1, "1", "0"), "invalid"),
    (orjson.dumps({"stream": "btcusdt@trade", "data": {"e": "trade", "t": "x"}}), "invalid"),
    (bytes(range(256)), "malformed"),
    (trade_frame(1, "1", "1", sym="ETHUSDT"), "symbol"),
]


@pytest.mark.parametrize(("frame", "why"), BAD)
def test_bad_frames_are_dead_letters_with_reason(frame: bytes, why: str) -> None:
    out = Normalizer().normalize("raw.binance.trade.BTCUSDT", frame, RECV, 1)
    assert isinstance(out, Dead)
    assert why in out.reason
    assert out.data == frame


def test_unknown_channel_venue_and_missing_header() -> None:
    n = Normalizer()
    out = n.normalize("raw.binance.weird.BTCUSDT", b"{}", RECV, 1)
    assert isinstance(out, Dead) and "unknown channel" in out.reason
    out = n.normalize("raw.nowhere.trade.BTCUSDT", b"{}", RECV, 1)
    assert isinstance(out, Dead) and "no parser" in out.reason
    out = n.normalize("raw.binance.trade.BTCUSDT", trade_frame(1, "1", "1"), {}, 1)
    assert isinstance(out, Dead) and "Jm-Recv-Ns" in out.reason


def test_recorded_binance_frames_parse() -> None:
    """Every aggTrade/depth frame and every REST snapshot recorded from the live venue parses,
    and every decimal string survives the float round trip."""
    ws = shared_frames("cryptofeed/BINANCE.ws.1.0")
    rest = shared_frames("cryptofeed/BINANCE.http.0.0")
    info = shared_frames("cryptofeed/BINANCE.0")
    n = Normalizer()
    counts = {"aggTrade": 0, "depth": 0, "snapshot": 0, "instrument": 0}
    for rec in recorded.read(ws):
        if rec.kind != "recv":
            continue
        stream = orjson.loads(rec.payload)["stream"]
        sym, kind = stream.split("@")[0].upper(), stream.split("@")[1]
        if kind not in ("aggTrade", "depth"):
            continue  # bookTicker / kline arrive with the venue issue
        data = rec.payload.encode()
        out = n.normalize(subjects.raw("binance", kind, sym), data, RECV, 1)
        assert not isinstance(out, Dead), out.reason
        msg = schemas.decode(out[0].data)
        strings = re.findall(r'"(\d+\.\d+)"', rec.payload)
        if isinstance(msg, schemas.Book):
            floats = [x for lv in msg.bids + msg.asks for x in lv]
        else:
            assert isinstance(msg, schemas.Trade)
            floats = [msg.price, msg.size]
        assert [Decimal(s) for s in strings] == [Decimal(repr(f)) for f in floats]
        counts[kind] += 1
    for rec in recorded.read(rest):
        sym = re.search(r"symbol=(\w+)", rec.url).group(1)  # type: ignore[union-attr]
        out = n.normalize(subjects.raw("binance", "snapshot", sym), rec.payload.encode(), RECV, 1)
        assert not isinstance(out, Dead), out.reason
        counts["snapshot"] += 1
    for rec in recorded.read(info):
        if "exchangeInfo" in rec.url:
            out = n.normalize("raw.binance.instruments.ALL", rec.payload.encode(), RECV, 1)
            assert not isinstance(out, Dead), out.reason
            counts["instrument"] += len(out)
    assert counts["depth"] > 100 and counts["aggTrade"] >= 2 and counts["snapshot"] >= 4
    assert counts["instrument"] > 1000


def _recorded_counts(ws_name: str, rest_name: str, info_name: str, raw_venue: str) -> dict:
    """Normalize every recorded frame of a Binance capture; nothing may be rejected."""
    n = Normalizer()
    counts: dict[str, int] = {}
    for rec in recorded.read(shared_frames(ws_name)):
        if rec.kind != "recv":
            continue
        stream = orjson.loads(rec.payload)["stream"]
        sym, kind = stream.split("@")[0].upper(), stream.split("@")[1]
        channel = "kline" if kind.startswith("kline") else kind
        out = n.normalize(subjects.raw(raw_venue, channel, sym), rec.payload.encode(), RECV, 1)
        assert not isinstance(out, Dead), (channel, out.reason)
        for o in out:
            counts[o.subject.split(".")[1]] = counts.get(o.subject.split(".")[1], 0) + 1
    for rec in recorded.read(shared_frames(rest_name)):
        sym = re.search(r"symbol=(\w+)", rec.url).group(1)  # type: ignore[union-attr]
        out = n.normalize(subjects.raw(raw_venue, "snapshot", sym), rec.payload.encode(), RECV, 1)
        assert not isinstance(out, Dead), out.reason
        counts["snapshot"] = counts.get("snapshot", 0) + 1
    for rec in recorded.read(shared_frames(info_name)):
        if "exchangeInfo" in rec.url:
            raw = subjects.raw(raw_venue, "instruments", "ALL")
            out = n.normalize(raw, rec.payload.encode(), RECV, 1)
            assert not isinstance(out, Dead), out.reason
            counts["instrument"] = counts.get("instrument", 0) + len(out)
    return counts


def test_recorded_binance_spot_every_channel() -> None:
    c = _recorded_counts(
        "cryptofeed/BINANCE.ws.1.0",
        "cryptofeed/BINANCE.http.0.0",
        "cryptofeed/BINANCE.0",
        "binance",
    )
    assert c["book"] > 100 and c["bbo"] > 50 and c["candle"] >= 2 and c["trade"] >= 2
    assert c["snapshot"] >= 4 and c["instrument"] > 1000


def test_recorded_binance_usdm_every_channel() -> None:
    c = _recorded_counts(
        "cryptofeed/BINANCE_FUTURES.ws.1.0",
        "cryptofeed/BINANCE_FUTURES.http.0.0",
        "cryptofeed/BINANCE_FUTURES.0",
        "binanceusdm",
    )
    assert c["book"] > 500 and c["bbo"] > 500 and c["candle"] > 50 and c["trade"] > 50
    assert c["snapshot"] >= 4 and c["instrument"] > 100


def test_usdm_symbols_and_futures_channels() -> None:
    assert symbols.binance_usdm("BTCUSDT") == "BTC-USDT-PERP"
    assert symbols.binance_usdm("ETHUSDT_251226") == "ETH-USDT-20251226"
    assert symbols.binance_usdm_native("ETH-USDT-20251226") == "ETHUSDT_251226"
    assert symbols.binance_usdm_native("BTC-USDT-PERP") == "BTCUSDT"
    n = Normalizer()
    mark = orjson.dumps({"stream": "btcusdt@markPrice@1s", "data": {
        "e": "markPriceUpdate", "E": 1700000000000, "s": "BTCUSDT", "p": "65000.12000000",
        "i": "64990.5", "P": "65001", "r": "-0.00010000", "T": 1700006400000}})  # fmt: skip
    outs = n.normalize("raw.binanceusdm.markPrice.BTCUSDT", mark, RECV, 1)
    assert not isinstance(outs, Dead), outs
    m, f = (schemas.decode(o.data) for o in outs)
    assert isinstance(m, schemas.Mark) and m.mark_price == 65000.12 and m.index_price == 64990.5
    assert isinstance(f, schemas.Funding) and f.rate == -0.0001
    assert f.next_funding_ts == 1700006400000 * 1_000_000 and f.symbol == "BTC-USDT-PERP"
    liq = orjson.dumps({"stream": "btcusdt@forceOrder", "data": {"e": "forceOrder",
        "E": 1700000000001, "o": {"s": "BTCUSDT", "S": "SELL", "o": "LIMIT", "f": "IOC",
        "q": "0.014", "p": "9910", "ap": "9910.5", "X": "FILLED", "l": "0.014", "z": "0.014",
        "T": 1700000000000}}})  # fmt: skip
    [o] = n.normalize("raw.binanceusdm.forceOrder.BTCUSDT", liq, RECV, 1)  # type: ignore[misc]
    lq = schemas.decode(o.data)
    assert isinstance(lq, schemas.Liquidation) and (lq.side, lq.price, lq.size) == (
        "sell", 9910.5, 0.014)  # fmt: skip
    oi = b'{"openInterest":"10659.509","symbol":"BTCUSDT","time":1589437530011}'
    [o] = n.normalize("raw.binanceusdm.openInterest.BTCUSDT", oi, RECV, 1)  # type: ignore[misc]
    v = schemas.decode(o.data)
    assert isinstance(v, schemas.OpenInterest) and v.open_interest == 10659.509
    tick = orjson.dumps({"stream": "btcusdt@ticker", "data": {"e": "24hrTicker",
        "E": 1, "s": "BTCUSDT", "c": "2", "o": "1", "h": "3", "l": "0.5", "v": "10",
        "q": "20", "b": "1.9", "a": "2.1"}})  # fmt: skip
    [o] = n.normalize("raw.binance.ticker.BTCUSDT", tick, RECV, 1)  # type: ignore[misc]
    t = schemas.decode(o.data)
    assert isinstance(t, schemas.Ticker) and (t.last, t.bid, t.ask, t.low_24h) == (2, 1.9, 2.1, 0.5)
