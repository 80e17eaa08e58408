"""A collector's health from its publishers, and the fill of the streams it writes."""

from __future__ import annotations

from typing import Any

from collectors.metrics import STREAM_BYTES, STREAM_FILL, STREAM_MAX
from collectors.publisher import RawPublisher
from streams.bus.bigframes import FRAMES_STREAM
from streams.bus.runtime import Worker
from streams.provision import STREAM_DLQ, STREAM_RAW, stream_fill, stream_limits

COLLECTOR_STREAMS = (STREAM_RAW, STREAM_DLQ, FRAMES_STREAM)


def health_of(pubs: list[RawPublisher]) -> tuple[str, dict[str, Any]]:
    """("ok" or "degraded", fields) of a collector's publishers."""
    why = [t for t in (p.trouble() for p in pubs) if t]
    fields: dict[str, Any] = {
        "lost": sum(p.lost for p in pubs),
        "large": sum(p.large for p in pubs),
        "buffered": sum(len(p._kept) for p in pubs),
    }
    if why:
        fields["trouble"] = "; ".join(dict.fromkeys(why))[:500]
        return "degraded", fields
    fields["trouble"] = ""
    return "ok", fields


async def watch_store(w: Worker, pubs: list[RawPublisher], every_s: float = 5.0) -> None:
    """Every ``every_s``: each stream's bytes against its max_bytes into the fill gauge,
    and a warning into the publishers' health once one passes its ``warn_fraction``."""
    assert w.js is not None
    # the streams a collector writes; MARKET and EXEC are watched by their writers or by
    # nats-server's own monitoring (/jsz), which a collector's user may not read
    limits = {k: v for k, v in stream_limits(w.settings).items() if k in COLLECTOR_STREAMS}
    while True:
        try:
            fill = await stream_fill(w.js, list(limits))
        except Exception:  # server away: unconfirmed publishes already say so
            fill = {}
        warn = []
        for name, (held, limit) in fill.items():
            STREAM_BYTES.labels(name).set(held)
            if limit > 0:
                STREAM_MAX.labels(name).set(limit)
                ratio = held / limit
                STREAM_FILL.labels(name).set(ratio)
                if ratio >= limits[name].warn_fraction:
                    warn.append(f"stream {name} at {ratio:.0%} of max_bytes {limit}")
        for p in pubs:
            p.store_warning = "; ".join(warn)
        if await w.sleep(every_s):
            return
