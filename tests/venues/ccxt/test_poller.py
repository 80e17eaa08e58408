"""The ccxt long tail: symbol mapping, the ccxt parser, and the poller end to end
(emulated Bitfinex REST -> ccxt -> poller subprocess -> nats-server -> normalizer -> sink ->
ClickHouse) across a kill -9 of the poller; ccxt's rate limiter seen from the venue side."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import orjson
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from collectors.ccxt_poller import CcxtExchangeSettings, Cursor, make_exchange
from normalizer.core import Dead, Normalizer
from streams import schemas, sql, subjects
from streams.bus.server import NatsServer
from streams.provision import STREAM_RAW
from streams.settings import Settings
from streams.symbols import ccxt as symbols
from tests.conftest import make_settings
from tests.pipeline.test_e2e import wait_rows
from tests.venues.ccxt.emulator import T0_MS, BitfinexEmulator
from tests.workers import Proc

MINUTE = 60_000


@pytest.mark.parametrize(
    ("unified", "ours"),
    [
        ("BTC/USDT", "BTC-USDT"),
        ("BTC/USDT:USDT", "BTC-USDT-PERP"),
        ("BTC/USD:BTC", "BTC-USD-PERP"),
        ("ETH/USDT:USDT-251226", "ETH-USDT-20251226"),
        ("BTC/USD:BTC-251226-100000-C", "BTC-USD-20251226-100000-C"),
        ("ETH/USDC:USDC-260327-2500-P", "ETH-USDC-20260327-2500-P"),
    ],
)
def test_symbols_both_ways(unified: str, ours: str) -> None:
    assert symbols.to_symbol(unified) == ours
    assert symbols.to_unified(ours) == unified


def test_symbol_resolution_against_markets_and_errors() -> None:
    # a USD-quoted perp settled in USD (not the usual inverse) is found in the markets
    assert symbols.resolve("BTC-USD-PERP", ["BTC/USD", "BTC/USD:USD"]) == "BTC/USD:USD"
    assert symbols.resolve("BTC/USD", ["BTC/USD"]) == "BTC/USD"
    with pytest.raises(ValueError, match="no market"):
        symbols.resolve("XRP-USD", ["BTC/USD"])
    for bad in ("BTCUSDT", "BTC/USDT:USDT-2512", "BTC/USDT:USDT-251226-1-X", "/USDT"):
        with pytest.raises(ValueError):
            symbols.to_symbol(bad)


def _norm(n: Normalizer, channel: str, sym: str, body: Any, recv: int = 1_700_000_100_000_000_000):
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return n.normalize(
        subjects.raw("kucoin", channel, sym), data, {subjects.H_RECV_NS: str(recv)}, 9
    )


def test_parser_values_contracts_ticker_bbo_and_dead_letters() -> None:
    n = Normalizer()
    trade = {"id": "7", "symbol": "BTC/USDT:USDT", "timestamp": 1_700_000_000_123,
             "price": 65000.1, "amount": 3.0, "side": "sell", "info": {}}  # fmt: skip
    dead = _norm(n, "ccxt-trades", "BTC/USDT:USDT", [trade])
    assert isinstance(dead, Dead) and "contract size" in dead.reason
    market = {"id": "XBTUSDTM", "symbol": "BTC/USDT:USDT", "base": "BTC", "quote": "USDT",
              "settle": "USDT", "type": "swap", "contract": True, "linear": True,
              "contractSize": 0.001, "precision": {"price": 0.1, "amount": 1.0},
              "precisionMode": 4}  # fmt: skip
    (inst,) = _norm(n, "ccxt-market", "BTC/USDT:USDT", market)
    i = schemas.decode(inst.data)
    assert isinstance(i, schemas.Instrument)
    assert (i.symbol, i.kind, i.tick_size, i.contract_size) == ("BTC-USDT-PERP", "perpetual", 0.1,
                                                                0.001)  # fmt: skip
    (out,) = _norm(n, "ccxt-trades", "BTC/USDT:USDT", [trade])
    t = schemas.decode(out.data)
    assert out.subject == "market.trade.kucoin.BTC-USDT-PERP"
    assert out.msg_id == "kucoin:trade:BTC-USDT-PERP:7"
    assert isinstance(t, schemas.Trade)
    assert (t.price, t.size, t.side, t.ts_event) == (65000.1, 0.003, "sell",
                                                     1_700_000_000_123_000_000)  # fmt: skip
    ticker = {"symbol": "ETH/USDT", "timestamp": None, "last": 3500.5, "bid": 3500.4,
              "ask": 3500.6, "bidVolume": 2.0, "askVolume": 1.5, "baseVolume": 10.0}  # fmt: skip
    tk, bbo = _norm(n, "ccxt-ticker", "ETH/USDT", ticker, recv=5_000_000)
    b = schemas.decode(bbo.data)
    assert isinstance(b, schemas.BBO) and (b.bid_price, b.ask_size, b.ts_event) == (
        3500.4, 1.5, 5_000_000)  # fmt: skip
    assert schemas.decode(tk.data).last == 3500.5  # type: ignore[union-attr]
    # the backfill's channel maps to the same candle identity when closed
    (c,) = _norm(n, "ccxt-hist-ohlcv-1m", "ETH/USDT", [[1_700_000_040_000, 1, 2, 0.5, 1.5, 9]])
    assert c.msg_id == "kucoin:candle:ETH-USDT:1m:1700000040000:c"
    for channel, sym, body, why in [
        ("ccxt-trades", "ETH/USDT", b"[{not json", "malformed"),
        ("ccxt-trades", "ETH/USDT", [{**trade, "symbol": "ETH/USDT", "price": None}], "invalid"),
        ("ccxt-trades", "BTC/USDT", [{**trade, "symbol": "ETH/USDT"}], "published for"),
        ("ccxt-ohlcv-1m", "ETH/USDT", [[1_700_000_040_001, 1, 2, 0.5, 1.5, 9]], "grid"),
        ("ccxt-ohlcv-7x", "ETH/USDT", [], "timeframe"),
        ("ccxt-depth", "ETH/USDT", [], "unknown ccxt channel"),
        ("trade", "ETH/USDT", [], "is not ccxt"),
    ]:
        res = _norm(n, channel, sym, body)
        assert isinstance(res, Dead) and why in res.reason, (channel, res)


def test_cursor_skips_seen_ids_at_the_same_millisecond() -> None:
    c = Cursor(100, frozenset({"a"}))
    rows = [{"id": i, "timestamp": ms} for i, ms in [("z", 99), ("a", 100), ("b", 100), ("c", 101)]]
    new = c.new(rows)
    assert [r["id"] for r in new] == ["b", "c"]
    assert c.advance(new[:1]) == Cursor(100, frozenset({"a", "b"}))
    assert Cursor.parse(c.advance(new).header()) == Cursor(101, frozenset({"c"}))


def poller_settings(tmp_path: Path, url: str, emu: BitfinexEmulator, **over: Any) -> Settings:
    ex = {"symbols": ["BTC/USD", "ETH/USD"], "api_url": emu.url, "rate_limit_ms": 10,
          "transport": "rest",  # bitfinex has WebSocket in ccxt pro: this tests the poller
          "trades_limit": 50, "trades_interval_s": 0.2, "ticker_interval_s": 0.5,
          "ohlcv_interval_s": 0.3, **over}  # fmt: skip
    return make_settings(
        tmp_path, url, collector={"ccxt": {"exchanges": {"bitfinex": ex}}},
        sink={"flush_interval_s": 0.2}, log={"level": "WARNING"},
    )  # fmt: skip


async def caught_up(js: JetStreamContext, emu: BitfinexEmulator, timeout: float = 60) -> None:
    """Wait until the newest trades frame in RAW holds the newest trade the venue has."""
    deadline = asyncio.get_running_loop().time() + timeout
    for vid, unified in (("tBTCUSD", "BTC/USD"), ("tETHUSD", "ETH/USD")):
        want = str(emu.visible(vid)[-1][0])
        while True:
            try:
                last = await js.get_last_msg(STREAM_RAW, f"raw.bitfinex.ccxt-trades.{unified}")
                if orjson.loads(last.data)[-1]["id"] == want:
                    break
            except Exception:  # nothing published yet
                pass
            assert asyncio.get_running_loop().time() < deadline, f"poller stuck before {want}"
            await asyncio.sleep(0.05)


async def test_poller_end_to_end_exact_across_a_kill9(
    tmp_path: Path, nats_server: NatsServer, nc: Client, js: JetStreamContext
) -> None:
    async with BitfinexEmulator(trades_per_symbol=2000, seed=11) as emu:
        last_minute = (emu.now_ms - T0_MS) // MINUTE  # the last whole minute of history
        emu.now_ms = T0_MS + 6 * MINUTE - 1  # clock at minute ends: every candle is complete
        first = {v: emu.visible(v)[-50][0] for v in ("tBTCUSD", "tETHUSD")}  # first page
        settings = poller_settings(tmp_path, nats_server.url, emu)
        poller = Proc("collectors", settings, "ccxt:bitfinex", log=tmp_path / "poller.log")
        norm = Proc("normalizer", settings, log=tmp_path / "normalizer.log")
        sink = Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log")
        procs = [poller.start(), norm.start(), sink.start()]
        try:
            await caught_up(js, emu)  # the first page, once the process is up
            for minute in range(7, last_minute + 1):
                emu.now_ms = T0_MS + minute * MINUTE - 1
                if minute == 11:
                    poller.kill9()  # mid-way; history keeps growing while it is down
                if minute == 16:
                    poller.start()
                if poller.alive():
                    await caught_up(js, emu)
            want = {v: [r for r in emu.visible(v) if r[0] >= first[v]] for v in first}
            total = sum(len(x) for x in want.values())
            got = await wait_rows(
                nc, "SELECT count() FROM trades WHERE venue = 'bitfinex'", total, 90
            )
            await asyncio.sleep(1.0)  # a late duplicate would show now
            res = await sql.query(
                nc, "SELECT symbol, id, price, size, side FROM trades ORDER BY symbol, id",
                max_rows=total + 100,
            )  # fmt: skip
            assert got == total == len(res.rows), "gap or duplicate across the restart"
            rows = {(s, i): (p, q, side) for s, i, p, q, side in res.rows}
            for vid, sym in (("tBTCUSD", "BTC-USD"), ("tETHUSD", "ETH-USD")):
                for tid, _, amount, price in want[vid]:
                    side = "sell" if amount < 0 else "buy"
                    assert rows[(sym, str(tid))] == (price, abs(amount), side), tid
            # candles: each complete minute once, values as the venue aggregated them
            candles = emu.candles("tBTCUSD")
            res = await sql.query(
                nc, "SELECT toUnixTimestamp64Milli(ts_open), open, close, high, low, volume "
                "FROM candles WHERE symbol = 'BTC-USD' AND closed ORDER BY ts_open",
            )  # fmt: skip
            assert [list(r) for r in res.rows] == [list(c) for c in candles]
            tickers = await wait_rows(nc, "SELECT count() FROM tickers", 1, 10)
            assert tickers >= 2
            # the raw frames are ccxt's unified JSON, with the cursor beside them
            last = await js.get_last_msg(STREAM_RAW, "raw.bitfinex.ccxt-trades.BTC/USD")
            assert orjson.loads(last.data)[-1]["id"] == str(want["tBTCUSD"][-1][0])
            assert last.headers and last.headers["Jm-Cursor"].startswith(
                str(want["tBTCUSD"][-1][1])
            )
        finally:
            for p in reversed(procs):
                p.stop()


async def test_ccxt_rate_limiter_spaces_requests_and_bad_responses_do_not_kill_it() -> None:
    async with BitfinexEmulator(trades_per_symbol=300, seed=3) as emu:
        cfg = CcxtExchangeSettings(symbols=["BTC/USD"], api_url=emu.url, rate_limit_ms=40)
        ex = make_exchange("bitfinex", cfg)
        try:
            await ex.load_markets()
            emu.break_next = [b"<html>bad gateway</html>"]
            with pytest.raises(Exception):  # noqa: B017 (ccxt raises what it raises; the poller logs it)
                await ex.fetch_trades("BTC/USD", T0_MS, 10)
            for i in range(8):
                await ex.fetch_trades("BTC/USD", T0_MS + i * 1000, 10)
        finally:
            await ex.close()
        # ccxt's leaky bucket: each request waits rateLimit x its cost after the previous
        cost = ex.api["public"]["get"]["trades/{symbol}/hist"]["cost"]
        times = [t for t, path, _ in emu.requests if path.startswith("/v2/trades/")]
        assert len(times) == 9
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= 0.9 * cost * 0.040, gaps
