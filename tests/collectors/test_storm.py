"""The short resync storm (seconds) of tests/faults/storm.py: two collector processes
resyncing every book at once, a backfill and the executor on one IP budget, against
emulators that answer 429/418 like Binance. ``make faults`` runs the one-minute one."""

from __future__ import annotations

from pathlib import Path

from streams.bus.server import NatsServer
from tests.faults.storm import run_storm


async def test_short_storm_zero_429_all_books_backfill_yields(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    # 80 books x weight 5 + exchangeInfo against 200 weight per 2 s: ~3 windows of storm
    res = await run_storm(tmp_path, nats_server.url, per_collector=40, capacity=200,
                          window_s=2.0, storms=1, storm_every_s=8.0)  # fmt: skip
    print("\n".join(res.lines()))
    assert res.statuses["over"] == 0 and res.statuses["banned"] == 0, res.statuses
    assert res.statuses["ok"] > 80
    assert res.resynced == [80], res.resynced
    assert res.max_window_used <= 200
    assert res.max_window_used >= 100  # the storm used the budget, it was not idle
    assert res.backfill_rc == 0 and res.backfill_pages >= 20
    # the backfill yielded: it finished after the books were resynced
    assert res.backfill_done_s >= res.resync_s[0] - 0.5, res.lines()
    assert not res.problems, res.problems
    assert res.latency_storm_ms and res.latency_before_ms
    # orders go first: the storm adds little to an order's way to the venue (HTTP to the
    # emulator in this process, on a shared 2-core box: the bounds are loose, the numbers
    # are printed)
    before, during = res.p(res.latency_before_ms, 0.5), res.p(res.latency_storm_ms, 0.5)
    assert during < 3 * before + 10.0, res.lines()
    assert res.p(res.latency_storm_ms, 0.99) < 1000.0, res.lines()
