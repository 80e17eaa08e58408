"""REST through ccxt: the untouched body of one call, and retrying until a call works."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from collectors.config import ReconnectSettings
from collectors.conn import Backoff
from collectors.metrics import REST
from streams.bus.runtime import Worker

log = logging.getLogger("collectors")


async def rest_body(
    exchange: Any,
    lock: asyncio.Lock,
    venue: str,
    endpoint: str,
    call: Callable[[dict[str, Any]], Awaitable[Any]],
    params: dict[str, Any] | None = None,
) -> tuple[bytes, int]:
    """One REST call through ccxt (so through its rate limiter); returns the untouched body
    and its receive time. ccxt keeps only the last response's body, so ``lock`` (one per
    ccxt client) pairs each call with its own. A failure is counted and raised as a
    RuntimeError naming the endpoint."""
    async with lock:
        try:
            await call(params or {})
        except Exception as exc:
            REST.labels(venue, endpoint, "error").inc()
            raise RuntimeError(f"{endpoint}: {type(exc).__name__}: {exc}") from None
        body = exchange.last_http_response
        recv = time.time_ns()
    REST.labels(venue, endpoint, "ok").inc()
    return (body.encode() if isinstance(body, str) else body), recv


async def retry_until_ok(
    w: Worker, cfg: ReconnectSettings, what: str, attempt: Callable[[], Awaitable[object]]
) -> bool:
    """Run ``attempt`` until it succeeds (True) or the worker stops (False), backing off
    between tries with one log line each and ``retrying`` health meanwhile."""
    backoff = Backoff(cfg)
    while not w.stop.is_set():
        try:
            await attempt()
            return True
        except Exception as exc:
            wait = backoff.next()
            log.warning(
                f"{what} failed, retrying",
                extra={"error": str(exc)[:300], "retry_in_s": round(wait, 2)},
            )
            w.health.set("retrying", error=str(exc)[:300])
            if await w.sleep(wait):
                return False
    return False
