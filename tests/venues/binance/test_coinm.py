"""Binance COIN-M futures (``binancecoinm``): symbols, the parser's contract conversion, and
the collector against the COIN-M emulator through the real normalizer, order-book service
and ClickHouse sink: sizes in base units (contracts * contractSize / price)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from collectors.binancecoinm import BinanceCoinmCollector, BinanceCoinmSettings
from collectors.binancecoinm import run as collector_main
from normalizer.core import Dead, Normalizer
from normalizer.worker import main as normalizer_main
from orderbook.service import main as orderbook_main
from sinks.clickhouse.worker import main as sink_main
from streams import subjects
from streams.bus.server import NatsServer
from streams.symbols.binance import binance_coinm, binance_coinm_native
from tests.conftest import make_settings
from tests.helpers import rows
from tests.venues.binance.emulator_coinm import BinanceCoinmEmulator
from tests.workers import inprocess, inprocess_all

HDR = {subjects.H_RECV_NS: "1700000000000000000"}
INFO = orjson.dumps({"serverTime": 1, "symbols": [
    {"symbol": "BTCUSD_PERP", "pair": "BTCUSD", "contractType": "PERPETUAL",
     "deliveryDate": 4133404800000, "contractStatus": "TRADING", "contractSize": 100,
     "baseAsset": "BTC", "quoteAsset": "USD", "marginAsset": "BTC",
     "filters": [{"filterType": "PRICE_FILTER", "tickSize": "0.1"},
                 {"filterType": "LOT_SIZE", "stepSize": "1"}]}]})  # fmt: skip
# Binance's documented aggTrade example, on the COIN-M stream
AGG = (b'{"stream":"btcusd_perp@aggTrade","data":{"e":"aggTrade","E":1591261134288,'
       b'"a":424951,"s":"BTCUSD_PERP","p":"9643.5","q":"2","f":606073,"l":606073,'
       b'"T":1591261134199,"m":false}}')  # fmt: skip


def test_symbols_and_ownership() -> None:
    assert binance_coinm("BTCUSD_PERP") == "BTC-USD-PERP"
    assert binance_coinm("ETHUSD_251226") == "ETH-USD-20251226"
    assert binance_coinm_native("ETH-USD-20251226") == "ETHUSD_251226"
    with pytest.raises(ValueError):
        binance_coinm("BTCUSDT")  # a USDⓈ-M name
    c = BinanceCoinmCollector.__new__(BinanceCoinmCollector)
    assert c.owns("BTC-USD-PERP") and not c.owns("BTC-USDT-PERP") and not c.owns("BTC-USDT")
    from collectors.binanceusdm import BinanceUsdmCollector

    u = BinanceUsdmCollector.__new__(BinanceUsdmCollector)
    assert u.owns("BTC-USDT-PERP") and not u.owns("BTC-USD-PERP")


def test_contracts_become_base_units_only_once_described() -> None:
    n = Normalizer()
    dead = n.normalize("raw.binancecoinm.aggTrade.BTCUSD_PERP", AGG, HDR, 1)
    assert isinstance(dead, Dead) and "contract size of COIN-M 'BTCUSD_PERP' unknown" in dead.reason
    [inst] = n.normalize("raw.binancecoinm.instruments.ALL", INFO, HDR, 2)  # type: ignore[misc]
    i = orjson.loads(inst.data)
    assert (i["symbol"], i["kind"], i["contract_size"], i["settle"]) == (
        "BTC-USD-PERP", "perpetual", 100.0, "BTC")  # fmt: skip
    [t] = n.normalize("raw.binancecoinm.aggTrade.BTCUSD_PERP", AGG, HDR, 3)  # type: ignore[misc]
    assert t.subject == "market.trade.binance.BTC-USD-PERP"
    m = orjson.loads(t.data)
    # 2 contracts of 100 USD at 9643.5: 200 / 9643.5 BTC
    assert (m["price"], m["size"], m["side"], m["id"]) == (9643.5, 200 / 9643.5, "buy", "a424951")
    oi = b'{"symbol":"BTCUSD_PERP","pair":"BTCUSD","openInterest":"1000","time":5}'
    dead = n.normalize("raw.binancecoinm.openInterest.BTCUSD_PERP", oi, HDR, 4)
    assert isinstance(dead, Dead) and "before any mark price" in dead.reason


async def test_collector_to_clickhouse_and_validated_book(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext, nc: Client
) -> None:
    natives = ["BTCUSD_PERP", "ETHUSD_PERP"]
    sym = {"BTCUSD_PERP": "BTC-USD-PERP", "ETHUSD_PERP": "ETH-USD-PERP"}
    async with BinanceCoinmEmulator(natives, seed=7) as emu:
        settings = make_settings(
            tmp_path, nats_server.url,
            collector={"binancecoinm": {"ws_url": emu.ws_url, "rest_url": emu.rest_url,
                                        "symbols": natives, "open_interest_interval_s": 0.3}},
            sink={"flush_interval_s": 0.2}, orderbook={"depth_interval_ms": 50},
        )  # fmt: skip
        assert isinstance(BinanceCoinmSettings(), BinanceCoinmSettings)
        async with inprocess_all(
            settings, sink=sink_main, orderbook=orderbook_main, normalizer=normalizer_main
        ):
            async with inprocess("collector", collector_main, settings):
                await emu.wait_connected(1, timeout=15)
                await emu.emit_futures(600)
                for native in natives:
                    sim = emu.sims[native]
                    cs = sim.contract_size  # type: ignore[attr-defined]
                    b: dict = {}
                    for _ in range(200):
                        msg = await nc.request(
                            subjects.book_get("binance", sym[native]), b"", timeout=2
                        )
                        b = orjson.loads(msg.data)
                        if b.get("valid") and b.get("seq") == sim.u:
                            break
                        await asyncio.sleep(0.1)
                    assert b.get("valid") and b["seq"] == sim.u, (native, b.get("seq"), sim.u)
                    bids, asks = sim.true_book()
                    assert [tuple(x) for x in b["bids"]] == [(p, q * cs / p) for p, q in bids]
                    assert [tuple(x) for x in b["asks"]] == [(p, q * cs / p) for p, q in asks]
                for _ in range(150):
                    if len(emu.oi_served) >= 6:
                        break
                    await asyncio.sleep(0.1)
            trades = emu.sent["aggTrade"]
            cs_of = {n: emu.sims[n].contract_size for n in natives}  # type: ignore[attr-defined]
            want = {(sym[t["s"]], f"a{t['a']}", float(t["p"]),
                     float(t["q"]) * cs_of[t["s"]] / float(t["p"])) for t in trades}  # fmt: skip
            got = await rows(nc, "SELECT symbol, id, price, size FROM trades WHERE "
                             "venue = 'binance' AND aggregated", len(want))  # fmt: skip
            assert len(got) == len(want) == 600 and {tuple(r) for r in got} == want
            liq = emu.sent["forceOrder"]
            got_l = await rows(nc, "SELECT symbol, price, size FROM liquidations", len(liq))
            assert sorted(tuple(r) for r in got_l) == sorted(
                (sym[x["o"]["s"]], float(x["o"]["ap"]),
                 float(x["o"]["z"]) * cs_of[x["o"]["s"]] / float(x["o"]["ap"])) for x in liq
            )  # fmt: skip
            # open interest: USD value = contracts * contractSize; base = value / mark
            got_oi = await rows(nc, "SELECT symbol, open_interest, open_interest_value FROM "
                                "open_interest", 1)  # fmt: skip
            served = {(sym[o["symbol"]], float(o["openInterest"]) * cs_of[o["symbol"]])
                      for o in emu.oi_served}  # fmt: skip
            assert got_oi and all((r[0], r[2]) in served and r[1] > 0 for r in got_oi)
            inst = await rows(nc, "SELECT symbol, kind, settle, contract_size FROM instruments "
                              "WHERE venue = 'binance' ORDER BY symbol", 2)  # fmt: skip
            assert [tuple(r) for r in inst] == [
                ("BTC-USD-PERP", "perpetual", "BTC", 100.0),
                ("ETH-USD-PERP", "perpetual", "ETH", 10.0),
            ]
