"""Execution algorithms on the paper venue over a real nats-server: each algorithm against a
scripted market reaches its schedule; pause/resume/amend/cancel; clear rejections; TCA rows."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from executor.algo.tca import figures
from streams import schemas, subjects
from streams.bus.server import NatsServer
from streams.schemas import BBO, AlgoCommand, Depth, Gap, OrderUpdate, ParentUpdate, Tca
from streams.settings import to_toml_env
from tests.conftest import make_settings
from tests.executor.test_paper import (
    PAPER,
    cmd,
    depth,
    exec_log,
    market,
    request,
    running,
    trade,
    wait_until,
)
from tests.workers import ROOT

NS = 1_000_000_000


@pytest.fixture
def algo_settings(tmp_path: Path, nats_server: NatsServer) -> Any:
    return make_settings(tmp_path, nats_server.url, executor={
        "accounts": {"paper": PAPER}, "timer_interval_s": 0.05,
        "algo": {"min_child_interval_s": 0.1, "end_grace_s": 1.0},
    })  # fmt: skip


def algo(pid: str, action: str = "new", **kw: Any) -> AlgoCommand:
    now = time.time_ns()
    base: dict[str, Any] = {"venue": "binance", "symbol": "BTC-USDT", "account": "paper"}
    return AlgoCommand(ts_event=now, ts_recv=now, action=action, parent_id=pid,  # type: ignore[arg-type]
                       **{**base, **kw})  # fmt: skip


async def ask(nc: Client, c: AlgoCommand) -> dict[str, Any]:
    reply = await nc.request(subjects.exec_req(c.account), schemas.encode(c), timeout=15)
    return orjson.loads(reply.data)


def parents(log: list[Any], pid: str) -> list[ParentUpdate]:
    return [m for m in log if isinstance(m, ParentUpdate) and m.parent_id == pid]


def children(log: list[Any], pid: str) -> dict[str, OrderUpdate]:
    """The last update of each child of ``pid``, by client order id."""
    out: dict[str, OrderUpdate] = {}
    for m in log:
        if isinstance(m, OrderUpdate) and m.client_order_id.rpartition(".")[0] == pid:
            out[m.client_order_id] = m
    return out


def first_sent(log: list[Any], pid: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in log:
        if isinstance(m, OrderUpdate) and m.client_order_id.rpartition(".")[0] == pid:
            out.setdefault(m.client_order_id, m.ts_event)
    return out


async def final(js: JetStreamContext, pid: str, timeout: float = 15.0) -> list[Any]:
    async def check() -> list[Any]:
        log = await exec_log(js)
        recs = parents(log, pid)
        done = recs and recs[-1].state in ("filled", "canceled", "expired")
        tca = [m for m in log if isinstance(m, Tca) and m.scope == "parent" and m.id == pid]
        return log if done and tca else []

    return await wait_until(check, timeout)


BOOK = depth([(100.0, 50.0)], [(100.5, 50.0)])


async def test_twap_sends_equal_slices_on_time_and_tca_is_exact(
    algo_settings: Any, nc: Client, js: JetStreamContext
) -> None:
    async with running(algo_settings):
        await market(nc, BOOK)
        start = time.time_ns()
        r = await ask(nc, algo("tw1", algo="twap", side="buy", quantity="1", start_ts=start,
                               end_ts=start + 2 * NS, slices=4))  # fmt: skip
        assert r["accepted"] and r["state"] == "working", r
        log = await final(js, "tw1")
    kids = children(log, "tw1")
    assert list(kids) == ["tw1.1", "tw1.2", "tw1.3", "tw1.4"]
    assert all(k.state == "filled" and k.filled == 0.25 for k in kids.values())
    # slice k is due 0.5 s * (k - 1) after the start: sent within 0.4 s of it (timer 0.05 s)
    for k, ts in enumerate(first_sent(log, "tw1").values()):
        assert 0 <= (ts - start) / NS - 0.5 * k < 0.4, (k, (ts - start) / NS)
    rec = parents(log, "tw1")[-1]
    assert (rec.state, rec.filled, rec.children, rec.avg_price) == ("filled", 1.0, 4, 100.5)
    tca = [m for m in log if isinstance(m, Tca) and m.id == "tw1"][-1]
    want = figures("buy", 1.0, [(100.5, 0.25, 100.5 * 0.25 * 0.002)] * 4, 100.25, 0, 0, 100.25)
    assert tca.arrival_mid == 100.25 and tca.children == 4 and tca.fill_ratio == 1.0
    assert tca.slippage_bps == pytest.approx(want.slippage_bps)  # (100.5-100.25)/100.25*1e4
    assert tca.fees == pytest.approx(0.201) and tca.shortfall == pytest.approx(0.25 + 0.201)
    assert tca.ack_latency_ms is not None and tca.time_to_fill_s is not None
    orders = [m for m in log if isinstance(m, Tca) and m.scope == "order"]
    assert sorted(m.id for m in orders) == ["tw1.1", "tw1.2", "tw1.3", "tw1.4"]


async def test_vwap_without_history_runs_a_stated_flat_profile(
    algo_settings: Any, nc: Client, js: JetStreamContext
) -> None:
    async with running(algo_settings):  # no sink: the profile query has no answer
        await market(nc, BOOK)
        start = time.time_ns()
        r = await ask(nc, algo("vw1", algo="vwap", side="sell", quantity="0.9", start_ts=start,
                               end_ts=start + int(1.5 * NS), slices=3))  # fmt: skip
        assert r["accepted"], r
        log = await final(js, "vw1")
    rec = parents(log, "vw1")
    assert rec[0].profile == pytest.approx([1 / 3] * 3) and "flat" in rec[0].reason
    kids = children(log, "vw1")
    assert [k.filled for k in kids.values()] == [0.3, 0.3, 0.3]
    assert rec[-1].state == "filled" and rec[-1].filled == 0.9


async def test_pov_follows_a_share_of_traded_volume(
    algo_settings: Any, nc: Client, js: JetStreamContext
) -> None:
    async with running(algo_settings):
        await market(nc, BOOK)
        r = await ask(nc, algo("pv1", algo="pov", side="buy", quantity="1", participation=0.25))
        assert r["accepted"], r
        await asyncio.sleep(0.3)
        assert not children(await exec_log(js), "pv1")  # nothing traded yet: nothing sent
        for i in range(4):  # 4 x 0.5 traded: target 0.125, 0.25, 0.375, 0.5
            await market(nc, trade(100.2, 0.5, f"t{i}"))
            await asyncio.sleep(0.3)
        log = await exec_log(js)
        assert parents(log, "pv1")[-1].filled == pytest.approx(0.5)
        assert parents(log, "pv1")[-1].market_volume == pytest.approx(2.0)
        for i in range(4, 8):
            await market(nc, trade(100.2, 0.5, f"t{i}"))
            await asyncio.sleep(0.3)
        log = await final(js, "pv1")
    recs = parents(log, "pv1")
    # at every record the parent had done at most its share (plus less than one lot)
    assert all(p.filled <= 0.25 * p.market_volume + 0.001 for p in recs)
    assert recs[-1].state == "filled" and recs[-1].filled == 1.0


async def test_iceberg_shows_only_the_display_and_refills(
    algo_settings: Any, nc: Client, js: JetStreamContext
) -> None:
    async with running(algo_settings):
        await market(nc, BOOK)
        r = await ask(nc, algo("ice1", algo="iceberg", side="buy", quantity="1", display="0.3",
                               limit_price="100.1"))  # fmt: skip
        assert r["accepted"], r
        for i in range(4):
            await wait_until(live_child(js, "ice1", i + 1))
            await market(nc, trade(100.0, 5.0, f"x{i}"))  # prints through 100.1: fills it
        log = await final(js, "ice1")
    kids = children(log, "ice1")
    assert [k.quantity for k in kids.values()] == [0.3, 0.3, 0.3, 0.1]
    assert all(k.price == 100.1 and k.state == "filled" for k in kids.values())
    assert parents(log, "ice1")[-1].filled == 1.0


def live_child(js: JetStreamContext, pid: str, n: int) -> Callable[[], Awaitable[bool]]:
    """A check for wait_until: child n of ``pid`` is resting at the venue."""

    async def check() -> bool:
        k = children(await exec_log(js), pid).get(f"{pid}.{n}")
        return k is not None and k.state in ("new", "partially_filled")

    return check


def bbo(bid: float, ask: float) -> BBO:
    n = time.time_ns()
    return BBO(venue="binance", symbol="BTC-USDT", ts_event=n, ts_recv=n, bid_price=bid,
               bid_size=5, ask_price=ask, ask_size=5)  # fmt: skip


async def test_peg_joins_reprices_skips_a_gap_and_crosses_at_the_deadline(
    algo_settings: Any, nc: Client, js: JetStreamContext
) -> None:
    async with running(algo_settings):
        await market(nc, bbo(100.0, 100.5))
        start = time.time_ns()
        r = await ask(nc, algo("pg1", algo="peg", side="buy", quantity="0.5",
                               end_ts=start + 3 * NS))  # fmt: skip
        assert r["accepted"], r
        await wait_until(live_child(js, "pg1", 1))
        await market(nc, bbo(100.2, 100.5))  # the touch moves: cancel, re-peg at 100.2
        await wait_until(live_child(js, "pg1", 2))
        n = time.time_ns()
        await market(nc, Gap(venue="binance", symbol="BTC-USDT", ts_event=n, ts_recv=n,
                             reason="sequence", channel="book"))  # fmt: skip
        await market(nc, trade(100.1, 0.2, "p1"))  # through 100.2: 0.2 fills the child
        await asyncio.sleep(0.4)
        log = await exec_log(js)
        assert "pg1.3" not in children(log, "pg1")  # in a gap: no re-peg, child left
        log = await final(js, "pg1")
    kids = children(log, "pg1")
    assert [(k.price, k.state) for k in kids.values()][:2] == [(100.0, "canceled"),
                                                             (100.2, "canceled")]  # fmt: skip
    assert kids["pg1.2"].filled == 0.2
    last = list(kids.values())[-1]  # after the deadline: the rest crossed at the ask
    assert last.order_type == "market" and last.filled == pytest.approx(0.3)
    rec = parents(log, "pg1")[-1]
    assert rec.state == "filled" and rec.filled == 0.5


async def test_pause_resume_amend_cancel_and_rejections(
    algo_settings: Any, nc: Client, js: JetStreamContext
) -> None:
    async with running(algo_settings):
        await market(nc, BOOK)
        start = time.time_ns()
        r = await ask(nc, algo("c1", algo="twap", side="buy", quantity="1", start_ts=start,
                               end_ts=start + 4 * NS, slices=8))  # fmt: skip
        assert r["accepted"], r
        assert (await ask(nc, algo("c1", algo="twap", side="buy", quantity="1",
                                   end_ts=start + 4 * NS)))["duplicate"]  # fmt: skip
        await asyncio.sleep(0.2)
        pause = algo("c1", "pause")
        assert (await ask(nc, pause))["state"] == "paused"
        sent = len(children(await exec_log(js), "c1"))
        await asyncio.sleep(1.2)
        assert len(children(await exec_log(js), "c1")) == sent  # paused: nothing sent
        r = await ask(nc, algo("c1", "amend", quantity="2"))
        assert r["accepted"] and r["state"] == "paused", r
        r = await ask(nc, algo("c1", "amend", slices=3))
        assert not r["accepted"] and "slices cannot be amended" in r["reason"], r
        assert (await ask(nc, algo("c1", "resume")))["state"] == "working"
        again = await ask(nc, pause)  # the same pause replayed: older than the resume
        assert again["duplicate"] and again["state"] == "working", again
        await asyncio.sleep(0.5)  # catches up with the schedule of 2
        r = await ask(nc, algo("c1", "cancel"))
        assert r["accepted"] and r["state"] == "canceled", r
        filled = r["filled"]
        assert 0.5 <= filled < 2.0
        r = await ask(nc, algo("c1", "resume"))
        assert not r["accepted"] and "already canceled" in r["reason"], r
        for bad, why in [
            (algo("x1", "pause"), "unknown parent_id"),
            (algo("x2", algo="twap", side="buy", quantity="1"), "needs end_ts"),
            (algo("x3", algo="iceberg", side="buy", quantity="1"), "needs display"),
            (algo("x4", algo="pov", side="buy", quantity="1", participation=2.0), "participation"),
            (algo("x5", algo="twap", side="buy", quantity="1", end_ts=start + NS,
                  symbol="ETH-USDT"), "unknown instrument"),
        ]:  # fmt: skip
            r = await ask(nc, bad)
            assert not r["accepted"] and why in r["reason"], (why, r)
        # as an attacker on the same bus: a child id by hand, a parent over an order's ids,
        # a command for another account through this account's subject
        r = await request(nc, cmd("c1.99", side="buy", order_type="limit", quantity="0.001",
                                  price="90"))  # fmt: skip
        assert not r["accepted"] and "reserved for parent c1's children" in r["reason"], r
        r = await request(nc, cmd("zz.1", side="buy", order_type="limit", quantity="0.001",
                                  price="90"))  # fmt: skip
        assert r["accepted"], r
        r = await ask(nc, algo("zz", algo="twap", side="buy", quantity="1",
                               end_ts=time.time_ns() + 60 * NS))  # fmt: skip
        assert not r["accepted"] and "clashes with order zz.1" in r["reason"], r
        reply = await nc.request(subjects.exec_req("paper"), schemas.encode(
            algo("c1", "resume", account="other")), timeout=15)  # fmt: skip
        body = orjson.loads(reply.data)
        assert not body["accepted"] and "does not match" in body["reason"], body
        log = await final(js, "c1")
    rec = parents(log, "c1")
    assert rec[-1].state == "canceled" and rec[-1].quantity == 2.0
    assert rec[-1].filled == pytest.approx(filled)


async def test_routing_sends_children_to_the_cheapest_venue_after_fees_and_skips_a_gap(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    settings = make_settings(tmp_path, nats_server.url, executor={
        "accounts": {"paper": PAPER}, "timer_interval_s": 0.05,
        "algo": {"min_child_interval_s": 0.1, "venue_fees": {"binance": 0.001, "okx": 0.0002}},
    })  # fmt: skip
    n = time.time_ns()
    okx_book = Depth(venue="okx", symbol="BTC-USDT", ts_event=n, ts_recv=n, bids=[(99.9, 10.0)],
                     asks=[(100.05, 10.0)], seq=1, levels=1)  # fmt: skip
    async with running(settings):
        # effective asks: binance 100.0 * 1.001 = 100.1, okx 100.05 * 1.0002 = 100.07
        await market(nc, depth([(99.9, 10.0)], [(100.0, 10.0)]), okx_book)
        start = time.time_ns()
        r = await ask(nc, algo("rt1", algo="twap", side="buy", quantity="0.3", start_ts=start,
                               end_ts=start + 3 * NS, slices=3,
                               venues=["binance", "okx"]))  # fmt: skip
        assert r["accepted"], r

        def sent(n: int) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return len(children(await exec_log(js), "rt1")) >= n

            return check

        await wait_until(sent(1))
        n = time.time_ns()
        await market(nc, Gap(venue="okx", symbol="BTC-USDT", ts_event=n, ts_recv=n,
                             reason="sequence", channel="book"))  # fmt: skip
        await wait_until(sent(2))
        await market(nc, okx_book)  # the order-book service publishes okx again: usable
        log = await final(js, "rt1")
    kids = children(log, "rt1")
    assert [(k.venue, k.filled) for k in kids.values()] == [
        ("okx", 0.1), ("binance", 0.1), ("okx", 0.1)]  # fmt: skip
    assert [k.avg_price for k in kids.values()] == [100.05, 100.0, 100.05]
    assert parents(log, "rt1")[-1].filled == pytest.approx(0.3)


async def test_an_order_sent_outside_a_parent_gets_its_own_tca(
    algo_settings: Any, nc: Client, js: JetStreamContext
) -> None:
    async with running(algo_settings):
        await market(nc, BOOK)  # mid 100.25
        r = await request(nc, cmd("solo1", side="buy", order_type="limit", quantity="0.5",
                                  price="100.1"))  # fmt: skip
        assert r["accepted"] and r["state"] == "new", r
        await market(nc, trade(100.0, 2.0, "s1"))  # prints through 100.1: fills as maker
        r = await request(nc, cmd("solo2", side="buy", order_type="limit", quantity="1",
                                  price="abc"))  # fmt: skip
        assert not r["accepted"]

        async def tca() -> list[Tca]:
            return [m for m in await exec_log(js) if isinstance(m, Tca) and m.id == "solo1"]

        got = (await wait_until(tca))[0]
    # maker fill 0.5 @ 100.1, fee 0.1 % = 0.05005; the market traded 2 @ 100.0 meanwhile
    assert (got.scope, got.parent_id, got.filled, got.avg_price) == ("order", "", 0.5, 100.1)
    assert got.arrival_mid == 100.25 and got.interval_vwap == 100.0
    assert got.slippage_bps == pytest.approx((100.1 - 100.25) / 100.25 * 1e4)
    assert got.fees == pytest.approx(0.05005) and got.ack_latency_ms is not None
    assert got.time_to_fill_s is not None and got.time_to_fill_s >= 0
    assert not [m for m in await exec_log(js) if isinstance(m, Tca) and m.id == "solo2"]


async def test_jetmarket_exec_algo_sends_commands_from_the_command_line(
    algo_settings: Any, nc: Client, js: JetStreamContext
) -> None:
    env = {**os.environ, **to_toml_env(algo_settings)}

    def cli(*argv: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "executor", "algo", *argv], cwd=ROOT,
                              env=env, capture_output=True, timeout=60)  # fmt: skip

    async with running(algo_settings):
        await market(nc, BOOK)
        out = await asyncio.to_thread(cli, "new", "cli1", "--symbol", "BTC-USDT", "--algo",
                                      "twap", "--side", "buy", "--quantity", "0.2",
                                      "--duration", "60", "--slices", "2")  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert orjson.loads(out.stdout)["state"] == "working"
        out = await asyncio.to_thread(cli, "cancel", "cli1")
        assert out.returncode == 0 and orjson.loads(out.stdout)["state"] == "canceled"
        out = await asyncio.to_thread(cli, "new", "cli2", "--symbol", "BTC-USDT", "--algo",
                                      "twap", "--side", "buy", "--quantity", "0.2")  # fmt: skip
        assert out.returncode == 1 and b"needs end_ts" in out.stdout
        log = await final(js, "cli1")
    assert parents(log, "cli1")[-1].filled == pytest.approx(0.1)  # the first slice, then cancel
