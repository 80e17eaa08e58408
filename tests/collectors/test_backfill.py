"""``jetmarket backfill`` against an emulated Bitfinex v2 REST API (ccxt's own ``bitfinex``
class pointed at the local server): backfill subprocesses -> nats-server -> normalizer ->
sink -> ClickHouse. A backfill SIGKILLed mid-range and resumed gives every candle and trade
of ``[since, until)`` exactly once; running it again adds nothing; bad arguments fail clearly."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from collectors.backfill import main, parse_time, resolve_symbol
from streams import sql
from streams.bus.server import NatsServer
from streams.provision import STREAM_RAW
from streams.settings import Settings, to_toml_env
from tests.conftest import make_settings
from tests.pipeline.test_e2e import wait_rows
from tests.venues.ccxt.emulator import T0_MS, BitfinexEmulator
from tests.workers import ROOT, Proc

MINUTE = 60_000
SINCE = T0_MS + 90_000  # mid-minute: the first candle is the one opening at T0 + 2 min
UNTIL = T0_MS + 11 * MINUTE + 30_000  # candles open at T0+2..T0+11 min; trades to the ms
HIST_TRADES = "raw.bitfinex.ccxt-hist-trades.BTC/USD"


def bf_settings(tmp_path: Path, url: str, emu: BitfinexEmulator) -> Settings:
    # 60 ms x cost 2.7 per request: ~160 ms a page, slow enough to kill mid-range
    ex = {"symbols": ["BTC/USD"], "api_url": emu.url, "rate_limit_ms": 60}
    return make_settings(
        tmp_path, url, collector={"ccxt": {"exchanges": {"bitfinex": ex}}},
        sink={"flush_interval_s": 0.2}, log={"level": "WARNING"},
    )  # fmt: skip


def job_args(checkpoint: Path, *extra: str) -> list[str]:
    return ["--venue", "bitfinex", "--symbol", "BTC-USD", "--since", str(SINCE),
            "--until", str(UNTIL), "--checkpoint", str(checkpoint), *extra]  # fmt: skip


async def finish(proc: Proc, timeout: float = 60) -> int:
    """Wait for a subprocess without blocking the loop the emulator serves from."""
    assert proc.p is not None
    deadline = asyncio.get_running_loop().time() + timeout
    while proc.p.poll() is None:
        assert asyncio.get_running_loop().time() < deadline, f"{proc.cmd} still running"
        await asyncio.sleep(0.05)
    return proc.p.returncode


async def kill_after_pages(proc: Proc, checkpoint: Path, pages: int) -> dict[str, str]:
    """SIGKILL the backfill once its checkpoint records ``pages`` acked pages; returns
    each checkpoint text seen by its page count."""
    deadline = asyncio.get_running_loop().time() + 60
    seen: dict[str, str] = {}
    while True:
        try:
            text = checkpoint.read_text()
            seen[str(json.loads(text)["pages"])] = text
            if int(max(seen, key=int)) >= pages:
                break
        except FileNotFoundError:
            pass
        assert proc.alive(), f"backfill exited early: {proc.log.read_text()[-2000:]}"
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    proc.kill9()
    text = checkpoint.read_text()
    ck = json.loads(text)
    assert not ck["done"] and ck["next_ms"] < UNTIL, "finished before the kill: proves nothing"
    seen[str(ck["pages"])] = text
    return seen


def last_line(log: Path, start: str) -> str:
    return [ln for ln in log.read_text().splitlines() if ln.startswith(start)][-1]


async def raw_count(js: JetStreamContext, subject: str | None = None) -> int:
    if subject is None:
        return (await js.stream_info(STREAM_RAW)).state.messages
    info = await js.stream_info(STREAM_RAW, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


async def table_rows(nc: Client) -> tuple[list[Any], list[Any]]:
    trades = await sql.query(
        nc, "SELECT id, toUnixTimestamp64Milli(ts_event), price, size, side FROM trades "
        "WHERE venue = 'bitfinex' AND symbol = 'BTC-USD' ORDER BY ts_event, id", max_rows=5000,
    )  # fmt: skip
    candles = await sql.query(
        nc, "SELECT toUnixTimestamp64Milli(ts_open), open, close, high, low, volume, closed "
        "FROM candles WHERE venue = 'bitfinex' AND symbol = 'BTC-USD' ORDER BY ts_open",
    )  # fmt: skip
    return [list(r) for r in trades.rows], [list(r) for r in candles.rows]


async def test_killed_and_resumed_backfill_gives_the_range_exactly_once_and_reruns_add_nothing(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    async with BitfinexEmulator(trades_per_symbol=1500, seed=5) as emu:
        assert emu.now_ms > UNTIL + MINUTE  # every candle in range is complete at the venue
        want_trades = [
            [str(tid), ms, price, abs(amount), "sell" if amount < 0 else "buy"]
            for tid, ms, amount, price in emu.visible("tBTCUSD", SINCE, UNTIL)
        ]
        want_candles = [[*c, True] for c in emu.candles("tBTCUSD") if SINCE <= c[0] < UNTIL]
        assert len(want_candles) == 10 and len(want_trades) > 500
        settings = bf_settings(tmp_path, nats_server.url, emu)
        ck_c, ck_t = tmp_path / "candles.json", tmp_path / "trades.json"
        log_c, log_t = tmp_path / "candles.log", tmp_path / "trades.log"
        candles = Proc("collectors.backfill", settings, *job_args(ck_c, "--limit", "1"), log=log_c)
        trades = Proc("collectors.backfill", settings,
                      *job_args(ck_t, "--trades", "--limit", "40"), log=log_t)  # fmt: skip
        norm = Proc("normalizer", settings, log=tmp_path / "normalizer.log")
        sink = Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log")
        procs = [norm.start(), sink.start()]
        try:
            # (1) SIGKILL each job part-way through its range, then resume it
            candles.start(), trades.start()
            _, seen = await asyncio.gather(
                kill_after_pages(candles, ck_c, 3), kill_after_pages(trades, ck_t, 4)
            )
            # as if the kill fell between a page's ack and its checkpoint: the checkpoint one
            # page behind the newest frame RAW holds; the resumed job must skip that page
            # (only when RAW's newest frame is the checkpoint's page: a kill may land between
            # the next page's ack and its checkpoint write, which the resume handles itself)
            last = await js.get_last_msg(STREAM_RAW, HIST_TRADES)
            at = json.loads(ck_t.read_text())
            prev = seen.get(str(at["pages"] - 1))
            rolled_back = (
                prev is not None
                and last.headers is not None
                and last.headers["Jm-Cursor"] == f"{at['next_ms']}:{','.join(sorted(at['ids']))}"
            )
            print("checkpoint rolled back one page:", rolled_back)
            if rolled_back:
                ck_t.write_text(prev)  # type: ignore[arg-type]
            trades.cmd.extend(["--progress", "always"])  # (4) the bar, even into a log file
            candles.start(), trades.start()
            assert await finish(candles) == 0, log_c.read_text()[-2000:]
            assert await finish(trades) == 0, log_t.read_text()[-2000:]
            assert "resuming at" in log_c.read_text()
            if rolled_back:
                assert "checkpoint one page behind RAW" in log_t.read_text()
                # nothing re-sent: the only copy this run offered RAW is the instrument frame
                assert ", 1 already in RAW" in last_line(log_t, "backfill bitfinex")

            got = await wait_rows(
                nc, "SELECT count() FROM trades WHERE venue = 'bitfinex'", len(want_trades), 60
            )
            assert got == len(want_trades)
            await wait_rows(nc, "SELECT count() FROM candles", len(want_candles), 30)
            await asyncio.sleep(1.0)  # a late duplicate would land now
            rows_t, rows_c = await table_rows(nc)
            assert rows_t == want_trades  # every trade once, values exact
            assert rows_c == want_candles  # every candle once, OHLCV exact, closed

            # (4) summaries count pages and rows over both runs
            pages_t = await raw_count(js, HIST_TRADES)
            assert "10 pages, 10 rows; this run:" in last_line(log_c, "backfill bitfinex")
            assert f"{pages_t} pages, {len(want_trades)} rows; this run:" in last_line(
                log_t, "backfill bitfinex"
            )
            assert "pages=" in log_t.read_text() and "min of history" in log_t.read_text()

            # (2) again with the same checkpoints: nothing fetched, nothing published
            before = await raw_count(js)
            for p in (candles, trades):
                p.start()
            assert await finish(candles) == 0 and await finish(trades) == 0
            assert "already complete" in last_line(log_t, "backfill bitfinex")
            assert await raw_count(js) == before
            # ... and with the checkpoints lost: every page is fetched and re-published,
            # and the same Nats-Msg-Ids make RAW drop every copy
            (tmp_path / "again").mkdir()
            for p in (candles, trades):
                i = p.cmd.index("--checkpoint") + 1
                p.cmd[i] = str(tmp_path / "again" / Path(p.cmd[i]).name)
                p.start()
            assert await finish(candles) == 0 and await finish(trades) == 0
            assert f"this run: 0 frames stored, {pages_t + 1} already in RAW" in last_line(
                log_t, "backfill bitfinex"
            )  # + the instrument frame
            assert "this run: 0 frames stored, 11 already in RAW" in last_line(
                log_c, "backfill bitfinex"
            )
            assert await raw_count(js) == before
            await asyncio.sleep(1.5)
            assert await table_rows(nc) == (rows_t, rows_c)
        finally:
            candles.kill9(), trades.kill9()
            for p in reversed(procs):
                p.stop()


def test_times_symbols_and_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_time("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert parse_time("2023-11-14T22:13:20") == parse_time("1700000000000") == 1_700_000_000_000
    # the forms replay and backtest take too: unix seconds and ns, a duration before now
    assert parse_time("1700000000") == parse_time("1700000000000000000") == 1_700_000_000_000
    assert abs(parse_time("2h") - (time.time() * 1000 - 7_200_000)) < 5_000
    markets = {
        "BTC/USDT": {"base": "BTC", "quote": "USDT", "spot": True},
        "BTC/USDT:USDT": {"base": "BTC", "quote": "USDT", "swap": True, "settle": "USDT"},
        "BTC/USDT:BTC": {"base": "BTC", "quote": "USDT", "swap": True, "settle": "BTC"},
        "BTC/USD:BTC-251226": {"base": "BTC", "quote": "USD", "future": True,
                               "expiryDatetime": "2025-12-26T08:00:00.000Z"},
        "BTC/USD:BTC-251226-100000-C": {
            "base": "BTC", "quote": "USD", "option": True, "strike": 100000.0,
            "optionType": "call", "expiryDatetime": "2025-12-26T08:00:00.000Z"},
    }  # fmt: skip
    for ours, unified in [("BTC-USDT", "BTC/USDT"), ("BTC-USDT-PERP", "BTC/USDT:USDT"),
                          ("BTC-USD-20251226", "BTC/USD:BTC-251226"),
                          ("BTC-USD-20251226-100000-C", "BTC/USD:BTC-251226-100000-C"),
                          ("BTC/USDT:BTC", "BTC/USDT:BTC")]:  # fmt: skip
        assert resolve_symbol(markets, ours) == unified
    for bad, why in [
        (["--venue", "nosuchexchange", "--symbol", "BTC-USD", "--since", "2024-01-01"],
         "ccxt has no exchange 'nosuchexchange'"),
        (["--venue", "bitfinex", "--symbol", "BTC-USD", "--since", "2024-01-02",
          "--until", "2024-01-01"], "must be before --until"),
        (["--venue", "bitfinex", "--symbol", "BTC-USD", "--since", "yesterday"],
         "'yesterday' is not a time"),
        (["--venue", "bitfinex", "--symbol", "BTC-USD", "--since", "1700000000000000"],
         "give unix seconds, ms or ns"),
        (["--venue", "bitfinex", "--symbol", "BTC-USD", "--since", "2024-01-01",
          "--timeframe", "1q"], "unsupported timeframe '1q'"),
        (["--venue", "bitfinex", "--since", "2024-01-01"], "--symbol"),
    ]:  # fmt: skip
        with pytest.raises(SystemExit) as exc:
            main(bad)
        assert exc.value.code == 2
        assert why in capsys.readouterr().err, bad


async def test_cli_reports_an_unknown_symbol_and_an_empty_range(tmp_path: Path) -> None:
    async with BitfinexEmulator(trades_per_symbol=50) as emu:
        settings = bf_settings(tmp_path, "nats://127.0.0.1:1", emu)  # never reached
        env = {**os.environ, **to_toml_env(settings)}
        cases = [
            (["--symbol", "XRP-USD", "--since", "2024-01-01"], "no market 'XRP-USD'"),
            (["--symbol", "BTC-USD", "--since", "2999-01-01"], "nothing to fetch"),
        ]
        for args, why in cases:
            proc = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "jetmarket"), "backfill", "--venue", "bitfinex",
                "--checkpoint", str(tmp_path / "ck.json"), *args,
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 2, (out, err)
            assert why in err.decode(), err.decode()
        assert not (tmp_path / "ck.json").exists()  # a refused job leaves no checkpoint
