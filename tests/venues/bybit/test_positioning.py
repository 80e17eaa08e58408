"""Bybit linear positioning history (account ratio, open interest) through the collector,
normalizer and ClickHouse sink: backfill then new periods, exact values, once each."""

from __future__ import annotations

import time
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext

from collectors.bybit import run as collector_main
from normalizer.worker import main as normalizer_main
from sinks.clickhouse.worker import main as sink_main
from streams.bus.server import NatsServer
from tests.conftest import make_settings
from tests.helpers import rows
from tests.venues.bybit.emulator_positioning import BybitPositioningEmulator
from tests.workers import inprocess_all

MS = 1_000_000


def want(emu: BybitPositioningEmulator) -> tuple[list, list]:
    ls = sorted(("BTC-USDT-PERP", "global_accounts", "5m", int(r["timestamp"]) * MS,
                 float(r["buyRatio"]) / float(r["sellRatio"]), float(r["buyRatio"]),
                 float(r["sellRatio"])) for r in emu.rows("account-ratio", "BTCUSDT"))  # fmt: skip
    oi = sorted(("BTC-USDT-PERP", "5m", int(r["timestamp"]) * MS, float(r["openInterest"]))
                for r in emu.rows("open-interest", "BTCUSDT"))  # fmt: skip
    return ls, oi


async def test_bybit_account_ratio_and_open_interest_history(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext, nc: Client
) -> None:
    async with BybitPositioningEmulator({"linear": ["BTCUSDT"]}, seed=7, history=250) as emu:
        days = (time.time() * 1000 - emu.first + 60_000) / 86.4e6
        cfg = {"ws_url": emu.ws_url, "rest_url": emu.rest_url, "symbols": ["linear:BTCUSDT"],
               "channels": ["positioning"],
               "options": {"category": "linear", "positioning_period": "5m",
                           "positioning_interval_s": "0.2", "positioning_backfill_days": str(days),
                           "positioning_settle_periods": "1000000"},
               "reconnect": {"min_s": 0.1, "max_s": 0.5}}  # fmt: skip
        settings = make_settings(tmp_path, nats_server.url, collector={"bybit": cfg},
                                 sink={"flush_interval_s": 0.2})  # fmt: skip
        ls_sql = ("SELECT symbol, kind, period, toUnixTimestamp64Nano(ts_event), ratio, long_share,"
                  " short_share FROM long_short_ratios WHERE venue = 'bybit'")  # fmt: skip
        oi_sql = ("SELECT symbol, period, toUnixTimestamp64Nano(ts_event), open_interest "
                  "FROM open_interest_hist WHERE venue = 'bybit'")  # fmt: skip
        async with inprocess_all(
            settings, sink=sink_main, normalizer=normalizer_main, collector=collector_main
        ):
            for step in (0, 2):  # the backfill (250 periods: pages of 200 and 500), then 2 new
                emu.advance(step)
                ls, oi = want(emu)
                assert sorted(tuple(r) for r in await rows(nc, ls_sql, len(ls), settle_s=0.5)) == ls
                assert sorted(tuple(r) for r in await rows(nc, oi_sql, len(oi), settle_s=0.5)) == oi
        assert len(ls) == len(oi) == 252
        # open interest came in pages of at most Bybit's 200 rows
        assert all(
            e - s < 200 * 300_000 for ep, _, s, e in emu.history_calls if ep == "open-interest"
        )
