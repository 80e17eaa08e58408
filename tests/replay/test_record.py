"""record -> file -> replay --from-file -> the same raw frames, on a fresh nats-server."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from ops import cli
from replay import Replay, ReplayMsg
from replay import cli as replay_cli
from replay.record import RecordError, read_chunks, read_header
from streams import subjects
from streams.bus.connect import connect
from streams.bus.server import NatsServer, free_port
from streams.provision import provision
from streams.settings import NatsServerSettings, Settings
from tests.conftest import make_settings

T0 = 1_700_000_000_000_000_000


def frames_key(msgs: list[ReplayMsg]) -> list[tuple]:
    def h(m: ReplayMsg, k: str) -> str | None:
        return (m.headers or {}).get(k)

    return [(m.subject, m.ts_recv, m.data, h(m, subjects.H_CONN), h(m, subjects.H_MSG_ID))
            for m in msgs]  # fmt: skip


async def raw_frames(settings: Settings, **kw: object) -> list[ReplayMsg]:
    r = Replay(settings, subjects="raw.>", order="stream", source="jetstream", progress=False,
               **kw)  # type: ignore[arg-type]  # fmt: skip
    return [m for chunk in [c async for c in r.batches()] for m in chunk]


async def fill(nc: Client, js: JetStreamContext, n: int) -> None:
    for i in range(n):
        hdr = {subjects.H_RECV_NS: str(T0 + i * 1000), subjects.H_CONN: f"c{i // 500}"}
        subject = subjects.raw("binance", ("trade", "depth")[i % 2], "BTCUSDT")
        data = b'{"i":%d,"bin":"\\u00e9\\u0000"}' % i
        if i % 250 == 0:  # acked: stored with Nats-Expected-Stream, and an id
            hdr[subjects.H_MSG_ID] = f"id-{i}"
            await js.publish(subject, data, headers=hdr, stream="RAW")
        else:
            await nc.publish(subject, data, headers=hdr)
    await js.publish(subjects.raw("okx", "instruments", "ALL"), bytes(range(256)),
                     headers={subjects.H_RECV_NS: str(T0 + n * 1000)})  # fmt: skip


def parse(*argv: str):  # type: ignore[no-untyped-def]
    return cli._parser().parse_args(list(argv))


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
async def test_record_file_replay_gives_the_same_raw_frames(
    tmp_path: Path, settings: Settings, nc: Client, js: JetStreamContext, compression: str
) -> None:
    await fill(nc, js, 3000)
    original = await raw_frames(settings)
    assert len(original) == 3001
    path = tmp_path / "rec.jmrec"
    args = parse("record", str(path), "--no-progress", "--source", "jetstream",
                 "--compression", compression)  # fmt: skip
    assert await replay_cli._record(settings, args) == 0
    assert read_header(path)["format"] == "jetmarket-record"
    assert path.read_bytes()[:2] == (b"\x1f\x8b" if compression == "gzip" else b"\x28\xb5")
    recorded = [m for chunk in read_chunks(path) for m in chunk]
    assert frames_key(recorded) == frames_key(original)
    assert [m.seq for m in recorded] == [m.seq for m in original]

    # a second, empty server: the recording played back onto its RAW
    cfg = NatsServerSettings(port=free_port(), monitor_port=free_port(),
                             store_dir=str(tmp_path / "nats2"))  # fmt: skip
    srv = NatsServer(cfg, log_file=tmp_path / "nats2.log").start()
    try:
        other = make_settings(tmp_path / "b", srv.url)
        nc2 = await connect(other.nats, "test2")
        await provision(nc2.jetstream(), other)
        await nc2.close()
        assert await replay_cli._replay(other, parse("replay", "--from-file", str(path),
                                                     "--no-progress")) == 0  # fmt: skip
        again = await raw_frames(other)
        assert frames_key(again) == frames_key(original)
        # a filtered playback: one channel, part of the time range, under a replay name
        r = Replay(other, from_file=str(path), subjects="raw.*.depth.*", start=T0 + 1_000_000,
                   progress=False)  # fmt: skip
        part = [m async for m in r]
        assert part and all(m.subject == "raw.binance.depth.BTCUSDT" for m in part)
        assert all(m.ts_recv >= T0 + 1_000_000 for m in part) and len(part) == 1000
    finally:
        srv.stop()


def test_bad_files_are_refused_with_a_reason(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"hello world")
    with pytest.raises(RecordError, match="not a jetmarket recording"):
        read_header(junk)
    other = tmp_path / "other.gz"
    other.write_bytes(gzip.compress(b"\x00\x00\x00\x02hi"))
    with pytest.raises(RecordError, match="not a jetmarket recording"):
        read_header(other)
    good = tmp_path / "good.jmrec"
    from replay.record import Writer

    with Writer(good, compression="gzip") as w:
        w.write([ReplayMsg("raw.a.b.c", "RAW", i, i, b"x" * 100) for i in range(3000)])
    cut = tmp_path / "cut.jmrec"
    cut.write_bytes(gzip.compress(gzip.decompress(good.read_bytes())[:-500]))
    with pytest.raises(RecordError, match="truncated"):
        list(read_chunks(cut))
