"""Coinbase Advanced Trade: symbols, routing, every channel's parsing (docs examples checked
field by field, generated frames), legacy Pro recordings rejected, the connection-sequence
book rule (100k deltas per product, injected faults), and the collector against the local
emulator on a real nats-server: RAW -> normalizer -> MARKET -> ClickHouse sink (exact rows),
order-book service resyncs, stale-feed reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import random
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets
from nats.aio.client import Client
from nats.js import JetStreamContext

from collectors.coinbase import route, stale_limits, subscribe_messages
from collectors.coinbase import run as collector_main
from collectors.config import VenueSettings
from normalizer.core import Dead, Normalizer
from normalizer.venues.base import Frame
from normalizer.venues.coinbase.parse import CoinbaseParser, to_ns
from normalizer.worker import main as normalizer_main
from orderbook.sync import BookState, Problem
from orderbook.venues.coinbase import CoinbaseConnectionSequence, rule_for
from streams import schemas, subjects
from streams.bus.server import NatsServer
from streams.provision import STREAM_MARKET
from streams.settings import Settings
from streams.symbols.coinbase import to_native, to_symbol
from tests import recorded
from tests.conftest import make_settings, shared_frames
from tests.helpers import raw_messages, rows, served_book, venue_cfg
from tests.venues.coinbase.emulator import CoinbaseEmulator, ProductSim, Wire, rfc3339
from tests.workers import Proc, inprocess, inprocess_all

RECV = {subjects.H_RECV_NS: "1700000000000000001"}
# the ClickHouse checks here are exact: after the wanted count, look again a little later so
# extra rows would show
settled_rows = partial(rows, timeout=60, settle_s=0.5)


def norm(n: Normalizer, frame: bytes, seq: int = 1, channel: str | None = None) -> Any:
    """Normalize as the collector would file the frame; decoded messages or a Dead."""
    ch, target = route(frame) if channel is None else (channel, "ALL")
    out = n.normalize(subjects.raw("coinbase", ch, target), frame, RECV, seq)
    return out if isinstance(out, Dead) else [schemas.decode(o.data) for o in out]


def env(channel: str, events: list, seq: int = 0, ts: str = "2023-02-09T20:32:50.714964855Z"):
    return orjson.dumps({"channel": channel, "client_id": "", "timestamp": ts,
                         "sequence_num": seq, "events": events})  # fmt: skip


# -- names and routing -----------------------------------------------------------------
def test_symbols_both_ways() -> None:
    for native in ("BTC-USD", "ETH-USDC", "SHIB-EUR", "1INCH-USD"):
        assert to_symbol(native) == native and to_native(native) == native
    for bad in ("BTC", "BTC-USD-PERP", "BIT-31JAN25-CDE", "btc-usd", "BTC--USD", "A.B-USD"):
        with pytest.raises(ValueError):
            to_symbol(bad)
    for bad in ("BTC-USD-PERP", "BTC-USD-20251226", "BTC-USD-20251226-100000-C"):
        with pytest.raises(ValueError, match="spot"):
            to_native(bad)


def test_route_slices_channel_and_product() -> None:
    l2 = env("l2_data", [{"type": "update", "product_id": "BTC-USD", "updates": []}])
    assert route(l2) == ("level2", "BTC-USD")
    trades = env("market_trades", [{"type": "update", "trades": [{"trade_id": "1",
                 "product_id": "ETH-USD"}]}])  # fmt: skip
    assert route(trades) == ("market_trades", "ETH-USD")
    assert route(env("heartbeats", [{"heartbeat_counter": 1}])) == ("heartbeats", "ALL")
    assert route(env("subscriptions", [{"subscriptions": {}}])) == ("control", "ALL")
    assert route(b'{"type":"error","message":"Failed to subscribe"}') == ("control", "ALL")
    # keys in another order still route (a small decode)
    assert route(b'{"sequence_num":1,"channel":"ticker","events":[{"tickers":'
                 b'[{"product_id":"SOL-USD"}]}]}') == ("ticker", "SOL-USD")  # fmt: skip
    assert route(env("user", [])) == ("unknown", "ALL")
    assert route(env("market_trades", [{"type": "snapshot", "trades": []}])) == (
        "market_trades", "ALL")  # fmt: skip
    assert route(env("candles", [{"candles": [{"product_id": "A.B"}]}])) == ("unknown", "ALL")
    assert route(b"{broken") == ("unknown", "ALL")
    assert route(bytes(range(256))) == ("unknown", "ALL")


def test_subscribe_messages_one_channel_each_and_chunked() -> None:
    cfg = VenueSettings(ws_url="ws://x", rest_url="http://x",
                        symbols=[f"C{i}-USD" for i in range(150)],
                        channels=["level2", "ticker"],
                        options={"stale_after_s.ticker": "300"})  # fmt: skip
    msgs = [orjson.loads(m) for m in subscribe_messages(cfg)]
    assert msgs[0] == {"type": "subscribe", "channel": "heartbeats"}
    assert [(m["channel"], len(m["product_ids"])) for m in msgs[1:]] == [
        ("level2", 100), ("level2", 50), ("ticker", 100), ("ticker", 50)]  # fmt: skip
    assert stale_limits(cfg) == {"level2": 60.0, "ticker": 300.0, "heartbeats": 60.0}


def test_timestamps_to_ns() -> None:
    assert to_ns("2023-02-09T20:32:50.714964855Z") == 1675974770714964855
    assert to_ns("2019-08-14T20:42:27.265Z") == 1565815347265000000
    assert to_ns("1970-01-01T00:00:00Z") == 0
    for bad in ("2023-02-09 20:32:50Z", "2023-02-09T20:32:50.12x4Z", "2023-02-09T20:32:50+01:00"):
        with pytest.raises(ValueError):
            to_ns(bad)


# -- the venue's own documentation examples, field by field ----------------------------
def test_docs_level2_example() -> None:
    # the level2 example of the Advanced Trade WebSocket channels page
    frame = env("l2_data", [{"type": "snapshot", "product_id": "BTC-USD", "updates": [
        {"side": "bid", "event_time": "1970-01-01T00:00:00Z", "price_level": "21921.73",
         "new_quantity": "0.06317902"},
        {"side": "bid", "event_time": "1970-01-01T00:00:00Z", "price_level": "21921.3",
         "new_quantity": "0.02"}]}])  # fmt: skip
    [b] = norm(Normalizer(), frame)
    assert isinstance(b, schemas.Book)
    assert (b.venue, b.symbol, b.snapshot, b.seq, b.first_seq) == (
        "coinbase", "BTC-USD", True, 0, 0)  # fmt: skip
    assert b.ts_event == 1675974770714964855 and b.ts_recv == 1700000000000000001
    assert b.bids == [(21921.73, 0.06317902), (21921.3, 0.02)] and b.asks == []
    assert b.prev_seq is None and b.checksum is None


def test_docs_market_trades_example() -> None:
    frame = env("market_trades", [{"type": "snapshot", "trades": [
        {"trade_id": "000000000", "product_id": "ETH-USD", "price": "1260.01", "size": "0.3",
         "side": "BUY", "time": "2019-08-14T20:42:27.265Z"}]}],
        ts="2023-02-09T20:19:35.39625135Z")  # fmt: skip
    n = Normalizer()
    out = n.normalize("raw.coinbase.market_trades.ETH-USD", frame, RECV, 1)
    assert not isinstance(out, Dead)
    [o] = out
    assert o.subject == "market.trade.coinbase.ETH-USD"
    assert o.msg_id == "coinbase:trade:ETH-USD:000000000"
    t = schemas.decode(o.data)
    assert isinstance(t, schemas.Trade)
    assert (t.symbol, t.id, t.price, t.size) == ("ETH-USD", "000000000", 1260.01, 0.3)
    assert t.side == "sell"  # the maker bought: the taker sold
    assert t.ts_event == 1565815347265000000 and not t.aggregated


def test_docs_ticker_example() -> None:
    frame = env("ticker", [{"type": "snapshot", "tickers": [{
        "type": "ticker", "product_id": "BTC-USD", "price": "21932.98",
        "volume_24_h": "16038.28770938", "low_24_h": "21835.29", "high_24_h": "23011.18",
        "low_52_w": "15460", "high_52_w": "48240", "price_percent_chg_24_h": "-4.15775596190603",
        "best_bid": "21931.98", "best_bid_quantity": "8000.21", "best_ask": "21933.98",
        "best_ask_quantity": "8038.07770938"}]}], ts="2023-02-09T20:30:37.167359596Z")  # fmt: skip
    bbo, tk = norm(Normalizer(), frame)
    assert isinstance(bbo, schemas.BBO) and isinstance(tk, schemas.Ticker)
    assert (bbo.symbol, bbo.bid_price, bbo.bid_size, bbo.ask_price, bbo.ask_size, bbo.seq) == (
        "BTC-USD", 21931.98, 8000.21, 21933.98, 8038.07770938, 0)  # fmt: skip
    assert bbo.ts_event == tk.ts_event == 1675974637167359596
    assert (tk.last, tk.bid, tk.ask, tk.low_24h, tk.high_24h, tk.volume_24h) == (
        21932.98, 21931.98, 21933.98, 21835.29, 23011.18, 16038.28770938)  # fmt: skip
    assert tk.open_24h is None and tk.quote_volume_24h is None
    # before 2024-04 tickers had no best bid/ask: a ticker, no bbo
    old = orjson.loads(frame)
    for k in ("best_bid", "best_bid_quantity", "best_ask", "best_ask_quantity"):
        del old["events"][0]["tickers"][0][k]
    [only] = norm(Normalizer(), orjson.dumps(old))
    assert isinstance(only, schemas.Ticker) and only.bid is None and only.last == 21932.98


def test_docs_candles_and_heartbeats_examples() -> None:
    n = Normalizer()
    frame = env("candles", [{"type": "snapshot", "candles": [{
        "start": "1688998200", "high": "1867.72", "low": "1865.63", "open": "1867.38",
        "close": "1866.81", "volume": "0.20269406", "product_id": "ETH-USD"}]}],
        ts="2023-06-09T20:19:35.39625135Z")  # fmt: skip
    [c] = norm(n, frame)
    assert isinstance(c, schemas.Candle)
    assert (c.symbol, c.interval, c.ts_open, c.open, c.high, c.low, c.close, c.volume) == (
        "ETH-USD",
        "5m",
        1688998200 * 10**9,
        1867.38,
        1867.72,
        1865.63,
        1866.81,
        0.20269406,
    )
    assert c.closed is False and c.ts_event == 1686341975396251350
    hb = env("heartbeats", [{"current_time": "2023-06-23 20:31:56.121961769 +0000 UTC "
             "m=+91717.525857105", "heartbeat_counter": "3049"}], seq=1)  # fmt: skip
    assert norm(n, hb) == []
    subs = env("subscriptions", [{"subscriptions": {"level2": ["BTC-USD"]}}], seq=2)
    assert norm(n, subs) == []
    assert norm(n, b'{"type":"error","message":"Failed to subscribe"}') == []
    assert n.parsers["coinbase"].last_seq == 2  # type: ignore[attr-defined]


def test_products_become_spot_instruments() -> None:
    sim = ProductSim("BTC-USD", random.Random(1), 6_500_000)
    fut = dict(sim.product_row(), product_id="BIT-31JAN25-CDE", product_type="FUTURE")
    off = dict(sim.product_row(), product_id="ETH-USD", status="offline", price_increment="0.1")
    body = orjson.dumps({"products": [sim.product_row(), fut, off], "num_products": 3})
    out = norm(Normalizer(), body, channel="instruments")
    assert [i.symbol for i in out] == ["BTC-USD", "ETH-USD"]
    btc, eth = out
    assert isinstance(btc, schemas.Instrument)
    assert (btc.native_symbol, btc.kind, btc.base, btc.quote, btc.settle) == (
        "BTC-USD", "spot", "BTC", "USD", None)  # fmt: skip
    assert (btc.tick_size, btc.lot_size, btc.contract_size, btc.expiry_ts, btc.strike) == (
        0.01, 1e-08, 1.0, None, None)  # fmt: skip
    assert btc.option_type is None and btc.active and not eth.active and eth.tick_size == 0.1


# -- generated frames, every channel ---------------------------------------------------
def test_generated_frames_every_channel() -> None:
    sim = ProductSim("SOL-USD", random.Random(3), 15_000)
    wire, n = Wire(), Normalizer()
    [snap] = norm(n, wire.envelope("level2", [sim.snapshot_event()]))
    assert snap.snapshot and len(snap.bids) == len(snap.asks) == 79
    assert (snap.bids, snap.asks) == sim.true_book()
    now = rfc3339(1_700_000_000_123_456_789)
    ev = sim.update_event(now)
    [upd] = norm(n, wire.envelope("level2", [ev]))
    want = [(float(u["price_level"]), float(u["new_quantity"])) for u in ev["updates"]]
    assert sorted(upd.bids + upd.asks) == sorted(want) and (upd.seq, upd.first_seq) == (1, 0)
    t = sim.trade(now)
    [tr] = norm(n, wire.envelope("market_trades", [{"type": "update", "trades": [t]}]))
    assert (tr.id, tr.price, tr.size, tr.ts_event) == (
        t["trade_id"],
        float(t["price"]),
        float(t["size"]),
        1_700_000_000_123_456_789,
    )
    assert tr.side == {"SELL": "buy", "BUY": "sell"}[t["side"]]
    row = sim.ticker()
    bbo, tk = norm(n, wire.envelope("ticker", [{"type": "update", "tickers": [row]}]))
    (bp, bs), (ap, as_) = sim.true_book()[0][0], sim.true_book()[1][0]
    assert (bbo.bid_price, bbo.bid_size, bbo.ask_price, bbo.ask_size, bbo.seq) == (
        bp, bs, ap, as_, 3)  # fmt: skip
    assert tk.last == float(t["price"]) and tk.volume_24h == float(t["size"])
    c = sim.candle_row(1_700_000_123)
    [cd] = norm(n, wire.envelope("candles", [{"type": "update", "candles": [c]}]))
    assert cd.ts_open == 1_700_000_100 * 10**9 and cd.close == float(t["price"])
    assert cd.volume == 1000 * 1e-8


# -- bad input -------------------------------------------------------------------------
BAD = [
    (b'{"channel":"l2_data","timestamp":"2023-02-09T20:32:50Z","sequence_num":1,"events":[{'
     b'"type":"update","product_id":"BTC-USD","updates":[{"side":"bid","price_level":"1",'
     b'"new_quantity":"-1"}]}]}', "level2", "Expected `float` >= 0.0"),
    (b'{"channel":"l2_data","timestamp":"2023-02-09T20:32:50Z","sequence_num":1,"events":[{'
     b'"type":"update","product_id":"BTC-USD","updates":[{"side":"middle","price_level":"1",'
     b'"new_quantity":"1"}]}]}', "level2", "unknown level2 side 'middle'"),
    (b'{"channel":"l2_data","timestamp":"2023-02-09T20:32:50Z","sequence_num":1,"events":[{'
     b'"type":"replay","product_id":"BTC-USD","updates":[]}]}', "level2",
     "unknown level2 event type 'replay'"),
    (b'{"channel":"l2_data","timestamp":"yesterday","sequence_num":1,"events":[]}', "level2",
     "bad timestamp"),
    (b'{"channel":"ticker","timestamp":"2023-02-09T20:32:50Z","sequence_num":1,"events":[]}',
     "level2", "channel 'ticker' on a l2_data frame"),
    (b'{"channel":"market_trades","timestamp":"2023-02-09T20:32:50Z","sequence_num":-4,'
     b'"events":[]}', "market_trades", "Expected `int` >= 0"),
    (b'{"channel":"market_trades","timestamp":"2023-02-09T20:32:50Z","sequence_num":4,'
     b'"events":[{"type":"update","trades":[{"trade_id":"1","product_id":"BTC-USD-X",'
     b'"price":"1","size":"1","side":"BUY","time":"2023-02-09T20:32:50Z"}]}]}',
     "market_trades", "not a coinbase spot product id"),
    (b'{"channel":"ticker","timestamp":"2023-02-09T20:32:50Z","sequence_num":4,"events":[{'
     b'"type":"update","tickers":[{"product_id":"BTC-USD","price":"abc"}]}]}', "ticker",
     "could not convert string to float"),
    (b'{"channel":"candles","timestamp":"2023-02-09T20:32:50Z","sequence_num":4,"events":[{'
     b'"type":"update","candles":[{"start":"x","open":"1","high":"1","low":"1","close":"1",'
     b'"volume":"1","product_id":"BTC-USD"}]}]}', "candles", "Expected `int`"),
    (b'{"channel":"l2_data","timest', "level2", "malformed level2 frame"),
    (b'{"type":"subscriptions","channels":[]}', "control", "neither sequence_num"),
    (b"[1,2,3]", "instruments", "invalid instruments frame"),
    (b"{}", "funding", "unknown channel 'funding'"),
]  # fmt: skip


@pytest.mark.parametrize(("frame", "channel", "why"), BAD)
def test_bad_frames_are_rejected_with_a_reason(frame: bytes, channel: str, why: str) -> None:
    out = Normalizer().normalize(f"raw.coinbase.{channel}.BTC-USD", frame, RECV, 1)
    assert isinstance(out, Dead) and why in out.reason, out


def test_rejected_frame_is_not_counted_so_it_becomes_a_hole() -> None:
    p = CoinbaseParser()
    n = Normalizer()
    n.parsers["coinbase"] = p
    norm(n, env("heartbeats", [{"heartbeat_counter": 1}], seq=0))
    assert isinstance(norm(n, BAD[0][0].replace(b'"sequence_num":1', b'"sequence_num":1')), Dead)
    [b] = norm(n, env("l2_data", [{"type": "update", "product_id": "BTC-USD", "updates": []}],
                      seq=2))  # fmt: skip
    assert (b.seq, b.first_seq, p.breaks) == (2, 2, 1)


# -- the legacy Pro feed recordings (a different protocol) -----------------------------
LEGACY_CHANNEL = {"snapshot": "level2", "l2update": "level2", "match": "market_trades",
                  "last_match": "market_trades", "ticker": "ticker",
                  "subscriptions": "control"}  # fmt: skip


def test_legacy_pro_recordings_are_rejected_with_a_reason() -> None:
    ws = shared_frames("cryptofeed/COINBASE.ws.28.0")
    n = Normalizer()
    kinds: dict[str, int] = {}
    for i, r in enumerate(recorded.read(ws)):
        if r.kind != "recv":
            continue
        data = r.payload.encode()
        assert route(data) == ("unknown", "ALL")  # the collector files them as unknown
        kind = orjson.loads(data).get("type", "?")
        channel = LEGACY_CHANNEL.get(kind, "level2")
        out = n.normalize(f"raw.coinbase.{channel}.BTC-USD", data, RECV, i)
        assert isinstance(out, Dead), r.payload[:200]
        assert out.reason.startswith(("invalid", "malformed", "control frame")), out.reason
        assert "parser error" not in out.reason
        kinds[kind] = kinds.get(kind, 0) + 1
    assert sum(kinds.values()) > 9000 and {"snapshot", "l2update"} <= set(kinds)
    for r in recorded.read(shared_frames("cryptofeed/COINBASE.0")):
        out = n.normalize("raw.coinbase.instruments.ALL", r.payload.encode(), RECV, 1)
        assert isinstance(out, Dead) and out.reason.startswith("invalid instruments frame")


# -- the book rule, offline ------------------------------------------------------------
class Feed:
    """A connection's frames through the real parser into one BookState per product."""

    def __init__(self, products: list[str], seed: int) -> None:
        rnd = random.Random(seed)
        self.sims = {p: ProductSim(p, rnd, 100_000 + 1000 * i) for i, p in enumerate(products)}
        self.rnd = rnd
        self.wire = Wire()
        self.parser = CoinbaseParser()
        self.states = {p: BookState(rule_for(p)) for p in products}
        self.problems: list[Problem] = []
        self.raw = 0

    def deliver(self, frame: bytes) -> list:
        self.raw += 1
        ch, target = route(frame)
        outs = self.parser.parse(Frame(ch, target, frame, 1, self.raw))
        msgs = [schemas.decode(o.data) for o in outs]
        for m in msgs:
            if isinstance(m, schemas.Book):
                p = self.states[m.symbol].feed(m)
                if p is not None:
                    self.problems.append(p)
        return msgs

    def snapshot(self, product: str) -> None:
        self.deliver(self.wire.envelope("level2", [self.sims[product].snapshot_event()]))

    def step(self, product: str) -> bytes:
        """One level2 update of ``product`` plus, now and then, other channels' traffic."""
        sim = self.sims[product]
        now = "2024-01-01T00:00:00.5Z"
        r = self.rnd.random()
        if r < 0.1:
            self.deliver(self.wire.envelope("heartbeats", [{"heartbeat_counter": 1}]))
        elif r < 0.2:
            t = sim.trade(now)
            self.deliver(self.wire.envelope("market_trades", [{"type": "update", "trades": [t]}]))
        return self.wire.envelope("level2", [sim.update_event(now)])

    def assert_true(self, product: str) -> None:
        st = self.states[product]
        assert st.valid and st.book.levels() == self.sims[product].true_book()


def test_books_equal_true_books_after_100k_deltas_per_product() -> None:
    products = ["BTC-USD", "ETH-USD"]
    f = Feed(products, seed=5)
    for p in products:
        f.snapshot(p)
    for _ in range(100_000):
        for p in products:
            f.deliver(f.step(p))
    assert f.problems == []
    for p in products:
        f.assert_true(p)
        assert f.states[p].updates == 100_000
    assert f.parser.breaks == 0


@pytest.mark.parametrize("fault", ["drop", "duplicate", "reorder", "corrupt", "cross"])
def test_each_fault_detected_and_healed_by_a_fresh_snapshot(fault: str) -> None:
    products = ["BTC-USD", "ETH-USD"]
    f = Feed(products, seed=7)
    for p in products:
        f.snapshot(p)
    for _ in range(200):
        f.deliver(f.step("BTC-USD"))
        f.deliver(f.step("ETH-USD"))
    frame = f.step("BTC-USD")
    sim = f.sims["BTC-USD"]
    if fault == "drop":
        pass  # its sequence number is spent, the message lost
    elif fault == "duplicate":
        f.deliver(frame)
        f.deliver(frame)
    elif fault == "reorder":
        later = f.step("ETH-USD")
        f.deliver(later)
        f.deliver(frame)
    elif fault == "corrupt":
        bad = frame.replace(b'"new_quantity":"', b'"new_quantity":"-', 1)
        with pytest.raises(Exception, match="Expected `float` >= 0.0"):
            f.deliver(bad)
    else:  # cross: an extra bid above the best ask
        body = orjson.loads(frame)
        body["events"][0]["updates"].append({"side": "bid", "price_level": sim.px(
            min(sim.asks) + 3), "new_quantity": "1", "event_time": ""})  # fmt: skip
        f.deliver(orjson.dumps(body))
    for _ in range(5):
        f.deliver(f.step("BTC-USD"))
        f.deliver(f.step("ETH-USD"))
    reasons = {p.reason for p in f.problems if p.fatal}
    assert reasons == ({"crossed"} if fault == "cross" else {"sequence"}), f.problems
    assert not f.states["BTC-USD"].valid
    if fault != "cross":  # a connection break is everyone's break: ETH-USD resyncs too
        assert not f.states["ETH-USD"].valid
        assert f.parser.breaks >= 1
    for p in products:  # the resync: re-subscribing sends a snapshot, which resets
        f.snapshot(p)
    for _ in range(50):
        f.deliver(f.step("BTC-USD"))
        f.deliver(f.step("ETH-USD"))
    for p in products:
        f.assert_true(p)


def test_rule_needs_an_unbroken_run_covering_the_last_message() -> None:
    r = CoinbaseConnectionSequence()

    def book(seq: int, first: int | None) -> schemas.Book:
        return schemas.Book(venue="coinbase", symbol="BTC-USD", ts_event=0, ts_recv=0,
                            snapshot=False, bids=[], asks=[], seq=seq, first_seq=first)  # fmt: skip

    assert r.continues(10, book(17, 0)) and r.continues(10, book(11, 10))
    assert not r.continues(10, book(17, 11))  # the run restarted after our last message
    assert not r.continues(10, book(10, 0)) and not r.continues(10, book(12, None))
    assert r.bridges(5, book(9, 5)) and r.stale(9, book(9, 0)) and not r.stale(9, book(10, 0))


# -- the emulator's protocol, then the collector against it on a real nats-server -------
async def test_emulator_protocol() -> None:
    async with (
        CoinbaseEmulator(["BTC-USD"], seed=2, heartbeat_s=0.1) as emu,
        websockets.connect(emu.ws_url) as ws,
    ):
        await ws.send('{"type":"subscribe","channel":"heartbeats"}')
        ack = orjson.loads(await ws.recv())
        assert ack["channel"] == "subscriptions" and ack["sequence_num"] == 0
        await ws.send('{"type":"subscribe","product_ids":["BTC-USD"],"channel":"level2"}')
        seen = [orjson.loads(await ws.recv()) for _ in range(4)]
        chans = [m["channel"] for m in seen]
        assert "l2_data" in chans and chans.count("subscriptions") == 1
        assert [m["sequence_num"] for m in seen] == [1, 2, 3, 4]  # one count, all channels
        snap = next(m for m in seen if m["channel"] == "l2_data")["events"][0]
        assert snap["type"] == "snapshot" and len(snap["updates"]) == 158
        await ws.send('{"type":"subscribe","product_ids":["NOPE-USD"],"channel":"level2"}')
        await ws.send("{bad json")
        errors = []
        while len(errors) < 2:
            m = orjson.loads(await ws.recv())
            if m.get("type") == "error":
                errors.append(m["message"])
        assert "bad product_ids" in errors[0] and "Failed to parse" in errors[1]


def pipeline_settings(tmp_path: Path, url: str, emu: CoinbaseEmulator, **cb: Any) -> Settings:
    cfg = venue_cfg(emu, ["level2", "market_trades", "ticker", "candles"], **cb)
    return make_settings(
        tmp_path, url, collector={"venues": ["coinbase"], "coinbase": cfg, "flush_every": 500},
        sink={"flush_interval_s": 0.2}, orderbook={"depth_interval_ms": 50,
        "snapshot_retry_s": 0.3}, log={"level": "WARNING"},
    )  # fmt: skip


async def test_collector_to_clickhouse_exact(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext, nc: Client
) -> None:
    async with CoinbaseEmulator(["BTC-USD", "ETH-USD"], seed=3) as emu:
        settings = pipeline_settings(tmp_path, nats_server.url, emu)
        sink = Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log").start()
        try:
            async with inprocess_all(
                settings, collector=collector_main, normalizer=normalizer_main
            ):
                await emu.wait_subscribed(9, timeout=15)  # 4 channels x 2 + heartbeats
                await emu.emit(400, trades_every=4)
                [client] = emu.clients
                sent = [f for f in client.sent if f.startswith(b'{"channel":"market_trades"')]
                got = await raw_messages(js, "raw.coinbase.market_trades.>", len(sent))
                assert [m.data for m in got] == sent  # every frame once, in order, untouched
                assert len({m.headers[subjects.H_CONN] for m in got}) == 1
                info = await raw_messages(js, "raw.coinbase.instruments.ALL", 1)
                assert [r["product_id"] for r in orjson.loads(info[0].data)["products"]] == [
                    "BTC-USD", "ETH-USD"]  # fmt: skip
                assert emu.rest_calls == 1

                trades = [t for s in emu.sims.values() for t in s.trades]
                assert len(trades) == 100
                want = sorted(
                    (t["product_id"], t["trade_id"], float(t["price"]), float(t["size"]),
                     "buy" if t["side"] == "SELL" else "sell") for t in trades
                )  # fmt: skip
                q = ("SELECT symbol, id, price, size, side FROM trades WHERE venue='coinbase' "
                     "ORDER BY symbol, id")  # fmt: skip
                assert sorted(tuple(r) for r in await settled_rows(nc, q, 100)) == want
                counts = {
                    "book_updates": 402, "bbo": 102, "tickers": 102, "candles": 100,
                    "instruments": 2,
                }  # fmt: skip
                for table, n in counts.items():
                    got_rows = await settled_rows(
                        nc, f"SELECT 1 FROM {table} WHERE venue='coinbase'", n
                    )
                    assert len(got_rows) == n, table
                snaps = await settled_rows(
                    nc, "SELECT symbol, length(bids), length(asks) FROM book_updates "
                    "WHERE venue='coinbase' AND snapshot ORDER BY symbol", 2)  # fmt: skip
                assert [tuple(r) for r in snaps] == [("BTC-USD", 79, 79), ("ETH-USD", 79, 79)]
                last = await settled_rows(nc, "SELECT bid_price, ask_price FROM bbo WHERE venue="
                                  "'coinbase' AND symbol='ETH-USD' ORDER BY ts_event DESC, "
                                  "bid_price LIMIT 1", 1)  # fmt: skip
                eth = emu.sims["ETH-USD"]
                tick = orjson.loads(
                    [f for f in client.sent if b'"ticker"' in f[:20] and b"ETH-USD" in f][-1]
                )
                row = tick["events"][0]["tickers"][0]
                assert tuple(last[0]) == (float(row["best_bid"]), float(row["best_ask"]))
                assert eth.trades
        finally:
            assert sink.stop() == 0


async def test_orderbook_service_resyncs_every_fault(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext, nc: Client
) -> None:
    """collector -> normalizer -> orderbook in-process: each wire fault becomes a gap, the
    service's ctl.snapshot makes the collector re-subscribe, and the book heals."""
    from orderbook.service import main as orderbook_main

    async def healed(product: str, timeout: float = 20) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        b: dict = {}
        while asyncio.get_running_loop().time() < deadline:
            b = await served_book(nc, "coinbase", product)
            bids, asks = emu.true_book(product)
            if b.get("valid") and [tuple(x) for x in b["bids"]] == bids and [
                    tuple(x) for x in b["asks"]] == asks:  # fmt: skip
                return
            if not b.get("valid"):
                await emu.emit(5, product=product)  # traffic makes the service ask again
            await asyncio.sleep(0.2)
        raise AssertionError(f"{product} not healed: valid={b.get('valid')}")

    gaps = await js.subscribe(
        subjects.market_filter("gap", "coinbase"), stream=STREAM_MARKET, ordered_consumer=True
    )
    async with CoinbaseEmulator(["BTC-USD"], seed=8) as emu:
        settings = pipeline_settings(tmp_path, nats_server.url, emu, channels=["level2"])
        async with inprocess_all(
            settings, orderbook=orderbook_main, normalizer=normalizer_main, collector=collector_main
        ):
            await emu.wait_subscribed(2, timeout=15)
            await emu.emit(300)
            await healed("BTC-USD")
            subscribes = len([r for r in emu.requests if r["type"] == "subscribe"])
            for fault, reason in (("drop", "sequence"), ("duplicate", "sequence"),
                                  ("reorder", "sequence"), ("corrupt", "sequence"),
                                  ("cross", "crossed")):  # fmt: skip
                with contextlib.suppress(Exception):  # earlier rounds' gaps (a duplicate
                    while True:  # is also reported as a harmless one before the break)
                        await gaps.next_msg(timeout=0.3)
                await emu.emit(100, fault=fault)
                msg = await gaps.next_msg(timeout=10)
                g = schemas.decode(msg.data)
                assert isinstance(g, schemas.Gap) and g.reason == reason, (fault, g)
                await healed("BTC-USD")
            resubs = [r for r in emu.requests if r["type"] == "subscribe"][subscribes:]
            assert len(resubs) >= 5 and all(r["channel"] == "level2" for r in resubs)
            dlq = await raw_dlq(js)
            assert any("Expected `float` >= 0.0" in d for d in dlq)  # the corrupted frame
    await gaps.unsubscribe()


async def raw_dlq(js: JetStreamContext) -> list[str]:
    sub = await js.subscribe(subjects.dlq("normalizer"), ordered_consumer=True)
    out = []
    try:
        while True:
            m = await sub.next_msg(timeout=1.0)
            out.append(m.headers.get(subjects.H_REASON, ""))
    except Exception:
        pass
    await sub.unsubscribe()
    return out


async def test_silent_channel_reconnects_and_records_a_stale_gap(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext
) -> None:
    async with CoinbaseEmulator(["BTC-USD"], seed=4, heartbeat_s=0.1) as emu:
        # a quiet book is allowed 30 s; heartbeats (every 0.1 s here) only 0.8 s
        settings = pipeline_settings(tmp_path, nats_server.url, emu, channels=["level2"],
                                     stale_after_s=0.8,
                                     options={"stale_after_s.level2": "30"})  # fmt: skip
        async with inprocess("collector", collector_main, settings) as w:
            await emu.wait_subscribed(2, timeout=15)
            await asyncio.sleep(1.5)
            assert emu.connections == 1  # heartbeats flow: the quiet level2 is within limit
            emu.stall()  # nothing at all now: heartbeats stop too
            await emu.wait_for(lambda: emu.connections >= 2, timeout=10)
            emu.stall(False)
            await emu.wait_subscribed(2, timeout=15)
            conn = [
                orjson.loads(m.data) for m in await raw_messages(js, "raw.coinbase.conn.ALL", 3)
            ]
            assert [c["event"] for c in conn] == ["connected", "disconnected", "connected"]
            assert conn[1]["reason"] == "stale: no heartbeats frame for 0.8s"
            hb = await raw_messages(js, "raw.coinbase.heartbeats.ALL", 3)
            assert len(hb) == 3
            for _ in range(30):
                if w.health.state == "ok":
                    break
                await asyncio.sleep(0.1)
    out = Normalizer().normalize("raw.coinbase.conn.ALL", orjson.dumps(conn[1]), RECV, 1)
    assert not isinstance(out, Dead)
    [gap] = [schemas.decode(o.data) for o in out]
    assert isinstance(gap, schemas.Gap) and (gap.symbol, gap.reason) == ("BTC-USD", "stale")
