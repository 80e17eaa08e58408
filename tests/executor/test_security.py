"""The executor under attack (issue 15, items 6-10), each on a real nats-server: the
account comes from the subject, forged history is not trusted, orders are valued at the
price they can really fill at, the kill switch is durable and only an operator resumes,
and the smaller holes (replacement ids, odd numbers, paper instruments after a restart)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from executor.risk import Risk
from streams import schemas, subjects
from streams import settings as settings_mod
from streams.bus.server import NatsServer
from streams.schemas import Fill, Instrument, OrderUpdate, Position
from streams.settings import RiskSettings, SettingsError
from tests.conftest import make_settings
from tests.executor.test_paper import (
    PAPER,
    _ts,
    cmd,
    depth,
    exec_log,
    last_position,
    market,
    request,
    running,
    updates,
)

BOOK = ([(99.0, 500.0)], [(100.0, 500.0)])  # mark 99.5


@pytest.fixture
def two_accounts(tmp_path: Path, nats_server: NatsServer) -> Any:
    risky = {**PAPER, "risk": {"max_order_notional": 1000.0, "max_position": {"*": 5.0}}}
    return make_settings(tmp_path, nats_server.url, executor={
        "accounts": {"alice": PAPER, "bob": risky}, "reconcile_interval_s": 0.5,
        "position_interval_s": 0.2})  # fmt: skip


async def until(make: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    """Await ``make()`` until it returns something true."""
    deadline = time.monotonic() + timeout
    while not (got := await make()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
    return got


async def dead_letters(js: JetStreamContext, n: int) -> list[str]:
    """The reasons of dlq.executor's messages once there are ``n`` (else [])."""
    info = await js.stream_info("DLQ", subjects_filter=subjects.dlq("executor"))
    if (info.state.messages or 0) < n:
        return []
    reasons = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        with contextlib.suppress(Exception):
            msg = await js.get_msg("DLQ", seq)
            if msg.subject == subjects.dlq("executor") and msg.headers:
                reasons.append(msg.headers.get(subjects.H_REASON, ""))
    return reasons


# -- item 6: the account is the subject's ---------------------------------------------------
async def test_a_body_naming_another_account_is_refused(
    two_accounts: Any, nc: Client, js: JetStreamContext
) -> None:
    async with running(two_accounts):
        await market(nc, depth(*BOOK))
        forged = cmd("steal1", account="bob", side="buy", order_type="market", quantity="1")
        # request on alice's subject, body says bob
        reply = orjson.loads(
            (await nc.request(subjects.exec_req("alice"), schemas.encode(forged), timeout=5)).data
        )
        assert not reply["accepted"]
        assert "account 'bob' in the body does not match 'alice'" in reply["reason"], reply
        # the same through the command stream
        await js.publish(subjects.exec_cmd("alice"), schemas.encode(cmd(
            "steal2", account="bob", side="buy", order_type="market", quantity="1")))  # fmt: skip
        reasons = await until(lambda: dead_letters(js, 2))
        assert sum("does not match 'alice'" in r for r in reasons) == 2, reasons
        log = await exec_log(js)
    assert not [m for m in log if isinstance(m, (OrderUpdate, Fill))], log


# -- item 7: forged history ------------------------------------------------------------------
async def test_a_fill_on_exec_cmd_is_dead_lettered_and_not_rebuilt_after_restart(
    two_accounts: Any, nc: Client, js: JetStreamContext
) -> None:
    n = time.time_ns()
    forged = Fill(account="bob", venue="binance", symbol="BTC-USDT", ts_event=n, ts_recv=n,
                  client_order_id="ghost", trade_id="g1", side="sell", price=100.0,
                  size=5000.0, fee=0.0, fee_currency="USDT")  # fmt: skip
    async with running(two_accounts):
        await js.publish(subjects.exec_cmd("bob"), schemas.encode(forged))
        reasons = await until(lambda: dead_letters(js, 1))
        assert (
            "only order_command and algo_command messages are accepted on exec.cmd.bob, not fill"
        ) in reasons[0]
    async with running(two_accounts):  # a restart rebuilds from the executor's own events
        await market(nc, depth(*BOOK))
        # max_position 5: a short of 5000 would have let two 6-lot buys through
        first = await request(nc, cmd("b1", account="bob", side="buy", order_type="limit",
                                      quantity="3", price="95"))  # fmt: skip
        assert first["state"] == "new", first
        second = await request(nc, cmd("b2", account="bob", side="buy", order_type="limit",
                                       quantity="3", price="95"))  # fmt: skip
        assert not second["accepted"]
        assert "position 6 with 3 in open orders would exceed max_position 5" in second["reason"]
        log = await exec_log(js, subjects.exec_pos("bob"))
    assert all(p.size == 0 for p in log if isinstance(p, Position)), log


# -- item 8: valued at the price it can fill at, and a collar --------------------------------
async def test_a_limit_far_through_the_market_is_refused_and_valued_at_the_mark(
    two_accounts: Any, nc: Client, js: JetStreamContext
) -> None:
    async with running(two_accounts):
        no_mark = await request(nc, cmd("nm", account="bob", side="sell", order_type="limit",
                                        quantity="1", price="100"))  # fmt: skip
        assert "no mark for BTC-USDT yet" in no_mark["reason"], no_mark
        await market(nc, depth(*BOOK))
        # the attack: sell 100 at 0.01 passed a notional check at the limit price
        r = await request(nc, cmd("dump", account="bob", side="sell", order_type="limit",
                                  quantity="100", price="0.01"))  # fmt: skip
        assert not r["accepted"]
        assert "limit sell at 0.01 is more than 5.00% below the mark 99.5" in r["reason"], r
        # inside the collar it is valued at the mark, not its (lower) limit: 11 x 99.5
        r = await request(nc, cmd("dump2", account="bob", side="sell", order_type="limit",
                                  quantity="11", price="95"))  # fmt: skip
        assert "order notional 1094.50 exceeds max_order_notional 1000" in r["reason"], r
        r = await request(nc, cmd("chase", account="bob", side="buy", order_type="limit",
                                  quantity="1", price="110"))  # fmt: skip
        assert "limit buy at 110 is more than 5.00% above the mark 99.5" in r["reason"], r
        ok = await request(nc, cmd("fine", account="bob", side="sell", order_type="limit",
                                   quantity="1", price="98"))  # fmt: skip
        assert ok["accepted"] and ok["state"] == "filled", ok  # fills at the 99 bid
    assert ok["filled"] == 1.0


def test_collar_and_notional_rules_without_io() -> None:
    risk = Risk(RiskSettings(price_collar={"*": 0.05, "ETH-USDT": 0.2}, require_mark=False))
    base = {"position": 0.0, "working": 0.0, "open_orders": 0, "reduce_only": False,
            "halted": None, "now": 1.0, "stop_price": None}  # fmt: skip
    # a wider collar per symbol
    assert risk.check(symbol="ETH-USDT", side="buy", order_type="limit", quantity=1.0,
                      price=115.0, mark=100.0, **base) is None  # fmt: skip
    # a stop-limit's limit is measured from its stop, not the mark
    assert risk.check(symbol="X", side="buy", order_type="stop_limit", quantity=1.0,
                      price=121.0, mark=100.0, **{**base, "stop_price": 120.0}) is None  # fmt: skip
    # no mark and require_mark off: a market order still needs a price
    why = risk.check(symbol="X", side="buy", order_type="market", quantity=1.0, price=None,
                     mark=None, **base)  # fmt: skip
    assert why is not None and "no price for X" in why
    with pytest.raises(SettingsError, match=r"risk.price_collar.BTC-USDT must be a fraction"):
        settings_mod.from_mapping({"executor": {"accounts": {"a": {
            "risk": {"price_collar": {"BTC-USDT": 5}}}}}})  # fmt: skip
    with pytest.raises(SettingsError, match="an account name is 1-64 of"):
        settings_mod.from_mapping({"executor": {"accounts": {"a.b": {}}}})


# -- item 9: the kill switch -----------------------------------------------------------------
async def test_halt_survives_a_restart_and_only_resume_lifts_it(
    two_accounts: Any, nc: Client, js: JetStreamContext
) -> None:
    async with running(two_accounts):
        await market(nc, depth(*BOOK))
        r = await request(nc, cmd("h1", account="alice", side="buy", order_type="limit",
                                  quantity="1", price="98"))  # fmt: skip
        assert r["state"] == "new", r
    # an old halt and its resume, then a live order: a restart must not cancel it
    await js.publish(subjects.EXEC_HALT, orjson.dumps({"reason": "old"}))
    await js.publish(subjects.EXEC_RESUME, b"{}")
    async with running(two_accounts):
        await asyncio.sleep(0.3)
        log = await exec_log(js)
        assert updates(log, "h1")[-1].state == "new", updates(log, "h1")
        # halted while stopped (and a refused resume after it): still halted at start
        await js.publish(subjects.EXEC_HALT, orjson.dumps({"halt": True, "reason": "drill"}))
        await js.publish(subjects.EXEC_HALT, orjson.dumps({"halt": False}))
        await until(lambda: _state(js, "h1", "canceled"))
    async with running(two_accounts):
        await market(nc, depth(*BOOK))
        r = await request(nc, cmd("h2", account="alice", side="buy", order_type="limit",
                                  quantity="1", price="98"))  # fmt: skip
        assert r["reason"] == "trading halted: drill", r
        await js.publish(subjects.EXEC_RESUME, orjson.dumps({"reason": "operator"}))
        await asyncio.sleep(0.3)
        r = await request(nc, cmd("h3", account="alice", side="buy", order_type="limit",
                                  quantity="1", price="98"))  # fmt: skip
        assert r["state"] == "new", r


async def _state(js: JetStreamContext, cid: str, state: str) -> bool:
    ups = updates(await exec_log(js), cid)
    return bool(ups) and ups[-1].state == state


async def test_a_halted_executor_does_not_send_a_write_ahead_order_at_restart(
    two_accounts: Any, nc: Client, js: JetStreamContext
) -> None:
    # what the executor stores before sending (write-ahead) and then died: pending_new
    n = time.time_ns()
    wal = OrderUpdate(account="alice", venue="binance", symbol="BTC-USDT", ts_event=n,
                      ts_recv=n, client_order_id="wal1", state="pending_new", side="buy",
                      order_type="limit", quantity=1.0, price=98.0)  # fmt: skip
    await js.publish(subjects.exec_evt("alice", "binance", "BTC-USDT"), schemas.encode(wal))
    await js.publish(subjects.EXEC_HALT, orjson.dumps({"reason": "incident"}))
    async with running(two_accounts) as w:
        await until(lambda: _state(js, "wal1", "rejected"))
        ex_log = updates(await exec_log(js), "wal1")
    assert ex_log[-1].reason == "halted: incident"
    assert [u.state for u in ex_log] == ["pending_new", "rejected"]
    assert w.health.state == "ok"


class Cut:
    """A TCP relay to the nats-server that can be cut: the executor's connection drops and
    cannot come back until ``mend``, while the test publishes directly to the server."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.open = True
        self.server: asyncio.Server | None = None
        self.conns: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _client(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if not self.open:
            w.close()
            return
        ur, uw = await asyncio.open_connection("127.0.0.1", self.port)
        self.conns += [w, uw]

        async def pipe(a: asyncio.StreamReader, b: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await a.read(65536):
                    b.write(data)
                    await b.drain()
            b.close()

        await asyncio.gather(pipe(r, uw), pipe(ur, w))

    def cut(self) -> None:
        self.open = False
        for w in self.conns:
            w.close()
        self.conns = []

    def mend(self) -> None:
        self.open = True

    async def stop(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()


@contextlib.asynccontextmanager
async def relay(port: int) -> AsyncIterator[tuple[Cut, int]]:
    c = Cut(port)
    listen = await c.start()
    try:
        yield c, listen
    finally:
        await c.stop()


async def test_a_halt_sent_while_disconnected_is_seen_after_reconnecting(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    async with relay(nats_server.cfg.port) as (cut, port):
        via_relay = make_settings(tmp_path, f"nats://127.0.0.1:{port}", executor={
            "accounts": {"alice": PAPER}})  # fmt: skip
        async with running(via_relay) as w:
            assert w.nc is not None
            await market(nc, depth(*BOOK))
            r = await request(nc, cmd("d1", account="alice", side="buy", order_type="limit",
                                      quantity="1", price="98"))  # fmt: skip
            assert r["state"] == "new", r
            cut.cut()
            await asyncio.sleep(0.5)
            # published while the executor is away: a core subscription never sees it
            assert not w.nc.is_connected
            await js.publish(subjects.EXEC_HALT, orjson.dumps({"reason": "while away"}))
            await asyncio.sleep(0.5)
            cut.mend()
            # the ordered consumer is re-created after its missed heartbeats
            await until(lambda: _state(js, "d1", "canceled"), timeout=20)
            await market(nc, depth(*BOOK))
            r = await request(nc, cmd("d2", account="alice", side="buy", order_type="limit",
                                      quantity="1", price="98"))  # fmt: skip
            assert r["reason"] == "trading halted: while away", r
            assert w.nc.stats["reconnects"] >= 1


# -- item 10: the smaller ones -----------------------------------------------------------------
async def test_second_replace_of_a_long_client_id_makes_a_new_order(
    two_accounts: Any, nc: Client, js: JetStreamContext
) -> None:
    long_id = "L" * 34
    async with running(two_accounts):
        await market(nc, depth(*BOOK))
        await request(nc, cmd(long_id, account="alice", side="buy", order_type="limit",
                              quantity="1", price="95"))  # fmt: skip
        first = await request(nc, cmd(long_id, "replace", account="alice", price="96"))
        assert first["accepted"] and first["client_order_id"] == "L" * 33 + ".r1", first
        second = await request(nc, cmd(first["client_order_id"], "replace", account="alice",
                                       price="97"))  # fmt: skip
        assert second["accepted"] and not second.get("duplicate"), second
        assert second["client_order_id"] == "L" * 33 + ".r2", second
        log = await exec_log(js)
    live = updates(log, "L" * 33 + ".r2")
    assert live[-1].state == "new" and live[-1].price == 97.0, live


async def test_odd_numbers_are_refused_with_a_clear_reason(
    two_accounts: Any, nc: Client, js: JetStreamContext
) -> None:
    async with running(two_accounts):
        await market(nc, depth(*BOOK))
        cases = {
            "1e-999999999": "is too small (below 1e-20)",
            "1e999999999": "is too large",
            "1_000": "is not a decimal number",
            "\u0661\u0660\u0660": "is not a decimal number",  # Arabic-Indic 100
            "NaN": "is not a decimal number",
            " 1": "is not a decimal number",
        }
        for i, (qty, why) in enumerate(cases.items()):
            r = await request(nc, cmd(f"n{i}", account="alice", side="buy", order_type="limit",
                                      quantity=qty, price="98"))  # fmt: skip
            assert not r["accepted"] and why in r["reason"], (qty, r)
            assert "internal" not in r["reason"]


async def test_paper_instruments_are_known_right_after_a_restart(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    bare = {k: v for k, v in PAPER.items() if k != "instruments"}
    s = make_settings(tmp_path, nats_server.url, executor={"accounts": {"alice": bare}})
    ins = Instrument(**{**_ts(), "symbol": "ETH-USDT"}, native_symbol="ETHUSDT", kind="spot",
                     base="ETH", quote="USDT", tick_size=0.01, lot_size=0.001)  # fmt: skip
    # stored on MARKET before the executor starts; no refresh arrives while it runs
    await js.publish(subjects.market("instrument", "binance", "ETH-USDT"), schemas.encode(ins))
    async with running(s):
        eth = depth(*BOOK)
        eth.symbol = "ETH-USDT"
        await market(nc, eth)
        r = await request(nc, cmd("e1", account="alice", symbol="ETH-USDT", side="buy",
                                  order_type="limit", quantity="0.5", price="98"))  # fmt: skip
        assert r["state"] == "new", r
        log = await exec_log(js)
    assert last_position is not None and updates(log, "e1")[0].quantity == 0.5
