"""OKX and Bybit end to end into ClickHouse: emulator -> collector -> real nats-server ->
normalizer -> sink (chdb), with exact row counts and values (the other venues' files carry
their own: test_e2e_pipeline, test_binance_usdm, test_deribit, test_coinbase, test_kraken)."""

from __future__ import annotations

from pathlib import Path

import orjson
from nats.aio.client import Client
from nats.js import JetStreamContext

from collectors.bybit import run as bybit_collector
from collectors.okx import run as okx_collector
from normalizer.worker import main as normalizer_main
from sinks.clickhouse.worker import main as sink_main
from streams.bus.server import NatsServer
from tests.conftest import make_settings
from tests.venues.bybit.emulator import BybitEmulator
from tests.venues.deribit.test_deribit import rows
from tests.venues.okx.emulator import OkxEmulator
from tests.workers import inprocess

MS = 1_000_000


async def test_okx_into_clickhouse_exact(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext, nc: Client
) -> None:
    insts = {"BTC-USDT": "BTC-USDT", "BTC-USDT-SWAP": "BTC-USDT-PERP"}
    async with OkxEmulator(list(insts), seed=31) as emu:
        cfg = {"ws_url": emu.ws_url, "rest_url": emu.rest_url, "symbols": list(insts),
               "channels": ["trades", "books"]}  # fmt: skip
        settings = make_settings(tmp_path, nats_server.url, collector={"okx": cfg},
                                 sink={"flush_interval_s": 0.2})  # fmt: skip
        async with (
            inprocess("sink", sink_main, settings),
            inprocess("normalizer", normalizer_main, settings),
            inprocess("collector", okx_collector, settings),
        ):
            await emu.wait_subscribed(4, timeout=15)
            await emu.emit(1200, books_every=3)
            trades = [d for f in emu.sent if f.startswith(b'{"arg":{"channel":"trades"')
                      for d in orjson.loads(f)["data"]]  # fmt: skip
            books = sum(f.startswith(b'{"arg":{"channel":"books"') for f in emu.sent)
            # BTC-USDT-SWAP: 0.01 BTC a contract (linear), sizes stored in BTC
            want = {(insts[t["instId"]], t["tradeId"], float(t["px"]),
                     round(float(t["sz"]) * (0.01 if "SWAP" in t["instId"] else 1), 12),
                     t["side"], int(t["ts"]) * MS) for t in trades}  # fmt: skip
            got = await rows(nc, "SELECT symbol, id, price, size, side, "
                             "toUnixTimestamp64Nano(ts_event) FROM trades WHERE venue = 'okx'",
                             len(want))  # fmt: skip
            assert len(got) == len(want) == 1200 and {tuple(r) for r in got} == want
            # every books push: the two subscription snapshots and every update
            got_b = await rows(nc, "SELECT count() FROM book_updates WHERE venue = 'okx' "
                               f"HAVING count() >= {books + 2}", 1)  # fmt: skip
            assert got_b and got_b[0][0] == books + 2
            inst = await rows(nc, "SELECT symbol, kind, contract_size, settle FROM instruments "
                              "WHERE venue = 'okx' ORDER BY symbol", 2)  # fmt: skip
            assert [tuple(r) for r in inst] == [
                ("BTC-USDT", "spot", 1.0, None),
                ("BTC-USDT-PERP", "perpetual", 0.01, "USDT"),
            ]


async def test_bybit_into_clickhouse_exact(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext, nc: Client
) -> None:
    async with BybitEmulator({"linear": ["BTCUSDT", "ETHUSDT"]}, seed=32) as emu:
        cfg = {"ws_url": emu.ws_url, "rest_url": emu.rest_url,
               "symbols": ["linear:BTCUSDT", "linear:ETHUSDT"],
               "channels": ["publicTrade", "orderbook.50"]}  # fmt: skip
        settings = make_settings(tmp_path, nats_server.url, collector={"bybit": cfg},
                                 sink={"flush_interval_s": 0.2})  # fmt: skip
        async with (
            inprocess("sink", sink_main, settings),
            inprocess("normalizer", normalizer_main, settings),
            inprocess("collector", bybit_collector, settings),
        ):
            await emu.wait_subscribed("orderbook.50.ETHUSDT", timeout=15)
            await emu.emit(1500, category="linear")
            sym = {"BTCUSDT": "BTC-USDT-PERP", "ETHUSDT": "ETH-USDT-PERP"}
            sent = [orjson.loads(d) for _, t, d in emu.sent if t.startswith("publicTrade")]
            trades = [t for f in sent for t in f["data"]]
            want = {(sym[t["s"]], t["i"], float(t["p"]), float(t["v"]), t["S"].lower(),
                     t["T"] * MS) for t in trades}  # fmt: skip
            got = await rows(nc, "SELECT symbol, id, price, size, side, "
                             "toUnixTimestamp64Nano(ts_event) FROM trades WHERE venue = 'bybit'",
                             len(want))  # fmt: skip
            assert len(got) == len(want) == 1500 and {tuple(r) for r in got} == want
            books = sum(1 for _, t, _ in emu.sent if t.startswith("orderbook"))
            got_b = await rows(nc, "SELECT count() FROM book_updates WHERE venue = 'bybit' "
                               f"HAVING count() >= {books}", 1)  # fmt: skip
            assert got_b and got_b[0][0] == books
            inst = await rows(nc, "SELECT symbol, kind, settle, tick_size, lot_size FROM "
                              "instruments WHERE venue = 'bybit' ORDER BY symbol", 2)  # fmt: skip
            assert [tuple(r) for r in inst] == [
                ("BTC-USDT-PERP", "perpetual", "USDT", 0.01, 0.001),
                ("ETH-USDT-PERP", "perpetual", "USDT", 0.01, 0.001),
            ]
