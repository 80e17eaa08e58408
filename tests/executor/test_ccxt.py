"""The executor on the ccxt venue: real ccxt binance code against the mock Binance REST
exchange, the executor as a real subprocess (kill -9 able), a real nats-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext

from streams import schemas, sql, subjects
from streams.bus.server import NatsServer
from streams.schemas import Fill, OrderUpdate
from tests.conftest import make_settings
from tests.executor.test_paper import cmd, exec_log, last_position, request, updates, wait_until
from tests.pipeline.test_e2e import wait_rows
from tests.venues.binance.emulator_rest import API_KEY, SECRET, MockBinance
from tests.workers import Proc

ACCOUNT = "live"


@pytest.fixture
async def mock() -> AsyncIterator[MockBinance]:
    m = await MockBinance().start()
    yield m
    await m.stop()


def live_settings(tmp_path: Path, url: str, mock: MockBinance, **over: Any) -> Any:
    account = {
        "venue": "ccxt", "exchange": "binance", "market_venue": "binance",
        "urls": mock.ccxt_urls(), "api_key_env": "JM_TEST_KEY", "secret_env": "JM_TEST_SECRET",
        # markets from exchangeInfo only: no margin or currency endpoints on the mock
        "options": {"fetchCurrencies": False, "fetchMargins": False,
                    "fetchMarkets": {"types": ["spot"]}},
        "request_timeout_s": 1.0, "unknown_grace_s": 1.0, "timeouts": {},
        # the mock's prices reach no market.> stream here: limits are valued at their price
        "risk": {"require_mark": False},
    }  # fmt: skip
    return make_settings(tmp_path, url, executor={
        "accounts": {ACCOUNT: account}, "reconcile_interval_s": 0.5,
        "position_interval_s": 0.5}, sink={"flush_interval_s": 0.1}, **over)  # fmt: skip


def live(cid: str, action: str = "new", **kw: Any) -> Any:
    return cmd(cid, action, account=ACCOUNT, **kw)


def limit(cid: str, qty: str = "0.01", price: str = "65000", **kw: Any) -> Any:
    return live(cid, side="buy", order_type="limit", quantity=qty, price=price, **kw)


class Executor:
    """The executor subprocess, restartable; keys reach it through the environment only."""

    def __init__(self, settings: Any, log: Path) -> None:
        self.proc = Proc("executor", settings, log=log)
        self.proc.env.update({"JM_TEST_KEY": API_KEY, "JM_TEST_SECRET": SECRET})

    async def start(self, nc: Client) -> None:
        self.proc.start()

        async def ready() -> bool:
            try:  # any answer means subscriptions and reconciliation are done
                await request(nc, live("probe", "cancel"))
            except (NoRespondersError, NatsTimeout):
                return False
            return True

        await wait_until(ready, timeout=30)


@asynccontextmanager
async def executor(settings: Any, nc: Client, log: Path) -> AsyncIterator[Executor]:
    ex = Executor(settings, log)
    await ex.start(nc)
    try:
        yield ex
    finally:
        assert ex.proc.stop() == 0  # SIGTERM: a clean shutdown


async def final(js: JetStreamContext, cid: str, state: str) -> list[Any]:
    async def check() -> list[Any]:
        log = await exec_log(js)
        ups = updates(log, cid)
        return log if ups and ups[-1].state == state else []

    try:
        return await wait_until(check, timeout=20)
    except AssertionError:
        seen = [
            (type(u).__name__, getattr(u, "client_order_id", ""), getattr(u, "state", ""))
            for u in await exec_log(js)
        ]
        raise AssertionError(f"{cid} never reached {state}: {seen}") from None


def posts(mock: MockBinance) -> int:
    return sum(1 for r in mock.requests if r == "POST /api/v3/order")


async def test_duplicates_and_redelivery_after_kill9_make_one_order(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext, mock: MockBinance
) -> None:
    settings = live_settings(tmp_path, nats_server.url, mock)
    ex = Executor(settings, tmp_path / "executor.log")
    await ex.start(nc)
    try:
        c = limit("dup1")
        mock.delay_s = 3.0  # the venue takes the order, the executor is killed awaiting it
        for _ in range(2):
            await js.publish(subjects.exec_cmd(ACCOUNT), schemas.encode(c),
                             headers={subjects.H_MSG_ID: "live:dup1:new"})  # fmt: skip
        await wait_until(lambda: mock.creates == 1)
        ex.proc.kill9()
        mock.delay_s = 0.0
        await ex.start(nc)  # command redelivered (never acked), order found by lookup
        log = await final(js, "dup1", "new")
        again = await request(nc, c)
        assert again["duplicate"] and again["state"] == "new", again
        await asyncio.sleep(1.0)  # a reconciliation round or two
        assert mock.creates == 1 and posts(mock) == 1
        assert [u.state for u in updates(log, "dup1")] == ["pending_new", "new"]
        assert mock.by_client_id("dup1") is not None
    finally:
        ex.proc.kill9()


async def test_unknown_submissions_are_resolved_by_lookup_never_resent(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext, mock: MockBinance
) -> None:
    settings = live_settings(tmp_path, nats_server.url, mock)
    async with executor(settings, nc, tmp_path / "executor.log"):
        mock.drop_creates = 1  # accepted by the venue, the answer never comes
        r = await request(nc, limit("lost1"))
        assert r["state"] == "unknown" and "outcome unknown" in r["reason"], r
        log = await final(js, "lost1", "new")
        assert [u.state for u in updates(log, "lost1")] == ["pending_new", "unknown", "new"]
        assert mock.creates == 1 and posts(mock) == 1
        mock.fail_creates = 1  # 503 before accepting: unknown, not at the venue
        r = await request(nc, limit("lost2"))
        assert r["state"] == "unknown", r
        log = await final(js, "lost2", "rejected")
        assert updates(log, "lost2")[-1].reason == (
            "submission outcome unknown and the order is not at the venue"
        )
        assert mock.by_client_id("lost2") is None and posts(mock) == 2
        mock.reject_creates = 1
        r = await request(nc, limit("rej1"))
        assert r["state"] == "rejected" and "insufficient balance" in r["reason"], r


async def test_timeout_with_partial_fill_and_cancel_racing_a_fill(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext, mock: MockBinance
) -> None:
    settings = live_settings(tmp_path, nats_server.url, mock)
    async with executor(settings, nc, tmp_path / "executor.log"):
        r = await request(nc, limit("to1", qty="0.01", timeout_s=1.0))
        assert r["state"] == "new", r
        mock.fill("to1", "0.004")
        log = await final(js, "to1", "expired")
        end = updates(log, "to1")[-1]
        assert end.filled == pytest.approx(0.004)
        assert end.reason == "timeout: partially filled 0.004 of 0.01, rest cancelled"
        assert mock.by_client_id("to1").status == "CANCELED"  # type: ignore[union-attr]
        # the cancel arrives after the venue filled the order: the fill wins
        r = await request(nc, limit("race1", qty="0.02", price="64000"))
        mock.fill("race1")
        r = await request(nc, live("race1", "cancel"))
        assert r["state"] == "filled" and r["filled"] == pytest.approx(0.02), r
        log = await final(js, "race1", "filled")
        states = [u.state for u in updates(log, "race1")]
        assert states == ["pending_new", "new", "pending_cancel", "filled"]
        fills = [(f.client_order_id, f.size) for f in log if isinstance(f, Fill)]
        assert fills == [("to1", 0.004), ("race1", 0.02)]


async def test_restart_with_open_orders_reconciles_states_positions_and_clickhouse(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext, mock: MockBinance
) -> None:
    settings = live_settings(tmp_path, nats_server.url, mock)
    sink = Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log").start()
    ex = Executor(settings, tmp_path / "executor.log")
    try:
        await ex.start(nc)
        for cid in ("o1", "o2", "o3", "o4"):
            assert (await request(nc, limit(cid, qty="0.01", price="60000")))["state"] == "new"
        ex.proc.kill9()
        # while the executor is down the venue moves on
        mock.fill("o1", price="60000")
        mock.fill("o2", "0.004", price="60000")
        mock.by_client_id("o3").status = "CANCELED"  # type: ignore[union-attr]
        await ex.start(nc)
        for cid, state in (("o1", "filled"), ("o2", "partially_filled"), ("o3", "canceled"),
                           ("o4", "new")):  # fmt: skip
            log = await final(js, cid, state)
        assert mock.creates == 4
        pos = last_position(log)
        assert pos.size == pytest.approx(0.014)
        assert pos.avg_price == pytest.approx(60000)
        assert pos.fees == pytest.approx(0.014 * 60000 * 0.001)
        # everything lands in ClickHouse through the existing sink
        assert await wait_rows(nc, "SELECT count() FROM fills WHERE account = 'live'", 2, 60) == 2
        q = (
            "SELECT client_order_id, argMax(state, stream_seq) FROM orders "
            "WHERE account = 'live' GROUP BY client_order_id ORDER BY client_order_id"
        )
        assert await wait_rows(nc, "SELECT count() FROM positions WHERE account = 'live'", 2, 60)
        ups = [u for u in log if isinstance(u, OrderUpdate)]
        stored = await wait_rows(nc, "SELECT count() FROM orders WHERE account = 'live'",
                                 len(ups), 60)  # fmt: skip
        assert stored == len(ups)
        res = await sql.query(nc, q)
        assert res.rows == [["o1", "filled"], ["o2", "partially_filled"], ["o3", "canceled"],
                            ["o4", "new"]]  # fmt: skip
        res = await sql.query(nc, "SELECT count() FROM order_commands WHERE account = 'live'")
        assert res.rows[0][0] >= 4
        assert len({(u.client_order_id, u.state, u.filled) for u in ups}) == len(ups)
    finally:
        ex.proc.kill9()
        assert sink.stop() == 0
