"""What every local exchange emulator shares: an aiohttp server on a loopback port (port 0
picks a free one) with start/stop and ``async with``, its URLs, and the WebSocket clients
connected to it. A venue's emulator inherits this and keeps to its own protocol: routes,
channels, the frames it writes and the faults it can inject.

REST rate limits: an emulator enforces its venue's limits like the venue (``VenueLimits``:
fixed windows of weight per IP, the used-weight header, 429 with Retry-After over the
limit, and for venues that escalate, a ban with 418 for a client that keeps calling while
told to stop). ``limit_stats`` counts what it answered, so a test can prove zero 429s."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

from aiohttp import WSMsgType, web


class HasWs(Protocol):
    ws: web.WebSocketResponse


@dataclass
class VenueLimits:
    """One venue's REST limit as the venue applies it: ``capacity`` units per fixed
    ``window_s`` (aligned on the epoch); ``weight(request)`` the cost of a call (1 by
    default). Over it: ``over_status`` with Retry-After (the window's end) and
    ``over_body``; a client that calls again while told to wait is banned for ``ban_s``
    with ``ban_status`` (Binance: 418, "2 minutes to 3 days"; 0 = the venue does not ban).
    ``paths``: the path prefixes counted (empty = every REST path but /_emu/)."""

    capacity: int
    window_s: float
    weight: Callable[[Any], int] = lambda _req: 1
    used_header: str = ""
    over_status: int = 429
    over_body: bytes = b'{"code":-1003,"msg":"Too many requests; please use the websocket."}'
    ban_status: int = 418
    ban_s: float = 120.0
    paths: tuple[str, ...] = ()
    # what was answered: ok, over (429 or the venue's), banned (418 ...)
    stats: dict[str, int] = field(default_factory=lambda: {"ok": 0, "over": 0, "banned": 0})
    window: int = -1
    used: int = 0
    told_until: float = 0.0  # a 429 said: wait until then
    banned_until: float = 0.0
    # two emulators of one venue may share one limit (one IP), each on its own thread
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def check(self, request: Any) -> tuple[int, float] | None:
        """None to serve the call, or (status, retry-after seconds) to refuse it."""
        with self.lock:
            return self._check(request)

    def _check(self, request: Any) -> tuple[int, float] | None:
        now = time.time()
        if now < self.banned_until:
            self.stats["banned"] += 1
            return self.ban_status, self.banned_until - now
        if self.ban_status and now < self.told_until:
            self.banned_until = now + self.ban_s  # called again while told to wait
            self.stats["banned"] += 1
            return self.ban_status, self.ban_s
        window = int(now // self.window_s)
        if window != self.window:
            self.window, self.used = window, 0
        w = self.weight(request)
        if self.used + w > self.capacity:
            self.stats["over"] += 1
            self.told_until = (window + 1) * self.window_s
            if self.ban_status == self.over_status:  # Bybit: over the limit is the ban
                self.banned_until = now + self.ban_s
                return self.over_status, self.ban_s
            return self.over_status, self.told_until - now
        self.used += w
        self.stats["ok"] += 1
        return None


class EmulatorServer(ABC):
    """Subclasses add their routes in ``routes`` and keep connected clients (anything with
    a ``ws``) in ``clients``; ``ws_path`` is where their WebSocket is served."""

    ws_path = "/"
    access_log = True  # False: no aiohttp line per request (the REST-only mocks)

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self.clients: list[Any] = []
        # the venue's REST limit (None: not enforced); a test may replace it before start
        self.limits: VenueLimits | None = self.venue_limits()
        self._runner: web.AppRunner | None = None
        # notified whenever clients come, go or change what they subscribed
        self._changed = asyncio.Condition()

    @abstractmethod
    def routes(self, app: web.Application) -> None:
        """Add the venue's WebSocket and REST routes to ``app``."""

    def venue_limits(self) -> VenueLimits | None:
        """The venue's REST limit with its documented defaults; None: not enforced."""
        return None

    @property
    def limit_stats(self) -> dict[str, int]:
        return self.limits.stats if self.limits is not None else {}

    @web.middleware
    async def _limit(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        lim = self.limits
        path = request.path
        if (lim is None or path.startswith("/_emu/") or request.headers.get("Upgrade")
                or (lim.paths and not path.startswith(lim.paths))):  # fmt: skip
            return await handler(request)
        refused = lim.check(request)
        if refused is not None:
            status, retry = refused
            headers = {"Retry-After": str(max(1, round(retry)))}
            if lim.used_header:
                headers[lim.used_header] = str(lim.used)
            body = lim.over_body if status == lim.over_status else (
                b'{"code":-1003,"msg":"Way too many requests; IP banned until '
                + str(int(lim.banned_until * 1000)).encode() + b'."}')  # fmt: skip
            return web.Response(status=status, body=body, headers=headers,
                                content_type="application/json")  # fmt: skip
        response = await handler(request)
        if lim.used_header:
            response.headers[lim.used_header] = str(lim.used)
        return response

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> Self:
        app = web.Application(middlewares=[self._limit])
        self.routes(app)
        quiet: dict[str, Any] = {} if self.access_log else {"access_log": None}
        self._runner = web.AppRunner(app, handle_signals=False, **quiet)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        await self.drop_connections()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.ws_path}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    url = rest_url  # what the REST-only emulators call it

    # -- clients -------------------------------------------------------------------------
    async def wait_for(self, pred: Callable[[], bool], timeout: float = 10.0) -> None:
        """Until ``pred()`` holds, checked whenever the clients change."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(pred), timeout)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def serve(
        self,
        client: HasWs,
        on_text: Callable[[Any, str], Awaitable[None]],
        *beside: Coroutine[Any, Any, None],
    ) -> None:
        """Hold ``client`` in ``clients`` while its connection lives, feeding its text
        messages to ``on_text``; ``beside`` run next to it (heartbeats, idle cuts)."""
        self.clients.append(client)
        tasks = [asyncio.create_task(c) for c in beside]
        await self._notify()
        try:
            async for msg in client.ws:
                if msg.type == WSMsgType.TEXT:
                    await on_text(client, msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            for t in tasks:
                t.cancel()
            self.clients.remove(client)
            await self._notify()

    async def send_raw(self, payload: str | bytes) -> None:
        """An arbitrary frame (malformed JSON, garbage, unknown events) to every client:
        bytes as a binary frame, text as text."""
        for c in list(self.clients):
            with contextlib.suppress(ConnectionError, RuntimeError):
                if isinstance(payload, bytes):
                    await c.ws.send_bytes(payload)
                else:
                    await c.ws.send_str(payload)

    async def drop_connections(self) -> None:
        for c in list(self.clients):
            with contextlib.suppress(Exception):
                await c.ws.close(code=1001, message=b"emulator dropped the connection")
