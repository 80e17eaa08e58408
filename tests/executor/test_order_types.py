"""Order types per venue: stop, stop-limit, take-profit, reduce-only, post-only, IOC/FOK/GTC
(GTD is ``timeout_s``) — what each venue takes (ccxt's ``features`` of the market's kind),
what the Binance emulator receives through the real ccxt code, and the paper venue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import ccxt.async_support as ccxt_async
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from executor.model import Order
from executor.venues.ccxt_venue import CcxtVenue
from executor.venues.paper import PaperVenue
from streams.bus.server import NatsServer
from streams.schemas import Depth, Trade
from streams.settings import AccountSettings
from tests.executor.test_ccxt import executor, final, limit, live, live_settings
from tests.executor.test_paper import request, updates, wait_until
from tests.venues.binance.emulator_rest import MockBinance


@pytest.fixture
async def mock() -> AsyncIterator[MockBinance]:
    m = await MockBinance().start()
    yield m
    await m.stop()


def _market(symbol: str, mid: str, kind: str, **kw: Any) -> dict[str, Any]:
    base, quote = symbol.split("/")[0], symbol.split("/")[1].split(":")[0]
    return {"id": mid, "symbol": symbol, "base": base, "quote": quote, "baseId": base,
            "quoteId": quote, "type": kind, "spot": False, "swap": False, "future": False,
            "option": False, kind: True, "active": True, "contract": kind != "spot",
            "precision": {"price": 0.01, "amount": 0.0001}, "limits": {}, **kw}  # fmt: skip


async def _venue(exchange: str, markets: list[dict[str, Any]]) -> CcxtVenue:
    v = CcxtVenue(AccountSettings(venue="ccxt", exchange=exchange))
    v.ex = getattr(ccxt_async, exchange)()
    v.ex.set_markets(markets)
    v.symbols = {"BTC-USD": "BTC/USD", "BTC-USDT": "BTC/USDT", "BTC-USDT-PERP": "BTC/USDT:USDT"}
    return v


def _o(kind: str, symbol: str = "BTC-USD", tif: str = "GTC", reduce: bool = False) -> Order:
    return Order("a", "x", symbol, "c1", "buy", kind, 1.0, 100.0, 99.0, tif, reduce)  # type: ignore[arg-type]


async def test_ccxt_features_decide_what_each_venue_takes() -> None:
    # Bitstamp spot (ccxt features): no trigger, no take-profit prices; IOC/FOK/PO yes
    v = await _venue("bitstamp", [_market("BTC/USD", "btcusd", "spot")])
    try:
        assert v.check(_o("stop")) == "bitstamp spot BTC-USD takes no stop (trigger price) orders"
        assert "takes no take-profit orders" in (v.check(_o("take_profit")) or "")
        for tif in ("GTC", "IOC", "FOK", "POST_ONLY"):
            assert v.check(_o("limit", tif=tif)) is None
        assert "reduce-only applies to derivatives" in (v.check(_o("limit", reduce=True)) or "")
    finally:
        await v.ex.close()
    # Binance: spot takes stops and take-profits; a linear perpetual also reduce-only and GTD
    v = await _venue("binance", [
        _market("BTC/USDT", "BTCUSDT", "spot"),
        _market("BTC/USDT:USDT", "BTCUSDTP", "swap", linear=True, settle="USDT"),
    ])  # fmt: skip
    try:
        for kind in ("stop", "stop_limit", "take_profit", "limit", "market"):
            assert v.check(_o(kind, "BTC-USDT")) is None, kind
        assert v.check(_o("limit", "BTC-USDT", reduce=True)) is not None
        assert v.check(_o("limit", "BTC-USDT-PERP", reduce=True)) is None
        assert v.check(_o("stop", "BTC-USDT-PERP", tif="IOC")) is None
    finally:
        await v.ex.close()


def _paper() -> PaperVenue:
    v = PaperVenue(AccountSettings(maker_fee=0.001, taker_fee=0.002))
    v.on_market(Depth(venue="x", symbol="BTC-USD", ts_event=1, ts_recv=1, bids=[(99.0, 1.0)],
                      asks=[(101.0, 1.0)], seq=1, levels=1))  # fmt: skip
    return v


async def test_paper_post_only_rests_and_fills_as_maker() -> None:
    v = _paper()
    o = Order("a", "x", "BTC-USD", "po", "buy", "limit", 0.5, 100.0, None, "POST_ONLY")
    rep = await v.submit(o)
    assert rep.status == "new" and rep.filled == 0  # rests (it was cancelled at once before)
    hit = v.on_market(Trade(venue="x", symbol="BTC-USD", ts_event=2, ts_recv=2, id="t1",
                            price=99.5, size=2.0, side="sell"))  # fmt: skip
    assert hit[0].status == "filled" and hit[0].fills[0].liquidity == "maker"
    assert hit[0].fills[0].fee == pytest.approx(100.0 * 0.5 * 0.001)


async def test_order_types_reach_the_binance_emulator_as_binance_types(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext, mock: MockBinance
) -> None:
    settings = live_settings(tmp_path, nats_server.url, mock)
    sell = {"side": "sell", "quantity": "0.01"}
    async with executor(settings, nc, tmp_path / "executor.log"):
        sent = {
            "st1": await request(nc, live("st1", order_type="stop", stop_price="60000", **sell)),
            "sl1": await request(
                nc, live("sl1", order_type="stop_limit", stop_price="60000", price="59900", **sell)
            ),
            "tp1": await request(
                nc, live("tp1", order_type="take_profit", stop_price="70000", **sell)
            ),
            "po1": await request(nc, limit("po1", time_in_force="POST_ONLY")),
            "io1": await request(nc, limit("io1", time_in_force="IOC")),
            "fk1": await request(nc, limit("fk1", time_in_force="FOK")),
            "gt1": await request(nc, limit("gt1", timeout_s=1.0)),  # GTD: the executor cancels
        }
        assert all(r["accepted"] for r in sent.values()), sent
        got = {cid: (o.type, o.tif, str(o.stop)) for cid in sent
               if (o := mock.by_client_id(cid)) is not None}  # fmt: skip
        assert got["st1"][0] == "STOP_LOSS" and got["st1"][2] == "60000"
        assert got["sl1"] == ("STOP_LOSS_LIMIT", "GTC", "60000")
        assert got["tp1"][0] == "TAKE_PROFIT" and got["tp1"][2] == "70000"
        assert got["po1"][0] == "LIMIT_MAKER"
        assert got["io1"][:2] == ("LIMIT", "IOC") and got["fk1"][:2] == ("LIMIT", "FOK")
        creates = mock.creates
        r = await request(nc, limit("ro1", reduce_only=True))
        assert not r["accepted"] and "reduce-only applies to derivatives" in r["reason"], r
        assert mock.creates == creates  # refused before anything was sent
        mock.fill("st1", price="59990")  # the venue triggered and filled the stop
        log = await final(js, "st1", "filled")
        assert updates(log, "st1")[-1].filled == 0.01
        await wait_until(lambda: (o := mock.by_client_id("gt1")) and o.status == "CANCELED")
        log = await final(js, "gt1", "expired")
        assert "timeout" in updates(log, "gt1")[-1].reason
