"""kill -9 of the executor in the middle of a parent, on the ccxt venue against the Binance
emulator (real ccxt code, the executor a real subprocess): it resumes from the EXEC stream,
sends no child twice, and the parent's filled quantity is exactly what the venue filled."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from streams.bus.server import NatsServer
from tests.executor.test_algo import algo, ask, bbo, parents
from tests.executor.test_ccxt import ACCOUNT, Executor, live_settings
from tests.executor.test_paper import exec_log, market, wait_until
from tests.venues.binance.emulator_rest import MockBinance

NS = 1_000_000_000


@pytest.fixture
async def mock() -> AsyncIterator[MockBinance]:
    m = await MockBinance().start()
    yield m
    await m.stop()


async def test_kill9_mid_parent_resumes_with_no_duplicate_child_and_exact_fill(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext, mock: MockBinance
) -> None:
    mock.prices["BTCUSDT"] = Decimal("65000")
    settings = live_settings(tmp_path, nats_server.url, mock)
    ex = Executor(settings, tmp_path / "executor.log")
    await ex.start(nc)
    try:
        await market(nc, bbo(64999.0, 65001.0))  # risk values market children at the mark
        start = time.time_ns()
        r = await ask(nc, algo("k1", account=ACCOUNT, algo="twap", side="buy", quantity="0.01",
                               start_ts=start, end_ts=start + 4 * NS, slices=5))  # fmt: skip
        assert r["accepted"], r

        def kids() -> list[str]:
            return [o.client_id for o in mock.orders.values() if o.client_id.startswith("k1.")]

        await wait_until(lambda: len(kids()) == 2, timeout=15)
        mock.delay_s = 2.0  # the third child is taken by the venue, its answer never arrives
        await wait_until(lambda: len(kids()) == 3, timeout=15)
        ex.proc.kill9()
        mock.delay_s = 0.0
        await ex.start(nc)  # rebuilt from EXEC; child 3 resolved by lookup, not resent
        await market(nc, bbo(64999.0, 65001.0))

        async def done() -> bool:
            recs = parents(await exec_log(js), "k1")
            return bool(recs) and recs[-1].state == "filled"

        await wait_until(done, timeout=30)
        sent = kids()
        assert len(sent) == len(set(sent)) and mock.creates == len(sent), sent
        assert sent[:3] == ["k1.1", "k1.2", "k1.3"]
        executed = sum((o.executed for o in mock.orders.values()), Decimal(0))
        assert executed == Decimal("0.01")
        rec = parents(await exec_log(js), "k1")[-1]
        assert rec.filled == 0.01 and rec.children == len(sent)
    finally:
        ex.proc.kill9()
