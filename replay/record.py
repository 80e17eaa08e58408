"""Recordings: raw frames in a compressed file, for offline use and for playing back.

``jetmarket record out.jmrec --since 1h`` writes the frames of a range (RAW, or ClickHouse
for older history: the replay sources) with their subjects, receive times, stream
sequences and headers; ``jetmarket replay --from-file out.jmrec`` publishes them again,
onto RAW (the pipeline then processes them as if the collectors had just received them)
or under ``replay.<name>.``, at any speed.

Format: zstd (gzip when no zstd module is importable; the reader tells them apart by their
magic bytes) around a sequence of chunks, each a 4-byte big-endian length and a msgpack
array. The first chunk is the header ``{"format": "jetmarket-record", "version": 1, ...}``;
every other chunk holds up to ``CHUNK`` records ``[subject, ts_recv, seq, stream, headers,
data]``. Records are in the order they were replayed (receive time, or RAW's own order for
a RAW-only recording), which is the order they are played back in.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from replay.model import ReplayMsg
from replay.selection import Selection

FORMAT = "jetmarket-record"
VERSION = 1
CHUNK = 1000
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"

try:  # Python 3.14 has it in the standard library; clickhouse-connect brings the backport
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the interpreter
    try:
        from backports import zstd  # type: ignore[import-not-found,no-redef]
    except ImportError:
        zstd = None  # type: ignore[assignment]


class RecordError(ValueError):
    """Not a recording, or a damaged one; the message says which and where."""


Record = tuple[str, int, int, str, dict[str, str] | None, bytes]
_enc = msgspec.msgpack.Encoder()
_dec_header = msgspec.msgpack.Decoder(dict[str, Any])
_dec_chunk = msgspec.msgpack.Decoder(list[Record])


def open_write(path: str | Path, compression: str = "auto") -> BinaryIO:
    if compression == "auto":
        compression = "zstd" if zstd is not None else "gzip"
    if compression == "zstd":
        if zstd is None:
            raise RecordError(
                "zstd compression needs a zstd module (Python 3.14 or backports.zstd)"
            )
        return zstd.open(path, "wb")  # type: ignore[no-any-return]
    if compression == "gzip":
        return gzip.open(path, "wb", compresslevel=6)  # type: ignore[return-value]
    raise RecordError(f"unknown compression {compression!r} (zstd, gzip)")


def open_read(path: str | Path) -> BinaryIO:
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic.startswith(GZIP_MAGIC):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if magic == ZSTD_MAGIC:
        if zstd is None:
            raise RecordError(f"{path}: zstd-compressed, and no zstd module is available")
        return zstd.open(path, "rb")  # type: ignore[no-any-return]
    raise RecordError(f"{path}: not a jetmarket recording (neither zstd nor gzip)")


class Writer:
    """A recording written to ``<path>.part`` and renamed to ``path`` when it is complete:
    a failed or interrupted recording (no pipeline, Ctrl-C) leaves no file that looks whole."""

    def __init__(self, path: str | Path, *, compression: str = "auto", **meta: Any) -> None:
        self.path = Path(path)
        self._part = self.path.with_name(self.path.name + ".part")
        self.f = open_write(self._part, compression)
        self.count = 0
        self._pending: list[Record] = []
        head = {"format": FORMAT, "version": VERSION, "created_ns": time.time_ns(), **meta}
        self._chunk(_enc.encode(head))

    def _chunk(self, body: bytes) -> None:
        self.f.write(len(body).to_bytes(4, "big"))
        self.f.write(body)

    def write(self, msgs: list[ReplayMsg]) -> None:
        for m in msgs:
            self._pending.append((m.subject, m.ts_recv, m.seq, m.stream, m.headers, m.data))
            if len(self._pending) >= CHUNK:
                self._flush()
        self.count += len(msgs)

    def _flush(self) -> None:
        if self._pending:
            self._chunk(_enc.encode(self._pending))
            self._pending = []

    def close(self) -> None:
        self._flush()
        self.f.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.close()
        if exc_type is None:
            self._part.replace(self.path)
        else:
            self._part.unlink(missing_ok=True)


def _read(f: BinaryIO, n: int) -> bytes:
    # ZstdFile.read(n) may return fewer bytes than asked before the end
    data = f.read(n)
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = f.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _read_chunk(f: BinaryIO, path: Path, index: int) -> bytes | None:
    size = _read(f, 4)
    if not size:
        return None
    if len(size) < 4:
        raise RecordError(f"{path}: truncated after chunk {index}")
    n = int.from_bytes(size, "big")
    body = _read(f, n)
    if len(body) < n:
        raise RecordError(f"{path}: truncated in chunk {index}")
    return body


def read_header(path: str | Path) -> dict[str, Any]:
    with open_read(path) as f:
        return _header(f, Path(path))


def _header(f: BinaryIO, path: Path) -> dict[str, Any]:
    try:
        body = _read_chunk(f, path, 0)
        head = _dec_header.decode(body or b"")
    except (msgspec.DecodeError, OSError, EOFError) as exc:
        raise RecordError(f"{path}: not a jetmarket recording ({exc})") from None
    if head.get("format") != FORMAT:
        raise RecordError(f"{path}: not a jetmarket recording")
    if head.get("version") != VERSION:
        raise RecordError(f"{path}: recording version {head.get('version')}, expected {VERSION}")
    return head


def read_chunks(path: str | Path) -> Iterator[list[ReplayMsg]]:
    """The recorded messages, chunk by chunk, in recorded order."""
    p = Path(path)
    with open_read(p) as f:
        _header(f, p)
        index = 1
        while True:
            try:
                body = _read_chunk(f, p, index)
            except (OSError, EOFError) as exc:
                raise RecordError(f"{p}: damaged at chunk {index} ({exc})") from None
            if body is None:
                return
            try:
                records = _dec_chunk.decode(body)
            except msgspec.DecodeError as exc:
                raise RecordError(f"{p}: chunk {index} unreadable: {exc}") from None
            yield [ReplayMsg(s, st, q, ts, d, h) for s, ts, q, st, h, d in records]
            index += 1


async def file_chunks(
    path: str | Path,
    selection: Selection | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> AsyncIterator[list[ReplayMsg]]:
    """``read_chunks`` filtered like a replay (subjects, [start, end))."""
    lo = -(2**63) if start_ns is None else start_ns
    hi = 2**63 if end_ns is None else end_ns
    for chunk in read_chunks(path):
        out = [
            m
            for m in chunk
            if lo <= m.ts_recv < hi and (selection is None or selection.matches(m.subject))
        ]
        if out:
            yield out
