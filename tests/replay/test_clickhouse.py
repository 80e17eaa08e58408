"""Replay from ClickHouse agrees with replay from JetStream over the same range: through the
running sink's sql.query, and directly on the chdb path once the sink has stopped."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext

from replay import Digest, Replay, ReplayMsg
from streams import schemas, sql, subjects
from streams.settings import Settings, to_toml_env
from tests.workers import ROOT, Proc

S = 1_000_000_000


def messages(t0: int) -> list[schemas.Base]:
    """Every market type, nullable fields both ways, receive-time ties across tables."""
    out: list[schemas.Base] = []
    for i in range(400):
        ts = t0 + (i // 4) * 10_000_000  # four messages per receive time
        base = {"venue": ("binance", "okx")[i % 2], "symbol": "BTC-USDT", "ts_event": ts - 5,
                "ts_recv": ts}  # fmt: skip
        k = i % 8
        if k == 0:
            out.append(schemas.Trade(**base, id=str(i), price=65000.1 + i, size=0.001 * i,
                                     side="sell", aggregated=i % 16 == 0))  # fmt: skip
        elif k == 1:
            prev = i - 1 if i % 2 else None
            out.append(schemas.Book(**base, snapshot=i % 3 == 0, bids=[(65000.5, 1.25)],
                                    asks=[(65001.0, 0.0), (65002.5, 3.1)], seq=i,
                                    prev_seq=prev, checksum=-12345))  # fmt: skip
        elif k == 2:
            out.append(schemas.Funding(**base, rate=0.0001, next_funding_ts=ts + S if i % 3
                                       else None, predicted_rate=None))  # fmt: skip
        elif k == 3:
            out.append(schemas.Ticker(**base, last=1.5, bid=None, ask=2.25, volume_24h=1e-8))
        elif k == 4:
            out.append(schemas.Instrument(**base, native_symbol="BTCUSDT", kind="option",
                                          base="BTC", quote="USDT", settle=None, tick_size=0.1,
                                          lot_size=0.001, expiry_ts=ts + 86400 * S,
                                          strike=70000.0, option_type="call"))  # fmt: skip
        elif k == 5:
            out.append(schemas.Candle(**base, interval="1m", ts_open=ts - 60 * S, open=1.0,
                                      high=2.0, low=0.5, close=1.5, volume=10.0, closed=True,
                                      trades=None))  # fmt: skip
        elif k == 6:
            out.append(schemas.Gap(**base, reason="sequence", channel="depth",
                                   expected_seq=i, got_seq=None, detail="é"))  # fmt: skip
        else:
            out.append(schemas.Mark(**base, mark_price=65000.25, index_price=None))
    return out


async def publish(nc: Client, js: JetStreamContext, t0: int) -> int:
    msgs = messages(t0)
    for m in msgs:
        subject = subjects.market(m.__struct_config__.tag, m.venue, m.symbol)  # type: ignore[attr-defined]
        await nc.publish(subject, schemas.encode(m))
        hdr = {subjects.H_RECV_NS: str(m.ts_recv), subjects.H_CONN: f"{m.venue}-1"}
        await nc.publish(subjects.raw(m.venue, "trade", "BTCUSDT"), b'{"x":"\\u00e9"}', headers=hdr)
    await js.publish("market.trade.test.LAST", schemas.encode(msgs[0]))
    await js.publish("raw.test.trade.LAST", b"{}", headers={subjects.H_RECV_NS: str(t0)})
    return len(msgs) + 1


async def rows(nc: Client) -> int:
    tables = ["trades", "book_updates", "funding", "tickers", "instruments", "candles", "gaps",
              "marks", "raw_frames"]  # fmt: skip
    q = "SELECT " + " + ".join(f"(SELECT count() FROM {t})" for t in tables)
    try:
        return int((await sql.query(nc, q, timeout=3)).rows[0][0])
    except sql.SqlError:
        return -1


def key(msgs: list[ReplayMsg]) -> list[tuple]:
    return [(m.subject, m.stream, m.seq, m.ts_recv, m.data,
             {k: v for k, v in (m.headers or {}).items() if k.startswith("Jm-")} or None
             if m.stream == "RAW" else None) for m in msgs]  # fmt: skip


async def collect(settings: Settings, **kw: object) -> list[ReplayMsg]:
    r = Replay(settings, subjects=["market.>", "raw.>"], progress=False, **kw)  # type: ignore[arg-type]
    return [m async for m in r]


async def test_clickhouse_and_jetstream_replays_agree(
    tmp_path: Path, settings: Settings, nc: Client, js: JetStreamContext
) -> None:
    t0 = time.time_ns() - 3600 * S
    n = await publish(nc, js, t0)
    sink = Proc("sinks", settings, "clickhouse", log=tmp_path / "sink.log").start()
    try:
        deadline = time.monotonic() + 60
        while await rows(nc) < 2 * n and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert await rows(nc) == 2 * n
        rng = {"start": t0 + 20_000_000, "end": t0 + 900_000_000}  # a middle part
        from_js = await collect(settings, **rng, source="jetstream", nc=nc)
        from_ch = await collect(settings, **rng, source="clickhouse", clickhouse="sink", nc=nc)
        assert len(from_js) == 2 * (90 - 2) * 4
        assert key(from_ch) == key(from_js)
        assert [m.msg for m in from_ch if m.msg] == [m.msg for m in from_js if m.msg]
        # pages smaller than a table: keyset pagination across receive-time ties
        small = Settings(**{**{f: getattr(settings, f) for f in settings.__struct_fields__},
                            "replay": type(settings.replay)(page_rows=100)})  # fmt: skip
        paged = await collect(small, **rng, source="clickhouse", clickhouse="sink", nc=nc)
        assert key(paged) == key(from_js)
        # RAW in its own order (re-normalization of history past the stream's retention)
        kw = {"subjects": "raw.>", "order": "stream", "progress": False, "nc": nc, **rng}
        by_seq_js = [m async for m in Replay(small, source="jetstream", **kw)]
        by_seq_ch = [m async for m in Replay(small, source="clickhouse", **kw)]
        assert key(by_seq_ch) == key(by_seq_js) and len(by_seq_js) == len(from_js) // 2
        assert [m.seq for m in by_seq_js] == sorted(m.seq for m in by_seq_js)
        # auto: the range starts before the streams' first message (stored just now) and
        # RAW/MARKET are marked as having lost their start -> still JetStream, nothing expired
        auto = Replay(settings, subjects="market.>", **rng, progress=False, nc=nc)
        async for _ in auto:
            pass
        assert auto.stats.source == "MARKET:jetstream"
    finally:
        sink.stop()

    # the sink is gone: the chdb path is free, read it directly (in a child: chdb is in-process)
    want = Digest()
    want.update(from_js)
    out = subprocess.run(
        [sys.executable, "-m", "ops", "replay", "--source", "clickhouse", "--clickhouse",
         "direct", "--subjects", "market.>", "raw.>", "--since", str(rng["start"]),
         "--until", str(rng["end"]), "--no-progress"],
        env={**to_toml_env(settings)}, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    got = re.search(r"(\d+) messages .* from (\S+);.* sha256 ([0-9a-f]{64})", out.stderr)
    assert got, out.stderr[-2000:]
    assert (int(got[1]), got[2], got[3]) == (len(from_js), "RAW:clickhouse,MARKET:clickhouse",
                                             want.hexdigest())  # fmt: skip
