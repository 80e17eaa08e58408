"""Loss accounting and outage recovery of ``RawPublisher`` (collectors/publisher.py).

Frames not yet covered by a good ack are kept. When the NATS client has reconnected, the
frames written to the dead socket (or still in the dead server's ingest queue) are gone
without an error - a kill -9 of nats-server in the middle of a 20k-frame burst lost all of
them (tests/pipeline/test_faults.py) - so the first ack after the reconnect is followed by a read of
RAW from the last good ack to it, and every kept frame missing there (matched on connection
id and receive time) is published again. A frame RAW holds is not sent twice; a re-sent
frame arrives after newer ones, which the order book sees as a sequence gap.

A frame that cannot be restored is never dropped silently: it is counted into a loss record
per (reason, channel), published on ``raw.<venue>.conn.ALL`` as a ``lost`` event as soon as
JetStream confirms a publish again (the normalizer turns it into one gap per symbol).
"""

from __future__ import annotations

import logging
import os
import time

import orjson
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from collectors.conn import START_NS
from collectors.metrics import LOST
from streams import subjects
from streams.provision import STREAM_RAW

log = logging.getLogger("collectors")

MAX_SCAN = 50_000  # RAW messages read back to find the lost ones (one request each, ~0.2 ms)

# one (channel, native symbol) of a loss record: [frames, first receive ns, last receive ns]
_Span = list[int]
# a kept frame: (number, subject, data, receive ns, connection id, its other headers (a
# msg id, a frame reference) or None, channel, native symbol). The two per-frame values
# are kept as they are: a headers dict is built only when a kept frame is sent again.
_Kept = tuple[int, str, bytes, int, str, dict[str, str] | None, str, str]


def kept_headers(entry: _Kept) -> dict[str, str]:
    """The RAW headers of a kept frame, as it was published."""
    headers = {subjects.H_RECV_NS: str(entry[3]), subjects.H_CONN: entry[4]}
    if entry[5]:
        headers.update(entry[5])
    return headers


class _Loss:
    """Frames lost for one reason on one channel, until recorded on RAW as a ``lost``
    event (the normalizer turns it into one ``gap`` per symbol with the counts)."""

    __slots__ = ("detail", "spans")

    def __init__(self, detail: str) -> None:
        self.detail = detail
        self.spans: dict[str, _Span] = {}


class LossRecords:
    """The part of ``RawPublisher`` that records lost frames and restores frames after an
    outage; the state it uses is set up by ``RawPublisher.__init__``."""

    nc: Client
    js: JetStreamContext
    venue: str
    ack_timeout_s: float
    recovered: int
    lost: int
    recorded: int
    last_loss: float
    _losses: dict[tuple[str, str], _Loss]
    _loss_ids: int

    def _lose(self, entry: _Kept, kind: str, detail: str) -> None:
        """Count one lost frame into the loss record of its kind and channel."""
        _, _, data, ns, _, _, channel, native = entry
        natives = [native]
        if channel == "conn":  # a lost connection event: the symbols it spoke for
            try:
                natives = [str(x) for x in orjson.loads(data).get("symbols", [])] or natives
            except (orjson.JSONDecodeError, AttributeError):
                pass
        key = (kind, channel)
        record = self._losses.get(key)
        if record is None:
            record = self._losses[key] = _Loss(detail)
        for n in natives:
            span = record.spans.get(n)
            if span is None:
                record.spans[n] = [1, ns, ns]
            else:
                span[0] += 1
                span[1] = min(span[1], ns)
                span[2] = max(span[2], ns)
        self.lost += 1
        self.last_loss = time.monotonic()
        LOST.labels(self.venue, kind).inc()

    async def _record_losses(self) -> None:
        """Publish each pending loss record (acked); one that fails waits for the next
        good ack. Called right after a good ack, so RAW takes writes again."""
        for key in list(self._losses):
            kind, channel = key
            record = self._losses[key]
            total = sum(s[0] for s in record.spans.values())
            first = min(s[1] for s in record.spans.values())
            now = time.time_ns()
            self._loss_ids += 1
            body = orjson.dumps({
                "event": "lost", "conn": f"{self.venue}-{os.getpid()}-{START_NS}",
                "ts": first, "symbols": sorted(record.spans), "channel": channel,
                "lost": record.spans, "count": total, "reason": f"{kind}: {record.detail}",
            })  # fmt: skip
            headers = {
                subjects.H_RECV_NS: str(now), subjects.H_CONN: "collector",
                subjects.H_MSG_ID: f"{self.venue}:lost:{os.getpid()}:{START_NS}:{self._loss_ids}",
            }  # fmt: skip
            try:
                subject = subjects.raw(self.venue, "conn", "ALL")
                await self.js.publish(subject, body, headers=headers, stream=STREAM_RAW,
                                      timeout=self.ack_timeout_s)  # fmt: skip
            except Exception as exc:
                self._loss_ids -= 1  # the same id next time: JetStream drops a repeat
                log.warning("loss record not stored yet, kept for the next try",
                            extra={"venue": self.venue, "error": repr(exc)[:300]})  # fmt: skip
                return
            del self._losses[key]
            self.recorded += total
            log.warning(
                "raw frames lost, recorded as gaps",
                extra={"venue": self.venue, "channel": channel, "count": total,
                       "symbols": len(record.spans), "reason": f"{kind}: {record.detail}"},
            )  # fmt: skip

    async def _recover(self, kept: list[_Kept], after: int, upto: int) -> None:
        """Publish again the kept frames RAW does not hold between ``after`` and ``upto``;
        what cannot be checked or restored is recorded as lost."""
        try:
            present = await self._stored_between(after, upto)
        except Exception as exc:  # cannot tell what RAW holds: all of them count as lost
            for k in kept:
                self._lose(k, "unverified", f"RAW not readable after an outage: {exc!r}"[:300])
            return
        missing = [k for k in kept if (k[4], str(k[3])) not in present]
        done = 0  # missing frames confirmed stored
        try:
            for i, k in enumerate(missing, 1):
                subject, data, headers = k[1], k[2], kept_headers(k)
                if i % 500 == 0 or i == len(missing):  # bounded bursts, the last one acked
                    await self.js.publish(subject, data, headers=headers, stream=STREAM_RAW,
                                          timeout=self.ack_timeout_s)  # fmt: skip
                    done = i
                else:
                    await self.nc.publish(subject, data, headers=headers)
        except Exception as exc:
            for k in missing[done:]:
                self._lose(k, "unverified", f"re-send after an outage failed: {exc!r}"[:300])
        self.recovered += done
        if missing:
            log.warning(
                "raw frames missing from RAW after an outage re-sent",
                extra={"venue": self.venue, "missing": len(missing), "confirmed": done,
                       "lost": len(missing) - done, "kept": len(kept)},
            )  # fmt: skip

    async def _stored_between(self, after: int, upto: int) -> set[tuple[str, str]]:
        """(connection id, receive ns) of this venue's frames in RAW after ``after``."""
        present: set[tuple[str, str]] = set()
        filt = f"raw.{subjects.token(self.venue)}.>"
        if upto - after > MAX_SCAN:
            raise RuntimeError(f"{upto - after} messages to scan, more than {MAX_SCAN}")
        seq = after + 1
        while seq < upto:
            try:
                m = await self.js.get_msg(STREAM_RAW, seq=seq, subject=filt, next=True)
            except NotFoundError:
                break
            if m.seq is None or m.seq >= upto:
                break
            h = m.headers or {}
            present.add((h.get(subjects.H_CONN, ""), h.get(subjects.H_RECV_NS, "")))
            seq = m.seq + 1
        return present
