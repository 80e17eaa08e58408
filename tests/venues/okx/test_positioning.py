"""OKX trading statistics (rubik) per contract through the collector, normalizer and
ClickHouse sink: backfill then new periods, exact values, once each."""

from __future__ import annotations

import time
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext

from collectors.okx import run as collector_main
from normalizer.worker import main as normalizer_main
from sinks.clickhouse.worker import main as sink_main
from streams.bus.server import NatsServer
from tests.conftest import make_settings
from tests.helpers import rows, venue_cfg
from tests.venues.okx.emulator_positioning import PATHS, OkxPositioningEmulator
from tests.workers import inprocess_all

MS = 1_000_000
SYM = "BTC-USDT-PERP"
KINDS = {"long_short_account_ratio": "global_accounts", "top_account_ratio": "top_accounts",
         "top_position_ratio": "top_positions"}  # fmt: skip
LS_SQL = ("SELECT symbol, kind, period, toUnixTimestamp64Nano(ts_event), ratio FROM "
          "long_short_ratios WHERE venue = 'okx'")  # fmt: skip
TV_SQL = ("SELECT symbol, period, toUnixTimestamp64Nano(ts_event), buy_volume, sell_volume "
          "FROM taker_volume WHERE venue = 'okx'")  # fmt: skip
OI_SQL = ("SELECT symbol, period, toUnixTimestamp64Nano(ts_event), open_interest, "
          "open_interest_value FROM open_interest_hist WHERE venue = 'okx'")  # fmt: skip


def want(emu: OkxPositioningEmulator) -> tuple[list, list, list]:
    inst = "BTC-USDT-SWAP"
    ls = sorted((SYM, kind, "5m", int(r[0]) * MS, float(r[1]))
                for ep, kind in KINDS.items() for r in emu.rows(ep, inst))  # fmt: skip
    tv = sorted((SYM, "5m", int(r[0]) * MS, float(r[2]), float(r[1]))
                for r in emu.rows("taker_volume", inst))  # fmt: skip
    oi = sorted((SYM, "5m", int(r[0]) * MS, float(r[2]), float(r[3]))
                for r in emu.rows("open_interest_history", inst))  # fmt: skip
    return ls, tv, oi


async def test_okx_rubik_history_into_clickhouse_exactly(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext, nc: Client
) -> None:
    async with OkxPositioningEmulator(["BTC-USDT-SWAP"], seed=8, history=150) as emu:
        days = (time.time() * 1000 - emu.first + 60_000) / 86.4e6
        options = {"positioning_period": "5m", "positioning_interval_s": "0.2",
                   "positioning_backfill_days": str(days),
                   "positioning_settle_periods": "1000000"}  # fmt: skip
        cfg = venue_cfg(emu, ["trades", "positioning"], options=options)
        settings = make_settings(tmp_path, nats_server.url, collector={"okx": cfg},
                                 sink={"flush_interval_s": 0.2})  # fmt: skip
        async with inprocess_all(
            settings, sink=sink_main, normalizer=normalizer_main, collector=collector_main
        ):
            for step in (0, 3):  # the backfill (150 periods: pages of 100), then 3 new ones
                emu.advance(step)
                ls, tv, oi = want(emu)
                for q, w in ((LS_SQL, ls), (TV_SQL, tv), (OI_SQL, oi)):
                    assert sorted(tuple(r) for r in await rows(nc, q, len(w), settle_s=0.5)) == w
        assert len(tv) == len(oi) == 153 and len(ls) == 3 * 153
        assert set(emu.rest_calls) >= set(PATHS.values())
        assert all(e - s < 100 * 300_000 for _, _, s, e in emu.rubik_calls)
