"""nats-server's own CPU per message for each step a trade takes through the pipeline.

``python -m benchmarks.bench_server_cost [N]``: on a throwaway nats-server with the streams
as provisioned, N messages shaped as the pipeline writes them go through each step, and
the server's CPU time (user + system, /proc) is divided by N:

- RAW ingest: the collector's HPUB (receive-time and connection headers), core publishes
  with an acked barrier every 2000, as ``RawPublisher`` writes;
- MARKET ingest: the normalizer's HPUB (``Nats-Msg-Id``) of the typed trade, same bursts;
- a delivery to a worker: ``BatchConsumer`` (push, AckAll per batch) reading RAW back;
- for scale, the same MARKET messages without any header (a scratch stream), and a
  delivery with no acks at all (a scratch consumer): what the contract's header and
  explicit acks cost the server.

A trade costs the server one RAW ingest, one MARKET ingest and three deliveries (the
normalizer reads RAW, the sink reads MARKET and, with ``sink.store_raw``, RAW again):
the table ends with that sum, the floor under the end-to-end benchmark's nats-server
figure (which also carries small batches, acks and barriers).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from benchmarks.bench import _remove
from benchmarks.frames import gen_trades
from benchmarks.servers import temp_nats
from normalizer.core import Normalizer
from streams import subjects
from streams.bus import wire
from streams.bus.consumer import BatchConsumer, send_commands
from streams.bus.runtime import Worker, start_worker
from streams.provision import STREAM_MARKET, STREAM_RAW, provision
from streams.settings import ConsumerSettings, from_mapping

BURST = 2000  # core publishes per acked barrier, as the collector and normalizer write


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _NoAcks(BatchConsumer):
    """A scratch consumer without acks (not the contract's: for the comparison only)."""

    def _config(self, start_seq: int | None, deliver_subject: str) -> ConsumerConfig:
        cfg = self._consumer_config(start_seq, deliver_subject, AckPolicy.NONE)
        cfg.max_ack_pending = None  # refused by the server without an ack policy
        return cfg


async def measure(n: int) -> list[tuple[str, float]]:
    """(step, server CPU microseconds per message) for each step."""
    tmp = Path(tempfile.mkdtemp(prefix="jm-bench-srvcost-"))
    srv = temp_nats(tmp)
    assert srv.proc is not None
    pid = srv.proc.pid
    try:
        nats = {"url": srv.url, "credentials_dir": str(tmp / "creds")}
        settings = from_mapping(
            {"nats": nats, "metrics": {"ports": {}}, "log": {"level": "WARNING"}}
        )
        w = Worker("bench", settings)
        await start_worker(w)
        nc, js = w.nc, w.js
        assert nc is not None and js is not None
        await provision(js, settings)
        await js.add_stream(StreamConfig(name="NOHDR", subjects=["nohdr.>"]))
        frames = gen_trades(n)
        raw_subject = subjects.raw("binance", "trade", "BTCUSDT")
        norm = Normalizer()
        hdr = {subjects.H_RECV_NS: "1700000000000000000", subjects.H_CONN: "bench-1"}
        market = [norm.normalize(raw_subject, f, hdr, i)[0] for i, f in enumerate(frames, 1)]  # type: ignore[index]

        async def ingest(commands: list[bytes], stream: str, last: tuple[str, bytes]) -> float:
            c0 = _cpu(pid)
            for i in range(0, len(commands), BURST):
                await send_commands(nc, b"".join(commands[i : i + BURST]))
                await js.publish(last[0], last[1], stream=stream)  # the burst's barrier
            await nc.flush()
            return (_cpu(pid) - c0) / n * 1e6

        def cmd(head: bytes, data: bytes) -> bytes:
            return head + data + wire.CRLF

        rows = []
        raw_cmds = [cmd(wire.hpub_raw(raw_subject, 1_700_000_000_000_000_000 + i, "bench-1",
                                      len(f)), f) for i, f in enumerate(frames)]  # fmt: skip
        rows.append(("RAW ingest (collector HPUB, 2 headers)",
                     await ingest(raw_cmds, STREAM_RAW, (raw_subject, frames[0]))))  # fmt: skip
        mkt_cmds = [cmd(wire.hpub_id(o.subject, o.msg_id, len(o.data))[0], o.data) for o in market]
        barrier = (market[0].subject, market[0].data)
        rows.append(("MARKET ingest (normalizer HPUB, Nats-Msg-Id)",
                     await ingest(mkt_cmds, STREAM_MARKET, barrier)))  # fmt: skip
        plain = [cmd(wire.pub("nohdr." + o.subject, len(o.data)), o.data) for o in market]
        rows.append(("  for scale: the same messages, no header",
                     await ingest(plain, "NOHDR", ("nohdr.x", b"x"))))  # fmt: skip

        async def deliver(consumer: BatchConsumer, ack: bool) -> float:
            c0 = _cpu(pid)
            await consumer.start()
            got = 0
            while got < n:
                msgs = await consumer.fetch(timeout=10.0)
                if not msgs:
                    raise RuntimeError(f"delivery stalled at {got} of {n}")
                got += len(msgs)
                if ack:
                    await consumer.ack_through(msgs[-1])
            await nc.flush()
            cost = (_cpu(pid) - c0) / n * 1e6
            await consumer.stop()
            return cost

        filt = subjects.RAW_ALL
        rows.append(("delivery to a worker (push, AckAll per 2000)",
                     await deliver(BatchConsumer(js, STREAM_RAW, ConsumerSettings(
                         durable="cost-acked", batch=BURST), filt), True)))  # fmt: skip
        rows.append(("  for scale: the same delivery without acks",
                     await deliver(_NoAcks(js, STREAM_RAW, ConsumerSettings(
                         durable="cost-noack", batch=BURST), filt), False)))  # fmt: skip
        await nc.drain()
        return rows
    finally:
        srv.stop()
        _remove(tmp)


def floor(rows: list[tuple[str, float]]) -> tuple[float, float]:
    """Server CPU per trade from the measured steps: (store_raw on, off)."""
    raw_in, mkt_in, _, delivery, _ = (v for _, v in rows)
    return raw_in + mkt_in + 3 * delivery, raw_in + mkt_in + 2 * delivery


def main() -> None:
    import uvloop

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    rows = uvloop.run(measure(n))
    on, off = floor(rows)
    print(f"nats-server CPU per message, {n:,} messages per step (load {os.getloadavg()[0]:.1f})")
    for name, us in rows:
        print(f"  {name:48s} {us:6.2f} us")
    print(f"  {'per trade: RAW + MARKET ingest + 3 deliveries':48s} {on:6.2f} us"
          f"  (store_raw off, 2 deliveries: {off:.2f} us)")  # fmt: skip
    print(f"  one core carries {1e6 / on:,.0f} trades/s of server work alone")


if __name__ == "__main__":
    main()
