"""What every local exchange emulator shares: an aiohttp server on a loopback port (port 0
picks a free one) with start/stop and ``async with``, its URLs, and the WebSocket clients
connected to it. A venue's emulator inherits this and keeps to its own protocol: routes,
channels, the frames it writes and the faults it can inject."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, Self

from aiohttp import WSMsgType, web


class HasWs(Protocol):
    ws: web.WebSocketResponse


class EmulatorServer(ABC):
    """Subclasses add their routes in ``routes`` and keep connected clients (anything with
    a ``ws``) in ``clients``; ``ws_path`` is where their WebSocket is served."""

    ws_path = "/"
    access_log = True  # False: no aiohttp line per request (the REST-only mocks)

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self.clients: list[Any] = []
        self._runner: web.AppRunner | None = None
        # notified whenever clients come, go or change what they subscribed
        self._changed = asyncio.Condition()

    @abstractmethod
    def routes(self, app: web.Application) -> None:
        """Add the venue's WebSocket and REST routes to ``app``."""

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> Self:
        app = web.Application()
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
