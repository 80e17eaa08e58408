"""Kraken WebSocket v2: symbols, parsing (docs examples, generated frames, legacy v1
recordings), the CRC32 book rule, and collector -> NATS -> normalizer -> ClickHouse /
order book against the local emulator."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets
from nats.aio.client import Client
from nats.js import JetStreamContext

from collectors.config import VenueSettings
from collectors.kraken import route, subscriptions
from collectors.kraken import run as collector_main
from normalizer.core import Dead, Normalizer
from normalizer.venues.kraken.parse import ts_ns
from normalizer.worker import main as normalizer_main
from orderbook.book import L2Book
from orderbook.sync import BookState, Problem
from orderbook.venues.kraken import KrakenV2, checksum, crc, rule_for
from streams import schemas, subjects
from streams.bus.server import NatsServer
from streams.provision import STREAM_MARKET
from streams.settings import Settings
from streams.symbols.kraken import from_wsname, to_native, to_symbol
from tests import recorded
from tests.conftest import make_settings, shared_frames
from tests.helpers import raw_messages, reconnect_gap, rows, served_book, take, venue_cfg
from tests.venues.kraken.emulator import DEFAULT_SPECS, KrakenEmulator, PairSim, push
from tests.workers import inprocess, inprocess_all

RECV = {subjects.H_RECV_NS: "1700000000000000001"}
T0 = "2023-09-25T07:48:36.925533Z"
T0_NS = 1695628116925533000

# Kraken's "Book checksum (WebSocket v2)" guide: this snapshot's checksum is 3310070434.
DOC_BIDS = [(45283.5, 0.1), (45283.4, 1.54582015), (45282.1, 0.1), (45281.0, 0.1),
            (45280.3, 1.54592586), (45279.0, 0.0799), (45277.6, 0.03310103), (45277.5, 0.3),
            (45277.3, 1.54602737), (45276.6, 0.15445238)]  # fmt: skip
DOC_ASKS = [(45285.2, 0.001), (45286.4, 1.54571953), (45286.6, 1.54571109),
            (45289.6, 1.54560911), (45290.2, 0.1589066), (45291.8, 1.54553491),
            (45294.7, 0.04454749), (45296.1, 0.3538), (45297.5, 0.09945542),
            (45299.5, 0.18772827)]  # fmt: skip
DOC_CHECKSUM = 3310070434


def doc_snapshot() -> bytes:
    """The guide's snapshot as Kraken writes it (numbers keep the trailing zeros there)."""

    def lv(levels: list[tuple[float, float]]) -> list[dict[str, orjson.Fragment]]:
        return [{"price": orjson.Fragment(f"{p:.1f}".encode()),
                 "qty": orjson.Fragment(f"{q:.8f}".encode())} for p, q in levels]  # fmt: skip

    return push("book", "snapshot", [{"symbol": "BTC/USD", "bids": lv(DOC_BIDS),
                                      "asks": lv(DOC_ASKS), "checksum": DOC_CHECKSUM}])  # fmt: skip


def num(fragment: orjson.Fragment) -> float:
    """A number the emulator wrote (as Kraken's text) read back as a float."""
    return float(orjson.dumps(fragment))


def norm(n: Normalizer, frame: bytes, seq: int = 1, channel: str | None = None) -> Any:
    """Normalize like the worker: the collector's routing gives the raw subject."""
    ch, target = (channel, "ALL") if channel else route(frame)
    out = n.normalize(subjects.raw("kraken", ch, target), frame, RECV, seq)
    return out if isinstance(out, Dead) else [schemas.decode(o.data) for o in out]


# -- names and routing -----------------------------------------------------------------
def test_symbols_both_ways() -> None:
    for native, ours in (("BTC/USD", "BTC-USD"), ("ETH/BTC", "ETH-BTC"),
                         ("DOGE/USDT", "DOGE-USDT"), ("1INCH/EUR", "1INCH-EUR")):  # fmt: skip
        assert to_symbol(native) == ours
        assert to_native(ours) == native
    assert from_wsname("XBT/USD") == "BTC/USD" and from_wsname("XDG/EUR") == "DOGE/EUR"
    assert from_wsname("ETH/XBT") == "ETH/BTC" and from_wsname("ADA/USD") == "ADA/USD"
    for bad in ("BTCUSD", "BTC/", "/USD", "A/B/C", "BTC-USD", "BTC/US D"):
        with pytest.raises(ValueError):
            to_symbol(bad)
    for bad in ("BTC-USD-PERP", "BTC", "BTC/USD"):
        with pytest.raises(ValueError):
            to_native(bad)


def test_route_slices_channel_and_pair() -> None:
    assert route(b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[]') == (
        "book", "BTC/USD")  # fmt: skip
    assert route(b'{"channel":"ohlc","type":"update","timestamp":"x","data":[{"symbol":"E/U"'
                 b',"open":1}]}') == ("ohlc", "E/U")  # fmt: skip
    assert route(b'{"channel":"heartbeat"}') == ("control", "ALL")
    assert route(b'{"channel":"status","type":"update","data":[]}') == ("control", "ALL")
    assert route(b'{"channel":"instrument","type":"snapshot","data":{}}') == ("instrument", "ALL")
    assert route(b'{"method":"pong","req_id":3}') == ("control", "ALL")
    assert route(b'{"error":"x","method":"subscribe","success":false}') == ("control", "ALL")
    assert route(b'{"channel":"trade","type":"update","data":[{"symbol":"A.B/C"}]}') == (
        "unknown", "ALL")  # fmt: skip
    assert route(b'{"channel":"nope","data":[]}') == ("unknown", "ALL")
    # another key order takes the decoding path to the same answer
    assert route(b'{"type":"update","data":[{"symbol":"BTC/USD"}],"channel":"trade"}') == (
        "trade", "BTC/USD")  # fmt: skip
    assert route(b'{"success":true,"method":"subscribe"}') == ("control", "ALL")
    assert route(b'[1234,{"a":[]},"book-10","XBT/USD"]') == ("unknown", "ALL")  # v1
    assert route(bytes(range(256))) == ("unknown", "ALL")


def test_subscriptions_are_batched_with_params() -> None:
    pairs = [f"C{i}/USD" for i in range(120)]
    cfg = VenueSettings(ws_url="ws://x", rest_url="http://x", symbols=pairs,
                        channels=["book", "ohlc", "instrument"],
                        options={"depth": "25", "interval": "5"})  # fmt: skip
    subs = subscriptions(cfg)
    assert [(s["channel"], len(s.get("symbol", []))) for s in subs] == [
        ("book", 50), ("book", 50), ("book", 20), ("ohlc", 50), ("ohlc", 50), ("ohlc", 20),
        ("instrument", 0)]  # fmt: skip
    assert subs[0]["depth"] == 25 and subs[3]["interval"] == 5
    cfg.channels = ["trade"]
    assert subscriptions(cfg)[0]["snapshot"] is False  # no replayed trades on reconnect
    assert [p for s in subs[:3] for p in s["symbol"]] == pairs


# -- docs examples, field by field -----------------------------------------------------
def test_docs_examples_field_by_field() -> None:
    n = Normalizer()
    # trade channel docs example (MATIC/USD)
    trade = (b'{"channel":"trade","type":"snapshot","data":[{"symbol":"MATIC/USD","side":"buy",'
             b'"price":0.5147,"qty":6423.46326,"ord_type":"limit","trade_id":4665846,'
             b'"timestamp":"2023-09-25T07:48:36.925533Z"},{"symbol":"MATIC/USD","side":"buy",'
             b'"price":0.5147,"qty":1136.19677815,"ord_type":"limit","trade_id":4665847,'
             b'"timestamp":"2023-09-25T07:49:36.925603Z"}]}')  # fmt: skip
    t1, t2 = norm(n, trade)
    assert isinstance(t1, schemas.Trade) and isinstance(t2, schemas.Trade)
    assert (t1.venue, t1.symbol, t1.id, t1.price, t1.size, t1.side, t1.ts_event, t1.ts_recv) == (
        "kraken", "MATIC-USD", "4665846", 0.5147, 6423.46326, "buy", T0_NS,
        1700000000000000001)  # fmt: skip
    assert (t2.id, t2.size, t2.ts_event) == ("4665847", 1136.19677815, T0_NS + 60_000_070_000)

    # book: the checksum guide's snapshot, then the book docs' update example
    [snap] = norm(n, doc_snapshot(), seq=7)
    assert isinstance(snap, schemas.Book) and snap.snapshot
    assert (snap.symbol, snap.seq, snap.checksum, snap.prev_seq) == ("BTC-USD", 7, DOC_CHECKSUM,
                                                                     None)  # fmt: skip
    assert snap.bids == DOC_BIDS and snap.asks == DOC_ASKS and snap.ts_event == snap.ts_recv
    upd = (b'{"channel":"book","type":"update","data":[{"symbol":"MATIC/USD","bids":[{"price":'
           b'0.5657,"qty":1098.3947558}],"asks":[],"checksum":2114181697,'
           b'"timestamp":"2023-10-06T17:35:55.440295Z"}]}')  # fmt: skip
    [u] = norm(n, upd, seq=8)
    assert isinstance(u, schemas.Book) and not u.snapshot
    assert (u.symbol, u.bids, u.asks, u.checksum, u.seq) == (
        "MATIC-USD", [(0.5657, 1098.3947558)], [], 2114181697, 8)  # fmt: skip
    assert u.ts_event == ts_ns("2023-10-06T17:35:55.440295Z") == 1696613755440295000

    # ticker docs example (ALGO/USD) -> bbo + ticker
    tick = (b'{"channel":"ticker","type":"snapshot","data":[{"symbol":"ALGO/USD","bid":0.10025,'
            b'"bid_qty":740.0,"ask":0.10036,"ask_qty":1361.44813783,"last":0.10035,'
            b'"volume":997038.98383185,"vwap":0.10148,"low":0.09979,"high":0.10285,'
            b'"change":-0.00017,"change_pct":-0.17}]}')  # fmt: skip
    bbo, tk = norm(n, tick, seq=9)
    assert isinstance(bbo, schemas.BBO) and isinstance(tk, schemas.Ticker)
    assert (bbo.symbol, bbo.bid_price, bbo.bid_size, bbo.ask_price, bbo.ask_size, bbo.seq) == (
        "ALGO-USD", 0.10025, 740.0, 0.10036, 1361.44813783, None)  # fmt: skip
    assert (tk.last, tk.bid, tk.ask, tk.high_24h, tk.low_24h, tk.volume_24h) == (
        0.10035, 0.10025, 0.10036, 0.10285, 0.09979, 997038.98383185)  # fmt: skip
    assert tk.open_24h is None and tk.quote_volume_24h is None and tk.ts_event == tk.ts_recv

    # ohlc docs example shape (MATIC/USD, 5-minute candles)
    ohlc = (b'{"channel":"ohlc","type":"update","timestamp":"2023-10-04T16:26:30.524394914Z",'
            b'"data":[{"symbol":"MATIC/USD","open":0.5624,"high":0.5628,"low":0.5622,'
            b'"close":0.5626,"trades":12,"volume":1522.55823812,"vwap":0.5625,'
            b'"interval_begin":"2023-10-04T16:25:00.000000000Z","interval":5,'
            b'"timestamp":"2023-10-04T16:30:00.000000Z"}]}')  # fmt: skip
    [c] = norm(n, ohlc, seq=10)
    assert isinstance(c, schemas.Candle)
    assert (c.symbol, c.interval, c.open, c.high, c.low, c.close, c.volume, c.trades, c.closed) == (
        "MATIC-USD", "5m", 0.5624, 0.5628, 0.5622, 0.5626, 1522.55823812, 12, False)  # fmt: skip
    assert c.ts_open == 1696436700 * 10**9 and c.ts_event == 1696437000 * 10**9

    # instrument channel docs example (EUR/USD pair)
    inst = (b'{"channel":"instrument","type":"snapshot","data":{"assets":[{"id":"USD",'
            b'"status":"enabled","precision":4,"precision_display":2,"borrowable":true,'
            b'"collateral_value":1.0,"margin_rate":0.025}],"pairs":[{"symbol":"EUR/USD",'
            b'"base":"EUR","quote":"USD","status":"online","qty_precision":8,'
            b'"qty_increment":0.00000001,"price_precision":5,"cost_precision":5,'
            b'"marginable":true,"has_index":true,"cost_min":0.50,"margin_initial":0.2,'
            b'"position_limit_long":300000,"position_limit_short":240000,"tick_size":0.00001,'
            b'"price_increment":0.00001,"qty_min":0.5}]}}')  # fmt: skip
    [i] = norm(n, inst, seq=11)
    assert isinstance(i, schemas.Instrument)
    assert (i.symbol, i.native_symbol, i.kind, i.base, i.quote, i.settle, i.tick_size,
            i.lot_size, i.contract_size, i.expiry_ts, i.strike, i.option_type, i.active) == (
        "EUR-USD", "EUR/USD", "spot", "EUR", "USD", None, 0.00001, 0.00000001, 1.0, None, None,
        None, True)  # fmt: skip

    # REST AssetPairs docs example row (v1 names: XBT -> BTC)
    rest = (b'{"error":[],"result":{"XXBTZUSD":{"altname":"XBTUSD","wsname":"XBT/USD",'
            b'"aclass_base":"currency","base":"XXBT","aclass_quote":"currency","quote":"ZUSD",'
            b'"lot":"unit","cost_decimals":5,"pair_decimals":1,"lot_decimals":8,'
            b'"lot_multiplier":1,"leverage_buy":[2,3],"leverage_sell":[2,3],"fees":[[0,0.26]],'
            b'"fees_maker":[[0,0.16]],"fee_volume_currency":"ZUSD","margin_call":80,'
            b'"margin_stop":40,"ordermin":"0.0001","costmin":"0.5","tick_size":"0.1",'
            b'"status":"online","long_position_limit":250,'
            b'"short_position_limit":200}}}')  # fmt: skip
    [r] = norm(n, rest, seq=12, channel="instruments")
    assert isinstance(r, schemas.Instrument)
    assert (r.symbol, r.native_symbol, r.base, r.quote, r.tick_size, r.lot_size, r.active) == (
        "BTC-USD", "BTC/USD", "BTC", "USD", 0.1, 1e-08, True)  # fmt: skip

    # control frames produce nothing
    for ctl in (b'{"channel":"heartbeat"}', b'{"method":"pong","req_id":1,"time_in":"x"}',
                b'{"channel":"status","type":"update","data":[{"system":"online"}]}',
                b'{"method":"subscribe","result":{"channel":"book","symbol":"BTC/USD"},'
                b'"success":true}'):  # fmt: skip
        assert norm(n, ctl) == []


def test_book_checksum_matches_the_guide_example() -> None:
    assert checksum(DOC_ASKS, DOC_BIDS, 1, 8) == DOC_CHECKSUM
    # the same numbers as Kraken's strings through the string core
    strings = lambda levels: [(f"{p:.1f}", f"{q:.8f}") for p, q in levels]  # noqa: E731
    assert crc(strings(DOC_ASKS), strings(DOC_BIDS)) == DOC_CHECKSUM
    assert KrakenV2.calibrate(DOC_ASKS, DOC_BIDS, DOC_CHECKSUM) == (1, 8)
    n = Normalizer()
    [snap] = norm(n, doc_snapshot(), seq=1)
    st = BookState(rule_for("BTC-USD"))
    assert st.feed(snap) is None and st.valid
    assert isinstance(st.rule, KrakenV2) and st.rule.precision == (1, 8) and st.rule.depth == 10
    # a level whose qty differs in the 8th decimal: no precision reproduces the checksum
    bad = schemas.Book(venue="kraken", symbol="BTC-USD", ts_event=1, ts_recv=1, snapshot=False,
                       bids=[(45283.5, 0.10000001)], asks=[], seq=2,
                       checksum=DOC_CHECKSUM)  # fmt: skip
    p = st.feed(bad)
    assert p is not None and p.reason == "checksum" and not st.valid


# -- generated frames, every channel ---------------------------------------------------
def test_generated_frames_every_channel() -> None:
    rnd = random.Random(11)
    sims = {s: PairSim(DEFAULT_SPECS[s], rnd) for s in ("BTC/USD", "DOGE/USD")}
    n = Normalizer()
    seq = 0
    for pair, sim in sims.items():
        symbol = pair.replace("/", "-")
        trades = [sim.trade() for _ in range(5)]
        seq += 1
        out = norm(n, push("trade", "update", trades), seq)
        assert [(t.id, t.price, t.size, t.side, t.symbol) for t in out] == [
            (str(t["trade_id"]), num(t["price"]), num(t["qty"]),
             t["side"], symbol) for t in trades]  # fmt: skip
        assert [t.ts_event for t in out] == [ts_ns(t["timestamp"]) for t in trades]
        seq += 1
        tick = sim.ticker()
        bbo, tk = norm(n, push("ticker", "update", [tick]), seq)
        (bp, bq), (ap, aq) = sim.true_book(10)[0][0], sim.true_book(10)[1][0]
        assert (bbo.bid_price, bbo.bid_size, bbo.ask_price, bbo.ask_size) == (bp, bq, ap, aq)
        assert tk.last == num(tick["last"]) and tk.bid == bp and tk.ask == ap
        seq += 1
        candle = sim.ohlc()
        [c] = norm(n, push("ohlc", "update", [candle], timestamp=T0), seq)
        assert (c.open, c.close, c.volume, c.trades, c.interval) == (
            num(candle["open"]), num(candle["close"]),
            num(candle["volume"]), 5, "1m")  # fmt: skip
        seq += 1
        data = {"assets": [], "pairs": [sim.spec.pair()]}
        [i] = norm(n, push("instrument", "snapshot", data), seq)
        assert (i.symbol, i.tick_size, i.lot_size) == (
            symbol, 10.0**-sim.spec.px_dec, 10.0**-sim.spec.qty_dec)  # fmt: skip
        seq += 1
        rest = orjson.dumps({"error": [], "result": {sim.spec.rest_key: sim.spec.rest_row()}})
        [r] = norm(n, rest, seq, channel="instruments")
        assert (r.symbol, r.tick_size, r.lot_size) == (i.symbol, i.tick_size, i.lot_size)
        seq += 1
        [snap] = norm(n, push("book", "snapshot", [sim.snapshot(25)]), seq)
        assert (snap.bids, snap.asks) == sim.true_book(25) and snap.checksum == sim.checksum()


# -- the book rule on generated books --------------------------------------------------
class Feeder:
    """Normalizes book frames of one pair and feeds them to a BookState."""

    def __init__(self, pair: str) -> None:
        self.n = Normalizer()
        self.subject = subjects.raw("kraken", "book", pair)
        self.seq = 0
        self.st = BookState(rule_for(pair.replace("/", "-")))

    def feed(self, frame: bytes) -> Problem | None:
        self.seq += 1
        out = self.n.normalize(self.subject, frame, RECV, self.seq)
        assert not isinstance(out, Dead), out.reason
        [m] = [schemas.decode(o.data) for o in out]
        assert isinstance(m, schemas.Book)
        return self.st.feed(m)


@pytest.mark.parametrize(("pair", "depth", "n"), [("BTC/USD", 25, 100_000),
                                                   ("DOGE/USD", 10, 20_000)])  # fmt: skip
def test_book_rebuilds_the_true_book_offline(pair: str, depth: int, n: int) -> None:
    emu = KrakenEmulator([pair], seed=5)
    sim = emu.sims[pair]
    f = Feeder(pair)
    assert f.feed(push("book", "snapshot", [sim.snapshot(depth)])) is None
    problems = [p for fr in emu.book_updates(sim, n, depth) if (p := f.feed(fr)) is not None]
    assert problems == [] and f.st.valid and f.st.updates == n
    assert f.st.book.levels() == sim.true_book(depth)  # truncated to the depth like Kraken's
    rule = f.st.rule
    assert isinstance(rule, KrakenV2) and rule.depth == depth
    assert rule.precision == (sim.spec.px_dec, sim.spec.qty_dec)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("drop", "checksum"), ("duplicate", "sequence"), ("reorder", "checksum"),
     ("corrupt", "checksum")],
)  # fmt: skip
def test_book_faults_detected_and_healed_offline(fault: str, reason: str) -> None:
    # depth 10: every change a subscriber sees is inside the checksummed top 10
    emu = KrakenEmulator(["BTC/USD"], seed=9)
    sim = emu.sims["BTC/USD"]
    f = Feeder("BTC/USD")
    assert f.feed(push("book", "snapshot", [sim.snapshot(10)])) is None
    for fr in emu.book_updates(sim, 300, 10):
        assert f.feed(fr) is None
    problems = [p for fr in emu.book_updates(sim, 300, 10, fault) if (p := f.feed(fr)) is not None]
    assert [p.reason for p in problems] == [reason] and not f.st.valid
    assert f.feed(push("book", "snapshot", [sim.snapshot(10)])) is None and f.st.valid
    for fr in emu.book_updates(sim, 100, 10):
        assert f.feed(fr) is None
    assert f.st.book.levels() == sim.true_book(10)


# -- legacy v1 recordings --------------------------------------------------------------
V1_FILES = ("cryptofeed/KRAKEN.ws.48.0", "cryptofeed/KRAKEN.ws.49.0", "cryptofeed/KRAKEN.ws.50.0")


def test_v1_recorded_frames_are_rejected_with_a_reason() -> None:
    n = Normalizer()
    frames = [r.payload.encode() for name in V1_FILES for r in recorded.read(shared_frames(name))
              if r.kind == "recv"]  # fmt: skip
    assert len(frames) > 1000
    reasons: set[str] = set()
    for i, frame in enumerate(frames):
        assert route(frame) == ("unknown", "ALL")  # the collector would not misfile them
        for ch in ("trade", "book", "ticker", "ohlc", "instrument", "control", "unknown"):
            out = n.normalize(subjects.raw("kraken", ch, "XBT/USD"), frame, RECV, i + 1)
            assert isinstance(out, Dead), (ch, frame[:100])
            assert out.reason and not out.reason.startswith("parser error"), out.reason
            reasons.add(out.reason)
    # v1 data frames are arrays, v1 events objects without "channel"/"method"
    assert {
        "invalid book frame: Expected `object`, got `array`",
        "invalid trade frame: Expected `object`, got `array`",
        "invalid book frame: Object missing required field `channel`",
        "not a Kraken v2 control frame (no method, not heartbeat/status)",
        # routed to ``unknown`` (as the collector does), a v1 frame is named as one
        "a Kraken v1 WebSocket frame ('book-1000'): jetmarket speaks v2",
        "a Kraken v1 WebSocket frame (event 'heartbeat'): jetmarket speaks v2",
    } <= reasons
    assert "unknown channel 'unknown'" not in reasons


def test_v1_recorded_checksums_verify_the_crc_core() -> None:
    """v1 books (depth 1000) rebuilt from their strings: every checksum Kraken sent equals
    the string core (``crc``), and the v2 rule on the same levels as floats (learning the
    precision from the checksum) agrees on every one."""
    books: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    states: dict[str, BookState] = {}
    checked = 0
    for i, r in enumerate(recorded.read(shared_frames("cryptofeed/KRAKEN.ws.50.0"))):
        if r.kind != "recv" or not r.payload.startswith("["):
            continue
        msg = orjson.loads(r.payload)
        pair, depth = msg[-1], int(msg[-2].split("-")[1])
        bids, asks = books.setdefault(pair, ({}, {}))
        snapshot = "as" in msg[1] or "bs" in msg[1]
        if snapshot:
            bids.clear()
            asks.clear()
        got: int | None = None
        changes: dict[str, list[tuple[float, float]]] = {"bids": [], "asks": []}
        for part in msg[1:-2]:
            for key, side, name in (("as", asks, "asks"), ("a", asks, "asks"),
                                    ("bs", bids, "bids"), ("b", bids, "bids")):  # fmt: skip
                for lv in part.get(key, []):
                    changes[name].append((float(lv[0]), float(lv[1])))
                    if float(lv[1]) == 0:
                        side.pop(lv[0], None)
                    else:
                        side[lv[0]] = lv[1]
            got = int(part["c"]) if "c" in part else got
        for side, best_first in ((asks, sorted(asks, key=float)),
                                 (bids, sorted(bids, key=float, reverse=True))):  # fmt: skip
            for p in best_first[depth:]:
                del side[p]
        st = states.get(pair)
        if st is None:
            st = states[pair] = BookState(KrakenV2(depth=depth))
        m = schemas.Book(venue="kraken", symbol=pair, ts_event=i, ts_recv=i, snapshot=snapshot,
                         seq=i + 1, checksum=got, **changes)  # fmt: skip
        assert st.feed(m) is None
        if got is None:
            continue
        a = sorted(asks.items(), key=lambda x: float(x[0]))
        b = sorted(bids.items(), key=lambda x: float(x[0]), reverse=True)
        assert crc(a, b) == got, (pair, i)
        assert st.valid and st.book.levels() == (
            [(float(p), float(q)) for p, q in b],
            [(float(p), float(q)) for p, q in a],
        )
        checked += 1
    assert checked == 4269 and len(states) == 10  # every checksum in the recording
    assert all(isinstance(s.rule, KrakenV2) and s.rule.precision is not None
               for s in states.values())  # fmt: skip


def test_v1_recorded_asset_pairs_become_instruments() -> None:
    n = Normalizer()
    [rest] = [r for r in recorded.read(shared_frames("cryptofeed/KRAKEN.0"))
              if r.kind == "rest" and r.url.endswith("/AssetPairs")]  # fmt: skip
    out = norm(n, rest.payload.encode(), channel="instruments")
    assert not isinstance(out, Dead)
    by = {i.symbol: i for i in out}
    rows = orjson.loads(rest.payload)["result"].values()
    # every pair with a WebSocket name (the 11 without are dark-pool ``.d`` pairs)
    assert len(out) == len(by) == sum(1 for r in rows if r.get("wsname")) == 293
    btc = by["BTC-USD"]
    assert (btc.native_symbol, btc.tick_size, btc.lot_size, btc.kind) == ("BTC/USD", 0.1, 1e-08,
                                                                           "spot")  # fmt: skip
    assert "DOGE-USD" in by and not any("XBT" in s for s in by)


# -- malformed frames ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("channel", "frame", "why"),
    [
        ("trade", b'{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy",'
                  b'"price":-1,"qty":1,"trade_id":1,"timestamp":"2023-09-25T07:48:36Z"}]}',
         "invalid trade frame"),
        ("trade", b'{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy",'
                  b'"price":1,"qty":1,"trade_id":1,"timestamp":"yesterday"}]}', "bad timestamp"),
        ("trade", b'{"channel":"trade","type":"update","data":[{"symbol":"ETH/USD","side":"buy",'
                  b'"price":1,"qty":1,"trade_id":1,"timestamp":"2023-09-25T07:48:36Z"}]}',
         "on a frame for 'BTC/USD'"),
        ("book", b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],'
                 b'"asks":[]}]}', "missing required field `checksum`"),
        ("book", b'{"channel":"book","type":"update","data":[]}', "with 0 entries"),
        ("book", b'{"channel":"book","type":"delta","data":[]}', "invalid book frame"),
        ("book", b'{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","bids":[],'
                 b'"asks":[],"checksum":1}]}', "channel 'trade' on a raw 'book' subject"),
        ("ticker", b'{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD"}]}',
         "missing required field"),
        ("ohlc", b'{"channel":"ohlc","type":"update","data":[{"symbol":"BTC/USD","open":1,'
                 b'"high":1,"low":1,"close":1,"volume":1,"interval_begin":'
                 b'"2023-10-04T16:25:00Z","interval":7}]}', "unknown ohlc interval 7"),
        ("book", b'{"channel":"book","type":"upd', "malformed book frame"),
        ("control", b'{"event":"heartbeat"}', "not a Kraken v2 control frame"),
        ("instruments", b'{"error":["EGeneral:Too many requests"]}', "Too many requests"),
        ("weird", b"{}", "unknown channel 'weird'"),
    ],
)  # fmt: skip
def test_malformed_frames_are_rejected_with_a_reason(channel: str, frame: bytes, why: str) -> None:
    out = Normalizer().normalize(subjects.raw("kraken", channel, "BTC/USD"), frame, RECV, 1)
    assert isinstance(out, Dead) and why in out.reason, out


# -- the collector against the emulator ------------------------------------------------
def collector_cfg(emu: KrakenEmulator, **kw: Any) -> dict[str, Any]:
    return venue_cfg(emu, ["trade", "book", "ticker", "ohlc", "instrument"], **kw)


async def test_end_to_end_into_clickhouse(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext, nc: Client
) -> None:
    from sinks.clickhouse.worker import main as sink_main

    async with KrakenEmulator(["BTC/USD", "ETH/USD"], seed=3) as emu:
        settings = make_settings(tmp_path, nats_server.url,
                                 collector={"kraken": collector_cfg(emu, options={"depth": "25"}),
                                            "flush_every": 300},
                                 sink={"flush_interval_s": 0.2})  # fmt: skip
        async with inprocess_all(
            settings, sink=sink_main, normalizer=normalizer_main, collector=collector_main
        ):
            await emu.wait_subscribed(9, timeout=15)  # 4 channels x 2 pairs + instrument
            await emu.emit(1200, books_every=2)
            data = [(c, p, f) for c, p, f in emu.sent]
            by = {ch: [f for c, _, f in data if c == ch] for ch in ("trade", "book", "ticker",
                                                                    "ohlc")}  # fmt: skip

            # RAW: every data frame once, byte for byte, in order, on its pair's subject
            got = await raw_messages(js, "raw.kraken.trade.>", len(by["trade"]))
            assert [m.data for m in got] == by["trade"]
            assert {m.subject for m in got} == {"raw.kraken.trade.BTC/USD",
                                                "raw.kraken.trade.ETH/USD"}  # fmt: skip
            assert len({m.headers[subjects.H_CONN] for m in got}) == 1
            books = await raw_messages(js, "raw.kraken.book.>", len(by["book"]) + 2)
            assert [m.data for m in books if b'"snapshot"' not in m.data[:40]] == by["book"]
            info = await raw_messages(js, "raw.kraken.instruments.ALL", 1)
            assert orjson.loads(info[0].data)["result"].keys() == {"XXBTZUSD", "XETHZUSD"}
            assert info[0].metadata.sequence.stream < min(
                m.metadata.sequence.stream for m in got + books)  # fmt: skip
            acks = [orjson.loads(m.data) for m in
                    await raw_messages(js, "raw.kraken.control.ALL", 10)]  # fmt: skip
            assert sum(1 for a in acks if a.get("method") == "subscribe" and a["success"]) == 9

            # ClickHouse: exact counts per table, values of the last rows
            n_trades = len(by["trade"])  # one trade per frame
            want = {"trades": n_trades, "book_updates": len(by["book"]) + 2,
                    "bbo": len(by["ticker"]) + 2, "tickers": len(by["ticker"]) + 2,
                    "candles": len(by["ohlc"]), "instruments": 2 + 2}  # fmt: skip
            for table, n in want.items():
                q = f"SELECT count() FROM {table} WHERE venue = 'kraken'"
                [[count]] = await rows(nc, q, 1)
                for _ in range(60):
                    if int(count) >= n:
                        break
                    await asyncio.sleep(0.3)
                    [[count]] = await rows(nc, q, 1)
                assert int(count) == n, (table, count, n)
            sim = emu.sims["BTC/USD"]
            last = sim.tape[-1]
            [[_, price, size, side]] = await rows(
                nc, "SELECT id, price, size, side FROM trades WHERE symbol = 'BTC-USD' "
                f"AND id = '{last['trade_id']}'", 1)  # fmt: skip
            assert (price, size, side) == (num(last["price"]),
                                           num(last["qty"]), last["side"])  # fmt: skip
            ids = await rows(nc, "SELECT id FROM trades WHERE symbol = 'BTC-USD'", sim.trade_id)
            assert sorted(int(r[0]) for r in ids) == list(range(1, sim.trade_id + 1))
            [[o, c, v, k]] = await rows(
                nc, "SELECT open, close, volume, trades FROM candles WHERE symbol = 'BTC-USD' "
                "ORDER BY stream_seq DESC LIMIT 1", 1)  # fmt: skip
            cd = sim.ohlc()
            assert (o, c, v, k) == (num(cd["open"]), num(cd["close"]),
                                    num(cd["volume"]), cd["trades"])  # fmt: skip
            inst = await rows(nc, "SELECT symbol, tick_size, lot_size FROM instruments "
                              "WHERE venue = 'kraken' ORDER BY symbol", 4)  # fmt: skip
            assert sorted(map(tuple, inst)) == [("BTC-USD", 0.1, 1e-08)] * 2 + [
                ("ETH-USD", 0.01, 1e-08)] * 2  # fmt: skip

            # MARKET books rebuild the emulator's true books (depth 25), every checksum good
            sub = await js.subscribe("market.book.kraken.*", stream=STREAM_MARKET,
                                     ordered_consumer=True)  # fmt: skip
            msgs = [schemas.decode(m.data) for m in await take(sub, len(by["book"]) + 2)]
            await sub.unsubscribe()
            states = {s: BookState(rule_for(s)) for s in ("BTC-USD", "ETH-USD")}
            for m in msgs:
                assert isinstance(m, schemas.Book) and states[m.symbol].feed(m) is None
            for pair, s in (("BTC/USD", "BTC-USD"), ("ETH/USD", "ETH-USD")):
                assert states[s].valid and states[s].book.levels() == emu.sims[pair].true_book(25)

            # resync: ctl.snapshot -> unsubscribe + subscribe -> a fresh snapshot
            reply = await nc.request("ctl.snapshot.kraken.BTC-USD", b"{}", timeout=10)
            assert orjson.loads(reply.data) == {"ok": True, "symbol": "BTC/USD"}
            await emu.wait_for(lambda: [r["method"] for r in emu.requests][-2:] == [
                "unsubscribe", "subscribe"])  # fmt: skip
            assert emu.requests[-1]["params"] == {"channel": "book", "symbol": ["BTC/USD"],
                                                  "depth": 25}  # fmt: skip
            bad = await nc.request("ctl.snapshot.kraken.DOGE-USD", b"{}", timeout=10)
            assert orjson.loads(bad.data)["ok"] is False
        assert emu.rest_calls == 1


async def test_pings_stale_channels_and_reconnects(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext
) -> None:
    # no heartbeats: the collector's JSON pings keep the connection alive
    async with KrakenEmulator(["BTC/USD"], seed=4, heartbeat_s=3600) as emu:
        cfg = collector_cfg(emu, channels=["trade", "book"], ping_interval_s=0.3,
                            stale_after_s=1.5, options={"stale_channels": "trade"})  # fmt: skip
        settings = make_settings(tmp_path, nats_server.url, collector={"kraken": cfg})
        async with inprocess("collector", collector_main, settings):
            await emu.wait_subscribed(2, timeout=15)
            await emu.emit(20, books_every=1)  # trades flow: no reconnect
            await emu.wait_for(lambda: emu.clients and emu.clients[0].pings >= 2, timeout=5)
            pongs = [orjson.loads(m.data) for m in
                     await raw_messages(js, "raw.kraken.control.ALL", 10, timeout=3)]  # fmt: skip
            assert any(p.get("method") == "pong" for p in pongs)
            # pongs keep coming but no trade frame for 1.5 s: the trade feed is stale
            conn = await raw_messages(js, "raw.kraken.conn.ALL", 2, timeout=8)
            events = [orjson.loads(m.data) for m in conn]
            assert [e["event"] for e in events] == ["connected", "disconnected"]
            assert events[1]["reason"] == "stale: no trade frame for 1.5s"
            assert events[1]["symbols"] == ["BTC/USD"]
            await emu.wait_subscribed(2, timeout=15)
            # a stalled venue (nothing at all, not even pongs) is stale too
            emu.stall()
            conn = await raw_messages(js, "raw.kraken.conn.ALL", 4, timeout=8)
            assert orjson.loads(conn[3].data)["reason"].startswith("stale: no ")
            # a dropped connection reconnects with a fresh snapshot
            await emu.wait_subscribed(2, timeout=15)
            await emu.drop_connections()
            conn = await raw_messages(js, "raw.kraken.conn.ALL", 7, timeout=10)
            assert [orjson.loads(m.data)["event"] for m in conn][4:] == [
                "connected", "disconnected", "connected"]  # fmt: skip
            assert orjson.loads(conn[5].data)["reason"].startswith("closed by venue")
            await emu.wait_subscribed(2, timeout=15)
            books = await raw_messages(js, "raw.kraken.book.BTC/USD", 24, timeout=5)
            # every connection's book starts with a snapshot (the quiet trade feed keeps
            # reconnecting it, so there are at least four)
            first: dict[str, bytes] = {}
            for m in books:
                first.setdefault(m.headers[subjects.H_CONN], m.data)
            assert len(first) >= 4
            assert all(b'"type":"snapshot"' in d[:40] for d in first.values())
    # the normalizer turns a disconnect into a reconnect gap per pair
    assert reconnect_gap("kraken", events[1]).symbol == "BTC-USD"


async def test_emulator_protocol() -> None:
    async with (
        KrakenEmulator(["BTC/USD"], seed=5) as emu,
        websockets.connect(emu.ws_url) as ws,
    ):
        status = orjson.loads(await ws.recv())
        assert status["channel"] == "status" and status["data"][0]["api_version"] == "v2"
        await ws.send('{"method":"ping","req_id":7}')
        pong = orjson.loads(await ws.recv())
        assert (pong["method"], pong["req_id"]) == ("pong", 7)
        await ws.send('{"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD",'
                      '"NOPE/USD"],"depth":25},"req_id":8}')  # fmt: skip
        ack = orjson.loads(await ws.recv())
        assert ack["success"] and ack["result"] == {"channel": "book", "snapshot": True,
                                                    "symbol": "BTC/USD", "depth": 25}  # fmt: skip
        snap = orjson.loads(await ws.recv())
        assert snap["type"] == "snapshot" and len(snap["data"][0]["bids"]) == 25
        d = snap["data"][0]
        lv = lambda side: [(x["price"], x["qty"]) for x in side]  # noqa: E731
        assert checksum(lv(d["asks"]), lv(d["bids"]), 1, 8) == d["checksum"]
        err = orjson.loads(await ws.recv())
        assert (
            not err["success"] and err["symbol"] == "NOPE/USD" and "not supported" in err["error"]
        )
        await ws.send('{"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD"],'
                      '"depth":7}}')  # fmt: skip
        assert "Invalid depth" in orjson.loads(await ws.recv())["error"]
        await ws.send("{bad json")
        assert orjson.loads(await ws.recv())["success"] is False
        await emu.emit(4, books_every=2, trades=False)
        ups = [orjson.loads(await ws.recv()) for _ in range(2)]
        assert [u["type"] for u in ups] == ["update", "update"] and "timestamp" in ups[0]["data"][0]
        await ws.send('{"method":"unsubscribe","params":{"channel":"book","symbol":["BTC/USD"],'
                      '"depth":25}}')  # fmt: skip
        assert orjson.loads(await ws.recv())["method"] == "unsubscribe"


async def test_orderbook_service_resyncs_through_the_stream(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext, nc: Client
) -> None:
    """collector -> normalizer -> orderbook in-process: each wire fault becomes a gap, the
    service's ctl.snapshot makes the collector re-subscribe, the book heals to the truth."""
    from orderbook.service import main as orderbook_main

    async def synced(timeout: float = 15) -> dict:
        deadline = asyncio.get_running_loop().time() + timeout
        b: dict = {}
        while asyncio.get_running_loop().time() < deadline:
            b = await served_book(nc, "kraken", "BTC-USD")
            truth = [[list(x) for x in side] for side in sim.true_book(10)]
            if b.get("valid") and [b["bids"], b["asks"]] == truth:
                return b
            if not b.get("valid"):  # updates keep flowing; the service asks for a snapshot
                await emu.emit(4, trades=False)
            await asyncio.sleep(0.1)
        raise AssertionError(f"not synced: valid={b.get('valid')}")

    gaps = await js.subscribe(subjects.market_filter("gap", "kraken"), stream=STREAM_MARKET,
                              ordered_consumer=True)  # fmt: skip
    async with KrakenEmulator(["BTC/USD"], seed=8) as emu:
        sim = emu.sims["BTC/USD"]
        settings: Settings = make_settings(
            tmp_path, nats_server.url,
            collector={"kraken": collector_cfg(emu, channels=["book"])},
            orderbook={"depth_interval_ms": 50, "snapshot_retry_s": 0.3},
        )  # fmt: skip
        async with inprocess_all(
            settings, orderbook=orderbook_main, normalizer=normalizer_main, collector=collector_main
        ):
            await emu.wait_subscribed(1, timeout=15)
            await emu.emit(400, trades=False)
            await synced()
            for fault, reason in (("drop", "checksum"), ("duplicate", "sequence"),
                                  ("reorder", "checksum"), ("corrupt", "checksum")):  # fmt: skip
                await emu.emit(200, trades=False, fault=fault)
                [gap] = await take(gaps, 1, timeout=10)
                g = schemas.decode(gap.data)
                assert isinstance(g, schemas.Gap) and g.reason == reason, (fault, g)
                await synced()
            subs = [r for r in emu.requests if r["method"] == "subscribe"]
            assert len(subs) >= 5  # the first one and one per resync
    await gaps.unsubscribe()


def test_l2book_truncation_keeps_the_best_levels() -> None:
    book = L2Book()
    book.load([(float(p), 1.0) for p in range(100, 70, -1)], [(float(p), 1.0) for p in
                                                               range(101, 140)])  # fmt: skip
    rule = KrakenV2(depth=10, precision=(0, 1))
    bids, asks = book.top(10)
    m = schemas.Book(venue="kraken", symbol="X-Y", ts_event=1, ts_recv=1, snapshot=False, bids=[],
                     asks=[], seq=1, checksum=checksum(asks, bids, 0, 1))  # fmt: skip
    assert rule.verify(book, m) is None
    assert book.levels() == (bids, asks) and len(book.bids) == len(book.asks) == 10
