"""Two normalizer instances, each owning one partition of RAW (docs/scaling.md): every raw
frame normalized exactly once, per-subject order kept, both partitions busy, venue-wide
frames (instrument lists, connection events) applied by both and published by one."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from normalizer.core import Dead, Normalizer
from normalizer.worker import main as normalizer_main
from ops.status import lags
from streams import subjects
from streams.bus.connect import connect
from streams.bus.server import NatsServer
from streams.provision import STREAM_DLQ, STREAM_MARKET, STREAM_RAW, provision
from streams.settings import Settings, SettingsError
from tests.conftest import make_settings
from tests.venues.binance.test_parse import trade_frame
from tests.venues.okx.test_okx import instruments_body, push
from tests.workers import inprocess

N = 2
PER_SYMBOL = 600
BINANCE = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT"]
OKX = ["BTC-USDT-SWAP", "BTC-USD-SWAP", "BTC-USDT"]
BYBIT = ["BTCUSDT", "ETHUSDT"]


def _okx_trade(inst: str, i: int) -> bytes:
    t = {"instId": inst, "tradeId": str(i), "px": f"{50000 + i % 97}.5", "sz": "3",
         "side": "sell" if i % 3 else "buy", "ts": str(1700000000000 + i)}  # fmt: skip
    return push("trades", inst, [t])


def _bybit_trade(sym: str, i: int) -> bytes:
    t = {"T": 1700000000000 + i, "s": sym, "S": "Buy", "v": "0.5", "p": f"{100 + i % 50}.25",
         "L": "PlusTick", "i": str(i), "BT": False}  # fmt: skip
    return orjson.dumps({"topic": f"publicTrade.{sym}", "type": "snapshot",
                         "ts": 1700000000000 + i, "data": [t]})  # fmt: skip


def raw_frames() -> list[tuple[str, bytes]]:
    """Symbols of three venues interleaved, after the venue-wide frames they depend on."""
    out = [(subjects.raw("okx", "instruments", "ALL"), instruments_body(*OKX[:2]))]
    for i in range(PER_SYMBOL):
        for s in BINANCE:
            out.append(
                (subjects.raw("binance", "trade", s), trade_frame(i, f"{10 + i}.5", "1", sym=s))
            )
        for s in OKX:
            out.append((subjects.raw("okx", "trades", s), _okx_trade(s, i)))
        for s in BYBIT:
            out.append((subjects.raw("bybit_linear", "publicTrade", s), _bybit_trade(s, i)))
        if i == PER_SYMBOL // 2:
            # bad input, venue-wide and per symbol: each dead-lettered once, by its owner
            out.append((subjects.raw("binance", "conn", "ALL"), b"\x00not json"))
            out.append((subjects.raw("okx", "trades", "BTC-USDT"), b'{"arg":'))
    return out


def reference(frames: list[tuple[str, bytes]]) -> tuple[dict[str, list[str]], int]:
    """What one normalizer makes of the frames (stream seq = position + 1 on a fresh
    stream): msg ids per MARKET subject in order, and the number of dead letters."""
    n = Normalizer()
    per_subject: dict[str, list[str]] = defaultdict(list)
    dead = 0
    hdr = {subjects.H_RECV_NS: "1700000000000000001"}
    for seq, (subject, data) in enumerate(frames, 1):
        res = n.normalize(subject, data, hdr, seq)
        if isinstance(res, Dead):
            dead += 1
            continue
        for o in res:
            per_subject[o.subject].append(o.msg_id)
    return per_subject, dead


async def read_all(js: JetStreamContext, stream: str, subject: str, n: int) -> list:
    sub = await js.pull_subscribe(subject, stream=stream)
    got: list = []
    while len(got) < n:
        batch = await sub.fetch(min(1000, n - len(got)), timeout=5)
        for m in batch:
            await m.ack()
        got.extend(batch)
    await sub.unsubscribe()
    return got


async def wait_for(js: JetStreamContext, stream: str, n: int, timeout: float = 30.0) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (got := (await js.stream_info(stream)).state.messages) < n:
        if loop.time() > deadline:
            break
        await asyncio.sleep(0.05)
    return got


def part(tmp_path: Path, url: str, p: int) -> Settings:
    norm = {"partitions": N, "partition": p, "consumer": {"batch": 500}}
    return make_settings(tmp_path, url, normalizer=norm)


def test_partition_settings_are_validated(tmp_path: Path) -> None:
    for bad in ({"partitions": 2, "partition": 2}, {"partitions": 0}, {"partition": -1}):
        with pytest.raises(SettingsError, match=r"normalizer\.partition"):
            make_settings(tmp_path, "nats://127.0.0.1:1", normalizer=bad)
    s = make_settings(tmp_path, "nats://127.0.0.1:1", normalizer={"partitions": 4, "partition": 3})
    assert s.normalizer.partition_durable() == "normalizer-p3of4"
    assert make_settings(tmp_path, "nats://x:1").normalizer.partition_durable() == "normalizer"
    # a partitioned stored subject parses as the subject the collector published
    assert subjects.parse_raw("raw.okx.trades.BTC-USDT.4.3") == ("okx", "trades", "BTC-USDT")
    with pytest.raises(ValueError):
        subjects.parse_raw("raw.okx.trades.BTC-USDT.4")


async def test_two_partitions_normalize_every_frame_once_in_order(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    settings = [part(tmp_path, nats_server.url, p) for p in range(N)]
    nc: Client = await connect(settings[0].nats, "test")
    js = nc.jetstream(timeout=10.0)
    await provision(js, settings[0])
    frames = raw_frames()
    expected, dead = reference(frames)
    total = sum(len(v) for v in expected.values())
    assert dead == 2 and total == PER_SYMBOL * (len(BINANCE) + len(OKX) + len(BYBIT)) + 2

    hdr = {subjects.H_RECV_NS: "1700000000000000001", subjects.H_CONN: "t-1"}
    async with (
        inprocess("normalizer", normalizer_main, settings[0]) as w0,
        inprocess("normalizer", normalizer_main, settings[1]) as w1,
    ):
        for i, (subject, data) in enumerate(frames, 1):
            await nc.publish(subject, data, headers=hdr)
            if i % 2000 == 0:
                await nc.flush()
        await nc.flush()
        assert await wait_for(js, STREAM_RAW, len(frames)) == len(frames)
        assert await wait_for(js, STREAM_MARKET, total) == total
        assert await wait_for(js, STREAM_DLQ, dead) == dead
        await asyncio.sleep(0.5)  # anything extra (a duplicate) would land by now

    # RAW stored every frame under its partition; both partitions hold symbols
    info = await js.stream_info(STREAM_RAW, subjects_filter=">")
    stored = info.state.subjects or {}
    assert sum(stored.values()) == len(frames)
    owner = {}
    for s in stored:
        venue, _, sym, n_token, p = s.split(".")[1:]
        assert n_token == str(N)
        owner[(venue, sym)] = int(p)
    assert set(owner.values()) == {0, 1}
    # the instrument list and at least one OKX swap that needs it are in different
    # partitions, so that swap's trades prove the venue-wide frame reached its partition
    assert any(owner[("okx", s)] != owner[("okx", "ALL")] for s in OKX[:2])

    # exactly once: counts and ids, nothing left over in MARKET or DLQ
    assert (await js.stream_info(STREAM_MARKET)).state.messages == total
    assert (await js.stream_info(STREAM_DLQ)).state.messages == dead
    msgs = await read_all(js, STREAM_MARKET, subjects.MARKET_ALL, total)
    got: dict[str, list[str]] = defaultdict(list)
    for m in msgs:
        got[m.subject].append(m.headers[subjects.H_MSG_ID])
    assert {s: sorted(v) for s, v in got.items()} == {s: sorted(v) for s, v in expected.items()}
    # per-subject order is the order one normalizer would have produced
    assert got == expected
    for subject, ids in got.items():
        if subject.startswith("market.trade."):
            tids = [int(i.rsplit(":", 1)[1]) for i in ids]
            assert tids == sorted(set(tids)), subject
    assert len(got["market.instrument.okx.BTC-USDT-PERP"]) == 1

    # both instances did real work; both durables fully acked
    published = [w.health.fields.get("published", 0) for w in (w0, w1)]
    assert all(p > 500 for p in published) and sum(published) == total, published
    for p in range(N):
        ci = await js.consumer_info(STREAM_RAW, settings[p].normalizer.partition_durable())
        assert ci.num_pending == 0 and ci.num_ack_pending == 0
    # jetmarket status shows each partition's consumer
    shown = {durable for _, durable, _, _ in await lags(js, settings[0])}
    assert {"normalizer-p0of2", "normalizer-p1of2"} <= shown
    await nc.close()
