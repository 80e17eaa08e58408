"""Bulk reconciliation on the ccxt venue: real ccxt binance code against the mock Binance REST
exchange, the executor as a real subprocess, a real nats-server, the ClickHouse sink.

Orders and fills are made directly at the mock (not through the executor) to stand for what
happened while the executor was down or what its records lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from executor.engine import Engine, Marks
from executor.venues.paper import PaperVenue
from streams import sql, subjects
from streams.bus.server import NatsServer
from streams.schemas import Depth, ExecBase, Fill, OrderUpdate, Trade
from streams.settings import AccountSettings, InstrumentSpec
from tests.conftest import make_settings
from tests.executor.test_ccxt import ACCOUNT, Executor, final, limit, posts
from tests.executor.test_paper import cmd, exec_log, last_position, request, updates, wait_until
from tests.pipeline.test_e2e import wait_rows
from tests.venues.binance.emulator_rest import MockBinance, MockOrder
from tests.workers import Proc

PREFIX = "jm-"


@pytest.fixture
async def mock() -> AsyncIterator[MockBinance]:
    m = await MockBinance().start()
    yield m
    await m.stop()


def recon_settings(tmp_path: Path, url: str, mock: MockBinance) -> Any:
    account = {
        "venue": "ccxt", "exchange": "binance", "market_venue": "binance",
        "urls": mock.ccxt_urls(), "api_key_env": "JM_TEST_KEY", "secret_env": "JM_TEST_SECRET",
        "options": {"fetchCurrencies": False, "fetchMargins": False,
                    "fetchMarkets": {"types": ["spot"]}},
        "request_timeout_s": 1.0, "unknown_grace_s": 1.0, "timeouts": {},
        # the mock's prices reach no market.> stream here: limits are valued at their price
        "client_id_prefix": PREFIX, "risk": {"allow_symbols": ["BTC-USDT"], "require_mark": False},
    }  # fmt: skip
    return make_settings(tmp_path, url, executor={
        "accounts": {ACCOUNT: account}, "reconcile_interval_s": 0.5,
        "position_interval_s": 0.5}, sink={"flush_interval_s": 0.1})  # fmt: skip


def place(mock: MockBinance, cid: str, qty: str = "0.01", price: str = "60000") -> MockOrder:
    """An order made at the venue by someone other than this executor."""
    mock._next_id += 1
    o = MockOrder("BTCUSDT", mock._next_id, cid, "BUY", "LIMIT", Decimal(qty), Decimal(price),
                  "GTC", Decimal(0), int(time.time() * 1000))  # fmt: skip
    mock.orders[o.order_id] = o
    return o


def fills_of(log: list[Any], cid: str) -> list[Fill]:
    return [f for f in log if isinstance(f, Fill) and f.client_order_id == cid]


async def executor_status(nc: Client) -> dict[str, Any]:
    """The executor's health line, over the status request every worker answers."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(subjects.STATUS_QUERY, b"", reply=inbox)
    try:
        while True:
            line = orjson.loads((await sub.next_msg(timeout=2.0)).data)
            if line.get("worker") == "executor":
                return line
    finally:
        await sub.unsubscribe()


async def test_adopts_our_unrecorded_order_ignores_foreign_and_sees_fills_while_running(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext, mock: MockBinance
) -> None:
    settings = recon_settings(tmp_path, nats_server.url, mock)
    place(mock, "jm-ext1")
    mock.fill("jm-ext1", "0.004", price="60000")
    place(mock, "other-1", qty="0.02")
    mock.fill("other-1", "0.005")  # a foreign fill: never ours, never looked up twice
    sink = Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log").start()
    ex = Executor(settings, tmp_path / "executor.log")
    try:
        await ex.start(nc)
        log = await final(js, "jm-ext1", "partially_filled")
        (up,) = updates(log, "jm-ext1")
        assert up.reason == "adopted by reconciliation"
        assert (up.filled, up.quantity, up.price, up.side) == (
            pytest.approx(0.004), pytest.approx(0.01), 60000.0, "buy")  # fmt: skip
        assert up.venue_order_id == str(mock.by_client_id("jm-ext1").order_id)  # type: ignore[union-attr]
        (f,) = fills_of(log, "jm-ext1")
        assert (f.size, f.price, f.fee) == (pytest.approx(0.004), 60000.0, pytest.approx(0.24))
        pos = last_position(log)
        assert (pos.size, pos.avg_price) == (pytest.approx(0.004), pytest.approx(60000))
        # the foreign order is left alone and counted
        assert updates(log, "other-1") == [] and fills_of(log, "other-1") == []
        assert mock.by_client_id("other-1").status == "PARTIALLY_FILLED"  # type: ignore[union-attr]
        assert (await executor_status(nc))["foreign_orders"] == {ACCOUNT: 1}
        assert "order adopted by reconciliation" in (tmp_path / "executor.log").read_text()
        # the adopted order is ours now: a duplicate command is answered from it
        again = await request(nc, limit("jm-ext1"))
        assert again["duplicate"] and again["state"] == "partially_filled", again
        # no user-data stream: the periodic round finds fills made while we run
        r = await request(nc, limit("jm-own1", qty="0.002", price="61000"))
        assert r["state"] == "new", r
        mock.fill("jm-own1", price="61000")
        mock.fill("jm-ext1", price="60000")
        await final(js, "jm-own1", "filled")
        log = await final(js, "jm-ext1", "filled")
        assert [u.state for u in updates(log, "jm-ext1")] == ["partially_filled", "filled"]
        assert [x.size for x in fills_of(log, "jm-ext1")] == pytest.approx([0.004, 0.006])
        assert [x.size for x in fills_of(log, "jm-own1")] == pytest.approx([0.002])

        async def settled() -> Any:
            p = last_position(await exec_log(js))
            return p if p.size == pytest.approx(0.012) else None

        pos = await wait_until(settled)
        assert pos.avg_price == pytest.approx((0.01 * 60000 + 0.002 * 61000) / 0.012)
        assert posts(mock) == 1 and mock.by_client_id("other-1").executed == Decimal("0.005")  # type: ignore[union-attr]
        # adopted orders land in ClickHouse through the sink like any other
        q = "SELECT count() FROM fills WHERE account = 'live' AND client_order_id = 'jm-ext1'"
        assert await wait_rows(nc, q, 2, 60) == 2
        res = await sql.query(nc, "SELECT argMax(state, stream_seq), argMax(reason, stream_seq) "
                                  "FROM orders WHERE client_order_id = 'jm-ext1'")  # fmt: skip
        assert res.rows == [["filled", "adopted by reconciliation"]]
        res = await sql.query(nc, "SELECT count() FROM orders WHERE client_order_id = 'other-1'")
        assert res.rows == [[0]]
    finally:
        ex.proc.kill9()
        assert sink.stop() == 0


async def test_fills_while_stopped_are_recorded_once_across_rounds_and_restarts(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext, mock: MockBinance
) -> None:
    settings = recon_settings(tmp_path, nats_server.url, mock)
    ex = Executor(settings, tmp_path / "executor.log")
    try:
        await ex.start(nc)
        for cid in ("jm-k1", "jm-k2"):
            assert (await request(nc, limit(cid, qty="0.01", price="60000")))["state"] == "new"
        assert ex.proc.stop() == 0
        mock.fill("jm-k1", "0.003", price="60000")
        mock.fill("jm-k1", "0.002", price="60000")
        mock.fill("jm-k2", price="59990")
        await ex.start(nc)
        await final(js, "jm-k1", "partially_filled")
        await final(js, "jm-k2", "filled")
        await asyncio.sleep(1.5)  # more periodic rounds over the same fills window
        assert ex.proc.stop() == 0
        await ex.start(nc)  # a restart's first round looks back a whole day again
        await asyncio.sleep(1.5)
        log = await exec_log(js)
        assert [f.size for f in fills_of(log, "jm-k1")] == pytest.approx([0.003, 0.002])
        assert [f.size for f in fills_of(log, "jm-k2")] == pytest.approx([0.01])
        trade_ids = [f.trade_id for f in log if isinstance(f, Fill)]
        assert len(trade_ids) == len(set(trade_ids)) == 3
        assert [u.state for u in updates(log, "jm-k1")] == ["pending_new", "new",
                                                            "partially_filled"]  # fmt: skip
        assert last_position(log).size == pytest.approx(0.015)
        assert posts(mock) == 2
        ups = [u for u in log if isinstance(u, OrderUpdate)]
        assert len({(u.client_order_id, u.state, u.filled) for u in ups}) == len(ups)
    finally:
        ex.proc.kill9()


class Recorder:
    """The engine's publisher, keeping what it would store on EXEC (keyed like Nats-Msg-Id
    would dedup it, so a double emit shows up as a second entry under a new id only)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, ExecBase]] = []

    async def publish(self, subject: str, msg: ExecBase, msg_id: str) -> None:
        self.sent.append((msg_id, msg))

    async def dlq(self, data: bytes, reason: str) -> None:
        raise AssertionError(reason)


async def test_paper_venue_rounds_add_nothing_already_recorded() -> None:
    cfg = AccountSettings(instruments={"BTC-USDT": InstrumentSpec()}, client_id_prefix=PREFIX)
    venue, rec, marks = PaperVenue(cfg), Recorder(), Marks()
    e = Engine("paper", cfg, venue, rec, marks, clock=lambda: venue.now_ns / 1e9)
    book = Depth(venue="binance", symbol="BTC-USDT", ts_event=10**18, ts_recv=10**18,
                 bids=[(99.0, 1.0)], asks=[(101.0, 1.0)], seq=1, levels=1)  # fmt: skip
    venue.on_market(book)
    marks.on_market(book)
    r = await e.handle(cmd("jm-p1", side="buy", order_type="limit", quantity="2", price="100"))
    assert r.state == "new", r
    hit = Trade(venue="binance", symbol="BTC-USDT", ts_event=10**18 + 1, ts_recv=10**18 + 1,
                id="x", price=99.5, size=0.5, side="sell")  # fmt: skip
    await e.on_reports(venue.on_market(hit))
    assert [x.symbol for x in await venue.open_orders(["BTC-USDT"])] == ["BTC-USDT"]
    assert [t.fill.size for t in await venue.recent_fills(["BTC-USDT"], 0)] == [0.5]
    assert await venue.order_by_id("BTC-USDT", "paper-jm-p1") is not None
    before = len(rec.sent)
    for _ in range(2):
        await e.reconcile()
    fills = [m for _, m in rec.sent if isinstance(m, Fill)]
    assert [f.size for f in fills] == [0.5]
    # only periodic position marks may follow; no order update or fill is emitted again
    assert all(not isinstance(m, (Fill, OrderUpdate)) for _, m in rec.sent[before:])
    assert e.orders["jm-p1"].state == "partially_filled" and e.recon.rounds == 2
