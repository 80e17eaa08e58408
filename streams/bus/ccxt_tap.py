"""The tap on ccxt pro's WebSocket clients: ccxt keeps the connection (it connects, signs,
subscribes, pings and reconnects as it does for that venue) while we take every frame at the
client's entry, as the venue sent it, before ccxt decompresses or decodes it. Used by the
long-tail collector (collectors/ccxt_ws.py) and the executor's private account streams
(executor/venues/private/stream.py): one tap, so both read ccxt's clients the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType

# (frame bytes, receive time ns): called in ccxt's receive loop, so it must not block
OnFrame = Callable[[bytes, int], None]


def tap_clients(ex: Any, on_client: Callable[[Any], None]) -> None:
    """``on_client(client)`` once for each WebSocket client the ccxt pro exchange ``ex``
    creates (one per URL, and a new one after ccxt dropped a closed one), before it
    connects: the place to ``tap_client`` it."""
    make_client = ex.client

    def client(url: str) -> Any:
        known = ex.clients.get(url) if ex.clients else None
        c = make_client(url)
        if c is not known:
            on_client(c)
        return c

    ex.client = client


def tap_client(
    c: Any,
    on_text: OnFrame,
    on_open: Callable[[Any], None],
    on_end: Callable[[str], None],
    *,
    on_binary: OnFrame | None = None,
    on_handler_error: Callable[[Exception], None] | None = None,
) -> None:
    """Chain ours before ccxt's callbacks on one client: ``on_text`` gets every text frame
    (encoded to bytes), ``on_binary`` every binary one (ignored without it), each with its
    receive time; ``on_open(client)`` runs on each connection, ``on_end(why)`` on each close
    (``closed <code>``) or error (``error <repr>``). ccxt raising out of its own handler (a
    sequence break it detected, say) would stop its receive loop for good: the error ends
    the connection instead (after ``on_handler_error``), so its watchers reconnect and
    resubscribe."""
    handle, connected = c.handle_message, c.on_connected_callback
    closed, errored = c.on_close_callback, c.on_error_callback

    def handle_message(message: Any) -> None:
        if message.type == WSMsgType.TEXT:
            on_text(message.data.encode(), time.time_ns())
        elif message.type == WSMsgType.BINARY and on_binary is not None:
            on_binary(bytes(message.data), time.time_ns())
        try:
            handle(message)
        except Exception as exc:
            if on_handler_error is not None:
                on_handler_error(exc)
            c.on_error(exc)

    def on_connected(client: Any, *args: Any) -> Any:
        on_open(client)
        return connected(client, *args)

    def on_close(client: Any, code: Any) -> Any:
        on_end(f"closed {code}")
        return closed(client, code)

    def on_error(client: Any, error: Any) -> Any:
        on_end(f"error {error!r}")
        return errored(client, error)

    c.handle_message = handle_message
    c.on_connected_callback, c.on_close_callback = on_connected, on_close
    c.on_error_callback = on_error
