"""Frames too big for one NATS message, stored by reference.

nats-server refuses a message over ``max_payload`` (8 MB here) and a real Binance
exchangeInfo is 13-20 MB. Such a frame goes whole into the JetStream object store bucket
``JM_FRAMES`` (chunks of 1 MB, checked by digest on read); RAW gets an ordinary message on
the frame's own subject with an empty body and the object's name in ``Jm-Frame-Ref``.
Real venue frames are never empty, so readers tell a reference apart with one truthiness
check of the body and resolve it with :func:`get_frame`. The bucket's limits are
``streams.frames`` (max_age as long as RAW's, so a reference outlives its RAW message).
"""

from __future__ import annotations

import base64
import hashlib

from nats.js import JetStreamContext
from nats.js.api import ObjectMeta, ObjectMetaOptions, ObjectStoreConfig, StorageType
from nats.js.errors import BadObjectMetaError, BucketNotFoundError
from nats.js.object_store import ObjectStore

from streams.settings import StreamLimits

FRAMES_BUCKET = "JM_FRAMES"
FRAMES_STREAM = f"OBJ_{FRAMES_BUCKET}"
H_FRAME_REF = "Jm-Frame-Ref"  # object name of a frame stored by reference
H_FRAME_SIZE = "Jm-Frame-Size"  # its size in bytes
CHUNK = 1024 * 1024  # well under max_payload; 20 chunks for a 20 MB frame


def bucket_config(lim: StreamLimits) -> ObjectStoreConfig:
    return ObjectStoreConfig(
        bucket=FRAMES_BUCKET,
        description="raw frames over max_payload, referenced from RAW (streams/bus/bigframes.py)",
        ttl=lim.max_age_s,
        max_bytes=lim.max_bytes,
        storage=StorageType.FILE if lim.storage == "file" else StorageType.MEMORY,
        replicas=lim.replicas,
    )


async def ensure_bucket(js: JetStreamContext, lim: StreamLimits) -> str:
    """Create the bucket if missing, or apply the limits in place; one report line."""
    cfg = bucket_config(lim)
    try:
        info = await js.stream_info(FRAMES_STREAM)
    except Exception:  # not found (other errors resurface from create)
        await js.create_object_store(FRAMES_BUCKET, cfg)
        return f"{FRAMES_STREAM}: created"
    sc = info.config
    sc.max_age, sc.max_bytes, sc.num_replicas = cfg.ttl, cfg.max_bytes, cfg.replicas
    await js.update_stream(sc)
    return f"{FRAMES_STREAM}: updated"


class FrameStore:
    """The bucket, opened once per process on first use."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self._obs: ObjectStore | None = None

    async def _bucket(self) -> ObjectStore:
        if self._obs is None:
            try:
                self._obs = await self.js.object_store(FRAMES_BUCKET)
            except BucketNotFoundError:
                raise RuntimeError(f"object store {FRAMES_BUCKET} missing: run provision") from None
        return self._obs

    async def put(self, name: str, data: bytes) -> None:
        obs = await self._bucket()
        meta = ObjectMeta(name=name, options=ObjectMetaOptions(max_chunk_size=CHUNK))
        await obs.put(name, data, meta=meta)

    async def get(self, name: str) -> bytes:
        """The frame, whole and digest-checked. Its chunks are read by an ordered consumer
        named on OBJ_JM_FRAMES (nats-py's ``ObjectStore.get`` looks the stream up with
        STREAM.NAMES, which a worker's user may not call); ObjectNotFoundError if gone."""
        obs = await self._bucket()
        info = await obs.get_info(name)
        if not info.nuid or info.size is None:
            raise BadObjectMetaError
        sub = await self.js.subscribe(
            f"$O.{FRAMES_BUCKET}.C.{info.nuid}", stream=FRAMES_STREAM, ordered_consumer=True
        )
        parts: list[bytes] = []
        got = 0
        try:
            while got < info.size:
                msg = await sub.next_msg(timeout=10.0)
                parts.append(msg.data)
                got += len(msg.data)
        finally:
            await sub.unsubscribe()
        data = b"".join(parts)
        stored = (info.digest or "").split("=", 1)[-1]  # "SHA-256=<urlsafe base64>"
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()
        if len(data) != info.size or stored.rstrip("=") != digest.rstrip("="):
            raise RuntimeError(f"frame {name}: {len(data)} bytes read do not match the object")
        return data
