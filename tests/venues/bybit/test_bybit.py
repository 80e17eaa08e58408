"""Bybit v5: symbols, every channel's parsing on generated frames, the book rule, and the
collector against the local emulator on a real nats-server (RAW -> normalizer -> MARKET ->
rebuilt book equal to the emulator's true book; a dropped delta detected and resynced)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from collectors.bybit import route
from collectors.bybit import run as collector_main
from normalizer.core import Dead, Normalizer
from normalizer.worker import main as normalizer_main
from orderbook.sync import BookState, Problem
from orderbook.venues.bybit import BybitV5, rule_for
from streams import schemas, subjects
from streams.bus.server import NatsServer
from streams.provision import STREAM_MARKET, STREAM_RAW
from streams.symbols import bybit as symbols
from tests import recorded
from tests.conftest import make_settings, shared_frames
from tests.helpers import expect_gap, served_book, take
from tests.venues.bybit.emulator import BybitEmulator
from tests.workers import inprocess_all

RECV = {subjects.H_RECV_NS: "1700000000000000001"}
TS = 1700000000123


def norm(n: Normalizer, subject: str, frame: dict | bytes, seq: int = 1) -> list:
    data = frame if isinstance(frame, bytes) else orjson.dumps(frame)
    out = n.normalize(subject, data, RECV, seq)
    assert not isinstance(out, Dead), out.reason
    return [(o.subject, o.msg_id, schemas.decode(o.data)) for o in out]


def instruments(category: str, items: list[dict]) -> dict:
    return {"retCode": 0, "retMsg": "OK", "time": TS,
            "result": {"category": category, "list": items, "nextPageCursor": ""}}  # fmt: skip


INVERSE_BTCUSD = {
    "symbol": "BTCUSD", "contractType": "InversePerpetual", "status": "Trading",
    "baseCoin": "BTC", "quoteCoin": "USD", "settleCoin": "BTC", "deliveryTime": "0",
    "priceFilter": {"tickSize": "0.50"}, "lotSizeFilter": {"qtyStep": "1"},
}  # fmt: skip


# -- symbols and routing -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("category", "native", "ours"),
    [("spot", "BTCUSDT", "BTC-USDT"), ("spot", "ETHBTC", "ETH-BTC"),
     ("linear", "BTCUSDT", "BTC-USDT-PERP"), ("linear", "BTCPERP", "BTC-USDC-PERP"),
     ("linear", "BTCUSDT-26DEC25", "BTC-USDT-20251226"),
     ("linear", "ETH-7MAR25", "ETH-USDC-20250307"), ("inverse", "BTCUSD", "BTC-USD-PERP")],
)  # fmt: skip
def test_symbols_both_ways(category: str, native: str, ours: str) -> None:
    assert symbols.TO_SYMBOL[category](native) == ours
    assert symbols.to_native(ours) == (category, native)


def test_inverse_future_symbol_needs_its_delivery_time() -> None:
    with pytest.raises(ValueError):
        symbols.inverse("BTCUSDZ25")
    assert symbols.inverse("BTCUSDZ25", 1766736000000) == "BTC-USD-20251226"
    assert symbols.to_native("BTC-USD-20251226") == ("inverse", "BTCUSDZ25")
    for bad in ("BTC", "BTC-USDT-XYZ", "BTC-EUR-PERP"):
        with pytest.raises(ValueError):
            symbols.to_native(bad)


def test_route() -> None:
    assert route(b'{"topic":"orderbook.50.BTCUSDT","type":"delta"}') == ("orderbook", "BTCUSDT")
    assert route(b'{"topic":"publicTrade.BTCUSDT-26DEC25","ts":1}') == (
        "publicTrade", "BTCUSDT-26DEC25")  # fmt: skip
    assert route(b'{"topic":"kline.1.ETHUSDT","data":[]}') == ("kline", "ETHUSDT")
    assert route(b'{"ts":1,"topic":"tickers.BTCUSD","data":{}}') == ("tickers", "BTCUSD")
    assert route(b'{"success":true,"ret_msg":"pong","op":"ping"}') == ("control", "ALL")
    assert route(b'{"req_id":"1","op":"pong","args":["1"]}') == ("control", "ALL")
    assert route(b'{"topic":"trade.BTCUSDT","data":[]}') == ("unknown", "ALL")  # legacy v2
    assert route(b'{"topic":"orderbook.50.BTC.USDT"}') == ("orderbook", "USDT")
    assert route(b'{"topic":"publicTrade.btc usdt"}') == ("unknown", "ALL")
    assert route(bytes(range(256))) == ("unknown", "ALL")
    assert route(b'{"success":true}') == ("unknown", "ALL")


# -- every channel -----------------------------------------------------------------------
def test_public_trade_values_sides_ids() -> None:
    frame = {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": TS, "data": [
        {"T": TS - 3, "s": "BTCUSDT", "S": "Buy", "v": "0.00120", "p": "65000.10",
         "L": "PlusTick", "i": "20f43950-d8dd-5b31-9112-a178eb6023af", "BT": False},
        {"T": TS - 2, "s": "BTCUSDT", "S": "Sell", "v": "2", "p": "64999.9", "L": "MinusTick",
         "i": "a1", "BT": True}]}  # fmt: skip
    [(subj, mid, a), (_, _, b)] = norm(Normalizer(), "raw.bybit_linear.publicTrade.BTCUSDT", frame)
    assert subj == "market.trade.bybit.BTC-USDT-PERP"
    assert mid == "bybit:trade:BTC-USDT-PERP:20f43950-d8dd-5b31-9112-a178eb6023af"
    assert isinstance(a, schemas.Trade) and isinstance(b, schemas.Trade)
    assert Decimal(repr(a.price)) == Decimal("65000.10") and Decimal(repr(a.size)) == Decimal(
        "0.0012")  # fmt: skip
    assert (a.side, b.side, b.id, b.size) == ("buy", "sell", "a1", 2.0)
    assert a.ts_event == (TS - 3) * 1_000_000 and a.ts_recv == 1700000000000000001
    # the same native name on the spot subject is the spot pair
    [(subj, _, _), _] = norm(Normalizer(), "raw.bybit_spot.publicTrade.BTCUSDT", frame)
    assert subj == "market.trade.bybit.BTC-USDT"


def book_frame(kind: str, u: int, b: list, a: list, depth: int = 50) -> dict:
    data = {"s": "BTCUSDT", "b": b, "a": a, "u": u, "seq": 9000 + u}
    return {"topic": f"orderbook.{depth}.BTCUSDT", "type": kind, "ts": TS + u, "data": data}


def test_orderbook_snapshot_delta_restart_and_bbo() -> None:
    n = Normalizer()
    subj = "raw.bybit_linear.orderbook.BTCUSDT"
    [(s, mid, snap)] = norm(n, subj, book_frame("snapshot", 100, [["65000.00", "1.5"]],
                                               [["65000.50", "2"]]))  # fmt: skip
    assert (
        s == "market.book.bybit.BTC-USDT-PERP"
        and mid == f"bybit:book:BTC-USDT-PERP:snap100-{TS + 100}"
    )
    assert isinstance(snap, schemas.Book) and snap.snapshot and snap.seq == 100
    assert snap.bids == [(65000.0, 1.5)] and snap.asks == [(65000.5, 2.0)]
    [(_, mid, d)] = norm(n, subj, book_frame("delta", 101, [["65000.00", "0"]], []))
    assert mid == "bybit:book:BTC-USDT-PERP:101"
    assert isinstance(d, schemas.Book) and not d.snapshot and d.bids == [(65000.0, 0.0)]
    [(_, _, r)] = norm(n, subj, book_frame("delta", 1, [["1.0", "1"]], [["2.0", "1"]]))
    assert isinstance(r, schemas.Book) and r.snapshot and r.seq == 1  # venue restart: full book
    # orderbook.1 is the BBO, kept per symbol across deltas
    bbo1 = book_frame("snapshot", 7, [["65000.00", "1.5"]], [["65000.50", "2"]], depth=1)
    [(s, _, q)] = norm(n, subj, bbo1)
    assert s == "market.bbo.bybit.BTC-USDT-PERP" and isinstance(q, schemas.BBO)
    assert (q.bid_price, q.bid_size, q.ask_price, q.ask_size, q.seq) == (
        65000.0,
        1.5,
        65000.5,
        2,
        7,
    )
    [(_, _, q2)] = norm(n, subj, book_frame("delta", 8, [], [["65000.40", "0.1"]], depth=1))
    assert isinstance(q2, schemas.BBO) and (q2.bid_price, q2.ask_price) == (65000.0, 65000.4)


def test_tickers_snapshot_then_deltas_are_merged() -> None:
    n = Normalizer()
    subj = "raw.bybit_linear.tickers.BTCUSDT"
    snap = {"topic": "tickers.BTCUSDT", "type": "snapshot", "ts": TS, "cs": 1, "data": {
        "symbol": "BTCUSDT", "tickDirection": "PlusTick", "price24hPcnt": "0.01",
        "lastPrice": "65000.1", "prevPrice24h": "64000", "highPrice24h": "66000",
        "lowPrice24h": "63000.5", "markPrice": "65001.2", "indexPrice": "65002.3",
        "openInterest": "50000.123", "openInterestValue": "3250000000.5",
        "turnover24h": "1000000.1", "volume24h": "15.5", "nextFundingTime": "1700006400000",
        "fundingRate": "-0.0001", "bid1Price": "65000.0", "bid1Size": "1",
        "ask1Price": "65000.2", "ask1Size": "2"}}  # fmt: skip
    out = {o[0].split(".")[1]: o[2] for o in norm(n, subj, snap)}
    assert set(out) == {"ticker", "mark", "funding", "open_interest"}
    t, m, f, oi = out["ticker"], out["mark"], out["funding"], out["open_interest"]
    assert isinstance(t, schemas.Ticker) and (t.last, t.bid, t.ask, t.open_24h, t.high_24h,
        t.low_24h, t.volume_24h, t.quote_volume_24h) == (65000.1, 65000.0, 65000.2, 64000,
        66000, 63000.5, 15.5, 1000000.1)  # fmt: skip
    assert isinstance(m, schemas.Mark) and (m.mark_price, m.index_price) == (65001.2, 65002.3)
    assert isinstance(f, schemas.Funding) and f.rate == -0.0001
    assert f.next_funding_ts == 1700006400000 * 1_000_000
    assert isinstance(oi, schemas.OpenInterest) and oi.open_interest == 50000.123
    # a delta with only the bid: one ticker, every other field from the snapshot
    delta = {"topic": "tickers.BTCUSDT", "type": "delta", "ts": TS + 100, "cs": 2,
             "data": {"symbol": "BTCUSDT", "bid1Price": "65000.1", "bid1Size": "3"}}  # fmt: skip
    [(s, mid, t2)] = norm(n, subj, delta)
    assert s == "market.ticker.bybit.BTC-USDT-PERP" and mid.endswith(f":{TS + 100}")
    assert isinstance(t2, schemas.Ticker) and (t2.last, t2.bid, t2.ask) == (65000.1, 65000.1,
                                                                           65000.2)  # fmt: skip
    # a mark-only delta: only a mark message, the index price carried over
    delta2 = {"topic": "tickers.BTCUSDT", "type": "delta", "ts": TS + 200,
              "data": {"symbol": "BTCUSDT", "markPrice": "65003"}}  # fmt: skip
    [(s, _, m2)] = norm(n, subj, delta2)
    assert isinstance(m2, schemas.Mark) and (m2.mark_price, m2.index_price) == (65003, 65002.3)
    # a new snapshot forgets the old state
    [(_, _, t3)] = norm(n, subj, {"topic": "tickers.BTCUSDT", "type": "snapshot", "ts": TS + 300,
                                  "data": {"symbol": "BTCUSDT", "lastPrice": "1"}})  # fmt: skip
    assert isinstance(t3, schemas.Ticker) and (t3.last, t3.bid) == (1.0, None)


def test_kline_and_liquidation() -> None:
    n = Normalizer()
    k = {"topic": "kline.5.BTCUSDT", "type": "snapshot", "ts": TS, "data": [{
        "start": 1672324800000, "end": 1672325099999, "interval": "5", "open": "16649.5",
        "close": "16677", "high": "16677", "low": "16608", "volume": "2.081",
        "turnover": "34666.4005", "confirm": False, "timestamp": 1672324988882}]}  # fmt: skip
    [(s, mid, c)] = norm(n, "raw.bybit_linear.kline.BTCUSDT", k)
    assert s == "market.candle.bybit.BTC-USDT-PERP" and isinstance(c, schemas.Candle)
    assert mid == "bybit:candle:BTC-USDT-PERP:5m:1672324800000:1672324988882"
    assert (c.interval, c.open, c.high, c.low, c.close, c.volume, c.closed) == (
        "5m", 16649.5, 16677, 16608, 16677, 2.081, False)  # fmt: skip
    liq = {"topic": "allLiquidation.BTCUSDT", "type": "snapshot", "ts": TS, "data": [
        {"T": TS - 5, "s": "BTCUSDT", "S": "Buy", "v": "0.003", "p": "43511.70"},
        {"T": TS - 4, "s": "BTCUSDT", "S": "Sell", "v": "1", "p": "43600"}]}  # fmt: skip
    [(s, _, a), (_, _, b)] = norm(n, "raw.bybit_linear.allLiquidation.BTCUSDT", liq, seq=77)
    assert s == "market.liquidation.bybit.BTC-USDT-PERP"
    assert isinstance(a, schemas.Liquidation) and isinstance(b, schemas.Liquidation)
    # a long (Buy) position liquidated means a sell order
    assert (a.side, a.price, a.size, b.side) == ("sell", 43511.7, 0.003, "buy")
    assert a.id != b.id


def test_inverse_sizes_are_converted_and_need_the_instrument() -> None:
    n = Normalizer()
    trade = {"topic": "publicTrade.BTCUSD", "type": "snapshot", "ts": TS, "data": [
        {"T": TS, "s": "BTCUSD", "S": "Sell", "v": "1000", "p": "50000", "i": "x1"}]}  # fmt: skip
    out = n.normalize("raw.bybit_inverse.publicTrade.BTCUSD", orjson.dumps(trade), RECV, 1)
    assert isinstance(out, Dead) and "contract size" in out.reason
    [(s, _, inst)] = norm(n, "raw.bybit_inverse.instruments.ALL",
                          instruments("inverse", [INVERSE_BTCUSD]))  # fmt: skip
    assert s == "market.instrument.bybit.BTC-USD-PERP" and isinstance(inst, schemas.Instrument)
    assert (inst.kind, inst.tick_size, inst.lot_size, inst.settle) == ("perpetual", 0.5, 1, "BTC")
    [(s, _, t)] = norm(n, "raw.bybit_inverse.publicTrade.BTCUSD", trade)
    assert isinstance(t, schemas.Trade) and t.size == 0.02 and t.symbol == "BTC-USD-PERP"
    book = book_frame("snapshot", 5, [["50000", "500"]], [["50001", "0"]])
    book["topic"], book["data"]["s"] = "orderbook.50.BTCUSD", "BTCUSD"
    [(_, _, b)] = norm(n, "raw.bybit_inverse.orderbook.BTCUSD", book)
    assert isinstance(b, schemas.Book) and b.bids == [(50000.0, 0.01)] and b.asks == [(50001, 0)]
    tick = {"topic": "tickers.BTCUSD", "type": "snapshot", "ts": TS, "data": {
        "symbol": "BTCUSD", "markPrice": "50000", "openInterest": "25000000",
        "volume24h": "1000000", "turnover24h": "20.5", "lastPrice": "50000"}}  # fmt: skip
    out2 = {o[0].split(".")[1]: o[2] for o in norm(n, "raw.bybit_inverse.tickers.BTCUSD", tick)}
    oi, tk = out2["open_interest"], out2["ticker"]
    assert isinstance(oi, schemas.OpenInterest) and oi.open_interest == 500.0
    assert isinstance(tk, schemas.Ticker) and (tk.volume_24h, tk.quote_volume_24h) == (20.5, 1e6)


def test_instruments_linear_spot_and_dated() -> None:
    n = Normalizer()
    items = [
        {"symbol": "BTCUSDT", "contractType": "LinearPerpetual", "status": "Trading",
         "baseCoin": "BTC", "quoteCoin": "USDT", "settleCoin": "USDT", "deliveryTime": "0",
         "priceFilter": {"tickSize": "0.10"}, "lotSizeFilter": {"qtyStep": "0.001"}},
        {"symbol": "BTCUSDT-26DEC25", "contractType": "LinearFutures", "status": "Trading",
         "baseCoin": "BTC", "quoteCoin": "USDT", "settleCoin": "USDT",
         "deliveryTime": "1766736000000", "priceFilter": {"tickSize": "0.50"},
         "lotSizeFilter": {"qtyStep": "0.001"}},
    ]  # fmt: skip
    out = norm(n, "raw.bybit_linear.instruments.ALL", instruments("linear", items), seq=42)
    perp, fut = (o[2] for o in out)
    assert out[0][1] == "bybit:instrument:BTC-USDT-PERP:42"
    assert isinstance(perp, schemas.Instrument) and isinstance(fut, schemas.Instrument)
    assert (perp.kind, perp.tick_size, perp.lot_size, perp.expiry_ts) == ("perpetual", 0.1, 0.001,
                                                                          None)  # fmt: skip
    assert (fut.symbol, fut.kind, fut.expiry_ts) == ("BTC-USDT-20251226", "future",
                                                     1766736000000 * 1_000_000)  # fmt: skip
    spot = {
        "symbol": "ETHUSDT",
        "baseCoin": "ETH",
        "quoteCoin": "USDT",
        "status": "Trading",
        "priceFilter": {"tickSize": "0.01"},
        "lotSizeFilter": {"basePrecision": "0.00001"},
    }
    [(s, _, sp)] = norm(n, "raw.bybit_spot.instruments.ALL", instruments("spot", [spot]))
    assert s == "market.instrument.bybit.ETH-USDT" and isinstance(sp, schemas.Instrument)
    assert (sp.kind, sp.lot_size) == ("spot", 0.00001)
    wrong = n.normalize("raw.bybit_spot.instruments.ALL",
                        orjson.dumps(instruments("linear", items)), RECV, 1)  # fmt: skip
    assert isinstance(wrong, Dead) and "linear instruments" in wrong.reason


BAD = [
    (b'{"topic":"publicTrade.BTCUSDT","ts":1,"data":[{"T":1', "malformed"),
    (orjson.dumps({"topic": "publicTrade.BTCUSDT", "ts": 1, "data": [
        {"T": 1, "s": "BTCUSDT", "S": "Buy", "v": "1", "p": "-5", "i": "1"}]}), "invalid"),
    (orjson.dumps({"topic": "publicTrade.ETHUSDT", "ts": 1, "data": [
        {"T": 1, "s": "ETHUSDT", "S": "Buy", "v": "1", "p": "5", "i": "1"}]}), "symbol"),
]  # fmt: skip


@pytest.mark.parametrize(("frame", "why"), BAD)
def test_bad_frames_are_dead_letters(frame: bytes, why: str) -> None:
    out = Normalizer().normalize("raw.bybit_linear.publicTrade.BTCUSDT", frame, RECV, 1)
    assert isinstance(out, Dead) and why in out.reason and out.data == frame
    out = Normalizer().normalize("raw.bybit_linear.unknown.ALL", b"{}", RECV, 1)
    assert isinstance(out, Dead) and "unknown channel" in out.reason


def test_legacy_v2_recordings_are_routed_away_and_rejected() -> None:
    """The recorded frames are Bybit's retired v2 API: routed to ``unknown``/``control``
    by the v5 collector and rejected (DLQ) by the v5 parser, never crashing either."""
    n = Normalizer()
    channels: dict[str, int] = {}
    for name in ("cryptofeed/BYBIT.ws.25.0", "cryptofeed/BYBIT.ws.26.0"):
        for rec in recorded.read(shared_frames(name)):
            if rec.kind != "recv":
                continue
            data = rec.payload.encode()
            channel, sym = route(data)
            channels[channel] = channels.get(channel, 0) + 1
            out = n.normalize(subjects.raw("bybit_linear", channel, sym), data, RECV, 1)
            assert isinstance(out, Dead) or out == [], (channel, rec.payload[:200])
    assert channels.get("unknown", 0) > 100
    for rec in recorded.read(shared_frames("cryptofeed/BYBIT.0")):
        if rec.kind == "rest":
            out = n.normalize("raw.bybit_inverse.instruments.ALL", rec.payload.encode(), RECV, 1)
            assert isinstance(out, Dead)


# -- the book rule -----------------------------------------------------------------------
def _book(u: int, bids: list, asks: list, snapshot: bool = False) -> schemas.Book:
    return schemas.Book(venue="bybit", symbol="BTC-USDT-PERP", ts_event=u, ts_recv=u,
                        snapshot=snapshot, bids=bids, asks=asks, seq=u, first_seq=u)  # fmt: skip


def test_rule_consecutive_u_and_a_dropped_delta() -> None:
    assert isinstance(rule_for("BTC-USDT-PERP"), BybitV5)
    st = BookState(BybitV5())
    assert st.feed(_book(10, [(1.0, 1.0)], [(2.0, 1.0)])) is None  # buffered: no snapshot yet
    assert st.feed(_book(11, [(1.0, 1.0)], [(2.0, 1.0)], snapshot=True)) is None
    assert st.valid  # the buffered (older) delta was dropped as stale
    assert st.feed(_book(12, [(1.1, 2.0)], [])) is None
    p = st.feed(_book(14, [(1.2, 2.0)], []))
    assert isinstance(p, Problem) and p.reason == "sequence" and p.fatal
    assert (p.expected, p.got) == (13, 14) and not st.valid
    assert st.feed(_book(20, [(1.0, 3.0)], [(2.0, 3.0)], snapshot=True)) is None
    assert st.valid and st.book.levels() == ([(1.0, 3.0)], [(2.0, 3.0)])


# -- the collector against the emulator ------------------------------------------------
async def test_collector_end_to_end_against_the_emulator(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext, nc: Client
) -> None:
    syms = {"spot": ["BTCUSDT"], "linear": ["BTCUSDT", "ETHUSDT"]}
    async with BybitEmulator(syms, seed=3, require_ping_s=1.0) as emu:
        cfg = {"ws_url": emu.ws_url, "rest_url": emu.rest_url,
               "symbols": ["spot:BTCUSDT", "linear:BTCUSDT", "linear:ETHUSDT"],
               "channels": ["publicTrade", "orderbook.50"], "ping_interval_s": 0.25,
               "options": {"categories": "spot,linear"},
               "reconnect": {"min_s": 0.1, "max_s": 0.5}}  # fmt: skip
        settings = make_settings(tmp_path, nats_server.url,
                                 collector={"bybit": cfg, "flush_every": 200})  # fmt: skip
        async with inprocess_all(settings, collector=collector_main, normalizer=normalizer_main):
            await emu.wait_subscribed("orderbook.50.BTCUSDT", n=2, timeout=15)
            await emu.wait_subscribed("publicTrade.ETHUSDT", n=1, timeout=15)
            await emu.emit(1500, category="linear")
            await emu.emit(300, "BTCUSDT", category="spot")
            await asyncio.sleep(1.5)  # several ping periods: the emulator's guard must not fire

            # RAW: every data frame once, byte for byte, per category
            for cat in ("linear", "spot"):
                want = [d for c, t, d in emu.sent if c == cat and t == "publicTrade.BTCUSDT"]
                sub = await js.subscribe(f"raw.bybit_{cat}.publicTrade.BTCUSDT",
                                         stream=STREAM_RAW, ordered_consumer=True)  # fmt: skip
                got = await take(sub, len(want))
                await sub.unsubscribe()
                assert [m.data for m in got] == want and len(want) > 100
            sub = await js.subscribe("raw.bybit_linear.orderbook.BTCUSDT", stream=STREAM_RAW,
                                     ordered_consumer=True)  # fmt: skip
            want = [d for c, t, d in emu.sent if c == "linear" and t == "orderbook.50.BTCUSDT"]
            got = await take(sub, len(want))
            await sub.unsubscribe()
            assert [m.data for m in got] == want
            assert emu.pings >= 4
            sub = await js.subscribe("raw.*.conn.ALL", stream=STREAM_RAW,
                                     ordered_consumer=True)  # fmt: skip
            conn = [orjson.loads(m.data) for m in await take(sub, 3, timeout=2)]
            await sub.unsubscribe()
            assert [c["event"] for c in conn] == ["connected", "connected"]  # never dropped
            assert {r["op"] for r in emu.requests} == {"subscribe", "ping"}
            sub = await js.subscribe("raw.bybit_linear.control.ALL", stream=STREAM_RAW,
                                     ordered_consumer=True)  # fmt: skip
            ctl = [orjson.loads(m.data) for m in await take(sub, 3, timeout=3)]
            await sub.unsubscribe()
            assert ctl[0]["op"] == "subscribe" and ctl[0]["success"] is True
            assert ctl[1]["op"] == "pong"

            # MARKET: trades, and the book rebuilt from it equals the emulator's true book
            n_trades = sum(1 for c, t, _ in emu.sent if t.startswith("publicTrade"))
            sub = await js.subscribe("market.trade.bybit.*", stream=STREAM_MARKET,
                                     ordered_consumer=True)  # fmt: skip
            trades = [schemas.decode(m.data) for m in await take(sub, n_trades)]
            await sub.unsubscribe()
            assert len(trades) == n_trades
            sim = emu.sim("BTCUSDT")
            assert {t.id for t in trades if t.symbol == "BTC-USDT-PERP"} == {  # type: ignore[attr-defined]
                f"BTCUSDT-{i:08d}" for i in range(1, sim.trade_id + 1)}  # fmt: skip

            books = await js.subscribe("market.book.bybit.BTC-USDT-PERP", stream=STREAM_MARKET,
                                       ordered_consumer=True)  # fmt: skip
            st = BookState(BybitV5())
            seen: list = []

            async def feed_until(u: int) -> list[Problem]:
                problems = []
                while st.seq != u or not st.valid:
                    before = len(seen)
                    seen.extend(await take(books, 1, timeout=5))
                    assert len(seen) > before, f"book stuck at {st.seq}, want {u}"
                    p = st.feed(schemas.decode(seen[-1].data))  # type: ignore[arg-type]
                    if p is not None:
                        problems.append(p)
                return problems

            assert await feed_until(sim.u) == []
            assert st.book.levels() == sim.true_book(50)
            spot = await js.subscribe("market.book.bybit.BTC-USDT", stream=STREAM_MARKET,
                                      ordered_consumer=True)  # fmt: skip
            sst, ssim = BookState(BybitV5()), emu.sim("BTCUSDT", "spot")
            for m in await take(
                spot,
                sum(1 for c, t, _ in emu.sent if c == "spot" and t.startswith("orderbook")),
            ):
                assert sst.feed(schemas.decode(m.data)) is None  # type: ignore[arg-type]
            assert sst.valid and sst.seq == ssim.u and sst.book.levels() == ssim.true_book(50)

            # a dropped delta is a sequence problem; ctl.snapshot re-subscribes and heals
            await emu.emit(200, "BTCUSDT", trades=False, fault="drop")
            last = sim.u
            st_problems: list[Problem] = []
            while st.valid or st.seq is None or st.seq < last - 1:
                before = len(seen)
                seen.extend(await take(books, 1, timeout=5))
                assert len(seen) > before
                if (p := st.feed(schemas.decode(seen[-1].data))) is not None:  # type: ignore[arg-type]
                    st_problems.append(p)
                if st_problems:
                    break
            assert [p.reason for p in st_problems] == ["sequence"] and not st.valid
            reply = orjson.loads(
                (await nc.request("ctl.snapshot.bybit.BTC-USDT-PERP", b"{}", timeout=5)).data
            )
            assert reply == {"ok": True, "topics": ["orderbook.50.BTCUSDT"]}
            await emu.wait_subscribed("orderbook.50.BTCUSDT", n=2, timeout=5)
            await emu.emit(50, "BTCUSDT", trades=False)
            assert await feed_until(sim.u) == []
            assert st.book.levels() == sim.true_book(50)
            assert [r["op"] for r in emu.requests if r["op"] != "ping"][-2:] == [
                "unsubscribe", "subscribe"]  # fmt: skip
            bad = await nc.request("ctl.snapshot.bybit.DOGE-USDT-PERP", b"{}", timeout=5)
            assert orjson.loads(bad.data)["ok"] is False
            for s in (books, spot):
                await s.unsubscribe()
        assert emu.rest_calls["instruments-info"] == 2


async def test_silent_collector_is_dropped_by_the_ping_guard() -> None:
    """The emulator enforces Bybit's keepalive: a client that never pings is cut off."""
    import websockets

    async with BybitEmulator({"spot": ["BTCUSDT"]}, require_ping_s=0.3) as emu:
        url = emu.ws_url.replace("/linear", "/spot")
        async with websockets.connect(url) as ws:
            args = [f"publicTrade.BTCUSDT{i}" for i in range(11)]
            await ws.send(orjson.dumps({"op": "subscribe", "args": args, "req_id": "a"}).decode())
            ack = orjson.loads(await ws.recv())
            assert ack["success"] is False and "args" in ack["ret_msg"]
            await ws.send('{"op":"ping","req_id":"p"}')
            assert orjson.loads(await ws.recv())["ret_msg"] == "pong"  # spot's pong format
            with pytest.raises(websockets.ConnectionClosed):
                for _ in range(10):
                    await asyncio.wait_for(ws.recv(), 1.0)


def test_topic_plan_per_category() -> None:
    from collectors.bybit import categories, category_url, topics
    from collectors.config import VenueSettings

    cfg = VenueSettings(
        ws_url="wss://stream.bybit.com/v5/public/linear", rest_url="https://api.bybit.com",
        symbols=["BTCUSDT", "spot:ETHUSDT", "inverse:BTCUSD"],
        channels=["publicTrade", "orderbook.50", "allLiquidation"],
    )  # fmt: skip
    assert categories(cfg) == ["linear", "inverse", "spot"]
    assert category_url(cfg.ws_url, "spot") == "wss://stream.bybit.com/v5/public/spot"
    assert topics(cfg, "spot") == (["publicTrade.ETHUSDT", "orderbook.50.ETHUSDT"], ["ETHUSDT"])
    assert topics(cfg, "linear")[0] == [
        "publicTrade.BTCUSDT", "orderbook.50.BTCUSDT", "allLiquidation.BTCUSDT"]  # fmt: skip
    two_books = VenueSettings(ws_url="x", rest_url="x", symbols=["BTCUSDT"],
                              channels=["orderbook.50", "orderbook.200"])  # fmt: skip
    with pytest.raises(ValueError):
        topics(two_books, "linear")


async def test_orderbook_service_faults_resync_and_100k_deltas(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext, nc: Client
) -> None:
    """collector -> normalizer -> orderbook in-process against the emulator's true book:
    each injected fault is detected (a duplicate is dropped by JetStream's Nats-Msg-Id
    dedup before the book sees it), recorded as a gap, healed through ctl.snapshot, and
    after 100k more deltas the served book is exactly the venue's."""
    from orderbook.service import main as orderbook_main

    async def synced(timeout: float = 20) -> dict:
        sim = emu.sim("BTCUSDT")
        deadline = asyncio.get_running_loop().time() + timeout
        b: dict = {}
        while asyncio.get_running_loop().time() < deadline:
            b = await served_book(nc, "bybit", "BTC-USDT-PERP")
            if b.get("valid") and b.get("seq") == sim.u:
                assert (
                    [tuple(x) for x in b["bids"]],
                    [tuple(x) for x in b["asks"]],
                ) == sim.true_book(50)
                return b
            if not b.get("valid"):  # keep the venue moving so the resync can complete
                await emu.emit(5, "BTCUSDT", trades=False)
            await asyncio.sleep(0.1)
        raise AssertionError(f"not synced: valid={b.get('valid')} seq={b.get('seq')}")

    gaps = await js.subscribe(
        subjects.market_filter("gap", "bybit"), stream=STREAM_MARKET, ordered_consumer=True
    )
    async with BybitEmulator({"linear": ["BTCUSDT"]}, seed=21) as emu:
        cfg = {"ws_url": emu.ws_url, "rest_url": emu.rest_url, "symbols": ["linear:BTCUSDT"],
               "channels": ["orderbook.50"], "reconnect": {"min_s": 0.1, "max_s": 0.5}}  # fmt: skip
        settings = make_settings(
            tmp_path, nats_server.url, collector={"bybit": cfg},
            orderbook={"depth_interval_ms": 50, "snapshot_retry_s": 0.3},
        )  # fmt: skip
        async with inprocess_all(
            settings, orderbook=orderbook_main, normalizer=normalizer_main, collector=collector_main
        ):
            await emu.wait_subscribed("orderbook.50.BTCUSDT", timeout=15)
            await emu.emit(300, "BTCUSDT", trades=False)
            await synced()
            faults = (("drop", "sequence"), ("duplicate", None), ("reorder", "sequence"),
                      ("cross", "crossed"))  # fmt: skip
            for fault, reason in faults:
                await emu.emit(200, "BTCUSDT", trades=False, fault=fault)
                await expect_gap(gaps, reason, fault)
                await synced()
            for _ in range(10):
                await emu.emit(10_000, "BTCUSDT", trades=False)
            b = await synced(timeout=120)
            assert b["updates"] >= 100_000 and b["problems"] == 3, b["problems"]
    await gaps.unsubscribe()
