"""Deribit: symbols, parsing (docs examples, generated and recorded frames), the
prev_change_id book rule with injected faults, and the collector against the local
emulator on a real nats-server, through the normalizer into ClickHouse."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets
from nats.aio.client import Client
from nats.js import JetStreamContext

from collectors.config import VenueSettings
from collectors.deribit import channel_names, instruments_queries, route
from collectors.deribit import run as collector_main
from normalizer.core import Dead, Normalizer
from normalizer.worker import main as normalizer_main
from orderbook.sync import BookState, Problem
from orderbook.venues.deribit import DeribitChangeId, rule_for
from streams import schemas, subjects
from streams.bus.server import NatsServer
from streams.provision import STREAM_MARKET
from streams.settings import Settings
from streams.symbols.deribit import currency, inverse, kind, to_native, to_symbol
from tests import recorded
from tests.conftest import make_settings, shared_frames
from tests.helpers import raw_messages, rows, served_book, take, venue_cfg
from tests.venues.deribit.emulator import DEFAULT_SPECS, DeribitEmulator, InstrumentSim
from tests.workers import inprocess, inprocess_all

RECV = {subjects.H_RECV_NS: "1700000000000000001"}
MS = 1_000_000


def note(channel: str, data: Any) -> bytes:
    return DeribitEmulator.frame(channel, data)


def norm(n: Normalizer, frame: bytes, seq: int = 1) -> list[schemas.Base] | Dead:
    # REST instruments bodies reach RAW from the collector's REST call, not the WebSocket
    channel, target = ("instruments", "BTC") if b'"result":[{' in frame[:60] else route(frame)
    out = n.normalize(subjects.raw("deribit", channel, target), frame, RECV, seq)
    return out if isinstance(out, Dead) else [schemas.decode(o.data) for o in out]


def ok(n: Normalizer, frame: bytes, seq: int = 1) -> list[Any]:
    out = norm(n, frame, seq)
    assert not isinstance(out, Dead), out.reason
    return out


# -- names -----------------------------------------------------------------------------
PAIRS = [
    ("BTC-PERPETUAL", "BTC-USD-PERP"), ("ETH-PERPETUAL", "ETH-USD-PERP"),
    ("BTC-27DEC24", "BTC-USD-20241227"), ("BTC-3JAN25", "BTC-USD-20250103"),
    ("BTC-27DEC24-100000-C", "BTC-USD-20241227-100000-C"),
    ("ETH-5JUL24-2500-P", "ETH-USD-20240705-2500-P"),
    ("BTC_USDC-PERPETUAL", "BTC-USDC-PERP"), ("BTC_USDC-27DEC24", "BTC-USDC-20241227"),
    ("XRP_USDC-27DEC24-0d625-C", "XRP-USDC-20241227-0d625-C"), ("BTC_USDC", "BTC-USDC"),
]  # fmt: skip


@pytest.mark.parametrize(("native", "ours"), PAIRS)
def test_symbols_both_ways(native: str, ours: str) -> None:
    assert to_symbol(native) == ours
    assert to_native(ours) == native


def test_symbol_kinds_and_refusals() -> None:
    assert [inverse(n) for n, _ in PAIRS] == [True, True, True, True, False, False, False,
                                               False, False, False]  # fmt: skip
    assert [kind(n) for n in ("BTC-PERPETUAL", "BTC-27DEC24-1-C", "BTC_USDC")] == [
        "future", "option", "spot"]  # fmt: skip
    assert [currency(n) for n in ("BTC-PERPETUAL", "SOL_USDC-PERPETUAL", "ETH-1JAN25-1-P",
                                  "BTC_USDC")] == ["BTC", "USDC", "ETH", "BTC"]  # fmt: skip
    for bad in ("BTC-FS-27DEC24_PERP", "BTC-32DEC24", "BTC-27XYZ24", "BTC-27DEC24-1-Q",
                "BTC-27DEC24-1d-C", "A.B-PERPETUAL", "", "BTC-PERPETUAL-X"):  # fmt: skip
        with pytest.raises(ValueError):
            to_symbol(bad)
    for bad in ("BTC", "BTC-USD-SOMETHING", "BTC-USD-20241327", "BTC-USD-20241227-1-Q"):
        with pytest.raises(ValueError):
            to_native(bad)


def test_route_slices_the_channel() -> None:
    assert route(note("book.BTC-PERPETUAL.100ms", {})) == ("book", "BTC-PERPETUAL")
    assert route(note("trades.BTC_USDC-PERPETUAL.raw", [])) == ("trades", "BTC_USDC-PERPETUAL")
    assert route(note("quote.BTC-27DEC24-100000-C", {})) == ("quote", "BTC-27DEC24-100000-C")
    assert route(note("chart.trades.BTC-PERPETUAL.1", {})) == ("chart_trades", "BTC-PERPETUAL")
    assert route(note("ticker.ETH-PERPETUAL.100ms", {})) == ("ticker", "ETH-PERPETUAL")
    # other key orders still route, through a small decode
    other = b'{"params":{"channel":"book.BTC-PERPETUAL.raw","data":{}},"method":"subscription"}'
    assert route(other) == ("book", "BTC-PERPETUAL")
    assert route(b'{"jsonrpc":"2.0","id":3,"result":["book.BTC-PERPETUAL.100ms"]}') == (
        "control", "ALL")  # fmt: skip
    assert route(b'{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}') == (
        "control", "ALL")  # fmt: skip
    assert route(note("deribit_price_index.btc_usd", {})) == ("unknown", "ALL")
    assert route(note("book.BTC*X.100ms", {})) == ("unknown", "ALL")
    assert route(b'{"jsonrpc":"2.0","method":"subscription","params":{"chan') == (
        "unknown", "ALL")  # fmt: skip
    assert route(bytes(range(256))) == ("unknown", "ALL")


def test_channel_plan_and_instrument_queries() -> None:
    cfg = VenueSettings(
        ws_url="ws://x", rest_url="http://x", symbols=["BTC-PERPETUAL", "BTC_USDC-PERPETUAL"],
        channels=["trades", "book", "quote", "ticker", "chart.trades"],
        options={"interval": "raw", "chart_resolution": "60"},
    )  # fmt: skip
    assert channel_names(cfg) == [
        "trades.BTC-PERPETUAL.raw", "trades.BTC_USDC-PERPETUAL.raw",
        "book.BTC-PERPETUAL.raw", "book.BTC_USDC-PERPETUAL.raw",
        "quote.BTC-PERPETUAL", "quote.BTC_USDC-PERPETUAL",
        "ticker.BTC-PERPETUAL.raw", "ticker.BTC_USDC-PERPETUAL.raw",
        "chart.trades.BTC-PERPETUAL.60", "chart.trades.BTC_USDC-PERPETUAL.60",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="unknown channel"):
        channel_names(VenueSettings(ws_url="x", rest_url="x", symbols=["A"], channels=["nope"]))
    assert instruments_queries(
        ["BTC-PERPETUAL", "BTC-27DEC24", "BTC-27DEC24-100000-C", "SOL_USDC-PERPETUAL",
         "ETH_USDC"]
    ) == [
        {"currency": "BTC", "kind": "future", "expired": "false"},
        {"currency": "BTC", "kind": "option", "expired": "false"},
        {"currency": "USDC", "kind": "future", "expired": "false"},
        {"currency": "ETH", "kind": "spot", "expired": "false"},
    ]  # fmt: skip


# -- hand-checked frames shaped like the examples in Deribit's API docs ----------------
def test_docs_trades_and_liquidations() -> None:
    n = Normalizer()
    t = {"trade_seq": 30289442, "trade_id": "48079269", "timestamp": 1590484156350,
         "tick_direction": 2, "price": 8950.0, "mark_price": 8948.9,
         "instrument_name": "BTC-PERPETUAL", "index_price": 8955.88, "direction": "sell",
         "amount": 10.0}  # fmt: skip
    [m] = ok(n, note("trades.BTC-PERPETUAL.raw", [t]))
    assert isinstance(m, schemas.Trade)
    assert (m.venue, m.symbol, m.id, m.price, m.side) == (
        "deribit", "BTC-USD-PERP", "48079269", 8950.0, "sell")  # fmt: skip
    assert m.size == 10.0 / 8950.0  # 10 USD of an inverse perpetual, in BTC
    assert (m.ts_event, m.ts_recv) == (1590484156350 * MS, 1700000000000000001)
    # an option trade: amount already in BTC; a taker liquidation ("T") and a maker one
    opt = dict(t, instrument_name="BTC-27DEC24-100000-C", price=0.0465, amount=1.5,
               direction="buy", trade_id="ETH-1", liquidation="MT")  # fmt: skip
    tr, lt, lm = ok(n, note("trades.BTC-27DEC24-100000-C.raw", [opt]))
    assert isinstance(tr, schemas.Trade) and (tr.symbol, tr.size) == (
        "BTC-USD-20241227-100000-C", 1.5)  # fmt: skip
    assert isinstance(lt, schemas.Liquidation) and isinstance(lm, schemas.Liquidation)
    assert (lt.side, lt.price, lt.size, lt.id) == ("buy", 0.0465, 1.5, "ETH-1:T")
    assert (lm.side, lm.id) == ("sell", "ETH-1:M")  # the maker sold: its order was the sell
    [_, only] = ok(n, note("trades.BTC-PERPETUAL.raw", [dict(t, liquidation="M")]))
    assert isinstance(only, schemas.Liquidation) and only.side == "buy"
    assert only.size == 10.0 / 8950.0


def test_docs_book_snapshot_then_change() -> None:
    n = Normalizer()
    snap = {"type": "snapshot", "timestamp": 1554373962454, "instrument_name": "BTC-PERPETUAL",
            "change_id": 297217, "bids": [["new", 5042.34, 30], ["new", 5041.94, 20]],
            "asks": [["new", 5042.64, 40], ["new", 5043.3, 40]]}  # fmt: skip
    change = {"type": "change", "timestamp": 1554373911330, "prev_change_id": 297217,
              "instrument_name": "BTC-PERPETUAL", "change_id": 297218,
              "bids": [["delete", 5041.94, 0]], "asks": [["change", 5042.64, 31],
                                                          ["new", 5044.0, 10]]}  # fmt: skip
    [s] = ok(n, note("book.BTC-PERPETUAL.100ms", snap), 7)
    [c] = ok(n, note("book.BTC-PERPETUAL.100ms", change), 8)
    assert isinstance(s, schemas.Book) and isinstance(c, schemas.Book)
    assert (s.snapshot, s.seq, s.prev_seq, s.checksum) == (True, 297217, None, None)
    assert s.bids == [(5042.34, 30 / 5042.34), (5041.94, 20 / 5041.94)]
    assert s.asks == [(5042.64, 40 / 5042.64), (5043.3, 40 / 5043.3)]
    assert (c.snapshot, c.seq, c.prev_seq, c.ts_event) == (False, 297218, 297217,
                                                           1554373911330 * MS)  # fmt: skip
    assert c.bids == [(5041.94, 0.0)] and c.asks == [(5042.64, 31 / 5042.64),
                                                     (5044.0, 10 / 5044.0)]  # fmt: skip
    st = BookState(rule_for("BTC-USD-PERP"))
    assert st.feed(s) is None and st.feed(c) is None and st.valid
    assert st.book.levels() == ([(5042.34, 30 / 5042.34)],
                                [(5042.64, 31 / 5042.64), (5043.3, 40 / 5043.3),
                                 (5044.0, 10 / 5044.0)])  # fmt: skip
    # an option book: amounts in BTC already
    opt = dict(snap, instrument_name="BTC-27DEC24-100000-C", bids=[["new", 0.0465, 1.5]],
               asks=[])  # fmt: skip
    [o] = ok(n, note("book.BTC-27DEC24-100000-C.100ms", opt))
    assert isinstance(o, schemas.Book) and o.bids == [(0.0465, 1.5)] and o.asks == []


def test_docs_quote_ticker_and_chart() -> None:
    n = Normalizer()
    q = {"timestamp": 1550658624149, "instrument_name": "BTC-PERPETUAL",
         "best_bid_price": 3914.97, "best_bid_amount": 40.0, "best_ask_price": 3996.61,
         "best_ask_amount": 50.0}  # fmt: skip
    [b] = ok(n, note("quote.BTC-PERPETUAL", q))
    assert isinstance(b, schemas.BBO)
    assert (b.symbol, b.bid_price, b.bid_size, b.ask_price, b.ask_size, b.ts_event) == (
        "BTC-USD-PERP",
        3914.97,
        40 / 3914.97,
        3996.61,
        50 / 3996.61,
        1550658624149 * MS,
    )
    assert ok(n, note("quote.BTC-PERPETUAL", dict(q, best_ask_price=None))) == []

    tk = {"timestamp": 1623060194301, "stats": {"volume_usd": 284061480, "volume": 7871.02139035,
          "price_change": 0.7229, "low": 35213.5, "high": 36824.5}, "state": "open",
          "settlement_price": 36169.49, "open_interest": 502097590, "min_price": 35898.37,
          "max_price": 36991.72, "mark_price": 36446.51, "last_price": 36457.5,
          "interest_value": 1.7362511643080387, "instrument_name": "BTC-PERPETUAL",
          "index_price": 36441.64, "funding_8h": 0.0000211, "estimated_delivery_price": 36441.64,
          "current_funding": 0, "best_bid_price": 36442.5, "best_bid_amount": 5000,
          "best_ask_price": 36443, "best_ask_amount": 100}  # fmt: skip
    ticker, mark, oi, fund = ok(n, note("ticker.BTC-PERPETUAL.100ms", tk))
    assert isinstance(ticker, schemas.Ticker)
    assert (ticker.last, ticker.bid, ticker.ask, ticker.high_24h, ticker.low_24h) == (
        36457.5, 36442.5, 36443.0, 36824.5, 35213.5)  # fmt: skip
    assert (ticker.volume_24h, ticker.quote_volume_24h, ticker.open_24h) == (
        7871.02139035, 284061480.0, None)  # fmt: skip
    assert isinstance(mark, schemas.Mark)
    assert (mark.mark_price, mark.index_price) == (36446.51, 36441.64)
    assert isinstance(oi, schemas.OpenInterest)
    assert (oi.open_interest, oi.open_interest_value) == (502097590 / 36446.51, 502097590.0)
    assert isinstance(fund, schemas.Funding)
    assert (fund.rate, fund.predicted_rate, fund.next_funding_ts) == (0.0000211, 0.0, None)
    assert {m.ts_event for m in (ticker, mark, oi, fund)} == {1623060194301 * MS}
    # an option ticker: no funding; open interest already in BTC
    otk = {k: v for k, v in tk.items() if k not in ("funding_8h", "current_funding")}
    otk.update(instrument_name="BTC-27DEC24-100000-C", open_interest=12.5, mark_price=0.05,
               last_price=None)  # fmt: skip
    t2, m2, oi2 = ok(n, note("ticker.BTC-27DEC24-100000-C.100ms", otk))
    assert isinstance(t2, schemas.Ticker) and t2.last is None
    assert isinstance(oi2, schemas.OpenInterest) and (
        oi2.open_interest,
        oi2.open_interest_value,
    ) == (12.5, None)
    assert isinstance(m2, schemas.Mark) and m2.mark_price == 0.05

    k = {"volume": 0.05219351, "tick": 1573645080000, "open": 8869.79, "low": 8788.25,
         "high": 8870.31, "cost": 460, "close": 8791.25}  # fmt: skip
    [c] = ok(n, note("chart.trades.BTC-PERPETUAL.1", k))
    assert isinstance(c, schemas.Candle)
    assert (c.interval, c.ts_open, c.open, c.high, c.low, c.close, c.volume, c.closed) == (
        "1m",
        1573645080000 * MS,
        8869.79,
        8870.31,
        8788.25,
        8791.25,
        0.05219351,
        False,
    )
    nxt = dict(k, tick=1573645140000, volume=0.1, open=8791.25)
    closed, cur = ok(n, note("chart.trades.BTC-PERPETUAL.1", nxt))
    assert isinstance(closed, schemas.Candle) and isinstance(cur, schemas.Candle)
    assert (closed.closed, closed.ts_open, closed.volume) == (True, 1573645080000 * MS,
                                                              0.05219351)  # fmt: skip
    assert (cur.closed, cur.ts_open, cur.volume) == (False, 1573645140000 * MS, 0.1)
    [d] = ok(n, note("chart.trades.BTC-PERPETUAL.1D", k))
    assert isinstance(d, schemas.Candle) and d.interval == "1d"


def test_docs_instruments() -> None:
    n = Normalizer()
    fut = {"tick_size": 2.5, "tick_size_steps": [], "taker_commission": 0.0005,
           "settlement_period": "month", "settlement_currency": "BTC", "quote_currency": "USD",
           "price_index": "btc_usd", "min_trade_amount": 10, "max_liquidation_commission": 0.0075,
           "max_leverage": 50, "maker_commission": 0, "kind": "future", "is_active": True,
           "instrument_name": "BTC-29SEP23", "instrument_id": 138583,
           "expiration_timestamp": 1695974400000, "creation_timestamp": 1664524802000,
           "counter_currency": "USD", "contract_size": 10, "block_trade_tick_size": 0.01,
           "block_trade_min_trade_amount": 200000, "block_trade_commission": 0.00025,
           "base_currency": "BTC"}  # fmt: skip
    opt = dict(fut, kind="option", instrument_name="BTC-29SEP23-30000-P", tick_size=0.0005,
               min_trade_amount=0.1, contract_size=1, quote_currency="BTC", strike=30000.0,
               option_type="put")  # fmt: skip
    perp = dict(fut, instrument_name="BTC_USDC-PERPETUAL", settlement_period="perpetual",
                expiration_timestamp=32503708800000, quote_currency="USDC",
                settlement_currency="USDC", future_type="linear", min_trade_amount=0.001,
                contract_size=0.001, tick_size=1)  # fmt: skip
    combo = dict(fut, kind="future_combo", instrument_name="BTC-FS-29SEP23_PERP")
    body = orjson.dumps({"jsonrpc": "2.0", "result": [fut, opt, perp, combo], "usIn": 1,
                         "usOut": 2, "usDiff": 1, "testnet": False})  # fmt: skip
    f, o, p = ok(n, body)
    assert isinstance(f, schemas.Instrument) and isinstance(o, schemas.Instrument)
    assert isinstance(p, schemas.Instrument)
    assert (f.symbol, f.native_symbol, f.kind, f.base, f.quote, f.settle) == (
        "BTC-USD-20230929", "BTC-29SEP23", "future", "BTC", "USD", "BTC")  # fmt: skip
    assert (f.tick_size, f.lot_size, f.contract_size, f.expiry_ts, f.strike) == (
        2.5, 10.0, 10.0, 1695974400000 * MS, None)  # fmt: skip
    assert (o.symbol, o.kind, o.strike, o.option_type, o.settle, o.contract_size) == (
        "BTC-USD-20230929-30000-P", "option", 30000.0, "put", "BTC", 1.0)  # fmt: skip
    assert (p.symbol, p.kind, p.expiry_ts, p.quote, p.settle, p.lot_size) == (
        "BTC-USDC-PERP", "perpetual", None, "USDC", "USDC", 0.001)  # fmt: skip
    err = b'{"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid params"},"usIn":1}'
    out = n.normalize("raw.deribit.instruments.BTC", err, RECV, 1)
    assert isinstance(out, Dead) and "instruments error -32602: Invalid params" in out.reason


BAD = [
    (note("book.BTC-PERPETUAL.100ms", {"type": "change", "timestamp": 1,
          "instrument_name": "BTC-PERPETUAL", "change_id": 5, "bids": [], "asks": []}),
     "without prev_change_id"),
    (note("book.BTC-PERPETUAL.100ms", {"type": "weird", "timestamp": 1, "change_id": 5,
          "instrument_name": "BTC-PERPETUAL", "bids": [], "asks": []}), "unknown book type"),
    (note("book.BTC-PERPETUAL.100ms", {"type": "snapshot", "timestamp": 1, "change_id": 5,
          "instrument_name": "BTC-PERPETUAL", "bids": [["new", 1.0, -2.0]], "asks": []}),
     "invalid book frame"),
    (note("book.BTC-PERPETUAL.100ms", {"type": "snapshot", "timestamp": 1, "change_id": 5,
          "instrument_name": "BTC-PERPETUAL", "bids": [["grow", 1.0, 2.0]], "asks": []}),
     "invalid book frame"),
    (note("book.BTC-PERPETUAL.100ms", {"type": "snapshot", "timestamp": 1, "change_id": 5,
          "instrument_name": "ETH-PERPETUAL", "bids": [], "asks": []}), "on a frame for"),
    (note("trades.BTC-PERPETUAL.raw", [{"trade_id": "1", "instrument_name": "BTC-PERPETUAL",
          "timestamp": 1, "price": 0, "amount": 1, "direction": "buy"}]), "invalid trades"),
    (note("trades.BTC-PERPETUAL.raw", [{"trade_id": "1", "instrument_name": "BTC-PERPETUAL",
          "timestamp": 1, "price": 1, "amount": 1, "direction": "buy", "liquidation": "X"}]),
     "unknown liquidation flag"),
    (note("chart.trades.BTC-PERPETUAL.7", {"tick": 1, "open": 1, "high": 1, "low": 1,
          "close": 1, "volume": 1}), "unknown chart resolution"),
    (b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"ticker.BTC-PERPETUAL.100ms"'
     b',"data":{"timestamp":16', "malformed ticker"),
    (note("ticker.BTC-PERPETUAL.100ms", {"instrument_name": "BTC-PERPETUAL"}), "invalid ticker"),
]  # fmt: skip


@pytest.mark.parametrize(("frame", "why"), BAD)
def test_malformed_frames_are_rejected_with_a_reason(frame: bytes, why: str) -> None:
    out = norm(Normalizer(), frame)
    assert isinstance(out, Dead) and why in out.reason, out


def test_unknown_channels_and_control_frames() -> None:
    n = Normalizer()
    out = n.normalize("raw.deribit.unknown.ALL", b"{}", RECV, 1)
    assert isinstance(out, Dead) and "unknown channel 'unknown'" in out.reason
    for control in (
        b'{"jsonrpc":"2.0","id":1,"result":["book.BTC-PERPETUAL.100ms"]}',
        b'{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}',
    ):
        assert ok(n, control) == []
    gap = {"event": "disconnected", "conn": "c1", "ts": 5, "reason": "stale",
           "symbols": ["BTC-PERPETUAL", "BTC-27DEC24-100000-C"]}  # fmt: skip
    out2 = n.normalize("raw.deribit.conn.ALL", orjson.dumps(gap), RECV, 3)
    assert not isinstance(out2, Dead)
    gaps = [schemas.decode(o.data) for o in out2]
    assert [(g.symbol, g.reason) for g in gaps] == [  # type: ignore[attr-defined]
        ("BTC-USD-PERP", "reconnect"),
        ("BTC-USD-20241227-100000-C", "reconnect"),
    ]


def test_generated_frames_every_channel() -> None:
    """The emulator's generator for every channel, against what its true state says."""
    n = Normalizer()
    rnd = random.Random(4)
    for name in DEFAULT_SPECS:
        sim = InstrumentSim(DEFAULT_SPECS[name], rnd)
        inv = DEFAULT_SPECS[name].inverse
        symbol = to_symbol(name)

        def base(price: float, amount: float, inv: bool = inv) -> float:
            return amount / price if inv else amount

        for i in range(50):
            t = sim.trade(START + i)
            out = ok(n, note(f"trades.{name}.100ms", [t]))
            assert isinstance(out[0], schemas.Trade) and out[0].symbol == symbol
            assert out[0].size == base(t["price"], t["amount"]) and out[0].id == t["trade_id"]
            assert len(out) == 1 + len(t.get("liquidation", ""))
            k = ok(n, note(f"chart.trades.{name}.1", sim.candle))[-1]
            assert isinstance(k, schemas.Candle) and k.close == t["price"] and not k.closed
        q = sim.quote(START)
        [bbo] = ok(n, note(f"quote.{name}", q))
        assert isinstance(bbo, schemas.BBO)
        assert bbo.bid_size == base(q["best_bid_price"], q["best_bid_amount"])
        tk = ok(n, note(f"ticker.{name}.100ms", sim.ticker(START)))
        assert [type(m).__name__ for m in tk] == ["Ticker", "Mark", "OpenInterest"] + (
            ["Funding"] if name.endswith("PERPETUAL") else [])  # fmt: skip


START = 1_700_000_000_000


# -- recorded real traffic -------------------------------------------------------------
def test_recorded_frames_normalize_and_every_book_chain_holds() -> None:
    n = Normalizer()
    seq = 0
    instruments = 0
    for r in recorded.read(shared_frames("cryptofeed/DERIBIT.0")):
        if r.kind == "rest" and "get_instruments" in r.url:
            seq += 1
            out = n.normalize("raw.deribit.instruments.ALL", r.payload.encode(), RECV, seq)
            assert not isinstance(out, Dead), out.reason
            instruments += len(out)
    assert instruments == 398 + 426 + 177 + 16  # every BTC, ETH, SOL and USDC instrument
    types: Counter[str] = Counter()
    states: dict[str, BookState] = {}
    problems: list[Problem] = []
    applied: Counter[str] = Counter()
    control = 0
    for r in recorded.read(shared_frames("cryptofeed/DERIBIT.ws.1.0")):
        if r.kind != "recv":
            continue
        seq += 1
        frame = r.payload.encode()
        if route(frame)[0] == "control":
            control += 1  # the subscribe reply: documented, produces nothing
        msgs = norm(n, frame, seq)
        assert not isinstance(msgs, Dead), (msgs.reason, r.payload[:200])
        for m in msgs:
            types[type(m).__struct_config__.tag] += 1  # type: ignore[attr-defined]
            if isinstance(m, schemas.Book):
                st = states.setdefault(m.symbol, BookState(rule_for(m.symbol)))
                p = st.feed(m)
                if p is not None:
                    problems.append(p)
                applied[m.symbol] += 1
    assert control == 1
    assert types == {"book": 46, "ticker": 89, "mark": 89, "open_interest": 89, "option_greeks": 89}
    assert problems == []
    assert len(states) == 10 and all(st.valid for st in states.values())
    assert sum(st.updates for st in states.values()) == 46 - 10  # every change chained


# -- the book rule offline: 100k changes per symbol, and every injected fault ----------
def _feed(n: Normalizer, st: BookState, sim: InstrumentSim, data: dict, seq: int) -> Any:
    out = norm(n, note(f"book.{sim.spec.name}.100ms", data), seq)
    if isinstance(out, Dead):
        return out
    [m] = out
    return st.feed(m)  # type: ignore[arg-type]


def _true(sim: InstrumentSim) -> tuple[list, list]:
    inv = sim.spec.inverse
    bids, asks = sim.true_book()
    conv = lambda lv: [(p, a / p if inv else a) for p, a in lv]  # noqa: E731
    return conv(bids), conv(asks)


@pytest.mark.parametrize("name", ["BTC-PERPETUAL", "BTC-27DEC24-100000-C"])
def test_rebuilt_book_equals_true_book_after_100k_changes(name: str) -> None:
    n = Normalizer()
    sim = InstrumentSim(DEFAULT_SPECS[name], random.Random(21))
    st = BookState(rule_for(to_symbol(name)))
    assert _feed(n, st, sim, sim.snapshot(START), 1) is None and st.valid
    for i in range(100_000):
        assert _feed(n, st, sim, sim.change(START + i), i + 2) is None
    assert st.valid and st.updates == 100_000 and st.seq == sim.change_id
    assert st.book.levels() == _true(sim)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("drop", "sequence"), ("duplicate", "sequence"), ("reorder", "sequence"),
     ("corrupt", "sequence"), ("cross", "crossed")],
)  # fmt: skip
def test_injected_faults_detected_and_healed_by_a_snapshot(fault: str, reason: str) -> None:
    n = Normalizer()
    sim = InstrumentSim(DEFAULT_SPECS["BTC-PERPETUAL"], random.Random(22))
    st = BookState(DeribitChangeId())
    assert _feed(n, st, sim, sim.snapshot(START), 1) is None
    for i in range(100):
        assert _feed(n, st, sim, sim.change(START), i + 2) is None
    a, b = sim.change(START), sim.change(START)
    if fault == "drop":
        wire = [b]
    elif fault == "duplicate":
        wire = [a, a, b]
    elif fault == "reorder":
        wire = [b, a]
    elif fault == "corrupt":
        bad = dict(a, bids=a["bids"] or a["asks"], asks=[])
        bad["bids"] = [[bad["bids"][0][0], bad["bids"][0][1], -5.0]]
        wire = [bad, b]
    else:
        a["bids"] = a["bids"] + [["new", sim.px(min(sim.asks)), 10.0]]
        wire = [a, b]
    results = [_feed(n, st, sim, d, 200 + i) for i, d in enumerate(wire)]
    found = [r for r in results if isinstance(r, Problem)]
    assert found and found[0].reason == reason, results
    if fault == "duplicate":
        assert not found[0].fatal and st.valid  # detected, harmless: the book is unchanged
    else:
        assert not st.valid
        if fault == "corrupt":
            assert isinstance(results[0], Dead) and "invalid book" in results[0].reason
        assert _feed(n, st, sim, sim.snapshot(START), 300) is None and st.valid
    for i in range(50):  # healed: the chain continues from the fresh snapshot
        assert _feed(n, st, sim, sim.change(START), 400 + i) is None
    assert st.book.levels() == _true(sim)


# -- the emulator's protocol -----------------------------------------------------------
async def test_emulator_protocol() -> None:
    async with (
        DeribitEmulator(["BTC-PERPETUAL"], seed=5, min_heartbeat_s=0.2) as emu,
        websockets.connect(emu.ws_url) as ws,
    ):

        async def call(req_id: int, method: str, params: dict) -> dict:
            await ws.send(orjson.dumps({"jsonrpc": "2.0", "id": req_id, "method": method,
                                        "params": params}).decode())  # fmt: skip
            return orjson.loads(await ws.recv())

        assert (await call(1, "public/set_heartbeat", {"interval": 0.1}))["error"]["code"] == -32602
        assert (await call(2, "public/set_heartbeat", {"interval": 0.3}))["result"] == "ok"
        rep = await call(
            3,
            "public/subscribe",
            {"channels": ["book.BTC-PERPETUAL.100ms", "book.NOPE-PERPETUAL.100ms"]},
        )
        assert rep["id"] == 3 and rep["result"] == ["book.BTC-PERPETUAL.100ms"]
        snap = orjson.loads(await ws.recv())
        d = snap["params"]["data"]
        assert snap["params"]["channel"] == "book.BTC-PERPETUAL.100ms" and d["type"] == "snapshot"
        assert len(d["bids"]) == 59 and all(lv[0] == "new" for lv in d["bids"] + d["asks"])
        beat = orjson.loads(await ws.recv())
        assert beat == {"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "test_request"}}
        assert (await call(4, "public/test", {}))["result"] == {"version": "1.2.26"}
        await ws.send("{bad json")
        assert orjson.loads(await ws.recv())["error"]["code"] == -32700
        assert (await call(5, "public/buy", {}))["error"]["code"] == -32601
        await emu.emit(4, books_every=2)
        frames = [orjson.loads(await ws.recv())["params"]["data"] for _ in range(2)]
        assert frames[0]["prev_change_id"] == d["change_id"]
        assert frames[1]["prev_change_id"] == frames[0]["change_id"] > d["change_id"]
        # a heartbeat left unanswered: Deribit (and the emulator) closes the connection
        with pytest.raises(websockets.ConnectionClosed):
            for _ in range(50):
                await asyncio.wait_for(ws.recv(), 2)


# -- the collector against the emulator, into ClickHouse -------------------------------
def collector_settings(tmp_path: Path, url: str, emu: DeribitEmulator, **cfg: Any) -> Settings:
    venue = venue_cfg(emu, ["trades", "book", "quote", "ticker", "chart.trades"], **cfg)
    return make_settings(
        tmp_path, url, collector={"deribit": venue, "flush_every": 500},
        sink={"flush_interval_s": 0.2}, orderbook={"depth_interval_ms": 50,
                                                    "snapshot_retry_s": 0.3},
    )  # fmt: skip


async def test_collector_normalizer_sink_end_to_end(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext, nc: Client
) -> None:
    from sinks.clickhouse.worker import main as sink_main

    insts = ["BTC-PERPETUAL", "BTC-27DEC24-100000-C"]
    async with DeribitEmulator(insts, seed=3) as emu:
        settings = collector_settings(tmp_path, nats_server.url, emu)
        market = await js.subscribe(
            subjects.market_filter("book", "deribit"), stream=STREAM_MARKET, ordered_consumer=True
        )
        async with inprocess_all(
            settings, sink=sink_main, normalizer=normalizer_main, collector=collector_main
        ):
            await emu.wait_subscribed(10, timeout=15)
            await emu.emit(1000, books_every=2, tickers_every=10)

            by_kind: dict[str, list[bytes]] = {}
            for k, _, f in emu.sent:
                by_kind.setdefault(k, []).append(f)
            got = await raw_messages(js, "raw.deribit.trades.>", len(by_kind["trades"]))
            assert [m.data for m in got] == by_kind["trades"]  # once, in order, untouched
            assert {m.subject for m in got} == {f"raw.deribit.trades.{i}" for i in insts}
            assert len({m.headers[subjects.H_CONN] for m in got}) == 1
            books = await raw_messages(js, "raw.deribit.book.>", len(by_kind["book"]))
            assert [m.data for m in books] == by_kind["book"]
            info = await raw_messages(js, "raw.deribit.instruments.BTC", 2)
            assert len(info) == 2 and emu.rest_calls == {"BTC:future": 1, "BTC:option": 1}
            first = min(m.metadata.sequence.stream for m in got + books)
            assert max(m.metadata.sequence.stream for m in info) < first  # instruments first
            control = [orjson.loads(m.data) for m in await raw_messages(
                js, "raw.deribit.control.ALL", 2)]  # fmt: skip
            assert control[0]["result"] == "ok"  # set_heartbeat
            assert len(control[1]["result"]) == 10  # one batched subscribe, all accepted

            # MARKET books rebuild the emulator's true books (inverse amounts / price)
            msgs = [schemas.decode(m.data) for m in await take(market, len(by_kind["book"]))]
            assert len(msgs) == len(by_kind["book"])
            states: dict[str, BookState] = {}
            for m in msgs:
                assert isinstance(m, schemas.Book)
                st = states.setdefault(m.symbol, BookState(rule_for(m.symbol)))
                assert st.feed(m) is None
            for i in insts:
                assert states[to_symbol(i)].book.levels() == _true(emu.sims[i])

            # ClickHouse: exact counts and values
            trades = [orjson.loads(f)["params"]["data"][0] for f in by_kind["trades"]]
            want = {(to_symbol(t["instrument_name"]), t["trade_id"], t["price"],
                     t["amount"] / t["price"] if DEFAULT_SPECS[t["instrument_name"]].inverse
                     else t["amount"], t["direction"]) for t in trades}  # fmt: skip
            got_rows = await rows(nc, "SELECT symbol, id, price, size, side FROM trades "
                                  "WHERE venue = 'deribit'", len(want))  # fmt: skip
            assert len(got_rows) == len(want) == 1000
            assert {tuple(r) for r in got_rows} == want
            liq = sum(len(t.get("liquidation", "")) for t in trades)
            assert liq > 0
            counts = {
                "liquidations": liq,
                "book_updates": len(by_kind["book"]),
                "bbo": len(by_kind["quote"]),
                "tickers": len(by_kind["ticker"]),
                "marks": len(by_kind["ticker"]),
                "open_interest": len(by_kind["ticker"]),
                "funding": sum(b"PERPETUAL" in f[:90] for f in by_kind["ticker"]),
                "instruments": 2,
            }
            for table, n in counts.items():
                r = await rows(nc, f"SELECT count() FROM {table} WHERE venue = 'deribit' "
                               f"HAVING count() >= {n}", 1)  # fmt: skip
                assert r and r[0][0] == n, (table, r, n)
            candles = await rows(nc, "SELECT symbol, ts_open, closed, close, volume FROM candles "
                                 "WHERE venue = 'deribit' AND closed", 1)  # fmt: skip
            assert candles  # the simulated clock crossed minutes: closed candles exist
            inst = await rows(
                nc,
                "SELECT symbol, kind, contract_size, strike, option_type "
                "FROM instruments WHERE venue = 'deribit' ORDER BY symbol",
                2,
            )
            assert [tuple(r) for r in inst] == [
                ("BTC-USD-20241227-100000-C", "option", 1.0, 100000.0, "call"),
                ("BTC-USD-PERP", "perpetual", 10.0, None, None)]  # fmt: skip
        await market.unsubscribe()


async def test_collector_heartbeats_and_reconnects_on_a_stale_channel(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext
) -> None:
    async with DeribitEmulator(["BTC-PERPETUAL"], seed=4, min_heartbeat_s=0.2) as emu:
        settings = collector_settings(
            tmp_path, nats_server.url, emu, channels=["trades", "book"], stale_after_s=1.5,
            options={"heartbeat_s": "0.3", "stale_channels": "book"},
        )  # fmt: skip
        async with inprocess("collector", collector_main, settings):
            await emu.wait_subscribed(2, timeout=15)
            await emu.wait_for(lambda: any(c.tests >= 3 for c in emu.clients), timeout=10)
            # heartbeats flow and are answered, but the book is silent: stale -> reconnect
            await emu.wait_for(lambda: not emu.clients, timeout=10)
            await emu.wait_subscribed(2, timeout=15)
            conn = [orjson.loads(m.data) for m in await raw_messages(js, "raw.deribit.conn.ALL", 3)]
            assert [c["event"] for c in conn] == ["connected", "disconnected", "connected"]
            assert conn[1]["reason"] == "stale: no book frame for 1.5s"
            assert conn[1]["symbols"] == ["BTC-PERPETUAL"]
            snaps = await raw_messages(js, "raw.deribit.book.BTC-PERPETUAL", 2)
            assert [b'"type":"snapshot"' in m.data for m in snaps] == [True, True]
            # a connection dropped by the venue: reconnect and resubscribe too
            await emu.emit(20)
            await emu.drop_connections()
            await emu.wait_subscribed(2, timeout=15)
            conn = [orjson.loads(m.data) for m in await raw_messages(js, "raw.deribit.conn.ALL", 5)]
            assert [c["event"] for c in conn][3:] == ["disconnected", "connected"]
            await emu.wait_for(lambda: any(c.tests >= 1 for c in emu.clients), timeout=10)
    n = Normalizer()
    out = n.normalize("raw.deribit.conn.ALL", orjson.dumps(conn[1]), RECV, 1)
    assert not isinstance(out, Dead)
    [gap] = [schemas.decode(o.data) for o in out]
    assert isinstance(gap, schemas.Gap) and (gap.symbol, gap.reason) == ("BTC-USD-PERP",
                                                                         "reconnect")  # fmt: skip


async def test_orderbook_service_detects_faults_and_resyncs_through_the_stream(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext, nc: Client
) -> None:
    """collector -> normalizer -> orderbook in-process: every wire fault becomes a gap, the
    service's ctl.snapshot makes the collector re-subscribe, and the book heals."""
    from orderbook.service import main as orderbook_main

    inst, symbol = "BTC-PERPETUAL", "BTC-USD-PERP"

    async def synced(timeout: float = 15) -> dict:
        deadline = asyncio.get_running_loop().time() + timeout
        b: dict = {}
        while asyncio.get_running_loop().time() < deadline:
            b = await served_book(nc, "deribit", symbol)
            if b.get("valid") and b.get("seq") == emu.sims[inst].change_id:
                return b
            if not b.get("valid"):
                await emu.emit(4)  # the service asks for a snapshot when a change finds it invalid
            await asyncio.sleep(0.1)
        raise AssertionError(f"not synced: {b.get('valid')} {b.get('seq')}")

    def as_lists(levels: tuple[list, list]) -> tuple[list, list]:
        return [list(x) for x in levels[0]], [list(x) for x in levels[1]]

    gaps = await js.subscribe(
        subjects.market_filter("gap", "deribit"), stream=STREAM_MARKET, ordered_consumer=True
    )
    async with DeribitEmulator([inst], seed=8) as emu:
        settings = collector_settings(tmp_path, nats_server.url, emu, channels=["book"])
        async with inprocess_all(
            settings, orderbook=orderbook_main, normalizer=normalizer_main, collector=collector_main
        ):
            await emu.wait_subscribed(1, timeout=15)
            await emu.emit(2000)
            b = await synced()
            assert (b["bids"], b["asks"]) == as_lists(_true(emu.sims[inst]))
            for fault, reason in (("drop", "sequence"), ("reorder", "sequence"),
                                  ("corrupt", "sequence"), ("cross", "crossed")):  # fmt: skip
                subs = sum(r["method"] == "public/subscribe" for r in emu.requests)
                await emu.emit(200, fault=fault)
                [gap] = await take(gaps, 1, timeout=10)
                g = schemas.decode(gap.data)
                assert isinstance(g, schemas.Gap) and g.reason == reason, (fault, g)
                b = await synced()
                assert (b["bids"], b["asks"]) == as_lists(_true(emu.sims[inst])), fault
                assert sum(r["method"] == "public/subscribe" for r in emu.requests) > subs
            # a duplicate is harmless: JetStream drops the second copy (same Nats-Msg-Id)
            await emu.emit(200, fault="duplicate")
            b = await synced()
            assert await take(gaps, 1, timeout=1.0) == []
            ops = [r["method"] for r in emu.requests if "subscribe" in r["method"]]
            assert ops[-2:] == ["public/unsubscribe", "public/subscribe"]
            bad = await nc.request("ctl.snapshot.deribit.ETH-USD-PERP", b"{}", timeout=5)
            assert orjson.loads(bad.data)["ok"] is False
    await gaps.unsubscribe()
