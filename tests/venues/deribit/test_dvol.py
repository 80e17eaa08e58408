"""Deribit DVOL: the live index (``deribit_volatility_index.btc_usd``) and its closed
1-minute candles (REST ``get_volatility_index_data``, backfilled then polled) through the
collector, normalizer and ClickHouse sink, exact values; the candle in progress is never
stored (it would be stored with values the venue later changes)."""

from __future__ import annotations

import time
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext

from collectors.deribit import route
from collectors.deribit import run as collector_main
from normalizer.worker import main as normalizer_main
from sinks.clickhouse.worker import main as sink_main
from streams.bus.server import NatsServer
from tests.conftest import make_settings
from tests.helpers import rows, venue_cfg
from tests.venues.deribit.emulator_dvol import DeribitDvolEmulator, final
from tests.workers import inprocess_all

MS = 1_000_000


def test_route() -> None:
    frame = (b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":'
             b'"deribit_volatility_index.btc_usd","data":{"volatility":129.36}}}')  # fmt: skip
    assert route(frame) == ("volatility_index", "btc_usd")
    bad = frame.replace(b"btc_usd", b"BTC.X")
    assert route(bad) == ("unknown", "ALL")


async def test_dvol_live_and_closed_candles_into_clickhouse(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext, nc: Client
) -> None:
    async with DeribitDvolEmulator(["BTC-PERPETUAL"], seed=2) as emu:
        options = {"dvol_indexes": "btc_usd", "dvol_resolution": "60",
                   "dvol_backfill_days": "0.05", "dvol_interval_s": "0.2"}  # fmt: skip
        cfg = venue_cfg(emu, ["trades", "volatility_index", "volatility_candles"], options=options)
        settings = make_settings(tmp_path, nats_server.url, collector={"deribit": cfg},
                                 sink={"flush_interval_s": 0.2})  # fmt: skip
        started = int(time.time() * 1000)
        async with inprocess_all(
            settings, sink=sink_main, normalizer=normalizer_main, collector=collector_main
        ):
            await emu.wait_subscribed(2, timeout=15)
            await emu.emit_dvol("btc_usd", [55.1, 55.25, 54.9])
            want = sorted((d["timestamp"] * MS, d["volatility"]) for d in emu.dvol_sent)
            got = await rows(nc, "SELECT toUnixTimestamp64Nano(ts_event), value FROM "
                             "volatility_index WHERE interval = ''", 3, settle_s=0.3)  # fmt: skip
            assert sorted(tuple(r) for r in got) == want
            # 72 minutes of history: 71 or 72 closed candles (the minute in progress is not)
            q = ("SELECT symbol, index_name, toUnixTimestamp64Nano(ts_event), open, high, low, "
                 "value FROM volatility_index WHERE interval = '1m' ORDER BY ts_event")  # fmt: skip
            got = await rows(nc, q, 71, settle_s=0.5)
        done = int(time.time() * 1000)
        stamps = [r[2] // MS for r in got]
        assert stamps == list(range(stamps[0], stamps[-1] + 1, 60_000))  # no gap, no duplicate
        assert stamps[0] <= started - 0.05 * 86.4e6 + 60_000
        assert stamps[-1] + 60_000 <= done  # closed when stored
        for sym, name, ts, o, h, lo, c in got:
            assert (sym, name) == ("BTC-USD", "dvol")
            assert [o, h, lo, c] == final("BTC", "60", ts // MS), ts
        assert all(int(c["end_timestamp"]) <= int(time.time() * 1000) - 60_000
                   for c in emu.dvol_calls)  # fmt: skip
