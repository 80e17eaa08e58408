"""Live account streams: the executor (real subprocess) on real ccxt pro against the Binance
emulator's user data stream (signed WebSocket API). Fills arrive pushed with polling far
away; a dropped private connection with a fill lost in it is reconciled by polling, nothing
lost or doubled; a balance drift raises an event and halts the account; only the executor
may publish private frames to RAW, no other identity can subscribe to them."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import ccxt.async_support as ccxt_async
import msgspec
import orjson
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from executor.engine import Engine
from executor.marks import Marks
from executor.model import Order, VenueFill
from executor.venues.ccxt_venue import CcxtVenue
from executor.venues.paper import PaperVenue
from executor.venues.private import parse
from executor.venues.private.stream import PrivateStream
from executor.venues.private.truth import Truth
from streams import subjects
from streams.bus.server import NatsServer
from streams.schemas import Depth, Fill
from streams.settings import AccountSettings, InstrumentSpec, PrivateStreamSettings
from tests.conftest import budget_units_spent, make_settings
from tests.executor.test_ccxt import ACCOUNT, Executor, final, limit, live_settings
from tests.executor.test_paper import cmd, exec_log, request, wait_until
from tests.executor.test_reconcile import Recorder
from tests.pipeline.test_e2e import scalar, wait_rows
from tests.streams.test_permissions import client, refused
from tests.venues.binance.emulator_private import MockBinancePrivate
from tests.venues.bybit.emulator_private import API_KEY as BYBIT_KEY
from tests.venues.bybit.emulator_private import SECRET as BYBIT_SECRET
from tests.venues.bybit.emulator_private import BybitPrivateEmulator
from tests.venues.okx.emulator_private import API_KEY as OKX_KEY
from tests.venues.okx.emulator_private import PASSPHRASE as OKX_PASS
from tests.venues.okx.emulator_private import SECRET as OKX_SECRET
from tests.venues.okx.emulator_private import OkxPrivateEmulator
from tests.workers import Proc

FRAMES = Path(__file__).resolve().parents[3] / "shared" / "frames" / "nautilus"


@pytest.fixture
async def mock() -> AsyncIterator[MockBinancePrivate]:
    m = await MockBinancePrivate().start()
    try:
        yield m
    finally:
        await m.stop()


def private_settings(tmp_path: Path, url: str, mock: MockBinancePrivate, **private: object):
    s = live_settings(tmp_path, url, mock)
    acc = s.executor.accounts[ACCOUNT]
    acc.private.enabled = True
    acc.private.ws = {"ws.ws-api.spot": mock.ws_api_url}
    acc.private.truth_interval_s = 3600.0  # only pushed balances are compared here
    for k, v in private.items():
        setattr(acc.private, k, v)
    s.executor.reconcile_interval_s = 3600.0  # no polling: fills must come pushed
    return s


def fills(log: list[object], cid: str) -> list[Fill]:
    return [m for m in log if isinstance(m, Fill) and m.client_order_id == cid]


async def test_pushed_fills_a_dropped_stream_reconciled_and_drift_halts(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext,
    mock: MockBinancePrivate,
) -> None:  # fmt: skip
    settings = private_settings(tmp_path, nats_server.url, mock, halt_on_drift=True)
    drifts: list[dict[str, object]] = []

    async def on_drift(msg: object) -> None:
        drifts.append(orjson.loads(msg.data))  # type: ignore[attr-defined]

    await nc.subscribe(subjects.account_drift(ACCOUNT), cb=on_drift)
    raw = await nc.subscribe(subjects.raw_private(ACCOUNT, "binance"))
    ex = Executor(settings, tmp_path / "executor.log")
    await ex.start(nc)
    try:
        await mock.wait_for(lambda: mock.subscribes >= 1, timeout=20)
        assert (await request(nc, limit("pv1", qty="0.01")))["accepted"]
        mock.fill("pv1", qty="0.004")

        async def pushed() -> list[Fill]:
            return fills(await exec_log(js), "pv1")

        got = await wait_until(pushed, timeout=5)  # reconciliation is an hour away
        assert [f.size for f in got] == [0.004]
        # the connection drops and the rest fills while nobody listens: lost frames
        mock.mute = True
        await mock.drop_private()
        mock.fill("pv1")
        mock.mute = False
        log = await final(js, "pv1", "filled")  # ccxt reconnects; polling finds the fill
        fs = fills(log, "pv1")
        assert sorted(f.size for f in fs) == [0.004, 0.006]
        assert len({f.trade_id for f in fs}) == 2  # nothing doubled
        assert mock.subscribes >= 2
        assert drifts == [], drifts  # balances pushed after each fill equal ours
        # RAW carries the frames as the venue sent them
        frames = [orjson.loads((await raw.next_msg(timeout=5)).data) for _ in range(3)]
        assert frames[0]["result"] == {"subscriptionId": 0}  # the subscription's answer
        assert frames[1]["event"]["e"] == "executionReport"  # pv1 NEW, as sent
        # someone moves 1 BTC outside our orders: the next pushed balance shows the drift
        mock.balances["BTC"] += Decimal(1)
        assert (await request(nc, limit("pv2", qty="0.01")))["accepted"]
        mock.fill("pv2")
        await wait_until(lambda: drifts, timeout=5)
        assert drifts[0]["name"] == "BTC" and abs(float(drifts[0]["drift"]) - 1.0) < 1e-9
        assert drifts[0]["halt"] is True
        reply = await request(nc, limit("pv3", qty="0.01"))
        assert not reply["accepted"] and "drift" in reply["reason"], reply
    finally:
        assert ex.proc.stop() == 0


async def test_kill9_with_fills_while_down_and_pushed_after_restart_records_each_once(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext,
    mock: MockBinancePrivate,
) -> None:  # fmt: skip
    settings = private_settings(tmp_path, nats_server.url, mock)
    ex = Executor(settings, tmp_path / "executor.log")
    await ex.start(nc)
    await mock.wait_for(lambda: mock.subscribes >= 1, timeout=20)
    assert (await request(nc, limit("pk1", qty="0.01")))["accepted"]
    ex.proc.kill9()
    mock.fill("pk1", qty="0.003")  # pushed to nobody: the executor is dead
    ex = Executor(settings, tmp_path / "executor2.log")
    await ex.start(nc)  # the restart's reconciliation finds it
    try:
        await mock.wait_for(lambda: mock.subscribes >= 2, timeout=20)
        mock.fill("pk1")  # pushed to the new instance
        log = await final(js, "pk1", "filled")
        await asyncio.sleep(0.5)  # a late double would show now
        fs = fills(await exec_log(js), "pk1")
        assert sorted(f.size for f in fs) == [0.003, 0.007], fs
    finally:
        assert ex.proc.stop() == 0
    assert log


async def test_only_the_executor_publishes_private_frames_and_nobody_else_reads_them(
    nats_server: NatsServer,
) -> None:
    subject = subjects.raw_private(ACCOUNT, "binance")
    errors: list[Exception] = []
    execu = await client(nats_server.url, "executor", errors)
    spies = []
    try:
        assert not await refused(execu, errors, subject)
        for role in ("collector", "normalizer", "sink", "orderbook", "trader", "operator",
                     "reader", "api", "replay"):  # fmt: skip
            errs: list[Exception] = []
            nc = await client(nats_server.url, role, errs)
            spies.append(nc)
            sub = await nc.subscribe(subject)
            await nc.flush()
            if role not in ("collector", "replay"):  # both may publish raw.> (recordings)
                assert await refused(nc, errs, subject), role
            await execu.publish(subject, b'{"secret": 1}')
            await execu.flush()
            with pytest.raises(asyncio.TimeoutError):
                await sub.next_msg(timeout=0.3)
    finally:
        for nc in spies:
            await nc.close()
        await execu.close()


def _load(path: str) -> dict[str, object]:
    return json.loads((FRAMES / path).read_text())


def test_private_frames_of_each_venue_parse() -> None:
    u = parse.binance(_load("binance/spot/user_data_json/execution_report_trade.json"))
    (r,) = u.reports
    assert (r.client_order_id, r.status, r.filled, r.avg_price) == (
        "x-TD67BGP9-T0000000000000", "filled", 1.0, 2500.0)  # fmt: skip
    assert (r.fills[0].trade_id, r.fills[0].fee, r.fills[0].liquidity) == ("98765432", 0.001,
                                                                            "maker")  # fmt: skip
    (r,) = parse.binance(_load("binance/spot/user_data_json/execution_report_wrapped.json")).reports
    assert r.status == "new" and r.fills == []
    b = parse.binance(_load("binance/spot/user_data_json/account_position.json")).balances
    assert b == {"USDT": 12500.0, "ETH": 5.0}
    (r,) = parse.okx(_load("okx/ws_orders.json")).reports
    assert (r.client_order_id, r.status, r.fills[0].trade_id, r.fills[0].size) == (
        "001BTCUSDT20250106001", "filled", "1518905529", 0.03)  # fmt: skip
    assert abs(r.fills[0].fee - 0.021776769) < 1e-12  # OKX's negative fee is a charge
    assert parse.okx(_load("okx/ws_account.json")).balances["USDT"] > 100
    (r,) = parse.bybit(_load("bybit/ws_account_execution_fast.json")).reports
    assert (r.client_order_id, r.fills[0].size, r.fills[0].liquidity) == (
        "test-order-link-001", 3000.0, "taker")  # fmt: skip
    assert parse.bybit(_load("bybit/ws_account_position.json")).positions == {"ETHUSDT": -0.01}
    assert parse.bybit(_load("bybit/ws_account_wallet.json")).balances["BTC"] == 0.00102964


async def test_private_frames_are_kept_in_raw_but_out_of_market_dlq_and_sql(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    settings = make_settings(tmp_path, nats_server.url, sink={"flush_interval_s": 0.1})
    procs = [Proc("normalizer", settings, log=tmp_path / "normalizer.log"),
             Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log")]  # fmt: skip
    for p in procs:
        p.start()
    try:
        private = subjects.raw_private(ACCOUNT, "binance")
        heads = {subjects.H_RECV_NS: str(time.time_ns()), subjects.H_CONN: "t"}
        secret = b'{"subscriptionId":0,"event":{"e":"executionReport","c":"secret-cid"}}'
        for _ in range(3):
            await js.publish(private, secret, headers=heads)
        # a public frame after them: once it is stored, the private ones were handled
        await js.publish(subjects.raw("binance", "trade", "BTCUSDT"), b'{"e":"junk"}',
                         headers=heads)  # fmt: skip
        await wait_rows(nc, "SELECT count() FROM raw_frames WHERE venue = 'binance'", 1, 60)
        assert await scalar(nc, "SELECT count() FROM raw_frames WHERE venue = 'private'") == 0
        assert (await js.get_last_msg("RAW", private)).data == secret  # replayable from RAW

        # the junk frame's dead letter: the normalizer has passed the private ones by then
        async def dead() -> list[bytes]:
            return await exec_log_raw(js, "DLQ")

        dlq = await wait_until(dead, timeout=30)
        assert not [d for d in dlq if b"secret-cid" in d]
    finally:
        codes = [p.stop() for p in reversed(procs)]
    assert codes == [0, 0]


async def exec_log_raw(js: JetStreamContext, stream: str) -> list[bytes]:
    info = await js.stream_info(stream)
    if not info.state.messages:
        return []
    return [(await js.get_msg(stream, seq)).data or b""
            for seq in range(info.state.first_seq, info.state.last_seq + 1)]  # fmt: skip


async def test_account_truth_polled_drift_needs_two_looks_pushed_one() -> None:
    sent: list[dict[str, object]] = []
    halts: list[str] = []

    async def publish(account: str, body: bytes) -> None:
        sent.append(orjson.loads(body))

    async def halt(reason: str) -> None:
        halts.append(reason)

    t = Truth("a", PrivateStreamSettings(balance_tolerance=1e-6, halt_on_drift=True),
              publish, halt)  # fmt: skip
    t.baseline({"BTC": 1.0, "USDT": 1000.0})
    o = Order("a", "binance", "BTC-USDT", "c1", "buy", "limit", 0.5)
    t.on_fill(o, VenueFill("t1", 100.0, 0.5, 0.05, "USDT"))  # ours: BTC 1.5, USDT 949.95
    assert await t.balances({"BTC": 1.5, "USDT": 949.95}, pushed=True) == []
    # a fill between the venue's answer and our record: seen once, not raised
    assert await t.balances({"BTC": 2.0, "USDT": 899.9}, pushed=False) == []
    t.on_fill(o, VenueFill("t2", 100.0, 0.5, 0.05, "USDT"))
    assert await t.balances({"BTC": 2.0, "USDT": 899.9}, pushed=False) == []
    assert sent == [] and halts == []
    # a real difference: polled twice -> raised once, halted once
    await t.balances({"BTC": 2.25}, pushed=False)
    (d,) = await t.balances({"BTC": 2.25}, pushed=False)
    assert (d.name, d.diff) == ("BTC", 0.25) and len(sent) == 1 and len(halts) == 1
    assert await t.balances({"BTC": 2.25}, pushed=True) == []  # the new base: not again
    # positions (derivatives): pushed once is enough
    (p,) = await t.positions({"BTC-USDT-PERP": -1.0}, {"BTC-USDT-PERP": 1.0}, pushed=True)
    assert p.diff == -2.0 and len(halts) == 1  # halted already: not twice


async def test_bybit_order_filled_before_its_execution_loses_no_fill() -> None:
    """Bybit's ``order`` topic may say Filled before ``execution`` brings the trade: the
    order is final then, and its fill is still recorded, once."""
    cfg = AccountSettings(instruments={"BTC-USDT": InstrumentSpec()})
    venue, rec, marks = PaperVenue(cfg), Recorder(), Marks()
    e = Engine("paper", cfg, venue, rec, marks)
    book = Depth(venue="binance", symbol="BTC-USDT", ts_event=10**18, ts_recv=10**18,
                 bids=[(99.0, 1.0)], asks=[(101.0, 1.0)], seq=1, levels=1)  # fmt: skip
    venue.on_market(book)
    marks.on_market(book)
    r = await e.handle(cmd("by1", side="buy", order_type="limit", quantity="2", price="100"))
    assert r.state == "new", r
    ps = PrivateStream("paper", msgspec.structs.replace(cfg, exchange="bybit"), venue, e, None)  # type: ignore[arg-type]
    ps._contracts = lambda rep: None  # type: ignore[method-assign]  # paper: no contracts
    order = {"topic": "order", "data": [{"orderLinkId": "by1", "orderId": "v1",
             "orderStatus": "Filled", "cumExecQty": "2", "avgPrice": "100"}]}  # fmt: skip
    execution = {"topic": "execution", "data": [{"orderLinkId": "by1", "orderId": "v1",
                 "execId": "e1", "execPrice": "100", "execQty": "2", "execFee": "0.2",
                 "feeCurrency": "USDT", "isMaker": True, "execTime": "1"}]}  # fmt: skip
    for frame in (order, execution, execution):  # the second execution: a repeat
        await ps._apply(orjson.dumps(frame), 0)
    assert e.orders["by1"].state == "filled"
    fills = [m for _, m in rec.sent if isinstance(m, Fill)]
    assert [(f.trade_id, f.size, f.fee) for f in fills] == [("e1", 2.0, 0.2)]
    assert e.positions[("binance", "BTC-USDT")].size == 2.0


async def test_okx_private_channels_through_ccxt_pro(nc: Client, tmp_path: Path) -> None:
    """OKX: ccxt pro logs in and subscribes orders/account/positions on the emulator's
    private WebSocket; an order's fill (in contracts) is recorded in base units, a position
    the venue reports that ours does not match is a drift."""
    secrets = tmp_path / "okx.json"
    secrets.write_text(json.dumps({"apiKey": OKX_KEY, "secret": OKX_SECRET,
                                   "password": OKX_PASS}))  # fmt: skip
    secrets.chmod(0o600)
    async with OkxPrivateEmulator() as emu:
        no_snapshot = {"watchPositions": {"fetchPositionsSnapshot": False}}  # no REST here
        cfg = AccountSettings(venue="ccxt", exchange="okx", secrets_file=str(secrets),
                              options=no_snapshot)  # fmt: skip
        cfg.private.ws = {"ws": emu.ws_base}
        venue = CcxtVenue(cfg)
        venue.ex = ccxt_async.okx()
        venue.ex.set_markets([{
            "id": "BTC-USDT-SWAP", "symbol": "BTC/USDT:USDT", "base": "BTC", "quote": "USDT",
            "settle": "USDT", "baseId": "BTC", "quoteId": "USDT", "type": "swap", "spot": False,
            "swap": True, "future": False, "option": False, "active": True, "contract": True,
            "linear": True, "contractSize": 0.01, "precision": {"price": 0.1, "amount": 1},
            "limits": {},
        }])  # fmt: skip
        venue.symbols, venue.ours = (
            {"BTC-USDT-PERP": "BTC/USDT:USDT"},
            {"BTC/USDT:USDT": "BTC-USDT-PERP"},
        )
        rec = Recorder()
        e = Engine("okx", cfg, venue, rec, Marks())
        o = Order("okx", "okx", "BTC-USDT-PERP", "ok1", "buy", "limit", 0.03, 100000.0,
                  state="new", venue_order_id="77")  # fmt: skip
        e.orders["ok1"] = e.active["ok1"] = o
        drifts: list[dict[str, object]] = []

        async def on_drift(msg: object) -> None:
            drifts.append(orjson.loads(msg.data))  # type: ignore[attr-defined]

        await nc.subscribe(subjects.account_drift("okx"), cb=on_drift)
        ps = PrivateStream("okx", cfg, venue, e, nc)
        await ps.start()
        try:
            channels = ("orders", "account", "positions")
            await emu.wait_for(lambda: all(emu.subscribed(c) for c in channels), timeout=10)
            await emu.push_order("ok1", "77", "BTC-USDT-SWAP", "buy", "3", "filled", "3",
                                 "100000", ("t9", "3", "100000", "-0.6"))  # fmt: skip
            await wait_until(lambda: e.orders["ok1"].state == "filled", timeout=5)
            fills = [m for _, m in rec.sent if isinstance(m, Fill)]
            assert [(f.trade_id, f.size, f.price, f.fee) for f in fills] == [
                ("t9", 0.03, 100000.0, 0.6)
            ]  # 3 contracts of 0.01 BTC; OKX's -0.6 = charged
            await emu.push_positions("BTC-USDT-SWAP", "3")  # 0.03 BTC: as ours
            await emu.push_positions("BTC-USDT-SWAP", "5")  # 0.05 BTC: someone else's 0.02
            await wait_until(lambda: drifts, timeout=5)
            assert len(drifts) == 1 and drifts[0]["name"] == "BTC-USDT-PERP"
            assert abs(float(drifts[0]["drift"]) - 0.02) < 1e-12
            assert emu.logins == 1
        finally:
            await ps.close()
            await venue.ex.close()


async def test_rest_calls_of_the_private_client_are_spent_from_the_shared_budget(
    nc: Client, tmp_path: Path
) -> None:
    """ccxt pro's own REST calls for a private stream (here Bybit's watchPositions, which
    fetches a positions snapshot first) take weight from the account's shared budget like the
    REST venue's calls, and go through its proxy (0 units spent without it)."""
    from streams.bus.budget import LimitsSettings, open_budget

    os.environ.update(JM_BYBIT_KEY=BYBIT_KEY, JM_BYBIT_SECRET=BYBIT_SECRET)
    nowhere = "http://127.0.0.1:9"  # nothing listens: refused at once, never the internet
    async with BybitPrivateEmulator() as emu:
        options = {
            "defaultType": "swap",
            "enableUnifiedMargin": False,
            "enableUnifiedAccount": True,
        }  # watchPositions fetches its snapshot
        cfg = AccountSettings(venue="ccxt", exchange="bybit", api_key_env="JM_BYBIT_KEY",
                              secret_env="JM_BYBIT_SECRET", options=options,
                              urls={"public": nowhere, "private": nowhere})  # fmt: skip
        cfg.private.ws = {"ws.private.contract": emu.private_url,
                          "ws.private.spot.unified": emu.private_url}  # fmt: skip
        venue = CcxtVenue(cfg, nc)
        venue.ex = ccxt_async.bybit({"options": options})
        venue.ex.httpProxy = nowhere
        venue.ex.set_markets([])
        # the budget (ccxt's default limits for Bybit) is not attached to the REST venue
        # here: the account baseline it polls is not counted, only the private client's calls
        limits_of = ccxt_async.bybit()
        venue.budget = await open_budget(nc, "bybit", LimitsSettings(proxy=nowhere), limits_of)
        await limits_of.close()
        e = Engine("bb", cfg, venue, Recorder(), Marks())
        ps = PrivateStream("bb", cfg, venue, e, nc)
        before = budget_units_spent("bybit")
        await ps.start()
        try:
            await emu.wait_for(lambda: emu.subscribed("order"), timeout=10)
            # the snapshot's REST call is refused (nothing listens), after taking its weight
            await wait_until(lambda: budget_units_spent("bybit") > before, timeout=10)
            assert ps.ex.httpProxy == nowhere
        finally:
            await ps.close()
            await venue.budget.close()
            await venue.ex.close()


async def test_bybit_private_topics_through_ccxt_pro(nc: Client, tmp_path: Path) -> None:
    """Bybit: ccxt pro authenticates and subscribes order/execution/wallet/position on the
    emulator; the order's ``Filled`` before its ``execution`` still records the fill once;
    a position unlike ours is a drift."""
    os.environ.update(JM_BYBIT_KEY=BYBIT_KEY, JM_BYBIT_SECRET=BYBIT_SECRET)
    async with BybitPrivateEmulator() as emu:
        options = {"defaultType": "swap", "enableUnifiedMargin": False,
                   "enableUnifiedAccount": True,
                   "watchPositions": {"fetchPositionsSnapshot": False}}  # fmt: skip
        cfg = AccountSettings(venue="ccxt", exchange="bybit", api_key_env="JM_BYBIT_KEY",
                              secret_env="JM_BYBIT_SECRET", options=options)  # fmt: skip
        cfg.private.ws = {"ws.private.contract": emu.private_url,
                          "ws.private.spot.unified": emu.private_url}  # fmt: skip
        venue = CcxtVenue(cfg)
        venue.ex = ccxt_async.bybit({"options": options})
        venue.ex.set_markets([{
            "id": "BTCUSDT", "symbol": "BTC/USDT:USDT", "base": "BTC", "quote": "USDT",
            "settle": "USDT", "baseId": "BTC", "quoteId": "USDT", "type": "swap", "spot": False,
            "swap": True, "future": False, "option": False, "active": True, "contract": True,
            "linear": True, "contractSize": 1.0, "precision": {"price": 0.1, "amount": 0.001},
            "limits": {}, "info": {"category": "linear"},
        }])  # fmt: skip
        venue.symbols = {"BTC-USDT-PERP": "BTC/USDT:USDT"}
        venue.ours = {"BTC/USDT:USDT": "BTC-USDT-PERP"}
        rec = Recorder()
        e = Engine("bb", cfg, venue, rec, Marks())
        o = Order("bb", "bybit", "BTC-USDT-PERP", "bb1", "sell", "limit", 0.01, 100000.0,
                  state="new", venue_order_id="o-1")  # fmt: skip
        e.orders["bb1"] = e.active["bb1"] = o
        drifts: list[dict[str, object]] = []

        async def on_drift(msg: object) -> None:
            drifts.append(orjson.loads(msg.data))  # type: ignore[attr-defined]

        await nc.subscribe(subjects.account_drift("bb"), cb=on_drift)
        ps = PrivateStream("bb", cfg, venue, e, nc)
        await ps.start()
        try:
            topics = ("order", "execution", "wallet", "position")
            await emu.wait_for(lambda: all(emu.subscribed(t) for t in topics), timeout=10)
            await emu.push_order("bb1", "o-1", "BTCUSDT", "Sell", "0.01", "Filled", "0.01",
                                 "100000")  # fmt: skip
            await wait_until(lambda: e.orders["bb1"].state == "filled", timeout=5)
            await emu.push_execution("bb1", "o-1", "BTCUSDT", "Sell", "x-1", "0.01", "100000",
                                     "0.5")  # fmt: skip

            def fills() -> list[Fill]:
                return [m for _, m in rec.sent if isinstance(m, Fill)]

            got = await wait_until(fills, timeout=5)
            assert [(f.trade_id, f.size, f.fee) for f in got] == [("x-1", 0.01, 0.5)]
            await emu.push_position("BTCUSDT", "Sell", "0.01")  # as ours: short 0.01
            await emu.push_position("BTCUSDT", "Sell", "0.03")
            await wait_until(lambda: drifts, timeout=5)
            assert len(drifts) == 1 and abs(float(drifts[0]["drift"]) + 0.02) < 1e-12
            assert emu.auths == 1
        finally:
            await ps.close()
            await venue.ex.close()


async def test_a_wrong_secret_gets_no_private_frames_and_polling_stays(
    nc: Client, tmp_path: Path
) -> None:
    """An API key with the wrong secret (or passphrase): the venue refuses the login and
    pushes nothing; the account keeps its polling, nothing is applied."""
    secrets = tmp_path / "okx.json"
    secrets.write_text(json.dumps({"apiKey": OKX_KEY, "secret": "stolen-key-no-secret",
                                   "password": OKX_PASS}))  # fmt: skip
    secrets.chmod(0o600)
    async with OkxPrivateEmulator() as emu:
        cfg = AccountSettings(
            venue="ccxt",
            exchange="okx",
            secrets_file=str(secrets),
            options={"watchPositions": {"fetchPositionsSnapshot": False}},
        )
        cfg.private.ws = {"ws": emu.ws_base}
        venue = CcxtVenue(cfg)
        venue.ex = ccxt_async.okx()
        venue.ex.set_markets([])
        e = Engine("okx", cfg, venue, Recorder(), Marks())
        ps = PrivateStream("okx", cfg, venue, e, nc)
        await ps.start()
        try:
            await asyncio.sleep(1.5)
            logins = [r for r in emu.private_requests if r.get("op") == "login"]
            assert logins and emu.logins == 0 and not emu.subscribed("orders")
            await emu.push_order("ok1", "1", "BTC-USDT-SWAP", "buy", "1", "filled", "1", "1")
            await asyncio.sleep(0.2)
            assert ps.ids == {}  # no order frame reached the account
        finally:
            await ps.close()
            await venue.ex.close()
