"""OKX: symbols, parsing (generated and recorded frames), book sync with checksums, and the
collector against the local emulator on a real nats-server."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets
from nats.aio.client import Client
from nats.js import JetStreamContext
from prometheus_client import REGISTRY

from collectors.config import VenueSettings
from collectors.okx import route, subscription_args
from collectors.okx import run as collector_main
from normalizer.core import Dead, Normalizer
from normalizer.venues.okx import wire
from normalizer.venues.okx.parse import Contract as ParseContract
from normalizer.venues.okx.parse import contract_of
from normalizer.worker import main as normalizer_main
from orderbook.sync import BookState, Problem
from orderbook.venues.okx import Contract, OkxChecksum, OkxSequence, fmt, rule_for
from streams import schemas, subjects
from streams.bus.server import NatsServer
from streams.provision import STREAM_MARKET
from streams.settings import Settings
from streams.symbols.okx import inst_type, to_native, to_symbol
from tests import recorded
from tests.conftest import make_settings, shared_frames
from tests.helpers import expect_gap, raw_messages, reconnect_gap, served_book, take, venue_cfg
from tests.venues.okx.emulator import DEFAULT_SPECS, InstrumentSim, OkxEmulator
from tests.workers import inprocess, inprocess_all

RECV = {subjects.H_RECV_NS: "1700000000000000001"}
LINEAR = Contract(0.01, False, 0)  # BTC-USDT-SWAP in the emulator


def instruments_body(*inst_ids: str) -> bytes:
    return orjson.dumps(
        {"code": "0", "data": [DEFAULT_SPECS[i].row() for i in inst_ids], "msg": ""}
    )


def push(channel: str, inst: str, data: list, action: str | None = None, **arg: str) -> bytes:
    body: dict[str, Any] = {"arg": {"channel": channel, "instId": inst, **arg}}
    if action:
        body["action"] = action
    body["data"] = data
    return orjson.dumps(body)


def norm(n: Normalizer, frame: bytes, seq: int = 1) -> list[schemas.Base] | Dead:
    # REST instruments bodies reach RAW from the collector's REST call, not the WebSocket
    channel, target = ("instruments", "ALL") if frame.startswith(b'{"code"') else route(frame)
    out = n.normalize(subjects.raw("okx", channel, target), frame, RECV, seq)
    return out if isinstance(out, Dead) else [schemas.decode(o.data) for o in out]


# -- names -----------------------------------------------------------------------------
def test_symbols_both_ways() -> None:
    pairs = [
        ("BTC-USDT", "BTC-USDT"), ("BTC-USDT-SWAP", "BTC-USDT-PERP"),
        ("BTC-USD-SWAP", "BTC-USD-PERP"), ("BTC-USD-251226", "BTC-USD-20251226"),
        ("BTC-USD-251226-100000-C", "BTC-USD-20251226-100000-C"),
        ("ETH-USD-250328-2500-P", "ETH-USD-20250328-2500-P"),
    ]  # fmt: skip
    for native, ours in pairs:
        assert to_symbol(native) == ours
        assert to_native(ours) == native
    assert [inst_type(n) for n, _ in pairs] == ["SPOT", "SWAP", "SWAP", "FUTURES", "OPTION",
                                                 "OPTION"]  # fmt: skip
    for bad in ("BTC", "BTC-USD-XYZ", "BTC-USD-251226-1-Q", "A--B"):
        with pytest.raises(ValueError):
            to_symbol(bad)
    with pytest.raises(ValueError):
        to_native("BTC-USD-SOMETHING")


def test_route_decodes_only_the_arg() -> None:
    assert route(b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","da') == (
        "books", "BTC-USDT")  # fmt: skip
    assert route(b'{"arg":{"channel":"liquidation-orders","instType":"SWAP"},"data":[]}') == (
        "liquidation-orders", "SWAP")  # fmt: skip
    assert route(b'{"event":"subscribe","arg":{"channel":"trades","instId":"X-Y"}}') == (
        "control", "ALL")  # fmt: skip
    assert route(b'{"event":"error","code":"60012","msg":"bad"}') == ("control", "ALL")
    assert route(b"pong") == ("control", "ALL")
    assert route(b'{"arg":{"channel":"nope","instId":"BTC-USDT"},"data":[]}') == ("unknown", "ALL")
    assert route(b'{"arg":{"channel":"trades","instId":"A.B"},"data":[]}') == ("unknown", "ALL")
    assert route(b'{"arg":{broken') == ("unknown", "ALL")
    assert route(bytes(range(256))) == ("unknown", "ALL")


def test_subscription_args_per_channel_kind() -> None:
    cfg = VenueSettings(
        ws_url="ws://x", rest_url="http://x", symbols=["BTC-USDT", "BTC-USDT-SWAP"],
        channels=["trades", "funding-rate", "mark-price", "index-tickers", "liquidation-orders"],
    )  # fmt: skip
    assert subscription_args(cfg) == [
        {"channel": "trades", "instId": "BTC-USDT"},
        {"channel": "trades", "instId": "BTC-USDT-SWAP"},
        {"channel": "funding-rate", "instId": "BTC-USDT-SWAP"},
        {"channel": "mark-price", "instId": "BTC-USDT-SWAP"},
        {"channel": "index-tickers", "instId": "BTC-USDT"},
        {"channel": "liquidation-orders", "instType": "SWAP"},
    ]


# -- parsing ---------------------------------------------------------------------------
def test_contract_conversion_and_unknown_contract_rejected() -> None:
    n = Normalizer()
    trade = {"instId": "BTC-USDT-SWAP", "tradeId": "9", "px": "65000.1", "sz": "3",
             "side": "sell", "ts": "1700000000123"}  # fmt: skip
    early = norm(n, push("trades", "BTC-USDT-SWAP", [trade]))
    assert isinstance(early, Dead) and "contract size of BTC-USDT-SWAP unknown" in early.reason

    out = norm(n, instruments_body("BTC-USDT-SWAP", "BTC-USD-SWAP"))
    assert not isinstance(out, Dead)
    inst = {m.symbol: m for m in out if isinstance(m, schemas.Instrument)}
    assert inst["BTC-USDT-PERP"].contract_size == 0.01 and inst["BTC-USDT-PERP"].kind == "perpetual"
    assert inst["BTC-USD-PERP"].contract_size == 100.0 and inst["BTC-USD-PERP"].settle == "BTC"

    [t] = norm(n, push("trades", "BTC-USDT-SWAP", [trade]))  # type: ignore[misc]
    assert isinstance(t, schemas.Trade)
    assert (t.symbol, t.size, t.price, t.side, t.id) == (
        "BTC-USDT-PERP",
        0.03,
        65000.1,
        "sell",
        "9",
    )
    inverse = dict(trade, instId="BTC-USD-SWAP", px="50000", sz="7")
    [t] = norm(n, push("trades", "BTC-USD-SWAP", [inverse]))  # type: ignore[misc]
    assert t.size == 7 * 100 / 50000  # type: ignore[attr-defined]
    book = {"asks": [["65000.2", "30", "0", "2"]], "bids": [["65000.1", "1", "0", "1"]],
            "ts": "1700000000123", "checksum": 1, "seqId": 5, "prevSeqId": -1}  # fmt: skip
    [b] = norm(n, push("books", "BTC-USDT-SWAP", [book], "snapshot"))  # type: ignore[misc]
    assert isinstance(b, schemas.Book) and b.snapshot and (b.seq, b.prev_seq) == (5, -1)
    assert b.asks == [(65000.2, 0.3)] and b.bids == [(65000.1, 0.01)]
    spot = dict(trade, instId="BTC-USDT", sz="0.00001068")  # spot needs no instruments
    [t] = norm(n, push("trades", "BTC-USDT", [spot]))  # type: ignore[misc]
    assert t.size == 0.00001068 and fmt(t.size) == "0.00001068"  # type: ignore[attr-defined]
    # options: ctVal x ctMult in the base currency
    row = wire.Instrument(instId="BTC-USD-220527-22000-C", instType="OPTION", tickSz="0.0005",
                          lotSz="1", ctVal="1", ctMult="0.1", ctValCcy="BTC")  # fmt: skip
    assert contract_of(row) == ParseContract(0.1, False)


def test_every_channel_generated() -> None:
    n = Normalizer()
    assert not isinstance(norm(n, instruments_body("BTC-USDT-SWAP")), Dead)
    S = "BTC-USDT-SWAP"
    ts = "1700000000000"
    frames = {
        "ticker": push("tickers", S, [{"instType": "SWAP", "instId": S, "last": "65000.1",
            "lastSz": "1", "askPx": "65000.2", "askSz": "5", "bidPx": "65000.1", "bidSz": "2",
            "open24h": "64000", "high24h": "66000", "low24h": "63000", "volCcy24h": "123.4",
            "vol24h": "12340", "ts": ts}]),
        "candle": push("candle1m", S, [[ts, "1", "3", "0.5", "2", "100", "1", "2", "0"]]),
        "funding": push("funding-rate", S, [{"instType": "SWAP", "instId": S,
            "fundingRate": "0.0001", "nextFundingRate": "", "fundingTime": "1700006400000",
            "nextFundingTime": "1700035200000", "ts": ts}]),
        "open_interest": push("open-interest", S, [{"instType": "SWAP", "instId": S,
            "oi": "5000", "oiCcy": "50", "oiUsd": "3250000", "ts": ts}]),
        "liquidation": orjson.dumps({"arg": {"channel": "liquidation-orders", "instType": "SWAP"},
            "data": [{"instId": S, "instType": "SWAP", "uly": "BTC-USDT", "details": [
                {"side": "sell", "posSide": "long", "bkPx": "64000", "sz": "20", "bkLoss": "0",
                 "ccy": "", "ts": ts}]}]}),
        "mark": push("mark-price", S, [{"instType": "SWAP", "instId": S, "markPx": "65000.5",
                                        "ts": ts}]),
        "index": push("index-tickers", "BTC-USDT", [{"instId": "BTC-USDT", "idxPx": "65001",
            "high24h": "1", "low24h": "1", "open24h": "1", "sodUtc0": "1", "sodUtc8": "1",
            "ts": ts}]),
        "bbo": push("bbo-tbt", S, [{"asks": [["65000.2", "5", "0", "1"]],
            "bids": [["65000.1", "2", "0", "1"]], "ts": ts, "seqId": 9}]),
    }  # fmt: skip
    got = {k: norm(n, f) for k, f in frames.items()}
    for k, v in got.items():
        assert not isinstance(v, Dead), (k, v)
    tk = got["ticker"][0]  # type: ignore[index]
    assert (
        isinstance(tk, schemas.Ticker) and tk.volume_24h == 123.4 and tk.symbol == "BTC-USDT-PERP"
    )
    c = got["candle"][0]  # type: ignore[index]
    assert isinstance(c, schemas.Candle) and (c.interval, c.volume, c.closed) == ("1m", 1.0, False)
    f = got["funding"][0]  # type: ignore[index]
    assert isinstance(f, schemas.Funding) and f.rate == 0.0001 and f.predicted_rate is None
    assert f.next_funding_ts == 1700006400000 * 1_000_000
    oi = got["open_interest"][0]  # type: ignore[index]
    assert isinstance(oi, schemas.OpenInterest) and oi.open_interest == 50.0
    lq = got["liquidation"][0]  # type: ignore[index]
    assert isinstance(lq, schemas.Liquidation) and (lq.side, lq.size) == ("sell", 0.2)
    mk, ix = got["mark"][0], got["index"][0]  # type: ignore[index]
    assert isinstance(mk, schemas.Mark) and mk.mark_price == 65000.5
    assert isinstance(ix, schemas.Mark) and (ix.symbol, ix.index_price) == ("BTC-USDT", 65001.0)
    bbo = got["bbo"][0]  # type: ignore[index]
    assert isinstance(bbo, schemas.BBO) and (bbo.bid_size, bbo.ask_size, bbo.seq) == (0.02, 0.05, 9)
    # control frames produce nothing; a keep-alive book update is dropped
    assert norm(n, b'{"event":"subscribe","arg":{"channel":"books","instId":"X-Y"}}') == []
    assert norm(n, b"pong") == []
    hb = {"asks": [], "bids": [], "ts": ts, "checksum": 1, "seqId": 7, "prevSeqId": 7}
    assert norm(n, push("books", S, [hb], "update")) == []
    for bad in (push("books", S, [hb], "weird"), b'{"arg":{"channel":"trades","instId":"BTC-U',
                push("trades", "BTC-USDT", [{"instId": "BTC-USDT", "tradeId": "1", "px": "-1",
                                             "sz": "1", "side": "buy", "ts": ts}])):  # fmt: skip
        assert isinstance(norm(n, bad), Dead)


# -- recorded real frames --------------------------------------------------------------
def _contract(row: dict[str, str]) -> Contract | None:
    if not row["ctVal"]:
        return None
    lot = row["lotSz"]
    c = contract_of(wire.Instrument(**{k: row[k] for k in ("instId", "instType", "tickSz",
        "lotSz", "ctVal", "ctMult", "ctValCcy")}))  # fmt: skip
    assert c is not None
    return Contract(c.size, c.inverse, len(lot.split(".")[1]) if "." in lot else 0)


def test_recorded_frames_normalize_and_every_checksum_verifies() -> None:
    n = Normalizer()
    rows: dict[str, dict[str, str]] = {}
    seq = 0
    for r in recorded.read(shared_frames("cryptofeed/OKX.0")):
        if r.kind == "rest" and "/public/instruments" in r.url:
            seq += 1
            assert not isinstance(norm(n, r.payload.encode(), seq), Dead)
            rows.update({i["instId"]: i for i in orjson.loads(r.payload)["data"]})
    assert len(rows) > 1000
    types: Counter[str] = Counter()
    states: dict[str, BookState] = {}
    problems: list[Problem] = []
    verified: Counter[str] = Counter()
    strings = matched = 0
    for r in recorded.read(shared_frames("cryptofeed/OKX.ws.1.0")):
        if r.kind != "recv":
            continue
        seq += 1
        msgs = norm(n, r.payload.encode(), seq)
        assert not isinstance(msgs, Dead), (msgs.reason, r.payload[:200])
        for m in msgs:
            types[type(m).__struct_config__.tag] += 1  # type: ignore[attr-defined]
            if not isinstance(m, schemas.Book):
                continue
            st = states.get(m.symbol)
            if st is None:
                native = to_native(m.symbol)
                # spot: the production rule; derivatives: the same checksum given the contract
                # spec (which rule_for cannot see, see orderbook/venues/okx.py)
                c = _contract(rows[native])
                rule = rule_for(m.symbol) if c is None else OkxChecksum(c)
                assert isinstance(rule, OkxChecksum) and (c is None) == (m.symbol.count("-") == 1)
                st = states[m.symbol] = BookState(rule)
            p = st.feed(m)
            if p is not None:
                problems.append(p)
            elif m.checksum is not None:
                verified[m.symbol] += 1
        if '"books"' in r.payload[:40] and '"data"' in r.payload:
            for d in orjson.loads(r.payload)["data"]:
                for lv in d["bids"] + d["asks"]:
                    strings += 2
                    matched += (fmt(float(lv[0])) == lv[0]) + (fmt(float(lv[1])) == lv[1])
    assert types == {"book": 290, "trade": 74, "ticker": 28}
    assert problems == []
    assert sum(verified.values()) == 290  # every recorded books push, snapshots included
    assert set(verified) == {"BTC-USDT", "UNI-USD-PERP", "BTC-USD-20220527"}
    assert (matched, strings) == (16528, 16528)  # fmt() gives OKX's string for every level


# -- book rule -------------------------------------------------------------------------
def _book(n: Normalizer, sim: InstrumentSim, d: dict, action: str, seq: int) -> schemas.Book:
    [m] = norm(n, push("books", sim.spec.inst_id, [d], action), seq)  # type: ignore[misc]
    assert isinstance(m, schemas.Book)
    return m


def test_book_rule_detects_drop_and_corruption_offline() -> None:
    import random

    n = Normalizer()
    sim = InstrumentSim(DEFAULT_SPECS["BTC-USDT"], random.Random(2), 650_000)
    st = BookState(rule_for("BTC-USDT"))
    assert isinstance(rule_for("BTC-USDT-PERP"), OkxSequence)
    assert not hasattr(rule_for("BTC-USDT-PERP"), "verify")
    assert st.feed(_book(n, sim, sim.snapshot(1), "snapshot", 1)) is None and st.valid
    for i in range(200):
        assert st.feed(_book(n, sim, sim.update(1), "update", i + 2)) is None
    hb = sim.heartbeat(1)
    assert st.rule.continues(st.seq, _book(n, sim, dict(hb, bids=[["1", "1", "0", "1"]]),
                                           "update", 9))  # fmt: skip
    bids, asks = sim.true_book()
    assert st.book.levels() == ([(float(p), float(s)) for p, s in bids],
                                [(float(p), float(s)) for p, s in asks])  # fmt: skip
    sim.update(1)  # dropped on the wire
    p = st.feed(_book(n, sim, sim.update(1), "update", 300))
    assert p is not None and p.reason == "sequence" and p.fatal and not st.valid
    assert st.feed(_book(n, sim, sim.snapshot(1), "snapshot", 301)) is None and st.valid
    bad = sim.update(1)
    (bad["bids"] or bad["asks"])[0][1] = "9.99"
    p = st.feed(_book(n, sim, bad, "update", 302))
    assert p is not None and p.reason == "checksum" and not st.valid


# -- the collector against the emulator ------------------------------------------------
def collector_settings(tmp_path: Path, url: str, emu: OkxEmulator, **okx: object) -> Settings:
    cfg = venue_cfg(emu, ["trades", "books"], **okx)
    return make_settings(tmp_path, url, collector={"okx": cfg, "flush_every": 500})


def _true(emu: OkxEmulator, inst: str) -> tuple[list, list]:
    """The emulator's book as the normalizer must present it (base units)."""
    ct = float(DEFAULT_SPECS[inst].ct_val or 0)

    def conv(levels: list[tuple[str, str]]) -> list[tuple[float, float]]:
        return [(float(p), round(float(s) * ct, 12) if ct else float(s)) for p, s in levels]

    bids, asks = emu.true_book(inst)
    return conv(bids), conv(asks)


async def test_collector_raw_market_and_rebuilt_books(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext, nc: Client
) -> None:
    insts = ["BTC-USDT", "BTC-USDT-SWAP"]
    async with OkxEmulator(insts, seed=3) as emu:
        settings = collector_settings(tmp_path, nats_server.url, emu)
        market = await js.subscribe(
            subjects.market_filter("book", "okx"), stream=STREAM_MARKET, ordered_consumer=True
        )
        async with inprocess_all(settings, collector=collector_main, normalizer=normalizer_main):
            await emu.wait_subscribed(4, timeout=15)
            await emu.emit(3000, books_every=2)

            sent_trades = [f for f in emu.sent if f.startswith(b'{"arg":{"channel":"trades"')]
            sent_books = [f for f in emu.sent if f.startswith(b'{"arg":{"channel":"books"')]
            got = await raw_messages(js, "raw.okx.trades.>", len(sent_trades))
            assert [m.data for m in got] == sent_trades  # every frame once, in order, untouched
            assert {m.subject for m in got} == {"raw.okx.trades.BTC-USDT",
                                                "raw.okx.trades.BTC-USDT-SWAP"}  # fmt: skip
            assert len({m.headers[subjects.H_CONN] for m in got}) == 1
            books = await raw_messages(js, "raw.okx.books.>", len(sent_books) + 2)
            assert [
                m.data for m in books if b'"action":"snapshot"' not in m.data[:100]
            ] == sent_books
            info = await raw_messages(js, "raw.okx.instruments.ALL", 2)
            assert {m.data for m in info} == {instruments_body("BTC-USDT"),
                                              instruments_body("BTC-USDT-SWAP")}  # fmt: skip
            first_data = min(m.metadata.sequence.stream for m in got + books)
            assert max(m.metadata.sequence.stream for m in info) < first_data
            acks = await raw_messages(js, "raw.okx.control.ALL", 4)
            assert all(orjson.loads(m.data)["event"] == "subscribe" for m in acks)

            # MARKET books rebuild the emulator's true books, every checksum verified
            msgs = [schemas.decode(m.data) for m in await take(market, len(sent_books) + 2)]
            assert len(msgs) == len(sent_books) + 2
            states = {"BTC-USDT": BookState(rule_for("BTC-USDT")),
                      "BTC-USDT-PERP": BookState(OkxChecksum(LINEAR))}  # fmt: skip
            checked = 0
            for m in msgs:
                assert isinstance(m, schemas.Book) and m.checksum is not None
                assert states[m.symbol].feed(m) is None
                checked += 1
            assert checked == len(sent_books) + 2
            for inst, sym in (("BTC-USDT", "BTC-USDT"), ("BTC-USDT-SWAP", "BTC-USDT-PERP")):
                assert states[sym].valid and states[sym].book.levels() == _true(emu, inst)
            spot = states["BTC-USDT"]

            # a keep-alive is harmless; a dropped update breaks the chain
            await emu.emit(200, inst="BTC-USDT", fault="heartbeat")
            await emu.emit(200, inst="BTC-USDT", fault="drop")
            found: list[Problem] = []
            for m in await take(market, 199, timeout=10):  # 100 + 100 updates, one dropped
                p = spot.feed(schemas.decode(m.data))  # type: ignore[arg-type]
                if p is not None:
                    found.append(p)
            assert [p.reason for p in found] == ["sequence"] and not spot.valid

            # resync: ctl.snapshot -> unsubscribe + subscribe -> a fresh snapshot on the stream
            reply = await nc.request("ctl.snapshot.okx.BTC-USDT", b"{}", timeout=10)
            assert orjson.loads(reply.data) == {"ok": True, "instId": "BTC-USDT"}
            [snap] = await take(market, 1)
            snap_msg = schemas.decode(snap.data)
            assert isinstance(snap_msg, schemas.Book) and snap_msg.snapshot
            assert spot.feed(snap_msg) is None and spot.valid
            assert spot.book.levels() == _true(emu, "BTC-USDT")
            ops = [r["op"] for r in emu.requests]
            assert ops[-2:] == ["unsubscribe", "subscribe"]
            bad = await nc.request("ctl.snapshot.okx.DOGE-USDT", b"{}", timeout=10)
            assert orjson.loads(bad.data)["ok"] is False

            # a corrupted level: the checksum catches it
            await emu.emit(100, inst="BTC-USDT", fault="corrupt")
            found = []
            for m in await take(market, 50, timeout=10):
                p = spot.feed(schemas.decode(m.data))  # type: ignore[arg-type]
                if p is not None:
                    found.append(p)
            assert found and found[0].reason == "checksum" and not spot.valid
        await market.unsubscribe()


async def test_collector_retries_instruments_before_connecting(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext
) -> None:
    """The venue's REST is down at start: instruments are retried with backoff, each
    failure counted and none published, and the WebSocket opens only once they are on RAW."""

    def errors() -> float:
        labels = {"venue": "okx", "endpoint": "instruments", "status": "error"}
        return REGISTRY.get_sample_value("jetmarket_collector_rest_requests_total", labels) or 0

    async with OkxEmulator(["BTC-USDT"], seed=6) as emu:
        emu.rest_unavailable = 2
        settings = collector_settings(tmp_path, nats_server.url, emu)
        before = errors()
        async with inprocess("collector", collector_main, settings):
            await emu.wait_subscribed(2, timeout=15)
            assert emu.rest_calls == {"SPOT": 3} and errors() - before == 2
            [info] = await raw_messages(js, "raw.okx.instruments.ALL", 2, timeout=2)
            assert orjson.loads(info.data)["data"][0]["instId"] == "BTC-USDT"
            [connected] = await raw_messages(js, "raw.okx.conn.ALL", 1)
            assert info.metadata.sequence.stream < connected.metadata.sequence.stream


async def test_collector_pings_when_idle_and_reconnects(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext
) -> None:
    async with OkxEmulator(["BTC-USDT"], seed=4, idle_timeout_s=1.0) as emu:
        settings = collector_settings(
            tmp_path, nats_server.url, emu, ping_interval_s=0.3, stale_after_s=5.0
        )
        async with inprocess("collector", collector_main, settings) as w:
            await emu.wait_subscribed(2, timeout=15)
            await asyncio.sleep(2.5)  # silence: OKX (here 1 s) would cut a client not pinging
            assert emu.clients and emu.clients[0].pings >= 3
            pongs = [
                m for m in await raw_messages(js, "raw.okx.control.ALL", 5) if m.data == b"pong"
            ]
            assert pongs
            await emu.drop_connections()
            await asyncio.sleep(0.2)
            await emu.wait_subscribed(2, timeout=15)
            conn = [orjson.loads(m.data) for m in await raw_messages(js, "raw.okx.conn.ALL", 3)]
            assert [c["event"] for c in conn] == ["connected", "disconnected", "connected"]
            assert conn[1]["symbols"] == ["BTC-USDT"]
            snaps = await raw_messages(js, "raw.okx.books.BTC-USDT", 2)
            assert [b'"action":"snapshot"' in m.data[:100] for m in snaps] == [True, True]
            for _ in range(30):
                if w.health.state == "ok":
                    break
                await asyncio.sleep(0.1)
            assert w.health.state == "ok"
    # the normalizer turns the disconnect into a reconnect gap
    assert reconnect_gap("okx", conn[1]).symbol == "BTC-USDT"


async def test_emulator_protocol() -> None:
    async with (
        OkxEmulator(["BTC-USDT"], seed=5) as emu,
        websockets.connect(emu.ws_url) as ws,
    ):
        await ws.send("ping")
        assert await ws.recv() == "pong"
        await ws.send('{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"},'
                      '{"channel":"books","instId":"NOPE-USDT"}]}')  # fmt: skip
        ack = orjson.loads(await ws.recv())
        assert ack["event"] == "subscribe" and ack["arg"]["instId"] == "BTC-USDT"
        snap = orjson.loads(await ws.recv())
        assert snap["action"] == "snapshot" and snap["data"][0]["prevSeqId"] == -1
        d = snap["data"][0]
        assert len(d["bids"]) == 119 and all(len(lv) == 4 for lv in d["bids"])
        from orderbook.venues.okx import checksum

        top = lambda side: [(lv[0], lv[1]) for lv in side]  # noqa: E731
        assert checksum(top(d["bids"]), top(d["asks"])) == d["checksum"]
        err = orjson.loads(await ws.recv())
        assert err["event"] == "error" and err["code"] == "60018"
        await ws.send("{bad json")
        assert orjson.loads(await ws.recv())["code"] == "60012"
        await emu.emit(10, books_every=5)
        frames = [orjson.loads(await ws.recv())["data"][0] for _ in range(2)]
        assert frames[0]["prevSeqId"] == d["seqId"]
        assert frames[1]["prevSeqId"] == frames[0]["seqId"] > d["seqId"]
        await ws.send('{"op":"unsubscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}')
        assert orjson.loads(await ws.recv())["event"] == "unsubscribe"


async def test_orderbook_service_resyncs_through_the_stream(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext, nc: Client
) -> None:
    """collector -> normalizer -> orderbook in-process: faults become gaps, the service's
    ctl.snapshot makes the collector re-subscribe, and the book heals to the true book."""
    from orderbook.service import main as orderbook_main

    async def synced(inst: str, symbol: str, timeout: float = 15) -> dict:
        deadline = asyncio.get_running_loop().time() + timeout
        b: dict = {}
        while asyncio.get_running_loop().time() < deadline:
            b = await served_book(nc, "okx", symbol)
            if b.get("valid") and b.get("seq") == emu.sims[inst].seq:
                return b
            # OKX keeps pushing; the service asks for a snapshot (at most every
            # snapshot_retry_s) when a book message finds the book invalid
            if not b.get("valid"):
                await emu.emit(10)
            await asyncio.sleep(0.1)
        raise AssertionError(f"{symbol} not synced: {b.get('valid')} {b.get('seq')}")

    gaps = await js.subscribe(
        subjects.market_filter("gap", "okx"), stream=STREAM_MARKET, ordered_consumer=True
    )
    async with OkxEmulator(["BTC-USDT"], seed=8) as emu:
        settings = make_settings(
            tmp_path, nats_server.url,
            collector={"okx": {"ws_url": emu.ws_url, "rest_url": emu.rest_url,
                               "symbols": ["BTC-USDT"], "channels": ["books"]}},
            orderbook={"depth_interval_ms": 50, "snapshot_retry_s": 0.3},
        )  # fmt: skip
        async with inprocess_all(
            settings, orderbook=orderbook_main, normalizer=normalizer_main, collector=collector_main
        ):
            await emu.wait_subscribed(1, timeout=15)
            await emu.emit(400)
            b = await synced("BTC-USDT", "BTC-USDT")
            assert (b["bids"], b["asks"]) == tuple(map(lambda s: [list(x) for x in s],
                                                       _true(emu, "BTC-USDT")))  # fmt: skip
            # a duplicate never reaches the book (same Nats-Msg-Id okx:book:SYM:seqId, so
            # JetStream drops it); the others each make one gap and a resync
            faults = (("drop", "sequence"), ("duplicate", None), ("reorder", "sequence"),
                      ("corrupt", "checksum"))  # fmt: skip
            for fault, reason in faults:
                await emu.emit(200, fault=fault)
                await expect_gap(gaps, reason, fault)
                b = await synced("BTC-USDT", "BTC-USDT")
                assert (b["bids"], b["asks"]) == tuple(map(lambda s: [list(x) for x in s],
                                                           _true(emu, "BTC-USDT")))  # fmt: skip
            subs = [r for r in emu.requests if r["op"] == "subscribe"]
            assert len(subs) >= 4  # the first one and one per resync
            # 100k more deltas: the served book is still exactly the venue's true book
            for _ in range(10):
                await emu.emit(10_000, books_every=1)
            b = await synced("BTC-USDT", "BTC-USDT", timeout=120)
            assert (b["bids"], b["asks"]) == tuple(map(lambda s: [list(x) for x in s],
                                                       _true(emu, "BTC-USDT")))  # fmt: skip
            assert b["updates"] >= 100_000 and b["problems"] == 3, b["problems"]
    await gaps.unsubscribe()
