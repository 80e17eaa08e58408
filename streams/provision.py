"""Idempotent provisioning of the four JetStream streams.

Re-running with changed limits updates the stream in place; nothing is ever deleted
or purged here. A change JetStream cannot apply in place (e.g. storage type) fails
with the stream name and the server's reason.
"""

from __future__ import annotations

import logging

from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    SubjectTransform,
)
from nats.js.errors import NotFoundError

from streams import subjects
from streams.bus import bigframes, budget
from streams.settings import Settings, StreamLimits

log = logging.getLogger("streams.provision")

STREAM_RAW = "RAW"
STREAM_MARKET = "MARKET"
STREAM_EXEC = "EXEC"
STREAM_DLQ = "DLQ"


def replay_stream(name: str) -> str:
    """The stream that keeps ``replay.<name>.>`` (re-normalization, recorded replays)."""
    return "REPLAY_" + subjects.token(name).replace("-", "_").upper()


def stream_configs(settings: Settings) -> list[StreamConfig]:
    s = settings.streams
    return [
        _config(STREAM_RAW, subjects.RAW_ALL, s.raw, _raw_transform(settings)),
        _config(STREAM_MARKET, subjects.MARKET_ALL, s.market),
        _config(STREAM_EXEC, subjects.EXEC_ALL, s.exec),
        _config(STREAM_DLQ, subjects.DLQ_ALL, s.dlq),
    ]


def _raw_transform(settings: Settings) -> SubjectTransform | None:
    # Parallel normalizers: RAW stores raw subjects with their partition appended
    # (streams/subjects.py, docs/scaling.md); one partition keeps today's subjects.
    n = settings.normalizer.partitions
    if n <= 1:
        return None
    src, dest = subjects.raw_partition_transform(n)
    return SubjectTransform(src=src, dest=dest)


def _config(
    name: str, subject: str, lim: StreamLimits, transform: SubjectTransform | None = None
) -> StreamConfig:
    return StreamConfig(
        name=name,
        subjects=[subject],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE if lim.storage == "file" else StorageType.MEMORY,
        max_age=lim.max_age_s,
        max_bytes=lim.max_bytes,
        duplicate_window=lim.duplicate_window_s,
        num_replicas=lim.replicas,
        # per stream (settings.StreamLimits.discard): RAW/MARKET/DLQ drop their oldest
        # (consumed) messages at max_bytes, EXEC refuses new ones so history is never cut
        discard=DiscardPolicy.OLD if lim.discard == "old" else DiscardPolicy.NEW,
        subject_transform=transform,
        # direct get names the subject in the API subject, which permissions can narrow
        # (streams/bus/auth.raw_last_by_subject: the newest market frame, never raw.private)
        allow_direct=True,
    )


def stream_limits(settings: Settings) -> dict[str, StreamLimits]:
    """Each stream's limits by stream name."""
    s = settings.streams
    return {STREAM_RAW: s.raw, STREAM_MARKET: s.market, STREAM_EXEC: s.exec, STREAM_DLQ: s.dlq,
            bigframes.FRAMES_STREAM: s.frames}  # fmt: skip


async def stream_fill(js: JetStreamContext, names: list[str]) -> dict[str, tuple[int, int]]:
    """(bytes held, max_bytes) of each named stream that answers (one STREAM.INFO each):
    what the fill gauge and the collectors' "store nearly full" health are made of."""
    out: dict[str, tuple[int, int]] = {}
    for name in names:
        try:
            info = await js.stream_info(name)
        except Exception:  # not provisioned yet or server away: the next poll tells
            continue
        limit = info.config.max_bytes or -1
        out[name] = (int(info.state.bytes or 0), int(limit))
    return out


async def provision(js: JetStreamContext, settings: Settings) -> list[str]:
    """Create or update every stream; returns one line per stream saying what happened."""
    report = []
    for cfg in stream_configs(settings):
        try:
            await js.stream_info(cfg.name)  # type: ignore[arg-type]
        except NotFoundError:
            await js.add_stream(cfg)
            report.append(f"{cfg.name}: created")
            continue
        try:
            await js.update_stream(cfg)
        except Exception as exc:  # the server says which field cannot change
            raise RuntimeError(f"stream {cfg.name}: cannot apply settings: {exc}") from exc
        report.append(f"{cfg.name}: updated")
    try:
        report.append(await bigframes.ensure_bucket(js, settings.streams.frames))
    except Exception as exc:
        raise RuntimeError(f"object store {bigframes.FRAMES_BUCKET}: {exc}") from exc
    try:  # the shared REST budgets (streams/bus/budget.py)
        report.append(await budget.ensure_bucket(js, settings.streams.frames.replicas))
    except Exception as exc:
        raise RuntimeError(f"key-value bucket {budget.BUCKET}: {exc}") from exc
    log.info("streams provisioned", extra={"streams": report})
    return report
