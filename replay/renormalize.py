"""``jetmarket renormalize``: RAW through the normalizer again, into a fresh prefix.

RAW is the source of truth, so after a parser fix the market data can be rebuilt from it:

1. the raw frames of the range are replayed in RAW's own sequence order (what the live
   normalizer saw; parser state such as contract sizes depends on it) under
   ``replay.<name>.raw.>`` into a new stream ``REPLAY_<NAME>``, each carrying its RAW
   sequence (``Jm-Replay-Seq``), which some message ids are made of;
2. ``python -m normalizer`` runs as a component (streams/ never imports it) with
   ``normalizer.replay_name=<name>``: it reads that prefix and writes
   ``replay.<name>.market.>`` (and dead letters to ``replay.<name>.dlq.normalizer``) into
   the same stream;
3. once its consumer has acked the last frame it is stopped, and the output is digested;
   ``compare`` digests MARKET over the same range the same way.

The output is then a replay like any other: ``jetmarket replay --from-replay <name>``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import orjson

from replay.api import Replay
from replay.model import Digest, format_ns
from replay.output import Republisher, ensure_stream
from streams.bus.connect import connect
from streams.provision import replay_stream
from streams.settings import Settings, to_toml_env
from streams.subjects import replay_prefix

log = logging.getLogger("replay")


class RenormResult(msgspec.Struct):
    name: str
    stream: str
    frames: int
    messages: int
    dead: int
    digest: str
    seconds: float
    market_digest: str = ""
    market_messages: int = 0

    @property
    def identical(self) -> bool:
        return bool(self.market_digest) and self.market_digest == self.digest

    def lines(self) -> list[str]:
        out = [
            f"renormalized {self.frames} raw frames -> {self.messages} messages "
            f"({self.dead} dead letters) under replay.{self.name}. in stream {self.stream} "
            f"in {self.seconds:.1f}s",
            f"digest   {self.digest}",
        ]
        if self.market_digest:
            verdict = "identical" if self.identical else "DIFFERENT"
            out.append(f"MARKET   {self.market_digest}  ({self.market_messages} messages: "
                       f"{verdict})")  # fmt: skip
        return out


def default_name() -> str:
    return time.strftime("renorm-%Y%m%d-%H%M%S", time.gmtime())


async def _normalized(settings: Settings, nc: Any, name: str, last_raw: int) -> None:
    """Until the replay normalizer's consumer has acked the last replayed frame."""
    js = nc.jetstream(timeout=10.0)
    durable = f"renormalize-{name}"
    while True:
        try:
            info = await js.consumer_info(replay_stream(name), durable)
            floor = info.ack_floor.stream_seq if info.ack_floor else 0
            if floor >= last_raw and not info.num_pending and not info.num_ack_pending:
                return
        except Exception:  # not created yet
            pass
        await asyncio.sleep(0.1)


async def market_digest(
    settings: Settings, *, start: int | None, end: int | None, nc: Any, source: str = "auto"
) -> Digest:
    """MARKET over [start, end) in stream order, digested as re-normalization output is."""
    r = Replay(settings, start=start, end=end, subjects="market.>", order="stream",
               nc=nc, progress=False, source=source)  # type: ignore[arg-type]  # fmt: skip
    d: Digest | None = None
    async for chunk in r.batches():
        if d is None:  # ids are compared when the stream has them (not from ClickHouse)
            d = Digest(seq=False, msg_id=chunk[0].headers is not None)
        d.update(chunk)
    return d or Digest(seq=False, msg_id=True)


async def renormalize(
    settings: Settings,
    *,
    since: Any,
    until: Any = None,
    name: str | None = None,
    venues: list[str] | None = None,
    source: str = "auto",
    compare: bool = False,
    progress: bool | None = None,
    timeout_s: float = 3600.0,
) -> RenormResult:
    t0 = time.perf_counter()
    name = name or default_name()
    nc = await connect(settings.nats, "renormalize", max_reconnect_attempts=0)
    proc: asyncio.subprocess.Process | None = None
    logfile = Path(tempfile.gettempdir()) / f"jetmarket-{name}.log"
    try:
        stream = await ensure_stream(nc, name)
        raw = Replay(settings, start=since, end=until, subjects="raw.>", venues=venues,
                     order="stream", source=source, nc=nc, progress=progress)  # type: ignore[arg-type]  # fmt: skip
        out = Republisher(nc, replay_prefix(name), stream=stream)
        async for chunk in raw.batches():
            await out.send(chunk)
        await out.close()
        frames = out.sent
        if frames:
            env = {
                **os.environ,
                **to_toml_env(settings),
                "JETMARKET_NORMALIZER__REPLAY_NAME": name,
                # its durable on REPLAY_<NAME> is no worker's: it runs as this tool's admin
                "JETMARKET_NATS__ROLE": settings.nats.role or "admin",
                # the live normalizer owns its metrics port
                "JETMARKET_METRICS__PORTS": orjson.dumps({"normalizer": 0}).decode(),
            }
            with logfile.open("ab") as f:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "normalizer", env=env, stdout=f, stderr=f
                )
            waiter = asyncio.create_task(_normalized(settings, nc, name, out.last_seq))
            died = asyncio.create_task(proc.wait())
            done, _ = await asyncio.wait({waiter, died}, timeout=timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            if waiter not in done:
                waiter.cancel()
                died.cancel()
                why = "exited" if died in done else "timed out"
                raise RuntimeError(f"the replay normalizer {why}; its log: {logfile}")
            died.cancel()
        # with message ids (the dedup identity) when MARKET is compared from JetStream;
        # ClickHouse does not keep them
        with_ids, without = Digest(seq=False, msg_id=True), Digest(seq=False)
        res = Replay(settings, subjects="market.>", from_replay=name, order="stream", nc=nc,
                     progress=False, source="jetstream")  # fmt: skip
        async for chunk in res.batches():
            with_ids.update(chunk)
            without.update(chunk)
        info = await nc.jetstream().stream_info(stream, subjects_filter=f"replay.{name}.dlq.>")
        dead = sum((info.state.subjects or {}).values())
        result = RenormResult(name=name, stream=stream, frames=frames, messages=with_ids.count,
                              dead=dead, digest=with_ids.hexdigest(),
                              seconds=time.perf_counter() - t0)  # fmt: skip
        if compare:
            m = await market_digest(settings, start=raw.start_ns, end=raw.end_ns, nc=nc)
            if not m.msg_id:
                result.digest = without.hexdigest()
            result.market_digest, result.market_messages = m.hexdigest(), m.count
        log.info("renormalized", extra={"name": name, "frames": frames,
                                        "since": format_ns(raw.start_ns)})  # fmt: skip
        return result
    finally:
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await nc.close()
