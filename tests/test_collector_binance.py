"""The Binance collector against the local emulator, on a real nats-server."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import orjson
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from collectors.binance import route
from collectors.binance import run as collector_main
from streams import subjects
from streams.natsserver import NatsServer, free_port
from streams.provision import STREAM_RAW
from streams.settings import Settings
from tests.conftest import make_settings
from tests.emulator.binance import BinanceEmulator
from tests.workers import inprocess

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def collector_settings(tmp_path: Path, url: str, ws: str, rest: str, **binance: object) -> Settings:
    cfg = {"ws_url": ws, "rest_url": rest, "symbols": SYMBOLS,
           "reconnect": {"min_s": 0.1, "max_s": 0.5}, **binance}  # fmt: skip
    return make_settings(tmp_path, url, collector={"binance": cfg, "flush_every": 500})


async def raw_messages(js: JetStreamContext, subject: str, n: int, timeout: float = 20) -> list:
    sub = await js.subscribe(subject, stream=STREAM_RAW, ordered_consumer=True)
    out = []
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while len(out) < n and asyncio.get_running_loop().time() < deadline:
            try:
                out.append(await sub.next_msg(timeout=1.0))
            except Exception:
                continue
    finally:
        await sub.unsubscribe()
    return out


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

            # ctl.snapshot: a fresh snapshot on request
            reply = await nc.request("ctl.snapshot.binance.BTC-USDT", b"{}", timeout=10)
            assert orjson.loads(reply.data)["ok"] is True
            assert emu.rest_calls["depth"] >= 3

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
