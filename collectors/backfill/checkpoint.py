"""A backfill job's checkpoint: its fixed range and progress, rewritten atomically after
each page JetStream acked, so a kill -9 loses at most the page in flight."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from collectors.backfill.errors import BadArgs
from collectors.ccxt_poller import timeframe_ms

DEFAULT_DIR = Path("var/backfill")


class Checkpoint(msgspec.Struct, kw_only=True):
    """One job's progress. ``next_ms`` is the next candle page's start, or the trades
    cursor's time with ``ids`` the trade ids already taken at exactly that ms."""

    version: int = 1
    venue: str
    symbol: str  # ccxt unified
    kind: str
    timeframe: str
    since: int
    until_arg: int | None  # as asked; None = "now" at first start
    until: int  # the fixed end
    next_ms: int
    ids: list[str] = msgspec.field(default_factory=list)
    pages: int = 0
    rows: int = 0
    done: bool = False

    def first(self) -> int:
        """Where the job starts: ``since``, or the first candle opening at or after it."""
        step = timeframe_ms(self.timeframe) if self.kind == "ohlcv" else 1
        return -(-self.since // step) * step

    def job(self) -> str:
        return f"{self.kind}-{self.timeframe}:{self.since}:{self.until}"

    def same_job(self, other: Checkpoint) -> bool:
        mine = (self.venue, self.symbol, self.kind, self.timeframe, self.since, self.until_arg)
        return mine == (
            other.venue,
            other.symbol,
            other.kind,
            other.timeframe,
            other.since,
            other.until_arg,
        )

    def save(self, path: Path) -> None:
        # write, fsync, rename: after a kill -9 the file is the old page or the new one
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as f:
            f.write(msgspec.json.encode(self))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def load_checkpoint(path: Path) -> Checkpoint | None:
    try:
        return msgspec.json.decode(path.read_bytes(), type=Checkpoint)
    except FileNotFoundError:
        return None
    except (OSError, msgspec.DecodeError) as exc:
        raise BadArgs(f"checkpoint {path} unreadable ({exc}); delete it to start over") from None


def default_path(
    venue: str, unified: str, kind: str, tf: str, since: int, until: int | None
) -> Path:
    sym = unified.replace("/", "_").replace(":", "_")
    return DEFAULT_DIR / f"{venue}-{sym}-{kind}-{tf}-{since}-{until or 'now'}.json"
