"""Binance USDⓈ-M positioning history (collectors/positioning.py): the collector against the
futures/data emulator, through the real normalizer and ClickHouse sink, exact values; and a
kill -9 of the collector mid-backfill leaves no gap and no duplicate."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from collectors.binancecoinm import run as coinm_main
from collectors.binanceusdm import BinanceUsdmSettings
from collectors.binanceusdm import run as collector_main
from collectors.config import venue_settings
from normalizer.core import Normalizer
from normalizer.venues.base import Frame, Rejected
from normalizer.venues.binance import BinanceUsdmParser
from normalizer.worker import main as normalizer_main
from sinks.clickhouse.worker import main as sink_main
from streams import settings as settings_mod
from streams import subjects
from streams.bus.server import NatsServer
from streams.provision import STREAM_MARKET, STREAM_RAW
from tests.conftest import make_settings
from tests.helpers import rows
from tests.venues.binance.emulator_positioning import (
    COINM_ENDPOINTS,
    ENDPOINTS,
    BinanceCoinmPositioningEmulator,
    BinancePositioningEmulator,
)
from tests.workers import Proc, inprocess, inprocess_all

MS = 1_000_000
SYM = {"BTCUSDT": "BTC-USDT-PERP", "ETHUSDT": "ETH-USDT-PERP"}
KIND = {
    "globalLongShortAccountRatio": "global_accounts",
    "topLongShortAccountRatio": "top_accounts",
    "topLongShortPositionRatio": "top_positions",
}
LS_SQL = ("SELECT symbol, kind, period, toUnixTimestamp64Nano(ts_event), ratio, long_share, "
          "short_share FROM long_short_ratios")  # fmt: skip
TAKER_SQL = ("SELECT symbol, period, toUnixTimestamp64Nano(ts_event), buy_volume, sell_volume "
             "FROM taker_volume")  # fmt: skip
OIH_SQL = ("SELECT symbol, period, toUnixTimestamp64Nano(ts_event), open_interest, "
           "open_interest_value FROM open_interest_hist")  # fmt: skip


def want(emu: BinancePositioningEmulator) -> dict[str, list[tuple[Any, ...]]]:
    """The venue's whole history as rows of our three tables."""
    p = emu.period
    ls, taker, oih = [], [], []
    for native, symbol in SYM.items():
        if native not in emu.sims:
            continue
        for ep, kind in KIND.items():
            ls += [(symbol, kind, p, int(r["timestamp"]) * MS, float(r["longShortRatio"]),
                    float(r["longAccount"]), float(r["shortAccount"]))
                   for r in emu.rows(ep, native)]  # fmt: skip
        taker += [(symbol, p, r["timestamp"] * MS, float(r["buyVol"]), float(r["sellVol"]))
                  for r in emu.rows("takerlongshortRatio", native)]  # fmt: skip
        oih += [(symbol, p, int(r["timestamp"]) * MS, float(r["sumOpenInterest"]),
                 float(r["sumOpenInterestValue"]))
                for r in emu.rows("openInterestHist", native)]  # fmt: skip
    return {"ls": sorted(ls), "taker": sorted(taker), "oih": sorted(oih)}


async def got(nc: Client, w: dict[str, list[tuple[Any, ...]]], timeout: float = 60) -> dict:
    out = {}
    for key, q in (("ls", LS_SQL), ("taker", TAKER_SQL), ("oih", OIH_SQL)):
        rs = await rows(nc, q, len(w[key]), timeout, settle_s=0.5)
        out[key] = sorted(tuple(r) for r in rs)
    return out


def collector_cfg(emu: Any, symbols: list[str]) -> dict[str, Any]:
    """The emulator's history lies hundreds of periods in the past (so ``advance`` has room):
    the backfill starts a minute before its first period, and an empty window is never
    stepped over (settle), as a live venue's newest window is not."""
    days = (time.time() * 1000 - emu.first + 60_000) / 86.4e6
    return {"ws_url": emu.ws_url, "rest_url": emu.rest_url, "symbols": symbols,
            "channels": ["markPrice", "positioning"], "positioning_period": emu.period,
            "positioning_interval_s": 0.2, "positioning_backfill_days": days,
            "positioning_limit": 50, "positioning_settle_periods": 10**6}  # fmt: skip


def test_settings_refuse_bad_positioning_keys() -> None:
    for key, value, why in (("positioning_period", "7m", "positioning_period"),
                            ("positioning_limit", 501, "positioning_limit"),
                            ("positioning_interval_s", 0, "positioning_interval_s")):  # fmt: skip
        bad = settings_mod.from_mapping({"collector": {"binanceusdm": {key: value}}})
        with pytest.raises(settings_mod.SettingsError, match=why):
            venue_settings(bad, "binanceusdm", BinanceUsdmSettings)


async def test_backfill_then_new_periods_into_clickhouse_exactly(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext, nc: Client
) -> None:
    async with BinancePositioningEmulator(["BTCUSDT", "ETHUSDT"], history=120, seed=3) as emu:
        settings = make_settings(
            tmp_path, nats_server.url,
            collector={"binanceusdm": collector_cfg(emu, ["BTCUSDT", "ETHUSDT"])},
            sink={"flush_interval_s": 0.2},
        )  # fmt: skip
        async with (
            inprocess_all(settings, sink=sink_main, normalizer=normalizer_main),
            inprocess("collector", collector_main, settings),
        ):
            w = want(emu)
            assert len(w["ls"]) == 3 * 2 * 120 and len(w["taker"]) == 2 * 120
            assert await got(nc, w) == w
            # the venue publishes three more periods: only they are asked for and stored
            calls = len(emu.data_calls)
            emu.advance(3)
            w = want(emu)
            assert await got(nc, w) == w
            new_calls = emu.data_calls[calls:]
            assert all(start > emu.latest - 4 * 300_000 for _, _, start, _ in new_calls)
        # every request stayed within one page of periods and inside Binance's 30 days
        assert all(end - start < 50 * 300_000 for _, _, start, end in emu.data_calls)
        assert set(emu.rest_calls) >= set(ENDPOINTS)
        # re-normalizing RAW reproduces MARKET bit for bit (subjects, ids and bytes)
        types = ("long_short_ratio", "taker_volume", "open_interest_hist")
        market = await stream_all(js, STREAM_MARKET, "market.*.binance.*", types)
        n, again = Normalizer(), set()
        for msg in await stream_all(js, STREAM_RAW, "raw.binanceusdm.*.*", ENDPOINTS):
            outs = n.normalize(msg.subject, msg.data, msg.headers, msg.metadata.sequence.stream)
            assert isinstance(outs, list), outs
            again |= {(o.subject, o.msg_id, o.data) for o in outs}
        got_market = {(m.subject, m.headers[subjects.H_MSG_ID], m.data) for m in market}  # type: ignore[index]
        assert len(got_market) == 3 * 2 * 123 + 2 * 2 * 123 and again == got_market


async def stream_all(
    js: JetStreamContext, stream: str, subject: str, kinds: tuple[str, ...]
) -> list[Any]:
    """Every message on ``subject`` in ``stream`` whose second token starts with one of
    ``kinds`` (a raw channel ``<endpoint>-<period>`` or a market type), in order."""
    out = []
    sub = await js.subscribe(subject, stream=stream, ordered_consumer=True)
    last = (await js.stream_info(stream)).state.last_seq
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=3)
            except TimeoutError:
                break
            token = msg.subject.split(".")[1 if stream == STREAM_MARKET else 2]
            if token.split("-")[0] in kinds:
                out.append(msg)
            if msg.metadata.sequence.stream >= last:
                break
    finally:
        await sub.unsubscribe()
    return out


async def raw_rows(js: JetStreamContext) -> Counter[tuple[str, int]]:
    """(subject, row time) of every row of every positioning frame in RAW."""
    seen: Counter[tuple[str, int]] = Counter()
    sub = await js.subscribe("raw.binanceusdm.*.*", stream=STREAM_RAW, ordered_consumer=True)
    info = await js.stream_info(STREAM_RAW)
    last = info.state.last_seq
    try:
        while True:
            msg = await sub.next_msg(timeout=5)
            channel = msg.subject.split(".")[2]
            if channel.split("-")[0] in ENDPOINTS:
                for r in orjson.loads(msg.data):
                    seen[(msg.subject, int(r["timestamp"]))] += 1
            if msg.metadata.sequence.stream >= last:
                break
    finally:
        await sub.unsubscribe()
    return seen


async def test_kill9_mid_backfill_no_gap_no_duplicate(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext, nc: Client
) -> None:
    async with BinancePositioningEmulator(["BTCUSDT"], history=400, seed=4) as emu:
        emu.delay_s = 0.05  # backfill takes a while: the kill lands in the middle
        settings = make_settings(
            tmp_path, nats_server.url,
            collector={"binanceusdm": collector_cfg(emu, ["BTCUSDT"])},
            sink={"flush_interval_s": 0.2},
        )  # fmt: skip
        async with inprocess_all(settings, sink=sink_main, normalizer=normalizer_main):
            proc = Proc("collectors", settings, "binanceusdm", log=tmp_path / "collector.log")
            proc.start()
            try:
                for _ in range(300):  # until a few history pages are served
                    if len(emu.data_calls) >= 12:
                        break
                    await asyncio.sleep(0.05)
                assert len(emu.data_calls) >= 12, (tmp_path / "collector.log").read_text()[-2000:]
                proc.kill9()
                before = len(emu.data_calls)
                emu.advance(2)  # periods published while the collector is down
                proc = Proc("collectors", settings, "binanceusdm", log=tmp_path / "collector.log")
                proc.start()
                w = want(emu)
                assert await got(nc, w, timeout=90) == w
                # the restart resumed after the cursor: it did not walk the history again
                again = [c for c in emu.data_calls[before:] if c[2] < emu.first]
                assert len(again) <= len(ENDPOINTS) * 2, again
            finally:
                proc.kill9()
        seen = await raw_rows(js)
        dup = [k for k, n in seen.items() if n > 1]
        assert not dup, dup[:5]  # no row stored twice in RAW, across the kill
        per_subject = Counter(s for s, _ in seen)
        assert set(per_subject.values()) == {len(emu.times())}  # nor missing from it


async def test_coinm_positioning_in_base_units_exactly(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext, nc: Client
) -> None:
    """COIN-M: per pair, perpetual contracts; taker volume and open interest in contracts
    and base, stored in base units with the USD value (contracts x 100 USD for BTC)."""
    async with BinanceCoinmPositioningEmulator(["BTCUSD_PERP"], history=60, seed=5) as emu:
        cfg = {**collector_cfg(emu, ["BTCUSD_PERP"]), "channels": ["positioning"]}
        settings = make_settings(tmp_path, nats_server.url, collector={"binancecoinm": cfg},
                                 sink={"flush_interval_s": 0.2})  # fmt: skip
        async with (
            inprocess_all(settings, sink=sink_main, normalizer=normalizer_main),
            inprocess("collector", coinm_main, settings),
        ):
            sym, p = "BTC-USD-PERP", emu.period
            ls = sorted(
                (sym, kind, p, r["timestamp"] * MS, float(r["longShortRatio"]),
                 float(r.get("longAccount") or r["longPosition"]),
                 float(r.get("shortAccount") or r["shortPosition"]))
                for ep, kind in KIND.items() for r in emu.rows(ep, "BTCUSD_PERP")
            )  # fmt: skip
            taker = sorted(
                (sym, p, r["timestamp"] * MS, float(r["takerBuyVolValue"]),
                 float(r["takerSellVolValue"]), int(r["takerBuyVol"]) * 100.0,
                 int(r["takerSellVol"]) * 100.0)
                for r in emu.rows("takerBuySellVol", "BTCUSD_PERP")
            )  # fmt: skip
            oih = sorted(
                (sym, p, r["timestamp"] * MS, float(r["sumOpenInterestValue"]),
                 int(r["sumOpenInterest"]) * 100.0)
                for r in emu.rows("openInterestHist", "BTCUSD_PERP")
            )  # fmt: skip
            assert len(ls) == 180 and len(taker) == len(oih) == 60
            assert sorted(tuple(r) for r in await rows(nc, LS_SQL, 180, settle_s=0.3)) == ls
            got_t = await rows(nc, "SELECT symbol, period, toUnixTimestamp64Nano(ts_event), "
                               "buy_volume, sell_volume, buy_value, sell_value FROM taker_volume",
                               60, settle_s=0.3)  # fmt: skip
            assert sorted(tuple(r) for r in got_t) == taker
            assert sorted(tuple(r) for r in await rows(nc, OIH_SQL, 60, settle_s=0.3)) == oih
        # the pair and contract type Binance's COIN-M endpoints require (the emulator
        # refuses anything else with -1121, which would leave the tables short)
        assert set(emu.rest_calls) >= set(COINM_ENDPOINTS)


def test_hostile_rows_are_dead_letters_not_messages() -> None:
    """Rows a venue (or whoever answers in its place) should never send: refused with a
    reason, nothing published."""
    p = BinanceUsdmParser()

    def parse(channel: str, rows: list[dict]) -> list:
        return p.parse(Frame(channel=channel, native_symbol="BTCUSDT", data=orjson.dumps(rows),
                             ts_recv=1, raw_seq=1))  # fmt: skip

    good = {"symbol": "BTCUSDT", "longShortRatio": "1.5", "longAccount": "0.6",
            "shortAccount": "0.4", "timestamp": 1700000000000}  # fmt: skip
    assert len(parse("globalLongShortAccountRatio-5m", [good])) == 1
    for bad, why in (
        ({**good, "longShortRatio": "-1"}, "invalid"),
        ({**good, "longAccount": "NaN"}, "invalid"),
        ({**good, "symbol": "ETHUSDT"}, "ETHUSDT"),
        ({**good, "timestamp": "soon"}, "invalid"),
    ):
        with pytest.raises(Rejected, match=why):
            parse("globalLongShortAccountRatio-5m", [good, bad])
    with pytest.raises(Rejected, match="unknown channel"):
        parse("globalLongShortAccountRatio-7m", [good])  # not a Binance period
    with pytest.raises(Rejected, match="invalid"):
        parse("takerlongshortRatio-5m", [{"buyVol": "1e999", "sellVol": "1", "timestamp": 1}])


async def test_misbehaving_venue_never_duplicates_rows(
    tmp_path: Path, nats_server: NatsServer, js: JetStreamContext, nc: Client
) -> None:
    """Error pages with status 200 are retried, not stored; a venue that ignores the asked
    window (old rows again) is not stored either: RAW never holds a row twice."""
    async with BinancePositioningEmulator(["BTCUSDT"], history=60, seed=9) as emu:
        emu.garbage = 7
        settings = make_settings(
            tmp_path, nats_server.url,
            collector={"binanceusdm": {**collector_cfg(emu, ["BTCUSDT"]),
                                       "reconnect": {"min_s": 0.05, "max_s": 0.2}}},
            sink={"flush_interval_s": 0.2},
        )  # fmt: skip
        async with (
            inprocess_all(settings, sink=sink_main, normalizer=normalizer_main),
            inprocess("collector", collector_main, settings),
        ):
            w = want(emu)
            assert await got(nc, w) == w
            assert emu.garbage == 0
            emu.ignore_window = True
            emu.advance(2)
            calls = len(emu.data_calls)
            for _ in range(100):  # several polls of every endpoint answered wrongly
                if len(emu.data_calls) >= calls + 3 * len(ENDPOINTS):
                    break
                await asyncio.sleep(0.1)
            emu.ignore_window = False
            w = want(emu)
            assert await got(nc, w) == w  # the two new periods, once, after the venue heals
        seen = await raw_rows(js)
        assert seen and max(seen.values()) == 1
