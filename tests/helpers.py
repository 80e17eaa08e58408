"""Helpers the venue tests share: messages from a subscription or from RAW, rows from the
sink's ClickHouse, the book the order-book service serves, gaps expected after a fault or
a disconnect, and a venue's collector settings pointed at its emulator."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from nats.aio.client import Client
from nats.js import JetStreamContext

from normalizer.core import Dead, Normalizer
from streams import schemas, sql, subjects
from streams.provision import STREAM_RAW

RECV = {subjects.H_RECV_NS: "1700000000000000001"}


async def take(sub: Any, n: int, timeout: float = 20.0) -> list:
    """Up to ``n`` messages from ``sub``, fewer when ``timeout`` runs out first."""
    out: list = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(out) < n and loop.time() < deadline:
        try:
            out.append(await sub.next_msg(timeout=0.5))
        except Exception:  # nothing within the poll: look at the deadline again
            continue
    return out


async def raw_messages(js: JetStreamContext, subject: str, n: int, timeout: float = 20) -> list:
    """Up to ``n`` messages on ``subject`` from the start of the RAW stream."""
    sub = await js.subscribe(subject, stream=STREAM_RAW, ordered_consumer=True)
    try:
        return await take(sub, n, timeout)
    finally:
        await sub.unsubscribe()


async def rows(
    nc: Client, query: str, want: int, timeout: float = 30, *, settle_s: float = 0.0
) -> list:
    """Poll the sink's ``sql.query`` until ``query`` returns ``want`` rows (or time runs
    out); with ``settle_s``, ask once more after that long so late extra rows show."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    got: list = []
    while loop.time() < deadline:
        try:
            got = (await sql.query(nc, query, timeout=5, max_rows=100_000)).rows
        except Exception:  # the sink is still starting
            got = []
        if len(got) >= want:
            if settle_s:
                await asyncio.sleep(settle_s)
                return (await sql.query(nc, query, timeout=5, max_rows=100_000)).rows
            return got
        await asyncio.sleep(0.3)
    return got


async def served_book(nc: Client, venue: str, symbol: str) -> dict:
    """The order-book service's answer for a book, ``{}`` while it gives none."""
    try:
        msg = await nc.request(subjects.book_get(venue, symbol), b"", timeout=2)
    except Exception:
        return {}
    return orjson.loads(msg.data)


def venue_cfg(emu: Any, channels: list[str], /, **kw: Any) -> dict[str, Any]:
    """``collector.<venue>`` settings for an emulator: its URLs and symbols, the given
    channels, fast reconnects; ``kw`` overrides any of them."""
    return {
        "ws_url": emu.ws_url, "rest_url": emu.rest_url, "symbols": list(emu.sims),
        "channels": channels, "reconnect": {"min_s": 0.1, "max_s": 0.5}, **kw,
    }  # fmt: skip


async def expect_gap(gaps: Any, reason: str | None, fault: str) -> None:
    """After injecting ``fault``: one gap with ``reason`` arrives on ``gaps``, or none at
    all (for a while) when ``reason`` is None."""
    got = await take(gaps, 1, timeout=10 if reason else 1.5)
    if reason is None:
        assert got == [], [schemas.decode(g.data) for g in got]
    else:
        g = schemas.decode(got[0].data)
        assert isinstance(g, schemas.Gap) and g.reason == reason, (fault, g)


def reconnect_gap(venue: str, event: dict[str, Any]) -> schemas.Gap:
    """The one gap the normalizer makes of a collector's ``disconnected`` event."""
    out = Normalizer().normalize(f"raw.{venue}.conn.ALL", orjson.dumps(event), RECV, 1)
    assert not isinstance(out, Dead), out
    [gap] = [schemas.decode(o.data) for o in out]
    assert isinstance(gap, schemas.Gap) and gap.reason == "reconnect", gap
    return gap
