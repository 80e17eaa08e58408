"""The ccxt WebSocket long tail end to end, per venue: the venue's emulated WebSocket ->
ccxt pro's own watch machinery in collectors/ccxt_ws.py (frames tapped untouched into RAW)
-> the normalizer running ccxt's own handlers on them -> MARKET -> ClickHouse and the
order-book service; then RAW re-normalized reproduces MARKET bit for bit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from collectors import ccxt_ws
from normalizer.worker import main as normalizer_main
from orderbook.service import main as orderbook_main
from replay import Replay
from replay.renormalize import renormalize
from sinks.clickhouse.worker import main as sink_main
from streams.bus.server import NatsServer
from streams.provision import STREAM_DLQ, STREAM_RAW
from streams.settings import Settings
from streams.symbols import ccxt as symbols
from tests.conftest import budget_units_spent, make_settings
from tests.helpers import rows, served_book
from tests.venues.ccxt_ws.emulator_bitfinex import BitfinexWsEmulator
from tests.venues.ccxt_ws.emulator_bitget import BitgetEmulator
from tests.venues.ccxt_ws.emulator_cryptocom import CryptocomEmulator
from tests.workers import inprocess, inprocess_all


@dataclass
class Spec:
    make: Callable[[], Any]
    section: Callable[[Any], dict[str, Any]]
    validation: str  # what book.get says ccxt checks of the venue's book
    steps: int = 40


def _bitfinex(e: BitfinexWsEmulator) -> dict[str, Any]:
    return {"symbols": ["BTC/USD", "ETH/USD"], "channels": ["trades", "ticker", "book"],
            "api_url": e.rest_url, "ws_url": e.ws_url, "transport": "ws"}  # fmt: skip


def _bitget(e: BitgetEmulator) -> dict[str, Any]:
    return {"symbols": ["BTC/USDT", "ETH/USDT"], "channels": ["trades", "ticker", "book"],
            "api_url": e.rest_url, "ws_url": e.ws_url,
            "options": {"fetchMarkets": {"types": ["spot"]}}}  # fmt: skip


def _cryptocom(e: CryptocomEmulator) -> dict[str, Any]:
    return {"symbols": ["BTC/USDT", "BTC/USD:USD"], "channels": ["trades", "ticker", "book"],
            "api_url": e.rest_url, "ws_url": e.ws_url}  # fmt: skip


VENUES = {
    "bitfinex": Spec(BitfinexWsEmulator, _bitfinex, "checksum"),
    "bitget": Spec(BitgetEmulator, _bitget, "checksum"),
    "cryptocom": Spec(CryptocomEmulator, _cryptocom, "sequence"),
}


def long_tail_settings(tmp_path: Path, url: str, venue: str, section: dict[str, Any]) -> Settings:
    return make_settings(
        tmp_path, url, collector={"ccxt": {"exchanges": {venue: section}}},
        sink={"flush_interval_s": 0.2}, log={"level": "WARNING"},
    )  # fmt: skip


async def _until(pred: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.05)


async def _normalized(js: JetStreamContext, settings: Settings) -> None:
    while True:
        info = await js.consumer_info(STREAM_RAW, settings.normalizer.consumer.durable)
        if not info.num_pending and not info.num_ack_pending:
            return
        await asyncio.sleep(0.1)


async def _book(nc: Client, venue: str, symbol: str, want: dict[str, Any]) -> dict[str, Any]:
    """The served book once it equals ``want`` (or the last answer after 20 s)."""
    got: dict[str, Any] = {}
    for _ in range(100):
        got = await served_book(nc, venue, symbol)
        if got.get("valid") and _levels(got) == want:
            return got
        await asyncio.sleep(0.2)
    return got


def _levels(b: dict[str, Any]) -> dict[str, dict[float, float]]:
    return {side: {p: s for p, s in b.get(side, [])} for side in ("bids", "asks")}


@pytest.mark.parametrize("venue", sorted(VENUES))
async def test_long_tail_venue_end_to_end_and_renormalized(
    venue: str, tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    spec = VENUES[venue]
    since = time.time_ns()
    async with spec.make() as emu:
        settings = long_tail_settings(tmp_path, nats_server.url, venue, spec.section(emu))
        assert ccxt_ws.choose(venue, ccxt_ws.ccxt_settings(settings).exchanges[venue]) == "ws"
        async with inprocess_all(settings, sink=sink_main, orderbook=orderbook_main,
                                 normalizer=normalizer_main):  # fmt: skip
            async with inprocess("collector", lambda w: ccxt_ws.run(w, venue), settings):
                await _until(emu.subscribed, f"{venue}: ccxt never subscribed everything")
                await emu.play(spec.steps)
                # every trade once, with the venue's values
                want = sorted(
                    (symbols.to_symbol(m.unified), str(t.id), t.price, t.size, t.side, t.ms)
                    for m in emu.markets.values() for t in m.trades
                )  # fmt: skip
                q = ("SELECT symbol, id, price, size, toString(side), "
                     "toUnixTimestamp64Milli(ts_event) FROM trades "
                     f"WHERE venue = '{venue}' ORDER BY symbol, id")  # fmt: skip
                got = await rows(nc, q, len(want), 30, settle_s=0.5)
                assert sorted(tuple(r) for r in got) == want
                # the books the order-book service keeps: the venue's, level for level
                for m in emu.markets.values():
                    sym = symbols.to_symbol(m.unified)
                    book = await _book(nc, venue, sym, m.book())
                    assert book.get("valid"), book
                    assert _levels(book) == m.book(), sym
                    assert book["rule"] == f"ccxt-{venue}"
                    assert book["validation"].startswith(spec.validation)
                tickers = await rows(
                    nc, f"SELECT count() FROM tickers WHERE venue = '{venue}'", 1, 10
                )  # fmt: skip
                assert tickers and tickers[0][0] >= 2
                q = f"SELECT count() FROM book_updates WHERE venue = '{venue}' AND NOT snapshot"
                updates = await rows(nc, q, 1, 10)
                assert updates[0][0] >= spec.steps  # deltas, not snapshots per frame
            await _normalized(js, settings)
    assert (await js.stream_info(STREAM_DLQ)).state.messages == 0
    # RAW re-normalized: the normalizer's part of MARKET again, bit for bit, in order (the
    # rest of MARKET is the order-book service's depth, bbo and gaps, made from books)
    res = await renormalize(settings, since=since, name="lt", progress=False)
    assert res.dead == 0 and res.messages > 2 * spec.steps
    again = await _messages(settings, from_replay="lt")
    live = await _messages(settings, start=since)
    made = set(again)
    assert [m for m in live if m in made] == again
    assert len(again) == len(made)  # no message twice
    others = [m for m in live if m not in made]
    assert {s.split(".")[1] for s, _, _ in others} <= {"depth", "bbo", "gap"}
    assert all(i.startswith(f"{venue}:") and ":book" not in i for _, i, _ in others)


async def _messages(settings: Settings, **kw: Any) -> list[tuple[str, str, bytes]]:
    r = Replay(settings, subjects="market.>", order="stream", progress=False,
               source="jetstream", **kw)  # fmt: skip
    return [(m.subject, (m.headers or {}).get("Nats-Msg-Id", ""), m.data) async for m in r]


async def test_raw_frames_are_the_venue_bytes(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext
) -> None:
    """What RAW holds for a ccxt-ws venue: the frames exactly as the emulator wrote them,
    in order, after the market and subscription records."""
    async with BitfinexWsEmulator() as emu:
        section = {**_bitfinex(emu), "channels": ["trades"], "symbols": ["BTC/USD"]}
        settings = long_tail_settings(tmp_path, nats_server.url, "bitfinex", section)
        sent: list[str] = []
        send = emu._send

        async def record(c: Any, chan: int, *body: Any) -> None:
            sent.append(orjson.dumps([chan, *body]).decode())
            await send(c, chan, *body)

        emu._send = record  # type: ignore[method-assign]
        async with inprocess("collector", lambda w: ccxt_ws.run(w, "bitfinex"), settings):
            await _until(lambda: emu.subscribed(("trades",)) or bool(emu.clients and
                         emu.clients[0].chans), "no subscription")  # fmt: skip
            await emu.play(5)
            await asyncio.sleep(0.5)
    sub = await js.subscribe("raw.bitfinex.*.WS", stream=STREAM_RAW, ordered_consumer=True)
    got = []
    while True:
        try:
            got.append(await sub.next_msg(timeout=1))
        except Exception:
            break
    await sub.unsubscribe()
    channels = [m.subject.split(".")[2] for m in got]
    assert channels[0] == "ccxt-ws-market"
    assert "ccxt-ws-sub" in channels and "ccxt-ws-open" in channels
    texts = [m.data.decode() for m in got if m.subject.split(".")[2].startswith("ccxt-ws-t")]
    info, ack, *frames = texts
    assert orjson.loads(info)["event"] == "info" and orjson.loads(ack)["event"] == "subscribed"
    assert frames == sent  # untouched, in order
    assert all(m.headers and int(m.headers["Jm-Recv-Ns"]) > 0 for m in got)


async def test_load_markets_is_spent_from_the_venues_shared_rest_budget(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext
) -> None:
    """A WebSocket venue's REST calls (load_markets at every start) come out of the same
    shared budget as the REST poller's and the native collectors': a collector restarting
    in a loop cannot spend weight nobody counts and get the IP banned."""
    per_start = []
    async with BitfinexWsEmulator() as emu:
        section = {**_bitfinex(emu), "channels": ["trades"], "symbols": ["BTC/USD"]}
        settings = long_tail_settings(tmp_path, nats_server.url, "bitfinex", section)
        for _ in range(2):  # each start loads the markets again
            before = budget_units_spent("bitfinex")
            async with inprocess("collector", lambda w: ccxt_ws.run(w, "bitfinex"), settings):
                await _until(lambda: emu.subscribed(("trades",)) or bool(emu.clients and
                             emu.clients[0].chans), "no subscription")  # fmt: skip
            per_start.append(budget_units_spent("bitfinex") - before)
    assert all(x > 0 for x in per_start), f"load_markets went around the budget: {per_start}"


async def test_a_sequence_break_ccxt_detects_becomes_a_gap_and_a_resync(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    """Crypto.com skips a ``u``: ccxt's handler raises (its ``pu`` check); the collector
    reconnects so ccxt resubscribes; the normalizer turns ccxt's verdict into a gap, cuts
    the chain (the order-book service invalidates the book) and publishes the snapshot that
    follows: the served book is the venue's again. Re-normalization agrees."""
    since = time.time_ns()
    async with CryptocomEmulator() as emu:
        section = {**_cryptocom(emu), "symbols": ["BTC/USDT"], "channels": ["book"]}
        emu.markets.pop("BTCUSD-PERP")
        settings = long_tail_settings(tmp_path, nats_server.url, "cryptocom", section)
        async with inprocess_all(settings, sink=sink_main, orderbook=orderbook_main,
                                 normalizer=normalizer_main):  # fmt: skip
            async with inprocess("collector", lambda w: ccxt_ws.run(w, "cryptocom"), settings):
                await _until(lambda: emu.subscribed(("book",)), "no book subscription")
                m = emu.markets["BTC_USDT"]
                await emu.play(10)
                assert (await _book(nc, "cryptocom", "BTC-USDT", m.book())).get("valid")
                first = emu.clients[0]
                emu.skip_sequence = True
                await emu.play(1)
                await _until(lambda: bool(emu.clients) and emu.clients[0] is not first
                             and emu.subscribed(("book",)), "ccxt did not resubscribe")  # fmt: skip
                await emu.play(10)
                book = await _book(nc, "cryptocom", "BTC-USDT", m.book())
                assert book.get("valid") and _levels(book) == m.book()
                q = ("SELECT reason, channel FROM gaps WHERE venue = 'cryptocom' "
                     "AND symbol = 'BTC-USDT' ORDER BY ts_recv")  # fmt: skip
                gaps = await rows(nc, q, 2, 15)
                reasons = [r[0] for r in gaps]
                assert reasons[0] == "checksum", gaps  # ccxt words a pu mismatch so
                assert "reconnect" in reasons
            await _normalized(js, settings)
    res = await renormalize(settings, since=since, name="rs", progress=False)
    again = await _messages(settings, from_replay="rs")
    live = await _messages(settings, start=since)
    made = set(again)
    assert res.dead == 0 and [x for x in live if x in made] == again


async def test_a_normalizer_restarted_mid_connection_catches_up_on_ctl_snapshot(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    """ccxt's state lives in the normalizer: one restarted mid-connection skips that
    connection's frames (counted, never guessed). ``ctl.snapshot.<id>.<symbol>`` (what the
    order-book service sends for an invalid book, or an operator) makes the collector
    reconnect: ccxt resubscribes, and trades and the book flow again."""
    async with BitgetEmulator() as emu:
        section = {**_bitget(emu), "symbols": ["BTC/USDT"]}
        emu.markets.pop("ETHUSDT")
        m = emu.markets["BTCUSDT"]
        settings = long_tail_settings(tmp_path, nats_server.url, "bitget", section)
        q = "SELECT id FROM trades WHERE venue = 'bitget' ORDER BY id"
        async with (
            inprocess("sink", sink_main, settings),
            inprocess("collector", lambda w: ccxt_ws.run(w, "bitget"), settings),
        ):
            async with inprocess("normalizer", normalizer_main, settings):
                await _until(emu.subscribed, "no subscription")
                await emu.play(5)
                assert len(await rows(nc, q, 5, 20)) == 5
            await emu.play(5)  # no normalizer now
            async with inprocess("normalizer", normalizer_main, settings):
                await emu.play(5)
                await asyncio.sleep(1.0)
                assert len(await rows(nc, q, 5, 5)) == 5  # skipped: no state for them
                first = emu.clients[0]
                answer = orjson.loads(
                    (await nc.request("ctl.snapshot.bitget.BTC-USDT", b"", timeout=5)).data
                )
                assert answer["ok"] and "reconnecting" in answer["resync"], answer
                await _until(lambda: bool(emu.clients) and emu.clients[0] is not first
                             and emu.subscribed(), "ccxt did not reconnect")  # fmt: skip
                again = orjson.loads(
                    (await nc.request("ctl.snapshot.bitget.BTC-USDT", b"", timeout=5)).data
                )
                assert "ago" in again["resync"]  # one reconnect for a burst of requests
                await emu.play(5)
                ids = [r[0] for r in await rows(nc, q, 10, 20)]
                assert ids[-5:] == [str(t.id) for t in m.trades[-5:]]
                # an order-book service started now sees deltas only: it asks for a snapshot
                # (again while the collector's last reconnect is under 10 s old)
                async with inprocess("orderbook", orderbook_main, settings):
                    for _ in range(80):  # book messages keep coming, as live
                        await emu.play(1)
                        if (await served_book(nc, "bitget", "BTC-USDT")).get("valid"):
                            break
                        await asyncio.sleep(0.4)
                    book = await _book(nc, "bitget", "BTC-USDT", m.book())
                    assert book.get("valid") and _levels(book) == m.book(), book
