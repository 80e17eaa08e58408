"""The one venue template: ``Collector`` owns the WebSocket lifecycle (connect, receive loop,
watchdog, reconnect with backoff, connection events, health, ``ctl.snapshot`` answers and
the instruments refresh); ``collectors/<venue>.py`` subclasses it with the venue's
specifics only: its URL(s), subscribe messages, keep-alive, frame -> (channel, symbol)
routing, staleness rules and REST fetches. Like a feed handler, the framework reads every
frame; a venue sees only the frames of the channels it asks for in ``watch``.

Frames are published byte for byte as received (collectors/publisher.py). A change of NATS
connection ends the venue connection: frames written to the old one may be gone, and the
``disconnected`` event makes the normalizer record the gap and resync the books.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

import ccxt.async_support as ccxt
import msgspec
import orjson
import websockets
from nats.aio.msg import Msg
from websockets.asyncio.client import ClientConnection

from collectors.config import VenueSettings, venue_settings
from collectors.conn import Backoff, new_conn_id
from collectors.health import health_of, watch_store
from collectors.metrics import RECONNECTS
from collectors.publisher import RawPublisher, dead_letter
from collectors.rest import rest_body, retry_until_ok
from streams import subjects
from streams.bus import budget
from streams.bus.runtime import Worker
from streams.settings import Section

log = logging.getLogger("collectors")

INSTRUMENTS_REFRESH_S = 3600.0
# the answer to a resync request while the venue connection is down
NOT_CONNECTED = {"ok": False, "error": "not connected (a snapshot follows connecting)"}
P = TypeVar("P")  # a venue's routing probe (a small msgspec Struct)


@dataclass(kw_only=True)
class Link:
    """One WebSocket connection: what the venue set up for it (URL, publisher, the fields of
    its connection events) and the state the receive loop, watchdog and reconnect share.
    Venues with several connections subclass it with their own fields."""

    url: str
    backoff: Backoff
    pub: RawPublisher
    events: dict[str, Any] = field(default_factory=dict)  # what its conn events say it carries
    info: dict[str, Any] = field(default_factory=dict)  # extra fields of the "connected" log
    prefix: str = ""  # connection id prefix, when not the venue's name
    conn: str = ""
    connected: bool = False
    last_frame: float = 0.0
    pinged: float = 0.0  # monotonic time of the last application ping
    reconnects: int = 0
    ws: ClientConnection | None = None
    ended: list[str] = field(default_factory=list)  # why our watchdog closed it
    seen: dict[str, float] = field(default_factory=dict)  # watched channel -> newest frame
    watch: set[str] = field(default_factory=set)  # channels whose frames go to on_frame
    tasks: list[asyncio.Task[None]] = field(default_factory=list)  # ended with the session


class Collector(ABC):
    """A venue's collector; subclasses set the class attributes and override the hooks
    (``route`` and ``fetch_instruments`` they must: a venue without them cannot be built)."""

    venue: ClassVar[str]  # the raw subject's venue token (and the connection id prefix)
    # its section ``[collector.<venue>]``: schema and defaults, defined in the venue's module
    settings_class: ClassVar[type[Section]] = VenueSettings
    ctl_venue: ClassVar[str] = ""  # ctl.snapshot.<ctl_venue>.* when not ``venue``
    ccxt_class: ClassVar[type[ccxt.Exchange]]
    # ccxt's urls["api"] entry for public REST, pointed at rest_url + path: the emulator
    # or a proxy replaces the venue while ccxt's rate limiter stays in front of every call
    api: ClassVar[tuple[str, str]] = ("rest", "")
    # "first": retried until they are on RAW, before connecting (contract sizes, ticks);
    # "once": one try before connecting; "background": alongside the connections
    instruments: ClassVar[Literal["first", "once", "background"]] = "first"
    instruments_what: ClassVar[str] = "instruments"  # in log lines
    ws_pings: ClassVar[bool] = False  # WebSocket pings; else the venue's own (ping_text)
    ping_idle_only: ClassVar[bool] = True  # app ping only after ping_interval_s of silence
    watch: ClassVar[frozenset[str]] = frozenset()  # channels whose frames go to on_frame
    stale_any: ClassVar[bool] = True  # no frame at all for stale_after_s ends the connection
    # a watched frame starting with error_prefix is the venue's error reply: logged as error_what
    error_prefix: ClassVar[bytes] = b""
    error_what: ClassVar[str] = ""

    def __init__(self, w: Worker, cfg: Any, flush_every: int) -> None:
        assert w.nc is not None and w.js is not None
        self.w = w
        self.cfg = cfg
        self.flush_every = flush_every
        # channel -> seconds of silence that end the connection (besides stale_any)
        self.stale_limits: dict[str, float] = {}
        self.check()
        self.rest_lock = asyncio.Lock()  # ccxt keeps one response body: one call at a time
        self.links: list[Link] = self.make_links()
        self.pubs = list({id(c.pub): c.pub for c in self.links}.values())
        # ONE ccxt client per venue: its rate limiter spaces every REST call of the venue
        self.exchange = self.ccxt_class({"enableRateLimit": True})
        self.exchange.urls["api"][self.api[0]] = cfg.rest_url.rstrip("/") + self.api[1]
        # the venue's shared REST budget (streams/bus/budget.py), opened when running
        self.budget: budget.VenueBudget | None = None
        self.proxy = budget.proxy_url(self.venue, cfg.limits)  # REST and WebSocket
        self._background: set[asyncio.Task[None]] = set()

    # -- what a venue gives --------------------------------------------------------------
    def check(self) -> None:  # noqa: B027 (an optional hook: nothing to check by default)
        """Refuse settings the venue cannot serve (ValueError naming the key); derive
        what the connections need from them (e.g. ``stale_limits``)."""

    def publisher(self, venue: str | None = None) -> RawPublisher:
        w = self.w
        assert w.nc is not None and w.js is not None
        return RawPublisher(
            w.nc, w.js, venue or self.venue, self.flush_every, settings=w.settings.collector
        )

    def make_links(self) -> list[Link]:
        """The connections; one at ``ws_url`` whose events name every symbol by default."""
        events = {"symbols": sorted(self.cfg.symbols)}
        pub = self.publisher()
        return [Link(url=self.cfg.ws_url, backoff=Backoff(self.cfg.reconnect), pub=pub,
                     events=events, info=self.describe())]  # fmt: skip

    def describe(self) -> dict[str, Any]:
        """Fields of the "connected" log line (what was subscribed)."""
        return {}

    @property
    def link(self) -> Link:
        return self.links[0]

    @abstractmethod
    def route(self, frame: bytes) -> tuple[str, str]:
        """(channel, native symbol) of a frame: the venue's router (hot path)."""

    async def subscribe(self, ws: ClientConnection, link: Link) -> None:  # noqa: B027 (optional)
        """Send the subscribe requests of a fresh connection (none: streams in the URL)."""

    async def on_frame(
        self, ws: ClientConnection, link: Link, channel: str, symbol: str, frame: bytes
    ) -> None:
        """A published frame of a channel in ``link.watch`` (replies, errors, heartbeats)."""
        if self.error_prefix and frame.startswith(self.error_prefix):
            self.warn_frame(self.error_what, frame)

    def warn_frame(self, what: str, frame: bytes) -> None:
        """One log line quoting a venue frame (an error reply): its first 300 bytes."""
        logging.getLogger(f"collectors.{self.venue}").warning(
            what, extra={"frame": frame[:300].decode("utf-8", "replace")}
        )

    def ping_text(self, link: Link) -> str | None:
        """The venue's application ping, or None when it needs none."""
        return None

    def stale(self, link: Link, now: float, opened: float) -> str | None:
        """Why the connection must end now (stale feed), or None."""
        limit = self.cfg.stale_after_s
        if self.stale_any and now - link.last_frame > limit:
            return f"stale: no frame for {limit}s"
        seen = link.seen
        for ch, lim in self.stale_limits.items():
            if now - seen.get(ch, now) > lim:
                return f"stale: no {ch} frame for {lim}s"
        return None

    def fresh_s(self) -> float:
        """A connection counts as flowing while its newest frame is this recent."""
        return 5.0

    @abstractmethod
    async def fetch_instruments(self) -> None:
        """Fetch the venue's instrument list and publish it raw (channel ``instruments``)."""

    def resync(self, symbol: str) -> tuple[Link, list[str], dict[str, Any]] | str:
        """For ``ctl.snapshot.<venue>.<symbol>`` on a venue that sends a book snapshot on
        subscribe: (connection, its unsubscribe + subscribe requests, the ok answer), or
        the error when that book is not collected."""
        return f"book not collected: {symbol}"

    def extra_loops(self) -> list[Coroutine[Any, Any, None]]:
        """Coroutines a venue adds (REST polls)."""
        return []

    # -- REST ----------------------------------------------------------------------------
    async def rest(
        self, endpoint: str, call: Any, params: dict[str, Any] | None = None
    ) -> tuple[bytes, int]:
        """One REST call through ccxt: the untouched body and its receive time."""
        return await rest_body(self.exchange, self.rest_lock, self.venue, endpoint, call, params)

    # -- ctl.snapshot --------------------------------------------------------------------
    async def on_ctl_snapshot(self, msg: Msg) -> None:
        plan = self.resync(msg.subject.split(".")[-1])
        if isinstance(plan, str):
            await ctl_reply(msg, {"ok": False, "error": plan})
            return
        link, requests, ok = plan
        if link.ws is None:
            await ctl_reply(msg, NOT_CONNECTED)
            return
        try:
            for text in requests:
                await link.ws.send(text)
        except Exception as exc:
            await ctl_reply(msg, {"ok": False, "error": str(exc)[:300]})
            return
        await ctl_reply(msg, ok)

    # -- one connection ------------------------------------------------------------------
    async def conn_event(self, link: Link, event: str, reason: str = "") -> None:
        """A ``connected``/``disconnected`` event on ``raw.<venue>.conn.ALL``, acked: the
        normalizer turns a disconnect into gaps for the symbols the link carried."""
        now = time.time_ns()
        body = orjson.dumps(
            {"event": event, "conn": link.conn, **link.events, "reason": reason, "ts": now}
        )
        await link.pub.publish("conn", "ALL", body, now, link.conn, durable=True)

    async def _session(self, ws: ClientConnection, link: Link) -> str:
        """Subscribe, then read frames until the connection ends; returns why it ended."""
        await self.conn_event(link, "connected")
        now = time.monotonic()
        link.last_frame = link.pinged = now
        link.seen = dict.fromkeys(self.stale_limits, now)  # a full period from connecting
        link.watch = set(self.watch)
        watchdog = asyncio.create_task(self._watchdog(ws, link))
        try:
            await self.subscribe(ws, link)
            link.ws = ws
            log.info(f"{self.venue} connected", extra={"conn": link.conn, **link.info})
            return await self._read(ws, link)
        except websockets.ConnectionClosed as exc:
            return link.ended[0] if link.ended else f"closed by venue: {exc}"
        finally:
            watchdog.cancel()
            for t in link.tasks:
                t.cancel()
            link.tasks.clear()

    async def _read(self, ws: ClientConnection, link: Link) -> str:
        """The receive loop, the hot path: route, publish, nothing per frame beyond that."""
        recv = ws.recv
        route = self.route
        publish = link.pub.publish
        nats_epoch = link.pub.nats_epoch
        epoch = nats_epoch()
        conn = link.conn
        seen = link.seen
        watch = link.watch
        while True:
            frame = await recv(decode=False)
            recv_ns = time.time_ns()
            link.last_frame = now = time.monotonic()
            if isinstance(frame, str):
                frame = frame.encode()
            channel, symbol = route(frame)
            seen[channel] = now
            await publish(channel, symbol, frame, recv_ns, conn)
            if nats_epoch() != epoch:
                return "nats reconnected: frames sent before it may be lost"
            if channel in watch:
                await self.on_frame(ws, link, channel, symbol, frame)

    async def _watchdog(self, ws: ClientConnection, link: Link) -> None:
        """Closes the connection when stopping or when ``stale`` says so, and sends the
        venue's ping when due; one task per connection, not per frame."""
        opened = time.monotonic()
        every = self.cfg.ping_interval_s
        # a NATS reconnect also ends the connection when no frame follows it (the reader
        # checks after each publish): the gap is marked at the reconnect, not at the next
        # frame, which on a quiet channel may come much later
        epoch = link.pub.nats_epoch()
        while True:
            if await self.w.sleep(0.25):
                link.ended.append("stopping")
                break
            now = time.monotonic()
            why = self.stale(link, now, opened)
            if not why and link.pub.nats_epoch() != epoch:
                why = "nats reconnected: frames sent before it may be lost"
            if why:
                link.ended.append(why)
                break
            quiet = not self.ping_idle_only or now - link.last_frame > every
            if quiet and now - link.pinged > every and (text := self.ping_text(link)):
                link.pinged = now
                try:
                    await ws.send(text)
                except Exception:  # closing: the reader reports why
                    break
        await ws.close()

    async def _connect_loop(self, link: Link) -> None:
        """Connect, run a session until the connection ends, and reconnect with backoff
        until the worker stops. Offline: one log line per retry. Each lost connection is
        counted and recorded as a ``disconnected`` event (the normalizer turns it into
        gaps)."""
        w, venue = self.w, self.venue
        ping = self.cfg.ping_interval_s if self.ws_pings else None
        while not w.stop.is_set():
            link.conn = new_conn_id(link.prefix or venue)
            link.ended.clear()
            try:
                async with websockets.connect(
                    link.url, ping_interval=ping, ping_timeout=ping,
                    # a bigger frame ends the connection (close 1009): dead-lettered below
                    max_size=w.settings.collector.max_frame_bytes, max_queue=4096,
                    compression=None, proxy=self.proxy, open_timeout=10,
                ) as ws:  # fmt: skip
                    link.connected = True
                    reason = await self._session(ws, link)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"[:300]
                if self.proxy and not link.connected:  # say which way we tried
                    reason = f"through proxy {budget.safe_url(self.proxy)}: {reason}"[:300]
                if not link.connected:  # never got in: one line per retry, keep going
                    delay = link.backoff.next()
                    why = {"error": reason}
                    if await self._wait_to_retry(
                        delay, "retrying", "connect failed, retrying", why, url=link.url
                    ):
                        return
                    continue
            link.connected = False
            link.ws = None
            link.reconnects += 1
            if "1009" in reason or "too big" in reason:
                # a frame over max_frame_bytes: the "disconnected" gap below covers the
                # symbols it carried; the dead letter says why (the frame itself was not read)
                await dead_letter(w.js, f"ws:{link.url}"[:300], b"", reason, time.time_ns())
            RECONNECTS.labels(venue, reason.split(":")[0][:40]).inc()
            try:
                await self.conn_event(link, "disconnected", reason)
            except Exception as exc:
                log.warning("cannot record disconnect", extra={"error": repr(exc)})
            if w.stop.is_set():
                return
            delay = 0.0 if reason.startswith("rollover") else link.backoff.next()
            why = {"reason": reason}
            if await self._wait_to_retry(
                delay, "reconnecting", "connection lost, reconnecting", why, conn=link.conn
            ):
                return

    async def _wait_to_retry(
        self, delay: float, state: str, message: str, why: dict[str, str], **where: str
    ) -> bool:
        """Says it (the log line with ``where``, ``why`` and the delay; health ``state`` with
        ``why``), then waits ``delay``: True when the collector is stopping meanwhile."""
        log.warning(
            f"{self.venue} {message}",
            extra={**where, **why, "retry_in_s": round(delay, 2)},
        )
        self.w.health.set(state, **why, reconnects=self._reconnects())
        return await self.w.sleep(delay)

    # -- the whole collector -------------------------------------------------------------
    def _reconnects(self) -> int:
        return sum(c.reconnects for c in self.links)

    async def _report(self) -> None:
        """Once a second: metrics; a backoff reset for each connection that flows; health
        when all flow, or when something is wrong (else the reconnect's state stands)."""
        pubs = self.pubs
        fresh = self.fresh_s()
        while not await self.w.sleep(1.0):
            for p in pubs:
                p.flush_metrics()
            now = time.monotonic()
            flowing = [c for c in self.links if c.connected and now - c.last_frame < fresh]
            for c in flowing:
                c.backoff.reset()
            state, fields = health_of(pubs)
            if len(flowing) == len(self.links) or state != "ok":
                self.w.health.set(
                    state, frames=sum(p.published for p in pubs),
                    confirmed=sum(p.confirmed for p in pubs), reconnects=self._reconnects(),
                    connections=len(self.links), unconfirmed=any(p.unconfirmed for p in pubs),
                    **fields,
                )  # fmt: skip

    async def _instruments_once(self, backoff: Backoff) -> float:
        """One fetch; seconds until the next (the refresh period, or a retry's backoff)."""
        try:
            await self.fetch_instruments()
        except Exception as exc:
            wait = backoff.next()
            log.warning(
                f"{self.venue} {self.instruments_what} failed, retrying",
                extra={"error": str(exc)[:300], "retry_in_s": round(wait, 2)},
            )
            return wait
        backoff.reset()
        return INSTRUMENTS_REFRESH_S

    async def _instruments_loop(self, backoff: Backoff, wait: float) -> None:
        while not await self.w.sleep(wait):
            wait = await self._instruments_once(backoff)

    async def run(self) -> None:
        w = self.w
        async with self._running():
            backoff = Backoff(self.cfg.reconnect)
            wait = 0.0
            if self.instruments == "first":
                what = f"{self.venue} {self.instruments_what}"
                if not await retry_until_ok(w, self.cfg.reconnect, what, self.fetch_instruments):
                    return
                wait = INSTRUMENTS_REFRESH_S
            elif self.instruments == "once":
                wait = await self._instruments_once(backoff)
            loops = [self._instruments_loop(backoff, wait), *self.extra_loops()]
            loops += [self._connect_loop(c) for c in self.links]
            tasks = [asyncio.create_task(c) for c in loops]
            try:
                await asyncio.gather(*tasks)
            finally:
                for t in [*tasks, *self._background]:
                    t.cancel()

    @classmethod
    async def main(cls, w: Worker) -> None:
        """The collector body for ``streams.bus.runtime.run`` (or a test's in-process
        Worker): this venue with its settings section ``collector.<venue>``."""
        cfg = venue_settings(w.settings, cls.venue, cls.settings_class)
        await cls(w, cfg, w.settings.collector.flush_every).run()

    def in_background(self, coro: Coroutine[Any, Any, None]) -> None:
        """A task the collector keeps until it ends (cancelled when the collector stops)."""
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        """Answer ``ctl.snapshot.<venue>.*``, report health and watch the streams; on the
        way out stop all three, flush the last metrics and close the ccxt client."""
        w = self.w
        assert w.nc is not None
        venue = self.ctl_venue or self.venue
        # every REST call of the venue through the budget shared with the other processes
        # on this IP; the limits are published for those that do not read this section
        self.budget = await budget.open_budget(
            w.nc, self.venue, self.cfg.limits, self.exchange, on_change=self._budget_changed
        )
        await budget.publish_limits(w.nc, self.venue, self.cfg.limits)
        sub = await w.nc.subscribe(subjects.ctl_snapshot_filter(venue), cb=self.on_ctl_snapshot)
        # the server knows the subscription before the venue connects: a snapshot request
        # sent once the feed is up is answered, never "no responders" (a CI run saw that)
        await w.nc.flush()
        helpers = [
            asyncio.create_task(self._report()),
            asyncio.create_task(watch_store(w, self.pubs)),
        ]
        try:
            yield
        finally:
            for t in helpers:
                t.cancel()
            try:
                await sub.unsubscribe()
            except Exception:  # connection already closing
                pass
            for pub in self.pubs:
                pub.flush_metrics()
            await self.budget.close()
            await self.exchange.close()

    def _budget_changed(self) -> None:
        """A breaker or ban changed: say so in health (``jetmarket status`` shows it)."""
        if self.budget is not None:
            self.w.health.set(budget=self.budget.summary() or "ok")


def leading_string(frame: bytes, prefix: bytes, limit: int) -> str | None:
    """The JSON string value that ``frame`` opens with right after ``prefix`` (a venue that
    always writes its routing key first: ``{"stream":"``, ``{"topic":"``), read by slicing
    the bytes: a full JSON parse of every frame only to route it would cost more CPU than
    everything else the collector does (the normalizer parses properly). None when the
    frame does not start that way or the value is not closed within ``limit`` bytes."""
    if frame.startswith(prefix):
        end = frame.find(b'"', len(prefix), len(prefix) + limit)
        if end > 0:
            return frame[len(prefix) : end].decode("ascii", "replace")
    return None


def key_router(
    prefix: bytes,
    by_key: Callable[[str], tuple[str, str]],
    probe: msgspec.json.Decoder[P],
    by_probe: Callable[[P], tuple[str, str]],
) -> Callable[[bytes], tuple[str, str]]:
    """The router of a venue that writes its routing key first (Bybit's ``topic``,
    Deribit's ``params.channel``): a data frame's key is sliced out of the bytes after
    ``prefix`` and routed by ``by_key``; any other frame (replies, pongs: rare) gets
    ``probe``, a small decode of the few keys ``by_probe`` routes by, and is ``unknown``
    when it does not decode. Built once per venue: the closure costs no call per frame."""

    def route(frame: bytes) -> tuple[str, str]:
        key = leading_string(frame, prefix, 120)
        if key is not None:
            return by_key(key)
        try:
            found = probe.decode(frame)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return "unknown", "ALL"
        return by_probe(found)

    return route


async def ctl_reply(msg: Msg, body: dict[str, Any]) -> None:
    """Answer a ``ctl.snapshot`` request when it wants an answer."""
    if msg.reply:
        try:
            await msg.respond(orjson.dumps(body))
        except Exception as exc:  # the requester went away; nothing to undo
            log.debug("ctl reply failed", extra={"error": repr(exc)})
