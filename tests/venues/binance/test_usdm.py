"""Binance USDⓈ-M futures: the collector against the futures emulator, through the real
normalizer, order-book service and ClickHouse sink, with exact counts and values."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from collectors.binance import BinanceSettings, route
from collectors.binance import stream_names as names_of
from collectors.binanceusdm import CHANNELS, BinanceUsdmSettings
from collectors.binanceusdm import run as collector_main
from collectors.config import venue_settings
from normalizer.worker import main as normalizer_main
from orderbook.service import main as orderbook_main
from sinks.clickhouse.worker import main as sink_main
from streams import settings as settings_mod
from streams import subjects
from streams.bus.server import NatsServer
from tests.conftest import make_settings
from tests.helpers import rows
from tests.venues.binance.emulator_usdm import BinanceUsdmEmulator
from tests.workers import inprocess, inprocess_all


def test_streams_routes_and_settings() -> None:
    cfg = BinanceUsdmSettings(symbols=["BTCUSDT"])
    assert names_of(cfg, CHANNELS) == [
        "btcusdt@aggTrade",
        "btcusdt@depth@100ms",
        "btcusdt@markPrice@1s",
        "btcusdt@forceOrder",
    ]  # fmt: skip  (openInterest is polled over REST, not streamed)
    frame = b'{"stream":"btcusdt@markPrice@1s","data":{"e":"markPriceUpdate"}}'
    assert route(frame, CHANNELS) == ("markPrice", "BTCUSDT")
    assert route(frame) == ("unknown", "ALL")  # the spot collector does not speak it
    with pytest.raises(settings_mod.SettingsError, match="collector.binanceusdm.channels"):
        bad = settings_mod.from_mapping({"collector": {"binanceusdm": {"channels": ["bogus"]}}})
        venue_settings(bad, "binanceusdm", BinanceUsdmSettings)
    with pytest.raises(settings_mod.SettingsError, match="collector.binance.channels"):
        bad = settings_mod.from_mapping({"collector": {"binance": {"channels": ["markPrice"]}}})
        venue_settings(bad, "binance", BinanceSettings)


async def test_collector_to_clickhouse_and_validated_book(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext, nc: Client
) -> None:
    async with BinanceUsdmEmulator(["BTCUSDT", "ETHUSDT"], seed=5) as emu:
        settings = make_settings(
            tmp_path, nats_server.url,
            collector={"binanceusdm": {"ws_url": emu.ws_url, "rest_url": emu.rest_url,
                                       "symbols": ["BTCUSDT", "ETHUSDT"],
                                       "open_interest_interval_s": 0.3}},
            sink={"flush_interval_s": 0.2}, orderbook={"depth_interval_ms": 50},
        )  # fmt: skip
        async with inprocess_all(
            settings, sink=sink_main, orderbook=orderbook_main, normalizer=normalizer_main
        ):
            async with inprocess("collector", collector_main, settings):
                await emu.wait_connected(1, timeout=15)
                await emu.emit_futures(1500)
                # the service's book equals the venue's true book at the venue's last u
                for native, symbol in (("BTCUSDT", "BTC-USDT-PERP"), ("ETHUSDT", "ETH-USDT-PERP")):
                    sim = emu.sims[native]
                    b: dict = {}
                    for _ in range(200):
                        msg = await nc.request(subjects.book_get("binance", symbol), b"", timeout=2)
                        b = orjson.loads(msg.data)
                        if b.get("valid") and b.get("seq") == sim.u:
                            break
                        await asyncio.sleep(0.1)
                    assert b.get("valid") and b["seq"] == sim.u, (symbol, b.get("seq"), sim.u)
                    bids, asks = sim.true_book()
                    assert ([tuple(x) for x in b["bids"]], [tuple(x) for x in b["asks"]]) == (
                        bids, asks)  # fmt: skip
                # a few open-interest polls (every 0.3 s); a fixed sleep saw only one on a
                # loaded machine
                for _ in range(150):
                    if len(emu.oi_served) >= 6:
                        break
                    await asyncio.sleep(0.1)
            # one snapshot per symbol at start, plus any the service asked for while the
            # first ones were in flight (ctl.snapshot.binance.<PERP> reaches this collector)
            assert emu.rest_calls["depth"] >= 2 and emu.rest_calls["exchangeInfo"] == 1

            sym = {"BTCUSDT": "BTC-USDT-PERP", "ETHUSDT": "ETH-USDT-PERP"}
            trades = emu.sent["aggTrade"]
            want = {(sym[t["s"]], f"a{t['a']}", float(t["p"]), float(t["q"]),
                     "sell" if t["m"] else "buy") for t in trades}  # fmt: skip
            got = await rows(nc, "SELECT symbol, id, price, size, side FROM trades WHERE "
                             "venue = 'binance' AND aggregated", len(want))  # fmt: skip
            assert len(got) == len(want) == 1500 and {tuple(r) for r in got} == want
            marks = emu.sent["markPrice"]
            want_m = {(sym[m["s"]], m["E"] * 1_000_000, float(m["p"]), float(m["i"]))
                      for m in marks}  # fmt: skip
            got_m = await rows(nc, "SELECT symbol, toUnixTimestamp64Nano(ts_event), mark_price, "
                               "index_price FROM marks", len(want_m))  # fmt: skip
            assert len(got_m) == len(want_m) == 150 and {tuple(r) for r in got_m} == want_m
            want_f = {(sym[m["s"]], float(m["r"]), m["T"] * 1_000_000) for m in marks}
            got_f = await rows(nc, "SELECT symbol, rate, toUnixTimestamp64Nano(next_funding_ts) "
                               "FROM funding", len(want_f))  # fmt: skip
            assert len(got_f) == 150 and {tuple(r) for r in got_f} == want_f
            liq = emu.sent["forceOrder"]
            got_l = await rows(nc, "SELECT symbol, side, price, size FROM liquidations", len(liq))
            assert (
                sorted(tuple(r) for r in got_l)
                == sorted(
                    (sym[x["o"]["s"]], "sell", float(x["o"]["ap"]), float(x["o"]["z"])) for x in liq
                )
                and len(liq) == 30
            )
            served = {(sym[o["symbol"]], o["time"] * 1_000_000, float(o["openInterest"]))
                      for o in emu.oi_served}  # fmt: skip
            got_oi = await rows(nc, "SELECT symbol, toUnixTimestamp64Nano(ts_event), "
                                "open_interest FROM open_interest", 4)  # fmt: skip
            # every poll the collector published is stored once with the venue's values (a
            # poll answered while the collector stopped may never have been published)
            assert len(got_oi) >= 4 and len({tuple(r) for r in got_oi}) == len(got_oi)
            assert {tuple(r) for r in got_oi} <= served and len(served) - len(got_oi) <= 2
            inst = await rows(nc, "SELECT symbol, kind, settle, tick_size, lot_size FROM "
                              "instruments WHERE venue = 'binance' ORDER BY symbol", 2)  # fmt: skip
            assert [tuple(r) for r in inst] == [
                ("BTC-USDT-PERP", "perpetual", "USDT", 0.01, 1e-05),
                ("ETH-USDT-PERP", "perpetual", "USDT", 0.01, 1e-05),
            ]
