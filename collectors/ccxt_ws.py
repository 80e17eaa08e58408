"""The long tail live: any ccxt pro exchange over WebSocket (``python -m collectors ccxt:<id>``).

ccxt's own ``watch_trades`` / ``watch_ticker`` / ``watch_order_book`` machinery connects,
subscribes, pings and resubscribes exactly as ccxt does for that venue; this module only
taps ccxt's client at its per-message entry (``Client.handle_message``, before any
decompression or JSON decoding) and publishes every text or binary frame UNTOUCHED, with
its receive time, on ``raw.<id>.ccxt-ws-t<k>.WS`` (``-b<k>`` for binary), k naming the ccxt
client (one per URL and connection). Beside the frames go the records the normalizer needs
to replay ccxt's state deterministically (normalizer/venues/ccxt_ws/parse.py): the market
structures ccxt loaded (``ccxt-ws-market``), each subscription ccxt's ``watch()`` stored
(``ccxt-ws-sub``) and each client's connection and end (``ccxt-ws-open`` / ``-close``). All
on one symbol token, so one normalizer partition sees them in the order they happened.

Transport: ``[collector.ccxt.exchanges.<id>] transport = "auto"`` picks WebSocket when ccxt
pro has ``watchTrades`` / ``watchTicker`` / ``watchOrderBook`` for every asked channel,
REST polling (collectors/ccxt_poller.py) otherwise; ``ohlcv`` is always polled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from functools import partial
from typing import Any

import ccxt.pro as ccxtpro
import msgspec
import orjson
from ccxt.base.errors import NetworkError

from collectors import ccxt_poller
from collectors.base import ctl_reply
from collectors.ccxt_poller import CcxtExchangeSettings, ccxt_settings, content_id, market_frame
from collectors.conn import new_conn_id
from collectors.publisher import RawPublisher
from streams import subjects
from streams.bus.budget import open_budget
from streams.bus.ccxt_tap import tap_client, tap_clients
from streams.bus.runtime import Worker

log = logging.getLogger("collectors.ccxt_ws")

TOKEN = "WS"  # the raw symbol token of every frame and record of this collector
RESYNC_MIN_S = 10.0  # ctl.snapshot: at most one forced reconnect this often
WATCH = {"trades": "watchTrades", "ticker": "watchTicker", "book": "watchOrderBook"}


def ws_channels(cfg: CcxtExchangeSettings) -> list[str]:
    return [c for c in cfg.channels if c in WATCH]


def supports_ws(exchange_id: str, channels: list[str]) -> bool:
    """Whether ccxt pro watches every one of ``channels`` on this exchange."""
    cls = getattr(ccxtpro, exchange_id, None)
    if cls is None:
        return False
    has = cls().has
    return bool(channels) and all(has.get(WATCH[c]) for c in channels)


def choose(exchange_id: str, cfg: CcxtExchangeSettings) -> str:
    """``ws`` or ``rest`` for this exchange's settings; SystemExit with the reason when the
    asked transport cannot serve the asked channels."""
    wanted = ws_channels(cfg)
    ok = supports_ws(exchange_id, wanted)
    if cfg.transport == "rest":
        return "rest"
    if cfg.transport == "ws" and not ok:
        missing = [WATCH[c] for c in wanted if not _has(exchange_id, WATCH[c])]
        raise SystemExit(
            f"ccxt pro cannot watch {exchange_id} channels {wanted} (missing {missing or 'ws'})"
        )
    if not ok and "book" in cfg.channels:
        raise SystemExit(f"{exchange_id}: book needs ccxt pro's watchOrderBook, which it lacks")
    return "ws" if ok else "rest"


def _has(exchange_id: str, feature: str) -> bool:
    cls = getattr(ccxtpro, exchange_id, None)
    return bool(cls is not None and cls().has.get(feature))


def make_ws_exchange(exchange_id: str, cfg: CcxtExchangeSettings) -> Any:
    """A ccxt pro exchange; ``api_url`` replaces its REST URLs, ``ws_url`` its WebSocket
    ones (every string under ``urls['api']['ws']``, or ``urls['api']['ws']`` itself)."""
    ex = getattr(ccxtpro, exchange_id)(
        {"enableRateLimit": True, "timeout": cfg.timeout_ms, "options": dict(cfg.options)}
    )
    if cfg.rate_limit_ms is not None:
        ex.rateLimit = cfg.rate_limit_ms
    api = ex.urls.get("api")
    ws = api.get("ws") if isinstance(api, dict) else None
    if cfg.api_url:
        if isinstance(api, dict):
            ex.urls["api"] = {k: cfg.api_url for k in api}
        else:
            ex.urls["api"] = cfg.api_url
    if isinstance(ex.urls["api"], dict) and ws is not None:
        ex.urls["api"]["ws"] = _replace(ws, cfg.ws_url) if cfg.ws_url else ws
    return ex


def _replace(node: Any, url: str) -> Any:
    if isinstance(node, dict):
        return {k: _replace(v, url) for k, v in node.items()}
    return url if isinstance(node, str) else node


class WsCollector:
    """One ccxt pro exchange: watch loops for each symbol and channel, the tap on every
    client ccxt creates, and one pump that publishes frames and records in order."""

    def __init__(self, w: Worker, exchange_id: str, cfg: CcxtExchangeSettings) -> None:
        assert w.nc is not None and w.js is not None
        self.w, self.id, self.cfg = w, exchange_id, cfg
        self.ex = make_ws_exchange(exchange_id, cfg)
        self.pub = RawPublisher(w.nc, w.js, exchange_id, w.settings.collector.flush_every,
                                settings=w.settings.collector)  # fmt: skip
        self.conn = new_conn_id(f"ccxtws-{exchange_id}")
        # client keys: unique across restarts (the run's start time), numbered per client
        self.run_key = format(time.time_ns() // 1_000_000, "x")
        self.clients = 0
        self.keys: dict[int, str] = {}  # id(ccxt client) -> key
        # (channel, data, receive ns, durable): appended from ccxt's callbacks, in order
        self.queue: deque[tuple[str, bytes, int, bool]] = deque()
        self.wake = asyncio.Event()
        self.frames = 0
        self.errors = 0
        self.last_resync = -RESYNC_MIN_S
        self.markets_frame = b""  # the ccxt-ws-market record, once markets are loaded
        self._tap_exchange()

    # -- the tap -------------------------------------------------------------------------
    def _put(self, channel: str, data: bytes, recv_ns: int, durable: bool = False) -> None:
        self.queue.append((channel, data, recv_ns, durable))
        self.wake.set()

    def _record(self, channel: str, body: dict[str, Any]) -> None:
        self._put(channel, orjson.dumps(body, default=str), time.time_ns(), durable=True)

    def _tap_exchange(self) -> None:
        ex = self.ex
        tap_clients(ex, self._tap_client)

        def subscribed(c: Any, hashes: list[Any], before: set[Any]) -> None:
            for h in hashes:
                if h not in before and h in c.subscriptions:
                    self._record("ccxt-ws-sub", {"client": self.keys[id(c)], "url": c.url,
                                                 "hash": h, "sub": c.subscriptions[h]})  # fmt: skip

        def recorded(watch: Any, many: bool) -> Any:
            """ccxt's ``watch`` (one hash) or ``watch_multiple`` (a list), recording each
            subscription it stores; ccxt passes these arguments by position."""

            def tapped(
                url: str, hashes: Any, message: Any = None, subscribe: Any = None,
                subscription: Any = None,
            ) -> Any:  # fmt: skip
                c = ex.client(url)
                before = set(c.subscriptions)
                fut = watch(url, hashes, message, subscribe, subscription)
                subscribed(c, list(subscribe or []) if many else [subscribe], before)
                return fut

            return tapped

        ex.watch, ex.watch_multiple = recorded(ex.watch, False), recorded(ex.watch_multiple, True)

    def _tap_client(self, c: Any) -> None:
        key = f"{self.run_key}x{self.clients}"
        self.clients += 1
        self.keys[id(c)] = key
        ended = False

        def failed(exc: Exception) -> None:
            log.warning("ccxt handler failed on a frame; reconnecting", extra={
                "exchange": self.id, "client": key, "error": repr(exc)[:300]})  # fmt: skip

        def opened(client: Any) -> None:
            if self.markets_frame:  # again with each connection: a normalizer started since
                self._put("ccxt-ws-market", self.markets_frame, time.time_ns(), durable=True)
            self._record("ccxt-ws-open", {"client": key, "url": client.url})

        def end(why: str) -> None:
            nonlocal ended
            if not ended:
                ended = True
                self._record("ccxt-ws-close", {"client": key, "reason": why[:300]})
                # the next subscription starts its books afresh (the normalizer does alike)
                for s in self.cfg.symbols:
                    if self.ex.orderbooks:
                        self.ex.orderbooks.pop(s, None)

        # each frame as the venue sent it, on its client's channel (text and binary apart)
        tap_client(
            c, partial(self._put, f"ccxt-ws-t{key}"), opened, end,
            on_binary=partial(self._put, f"ccxt-ws-b{key}"), on_handler_error=failed,
        )  # fmt: skip

    async def on_ctl_snapshot(self, msg: Any) -> None:
        """``ctl.snapshot.<id>.<symbol>`` (the order-book service asks it for an invalid
        book; an operator may too, e.g. after restarting a normalizer mid-connection, whose
        ccxt state then starts at the next connection): ccxt's clients are ended, so ccxt
        reconnects and resubscribes and every book starts again from a snapshot. At most
        once per ``RESYNC_MIN_S``: several books asking at once cost one reconnect."""
        now = time.monotonic()
        if now - self.last_resync < RESYNC_MIN_S:
            ago = now - self.last_resync
            await ctl_reply(msg, {"ok": True, "resync": f"reconnected {ago:.1f} s ago"})
            return
        clients = [c for c in (self.ex.clients or {}).values() if not c.closed()]
        if not clients:
            await ctl_reply(msg, {"ok": False, "error": "not connected; reconnecting already"})
            return
        self.last_resync = now
        for c in clients:
            c.on_error(NetworkError("resync asked on ctl.snapshot"))
        await ctl_reply(msg, {"ok": True, "resync": f"reconnecting {len(clients)} client(s)"})

    # -- loops ---------------------------------------------------------------------------
    async def pump(self) -> None:
        """Publish queued frames and records in the order ccxt saw them."""
        q, pub = self.queue, self.pub
        while True:
            while q:
                channel, data, recv, durable = q[0]  # popped once published
                await pub.publish(channel, TOKEN, data, recv, self.conn, durable=durable)
                q.popleft()
                self.frames += 1
            if self.w.stop.is_set():
                return
            self.wake.clear()
            if not q:
                await self.wake.wait()

    async def watch(self, channel: str, unified: str) -> None:
        """ccxt's watch loop for one channel: ccxt subscribes, reconnects and resyncs; the
        results are not used here (the normalizer reproduces them from RAW)."""
        ex, failures = self.ex, 0
        while not self.w.stop.is_set():
            try:
                if channel == "trades":
                    await ex.watch_trades(unified)
                elif channel == "ticker":
                    await ex.watch_ticker(unified)
                else:
                    await ex.watch_order_book(unified, self.cfg.book_depth)
                if failures:
                    failures = 0
                    self.w.health.set("ok", error="")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self.errors += 1
                if failures == 1 or failures % 50 == 0:
                    log.warning("ccxt watch failed", extra={
                        "exchange": self.id, "channel": channel, "symbol": unified,
                        "error": repr(exc)[:300], "failures": failures})  # fmt: skip
                self.w.health.set("degraded", error=f"{channel} {unified}: {exc!r}"[:200])
                if await self.w.sleep(min(0.2 * 2 ** min(failures, 6), 10.0)):
                    return

    async def run(self) -> None:
        # every REST call ccxt makes for this exchange (load_markets, a book snapshot some
        # watch_order_book implementations fetch) goes through the venue's shared budget
        # and proxy, as the REST poller's do: restarts in a loop cannot get the IP banned
        budget = await open_budget(self.w.nc, self.id, self.cfg.limits, self.ex)
        pump = asyncio.create_task(self.pump())
        try:
            while True:
                try:
                    await self.ex.load_markets()
                    break
                except Exception as exc:
                    log.warning("ccxt load_markets failed",
                                extra={"exchange": self.id, "error": repr(exc)[:300]})  # fmt: skip
                    self.w.health.set("degraded", error=f"load_markets: {exc!r}"[:200])
                    if await self.w.sleep(2.0):
                        return
            unknown = [s for s in self.cfg.symbols if s not in self.ex.markets]
            if unknown:
                raise SystemExit(f"{self.id} lists no market {unknown} (ccxt unified symbols)")
            now = time.time_ns()
            markets = [self.ex.market(s) for s in self.cfg.symbols]
            self.markets_frame = orjson.dumps(markets, default=str)
            self._put("ccxt-ws-market", self.markets_frame, now, durable=True)
            for s in self.cfg.symbols:  # instruments, as the REST poller publishes them
                data = market_frame(self.ex, s)
                await self.pub.publish(ccxt_poller.CH_MARKET, s, data, now, self.conn,
                                       msg_id=f"ccxt:{self.id}:{content_id(data)}",
                                       durable=True)  # fmt: skip
            self.w.health.set("ok", transport="ws")
            assert self.w.nc is not None
            ctl = await self.w.nc.subscribe(
                subjects.ctl_snapshot_filter(self.id), cb=self.on_ctl_snapshot
            )
            loops = [
                asyncio.create_task(self.watch(c, s))
                for s in self.cfg.symbols
                for c in ws_channels(self.cfg)
            ]
            try:  # a watch waits for data as long as it takes: stop ends them from here
                await self.w.stop.wait()
            finally:
                with contextlib.suppress(Exception):  # the connection may be closing
                    await ctl.unsubscribe()
                for t in loops:
                    t.cancel()
                await asyncio.gather(*loops, return_exceptions=True)
        finally:
            with contextlib.suppress(Exception):  # closing sockets that are already gone
                await self.ex.close()
            await budget.close()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            try:  # what is still queued (the pump leaves a frame queued until published)
                await asyncio.wait_for(self._drain(), 5.0)
            except TimeoutError:
                log.warning("ccxt-ws: frames left unpublished at stop",
                            extra={"exchange": self.id, "frames": len(self.queue)})  # fmt: skip
            self.pub.flush_metrics()

    async def _drain(self) -> None:
        while self.queue:
            channel, data, recv, durable = self.queue[0]
            await self.pub.publish(channel, TOKEN, data, recv, self.conn, durable=durable)
            self.queue.popleft()


async def run(w: Worker, exchange_id: str) -> None:
    """``ccxt:<id>``: WebSocket for the channels ccxt pro watches on this exchange (ohlcv
    still polled), REST polling otherwise (collectors/ccxt_poller.py)."""
    cfg = ccxt_settings(w.settings).exchanges.get(exchange_id)
    if cfg is None:
        raise SystemExit(
            f"no settings for ccxt exchange {exchange_id!r}: add collector.ccxt.exchanges."
            f"{exchange_id} (symbols, channels, ...)"
        )
    if choose(exchange_id, cfg) == "rest":
        log.info("ccxt: polling over REST", extra={"exchange": exchange_id})
        await ccxt_poller.run(w, exchange_id)
        return
    log.info("ccxt: WebSocket", extra={"exchange": exchange_id, "channels": ws_channels(cfg)})
    rest = [c for c in cfg.channels if c not in WATCH]
    jobs = [WsCollector(w, exchange_id, cfg).run()]
    if rest:  # e.g. ohlcv: polled beside the stream
        polled = msgspec.structs.replace(cfg, channels=rest)
        jobs.append(ccxt_poller.Poller(w, exchange_id, polled).run())
    await asyncio.gather(*jobs)
