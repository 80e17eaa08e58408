"""The fault suite's short form in CI (tests/faults/), and the raw publisher's re-sending
of frames a NATS restart swallowed (the fix the suite led to)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from collectors.base import RawPublisher
from streams import subjects
from streams.bus.connect import connect
from streams.bus.server import NatsServer
from streams.provision import STREAM_RAW
from streams.settings import Settings
from tests.faults.__main__ import verdict
from tests.faults.suite import run_suite, table

CONNECTION_FAULTS = ("kill -9 collector", "nats-server restart", "venue drops", "venue stalls")


@pytest.mark.timeout(240)
async def test_short_fault_suite_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    res = await run_suite(tmp_path, short=True)
    report = table(res.rows)
    print(report)
    assert verdict(res) == [], report
    for row in res.rows:
        assert row.lost == 0 and row.duplicated == 0, report
        # no worker may crash under a fault (the suite restarts crashed workers like the
        # supervisor would, and lists each crash): an AckAll answered by "no responders"
        # after a nats-server restart used to end the sink; ack_through now survives it
        assert not row.crashes, report
    faults = [r for r in res.rows if r.count]
    assert len(faults) == 8, report
    assert all(r.offered > 0 and r.stored > 0 for r in faults), report
    for name in CONNECTION_FAULTS:
        row = res.row(name)
        # every connection fault leaves trades the venue made but never delivered, and a
        # gap recorded for each hole (uncovered == 0 is in verdict)
        assert row.unoffered + row.in_flight > 0, report
        assert row.gaps > 0, report
    assert res.row("insert failures").stored == res.row("insert failures").offered


async def _raw_with_conn(js: JetStreamContext, conn: str, want: int) -> list[bytes]:
    sub = await js.subscribe("raw.binance.>", stream=STREAM_RAW, ordered_consumer=True)
    out: list[bytes] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                m = await sub.next_msg(timeout=1.0)
            except Exception:
                if len(out) >= want:
                    break
                continue
            if (m.headers or {}).get(subjects.H_CONN) == conn:
                out.append(m.data)
    finally:
        await sub.unsubscribe()
    return out


async def test_raw_publisher_resends_frames_a_nats_kill_swallowed(
    nats_server: NatsServer, settings: Settings, js: JetStreamContext
) -> None:
    """kill -9 of nats-server in the middle of a burst of core publishes: what the socket
    and the server's ingest queue held is gone without an error. After the restart the
    publisher reads RAW back and sends exactly the missing frames again."""
    nc = await connect(settings.nats, "collector-test")
    try:
        pub = RawPublisher(nc, nc.jetstream(timeout=5.0), "binance", flush_every=10**9)
        conn = "binance-test-1"
        n = 0

        async def burst(count: int, durable_last: bool = False) -> None:
            nonlocal n
            for i in range(count):
                n += 1
                frame = b'{"stream":"btcusdt@trade","data":{"t":%d}}' % n
                await pub.publish("trade", "BTCUSDT", frame, time.time_ns(), conn,
                                  durable=durable_last and i == count - 1)  # fmt: skip

        await burst(1, durable_last=True)  # the connection's first acked frame
        await burst(20_000)
        nats_server.kill()
        await burst(300)  # buffered by the client while the server is down
        await asyncio.to_thread(nats_server.start)
        while True:  # until JetStream is back and a barrier is confirmed
            await asyncio.sleep(0.3)
            await burst(1, durable_last=True)
            if not pub.unconfirmed and pub.confirmed == pub.published:
                break
        got = await _raw_with_conn(js, conn, n)
        ids = sorted(int(d.split(b'"t":')[1].rstrip(b"}")) for d in got)
        assert ids == list(range(1, n + 1)), f"{n} sent, {len(set(ids))} stored, {len(ids)} rows"
        assert pub.recovered > 0, "the kill lost nothing: the scenario did not exercise recovery"
    finally:
        await nc.close()
