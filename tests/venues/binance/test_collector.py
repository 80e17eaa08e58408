"""The Binance collector against the local emulator, on a real nats-server."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import orjson
import pytest
import websockets
from nats.aio.client import Client
from nats.js import JetStreamContext

from collectors.binance import route
from collectors.binance import run as collector_main
from streams import subjects
from streams.bus.connect import connect
from streams.bus.server import NatsServer, free_port
from streams.settings import Settings
from tests.conftest import make_settings
from tests.helpers import raw_messages
from tests.venues.binance.emulator import BinanceEmulator
from tests.workers import Proc, inprocess

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def collector_settings(tmp_path: Path, url: str, ws: str, rest: str, **binance: object) -> Settings:
    cfg = {"ws_url": ws, "rest_url": rest, "symbols": SYMBOLS,
           "reconnect": {"min_s": 0.1, "max_s": 0.5}, **binance}  # fmt: skip
    return make_settings(tmp_path, url, collector={"binance": cfg, "flush_every": 500})


def test_route_slices_the_stream_name() -> None:
    assert route(b'{"stream":"btcusdt@depth@100ms","data":{}}') == ("depth", "BTCUSDT")
    assert route(b'{"stream":"ethbtc@kline_1m","data":{}}') == ("kline", "ETHBTC")
    assert route(b'{"stream":"btcusdt@trade","data":{"e":"tr') == ("trade", "BTCUSDT")
    assert route(b'{"result":null,"id":1}') == ("control", "ALL")
    assert route(b'{"stream":"btcusdt@weird","data":{}}') == ("unknown", "ALL")
    assert route(bytes(range(256))) == ("unknown", "ALL")


async def test_frames_untouched_once_snapshots_instruments_and_reconnect(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext, nc: Client
) -> None:
    async with BinanceEmulator(SYMBOLS, seed=3) as emu:
        settings = collector_settings(tmp_path, nats_server.url, emu.ws_url, emu.rest_url)
        async with inprocess("collector", collector_main, settings) as w:
            await emu.wait_connected(1, timeout=15)
            sent: list[bytes] = []
            orig = emu._frame

            def spy(stream: str, data: dict) -> tuple[str, bytes, bytes]:
                f = orig(stream, data)
                if stream.endswith("@trade"):
                    sent.append(f[1])
                return f

            emu._frame = spy  # type: ignore[method-assign]
            await emu.emit_trades(5000, rate=20_000)

            got = await raw_messages(js, "raw.binance.trade.>", 5000)
            assert [m.data for m in got] == sent  # every frame once, in order, bytes identical
            assert all(int(m.headers[subjects.H_RECV_NS]) > 0 for m in got)
            assert len({m.headers[subjects.H_CONN] for m in got}) == 1
            snaps = await raw_messages(js, "raw.binance.snapshot.>", 2)
            assert {m.subject for m in snaps} == {"raw.binance.snapshot.BTCUSDT",
                                                  "raw.binance.snapshot.ETHUSDT"}  # fmt: skip
            assert all(m.headers[subjects.H_MSG_ID].startswith("binance:snapshot:") for m in snaps)
            info = await raw_messages(js, "raw.binance.instruments.ALL", 1)
            assert {s["symbol"] for s in orjson.loads(info[0].data)["symbols"]} == set(SYMBOLS)
            depth = await raw_messages(js, "raw.binance.depth.>", 10)
            assert len(depth) == 10

            # ctl.snapshot: a fresh snapshot on request, published with its identity
            await emu.emit_depth(20, "BTCUSDT")  # move the book so the snapshot is new
            reply = orjson.loads(
                (await nc.request("ctl.snapshot.binance.BTC-USDT", b"{}", timeout=10)).data
            )
            assert reply["ok"] is True
            assert emu.rest_calls["depth"] >= 3
            snaps = await raw_messages(js, "raw.binance.snapshot.BTCUSDT", 2)
            assert len(snaps) == 2
            last = snaps[-1]
            assert (
                last.headers[subjects.H_MSG_ID]
                == f"binance:snapshot:BTCUSDT:{reply['lastUpdateId']}"
            )
            assert orjson.loads(last.data)["lastUpdateId"] == reply["lastUpdateId"]
            bad = await nc.request("ctl.snapshot.binance.DOGE-USDT", b"{}", timeout=10)
            assert orjson.loads(bad.data)["ok"] is False

            # frames that route nowhere are kept, byte for byte, on unknown/control subjects
            junk = ['{"result":null,"id":7}', "{not json", '{"stream":"btcusdt@nope","data":{}}']
            for text in junk:
                await emu.send_raw(text)
            await emu.send_raw(b"\x00\xffbinary")
            control = await raw_messages(js, "raw.binance.control.ALL", 1)
            assert [m.data for m in control] == [junk[0].encode()]
            unknown = await raw_messages(js, "raw.binance.unknown.ALL", 3)
            assert [m.data for m in unknown] == [t.encode() for t in junk[1:]] + [b"\x00\xffbinary"]

            # the venue drops us: reconnect with backoff, a disconnected event, data flows again
            await emu.drop_connections()
            await asyncio.sleep(0.2)
            await emu.wait_connected(1, timeout=15)
            await emu.emit_trades(100)
            got = await raw_messages(js, "raw.binance.trade.>", 5100)
            assert len(got) == 5100
            conn = [orjson.loads(m.data) for m in await raw_messages(js, "raw.binance.conn.ALL", 3)]
            assert [c["event"] for c in conn] == ["connected", "disconnected", "connected"]
            assert conn[1]["symbols"] == sorted(SYMBOLS)
            for _ in range(30):
                if w.health.state == "ok":
                    break
                await asyncio.sleep(0.1)
            assert w.health.state == "ok"


async def test_offline_keeps_retrying_with_one_line_per_retry(
    tmp_path: Path, nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    settings = collector_settings(tmp_path, nats_server.url, f"ws://{dead}", f"http://{dead}")
    caplog.set_level(logging.WARNING, logger="collectors.binance")
    async with inprocess("collector", collector_main, settings) as w:
        await asyncio.sleep(2.5)
        assert w.health.state == "retrying"
    retries = [r for r in caplog.records if r.getMessage() == "binance connect failed, retrying"]
    assert len(retries) >= 3
    assert all("retry_in_s" in r.__dict__ for r in retries)


async def test_emulator_protocol() -> None:
    """SUBSCRIBE/LIST_SUBSCRIPTIONS replies, raw /ws payloads, U/u chaining, exact decimals."""
    async with (
        BinanceEmulator(["BTCUSDT"], seed=5) as emu,
        websockets.connect(f"{emu.ws_url}/ws", ping_interval=0.2) as ws,
    ):
        await ws.send(
            '{"method":"SUBSCRIBE","params":["btcusdt@trade","btcusdt@depth@100ms"],"id":1}'
        )
        assert orjson.loads(await ws.recv()) == {"result": None, "id": 1}
        await ws.send('{"method":"LIST_SUBSCRIPTIONS","id":2}')
        assert orjson.loads(await ws.recv()) == {
            "result": ["btcusdt@depth@100ms", "btcusdt@trade"], "id": 2}  # fmt: skip
        await emu.emit_trades(300)
        prev_u = None
        ids = []
        for _ in range(400):
            d = orjson.loads(await ws.recv())
            if d["e"] == "trade":
                ids.append(d["t"])
                assert len(d["p"].split(".")[1]) == 2 and len(d["q"].split(".")[1]) == 5
            else:
                assert prev_u is None or d["U"] == prev_u + 1
                prev_u = d["u"]
        assert ids == list(range(1, 301))
        bids, asks = emu.true_book("BTCUSDT")
        assert bids[0][0] < asks[0][0]
        assert emu.connections == 1


async def test_stale_feed_reconnects(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext
) -> None:
    async with BinanceEmulator(SYMBOLS, seed=4) as emu:
        settings = collector_settings(
            tmp_path, nats_server.url, emu.ws_url, emu.rest_url, stale_after_s=0.6
        )
        async with inprocess("collector", collector_main, settings):
            conn = await raw_messages(js, "raw.binance.conn.ALL", 3, timeout=10)
    events = [orjson.loads(m.data) for m in conn]
    assert [e["event"] for e in events] == ["connected", "disconnected", "connected"]
    assert events[1]["reason"].startswith("stale")
    assert events[0]["conn"] == events[1]["conn"] != events[2]["conn"]


async def test_subprocess_cli_stops_cleanly(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext
) -> None:
    """``python -m collectors binance`` with env settings; SIGTERM ends with an acked event."""
    async with BinanceEmulator(SYMBOLS, seed=6) as emu:
        settings = collector_settings(tmp_path, nats_server.url, emu.ws_url, emu.rest_url)
        proc = Proc("collectors", settings, "binance", log=tmp_path / "collector.log").start()
        try:
            await emu.wait_connected(1, timeout=20)
            await emu.emit_trades(1000)
            got = await raw_messages(js, "raw.binance.trade.>", 1000)
            assert len(got) == 1000
        finally:
            rc = await asyncio.to_thread(proc.stop)
    assert rc == 0, (tmp_path / "collector.log").read_text()[-2000:]
    conn = [orjson.loads(m.data) for m in await raw_messages(js, "raw.binance.conn.ALL", 2)]
    assert [c["event"] for c in conn] == ["connected", "disconnected"]
    assert conn[-1]["reason"] == "stopping"


async def test_nats_outage_is_survived(
    tmp_path: Path, nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """nats-server goes away mid-flow and comes back: the collector logs one line, marks the
    possible gap with a venue reconnect, and every frame after it is stored."""
    caplog.set_level(logging.WARNING, logger="collectors")
    async with BinanceEmulator(SYMBOLS, seed=7) as emu:
        settings = collector_settings(tmp_path, nats_server.url, emu.ws_url, emu.rest_url)
        async with inprocess("collector", collector_main, settings) as w:
            await emu.wait_connected(1, timeout=15)
            await emu.emit_trades(500)
            await asyncio.to_thread(nats_server.stop)
            await emu.emit_trades(500, rate=500)  # ~1 s with the server down
            await asyncio.to_thread(nats_server.start)
            await emu.emit_trades(500, rate=1000)
            nc2 = await connect(settings.nats, "check")
            try:
                js2 = nc2.jetstream(timeout=10.0)
                # The collector saw the NATS reconnect and marked a possible gap with a
                # venue reconnect: disconnected (reason nats...), then connected again.
                conn = await raw_messages(js2, "raw.binance.conn.ALL", 3, timeout=10)
                events = [orjson.loads(m.data) for m in conn]
                assert [e["event"] for e in events] == ["connected", "disconnected", "connected"]
                assert events[1]["reason"].startswith("nats reconnected")
                await emu.wait_connected(1, timeout=10)
                await emu.emit_trades(300)
                got = await raw_messages(js2, "raw.binance.trade.>", 1800, timeout=3)
            finally:
                await nc2.close()
            # Core publishes racing a server restart can be lost silently (written to the
            # dying socket, or before JetStream has reloaded the stream): that is what the
            # "disconnected" event above marks. From the new venue connection on, everything:
            # per symbol, an unbroken run of trade ids up to the last one the venue made. (The
            # new connection may open while the 500 trades after the restart are still being
            # emitted, so it can carry more than the last 300.)
            after = [m for m in got if m.headers[subjects.H_CONN] == events[2]["conn"]]
            assert len(after) >= 300
            for native in SYMBOLS:
                ids = [orjson.loads(m.data)["data"]["t"] for m in after
                       if m.subject == f"raw.binance.trade.{native}"]  # fmt: skip
                last = emu.sims[native].trade_id
                assert ids == list(range(last - len(ids) + 1, last + 1)), native
            assert len({m.data for m in got}) == len(got)  # never twice
            assert not w.stop.is_set()
    unconfirmed = [r for r in caplog.records if "not confirmed" in r.getMessage()]
    assert len(unconfirmed) <= 2  # one line per outage, not per frame
