"""The executor on the paper venue over a real nats-server: a scripted MARKET stream, hand-
computed fills and PnL, idempotent commands, timeouts, every risk rejection, the kill switch."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from executor.worker import main as executor_main
from streams import schemas, subjects
from streams.bus.runtime import Worker
from streams.bus.server import NatsServer
from streams.provision import STREAM_EXEC
from streams.schemas import BBO, Depth, Fill, OrderCommand, OrderUpdate, Position, Trade
from tests.conftest import make_settings
from tests.workers import inprocess

PAPER = {"venue": "paper", "market_venue": "binance", "maker_fee": 0.001, "taker_fee": 0.002,
         "instruments": {"BTC-USDT": {"tick": "0.01", "lot": "0.001"}}}  # fmt: skip


def cmd(cid: str, action: str = "new", account: str = "paper", **kw: Any) -> OrderCommand:
    now = time.time_ns()
    base: dict[str, Any] = {"venue": "binance", "symbol": "BTC-USDT"}
    return OrderCommand(account=account, ts_event=now, ts_recv=now, action=action,  # type: ignore[arg-type]
                        client_order_id=cid, **{**base, **kw})  # fmt: skip


async def request(nc: Client, c: OrderCommand) -> dict[str, Any]:
    reply = await nc.request(subjects.exec_req(c.account), schemas.encode(c), timeout=15)
    return orjson.loads(reply.data)


async def exec_log(js: JetStreamContext, subject: str = "exec.>") -> list[Any]:
    """Every EXEC message on ``subject`` so far, decoded, in stream order."""
    cfg = ConsumerConfig(filter_subject=subject, ack_policy=AckPolicy.NONE,
                         deliver_policy=DeliverPolicy.ALL, inactive_threshold=10.0)  # fmt: skip
    psub = await js.pull_subscribe(subject, stream=STREAM_EXEC, config=cfg)
    out: list[Any] = []
    left = int((await psub.consumer_info()).num_pending or 0)
    while left > 0:
        for msg in await psub.fetch(min(left, 500), timeout=5):
            left -= 1
            if not msg.subject.startswith("exec.ctl."):
                out.append(schemas.decode_exec(msg.data))
    await psub.unsubscribe()
    return out


async def wait_until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = await check() if asyncio.iscoroutinefunction(check) else check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def updates(log: list[Any], cid: str) -> list[OrderUpdate]:
    return [m for m in log if isinstance(m, OrderUpdate) and m.client_order_id == cid]


def last_position(log: list[Any], symbol: str = "BTC-USDT") -> Position:
    return [m for m in log if isinstance(m, Position) and m.symbol == symbol][-1]


async def market(nc: Client, *msgs: schemas.Base) -> None:
    for m in msgs:
        await nc.publish(subjects.market(m.__struct_config__.tag, m.venue, m.symbol),  # type: ignore[attr-defined]
                         schemas.encode(m))  # fmt: skip
    await nc.flush()
    await asyncio.sleep(0.15)  # the executor's market subscription runs beside the request one


def _ts() -> dict[str, Any]:
    n = time.time_ns()
    return {"venue": "binance", "symbol": "BTC-USDT", "ts_event": n, "ts_recv": n}


def depth(bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> Depth:
    return Depth(**_ts(), bids=bids, asks=asks, seq=1, levels=len(bids))


def trade(price: float, size: float, tid: str) -> Trade:
    return Trade(**_ts(), id=tid, price=price, size=size, side="buy")


@asynccontextmanager
async def running(settings: Any) -> AsyncIterator[Worker]:
    """The executor in this process, once its subscriptions and consumer are up."""
    async with inprocess("executor", executor_main, settings) as w:
        await wait_until(lambda: w.health.state == "ok")
        yield w


@pytest.fixture
def paper_settings(tmp_path: Path, nats_server: NatsServer) -> Any:
    limits = {"max_order_notional": 1000.0, "max_position": {"*": 5.0}, "max_open_orders": 2,
              "max_orders_per_s": 2, "allow_symbols": ["BTC-USDT"]}  # fmt: skip
    risky = {**PAPER, "risk": limits}
    return make_settings(tmp_path, nats_server.url, executor={
        "accounts": {"paper": PAPER, "risky": risky}, "reconcile_interval_s": 0.5,
        "position_interval_s": 0.2})  # fmt: skip


async def test_paper_fills_and_pnl_match_hand_computed_values(
    paper_settings: Any, nc: Client, js: JetStreamContext
) -> None:
    async with running(paper_settings):
        await market(nc, depth([(99.0, 1.0), (98.0, 2.0)], [(100.0, 1.0), (101.0, 2.0)]))
        # market buy 1.5 walks the asks: 1.0 @ 100 + 0.5 @ 101, taker fee 0.2 %
        r = await request(nc, cmd("m1", side="buy", order_type="market", quantity="1.5"))
        assert r["accepted"] and r["state"] == "filled" and r["filled"] == 1.5, r
        # resting sell 1.0 @ 103: a print at 103 is not through it; 103.5 x 0.4 and 104 x 5
        r = await request(nc, cmd("l1", side="sell", order_type="limit", quantity="1",
                                  price="103.004"))  # fmt: skip
        assert r["state"] == "new", r
        await market(nc, trade(103.0, 2.0, "t1"), trade(103.5, 0.4, "t2"), trade(104.0, 5, "t3"))
        await market(nc, BBO(**_ts(), bid_price=104.0, bid_size=1, ask_price=106.0, ask_size=1))

        async def done() -> list[Any]:
            log = await exec_log(js)
            ups = updates(log, "l1")
            pos = [p for p in log if isinstance(p, Position) and p.mark_price == 105.0]
            return log if ups and ups[-1].state == "filled" and pos else []

        log = await wait_until(done)
    fills = [(f.client_order_id, f.price, f.size, f.liquidity) for f in log if isinstance(f, Fill)]
    assert fills == [("m1", 100.0, 1.0, "taker"), ("m1", 101.0, 0.5, "taker"),
                     ("l1", 103.0, 0.4, "maker"), ("l1", 103.0, 0.6, "maker")]  # fmt: skip
    assert [u.state for u in updates(log, "l1")] == ["new", "partially_filled", "filled"]
    assert updates(log, "l1")[0].price == 103.0  # 103.004 rounded to the 0.01 tick
    fees = 150.5 * 0.002 + 0.4 * 103 * 0.001 + 0.6 * 103 * 0.001
    avg = 150.5 / 1.5
    pos = last_position(log)
    assert pos.size == pytest.approx(0.5)
    assert pos.avg_price == pytest.approx(avg)
    assert pos.fees == pytest.approx(fees)
    assert pos.realized_pnl == pytest.approx((103 - avg) * 1.0 - fees)
    assert pos.mark_price == 105.0
    assert pos.unrealized_pnl == pytest.approx((105 - avg) * 0.5)


async def test_same_command_twice_is_one_order(
    paper_settings: Any, nc: Client, js: JetStreamContext
) -> None:
    async with running(paper_settings):
        await market(nc, depth([(99.0, 5.0)], [(100.0, 5.0)]))  # a mark: orders need one
        c = cmd("d1", side="buy", order_type="limit", quantity="0.5", price="90")
        first, second = await request(nc, c), await request(nc, c)
        assert first["accepted"] and not first.get("duplicate")
        assert second["duplicate"] and second["state"] == "new"
        # and through the stream, with the same Nats-Msg-Id as the executor's own record
        for _ in range(2):
            await js.publish(subjects.exec_cmd("paper"), schemas.encode(c),
                             headers={subjects.H_MSG_ID: "paper:d1:new"})  # fmt: skip
        await asyncio.sleep(0.5)
        log = await exec_log(js)
    assert [u.state for u in updates(log, "d1")] == ["new"]


async def test_timeouts_cancel_and_report_partial_fills(
    paper_settings: Any, nc: Client, js: JetStreamContext
) -> None:
    async with running(paper_settings):
        await market(nc, depth([(99.0, 1.0)], [(100.0, 1.0)]))
        await request(nc, cmd("t-none", side="buy", order_type="limit", quantity="1",
                              price="90", timeout_s=0.3))  # fmt: skip
        await request(nc, cmd("t-part", side="buy", order_type="limit", quantity="1",
                              price="95", timeout_s=0.6))  # fmt: skip
        await market(nc, trade(94.0, 0.3, "x1"))

        async def settled() -> list[Any]:
            log = await exec_log(js)
            ends = [updates(log, c)[-1].state for c in ("t-none", "t-part")]
            return log if ends == ["expired", "expired"] else []

        log = await wait_until(settled)
    none, part = updates(log, "t-none")[-1], updates(log, "t-part")[-1]
    assert none.reason == "timeout: cancelled unfilled" and none.filled == 0
    assert part.filled == pytest.approx(0.3)
    assert part.reason == "timeout: partially filled 0.3 of 1, rest cancelled"
    assert [u.state for u in updates(log, "t-part")] == [
        "new", "partially_filled", "pending_cancel", "expired"]  # fmt: skip


async def test_every_risk_check_and_validation_says_why(
    paper_settings: Any, nc: Client, js: JetStreamContext
) -> None:
    async with running(paper_settings):
        await market(nc, depth([(99.0, 10.0)], [(100.0, 10.0)]))
        a = "risky"

        async def reason(cid: str, **kw: Any) -> str:
            r = await request(nc, cmd(cid, account=a, **kw))
            assert not r["accepted"], r
            return str(r["reason"])

        buy = {"side": "buy", "order_type": "limit"}
        assert "notional 1100.00 exceeds max_order_notional 1000" in await reason(
            "r1", **buy, quantity="11", price="100"
        )
        assert "not in the allow-list" in await reason(
            "r2", **buy, symbol="ETH-USDT", quantity="1", price="100"
        )
        assert "reduce-only buy 1 would not reduce position 0" in await reason(
            "r3", **buy, quantity="1", price="90", reduce_only=True
        )
        ok = await request(nc, cmd("r4", account=a, side="buy", order_type="market",
                                   quantity="4"))  # fmt: skip
        assert ok["state"] == "filled", ok
        assert "would exceed max_position 5" in await reason("r5", **buy, quantity="2", price="90")
        await request(nc, cmd("r6", account=a, **buy, quantity="0.1", price="90"))
        assert "order rate above max_orders_per_s 2" in await reason(
            "r7", **buy, quantity="0.1", price="90"
        )
        await asyncio.sleep(1.05)
        await request(nc, cmd("r8", account=a, **buy, quantity="0.1", price="90"))
        assert "max_open_orders 2 reached" in await reason("r9", **buy, quantity="0.1", price="90")
        for cid in ("r6", "r8"):
            r = await request(nc, cmd(cid, "cancel", account=a))
            assert r["state"] == "canceled", r
        # validation
        assert "a limit order needs a price" in await reason("v1", **buy, quantity="1")
        assert "rounds to 0 at lot size 0.001" in await reason(
            "v2", **buy, quantity="0.0004", price="90"
        )
        assert "not a decimal number" in await reason("v3", **buy, quantity="abc", price="90")
        assert "post-only order would take liquidity" in await reason(
            "v4", **buy, quantity="0.1", price="100", time_in_force="POST_ONLY"
        )
        assert "client_order_id must be" in await reason("bad id!", **buy, quantity="1")
        assert "side and order_type are required" in await reason("v5", quantity="1")
        r = await request(nc, cmd("v6", **buy, symbol="SOL-USDT", quantity="1", price="1"))
        assert "unknown instrument binance/SOL-USDT" in r["reason"]
        await asyncio.sleep(0.2)
        log = await exec_log(js)
        dlq = await js.pull_subscribe("dlq.executor", stream="DLQ")
        dead = await dlq.fetch(10, timeout=2)
    rejected = {u.client_order_id: u.reason for u in log
                if isinstance(u, OrderUpdate) and u.state == "rejected"}  # fmt: skip
    assert set(rejected) >= {"r1", "r2", "r3", "r5", "r7", "r9", "v1", "v2", "v3", "v4"}
    reasons = sorted(m.headers[subjects.H_REASON] for m in dead if m.headers)
    assert any("client_order_id must be" in r for r in reasons), reasons
    assert any("side and order_type are required" in r for r in reasons), reasons


async def test_kill_switch_cancels_everything_and_blocks_new_orders(
    paper_settings: Any, nc: Client, js: JetStreamContext
) -> None:
    async with running(paper_settings):
        await market(nc, depth([(99.0, 5.0)], [(100.0, 5.0)]))
        for i in range(3):
            r = await request(nc, cmd(f"k{i}", side="buy", order_type="limit", quantity="0.1",
                                      price=str(90 + i)))  # fmt: skip
            assert r["state"] == "new", r
        await js.publish(subjects.EXEC_HALT, orjson.dumps({"halt": True, "reason": "drill"}))

        async def all_cancelled() -> list[Any]:
            log = await exec_log(js)
            return (
                log if all(updates(log, f"k{i}")[-1].state == "canceled" for i in range(3)) else []
            )

        await wait_until(all_cancelled)
        r = await request(nc, cmd("k9", side="buy", order_type="limit", quantity="0.1", price="90"))
        assert not r["accepted"] and r["reason"] == "trading halted: drill"
        # {"halt": false} on the halt subject no longer resumes (anyone who may trade may
        # publish there); the operator's exec.ctl.resume does
        await js.publish(subjects.EXEC_HALT, orjson.dumps({"halt": False}))
        await asyncio.sleep(0.3)
        r = await request(nc, cmd("k10", side="buy", order_type="limit", quantity="0.1",
                                  price="90"))  # fmt: skip
        assert not r["accepted"] and r["reason"] == "trading halted: drill", r
        await js.publish(subjects.EXEC_RESUME, orjson.dumps({"reason": "drill over"}))
        await asyncio.sleep(0.3)
        r = await request(nc, cmd("k11", side="buy", order_type="limit", quantity="0.1",
                                  price="90"))  # fmt: skip
        assert r["accepted"], r


async def test_restart_restores_resting_orders_and_positions(
    paper_settings: Any, nc: Client, js: JetStreamContext
) -> None:
    async with running(paper_settings):
        await market(nc, depth([(99.0, 5.0)], [(100.0, 5.0)]))
        await request(nc, cmd("p1", side="buy", order_type="market", quantity="1"))
        r = await request(nc, cmd("p2", side="sell", order_type="limit", quantity="1",
                                  price="110"))  # fmt: skip
        assert r["state"] == "new", r
    async with running(paper_settings):  # a new process: state from the EXEC stream
        again = await request(nc, cmd("p2", side="sell", order_type="limit", quantity="1",
                                      price="110"))  # fmt: skip
        assert again["duplicate"] and again["state"] == "new", again
        await market(nc, trade(111.0, 3.0, "z1"))
        log = await wait_until(functools.partial(_filled, js, "p2"))
    pos = last_position(log)
    assert pos.size == 0 and pos.fees == pytest.approx(100 * 0.002 + 110 * 0.001)
    assert pos.realized_pnl == pytest.approx(10.0 - pos.fees)


async def _filled(js: JetStreamContext, cid: str) -> list[Any]:
    log = await exec_log(js)
    ups = updates(log, cid)
    return log if ups and ups[-1].state == "filled" else []


async def test_replace_and_cancel_all(
    paper_settings: Any, nc: Client, js: JetStreamContext
) -> None:
    async with running(paper_settings):
        await market(nc, depth([(99.0, 5.0)], [(100.0, 5.0)]))
        await request(nc, cmd("rp", side="buy", order_type="limit", quantity="1", price="95"))
        r = await request(nc, cmd("rp", "replace", price="96.5", quantity="2"))
        assert r["accepted"] and r["client_order_id"] == "rp.r1" and r["related"] == ["rp"], r
        r = await request(nc, cmd("rp", "replace", price="97"))
        assert not r["accepted"] and r["reason"] == "cannot replace: order canceled", r
        await request(nc, cmd("x1", side="sell", order_type="limit", quantity="1", price="120"))
        r = await request(nc, cmd("all-1", "cancel_all", symbol="*"))
        assert sorted(r["related"]) == ["rp.r1", "x1"], r
        log = await exec_log(js)
    old, new = updates(log, "rp")[-1], updates(log, "rp.r1")
    assert old.state == "canceled" and old.reason == "replaced by rp.r1"
    assert (new[0].state, new[0].price, new[0].quantity) == ("new", 96.5, 2.0)
    assert new[-1].state == "canceled" and new[-1].reason == "cancel-all"
    assert updates(log, "x1")[-1].state == "canceled"
