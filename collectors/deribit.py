"""Deribit JSON-RPC v2 public collector: one WebSocket, batched public/subscribe, REST
instruments via ccxt (one shared rate limiter).

CHANNELS (setting name -> Deribit channel -> raw subject):
  trades        trades.<instr>.<interval>          raw.deribit.trades.<instr>
  book          book.<instr>.<interval>            raw.deribit.book.<instr>
  quote         quote.<instr>                      raw.deribit.quote.<instr>
  ticker        ticker.<instr>.<interval>          raw.deribit.ticker.<instr>
  chart.trades  chart.trades.<instr>.<resolution>  raw.deribit.chart_trades.<instr>
  (REST)  GET /api/v2/public/get_instruments?currency=&kind=   raw.deribit.instruments.<CUR>
  (ours)  connection events                                    raw.deribit.conn.ALL
  (venue) JSON-RPC replies, heartbeats, test replies           raw.deribit.control.ALL
  (venue) anything unroutable                                  raw.deribit.unknown.ALL

``options`` (strings): ``interval`` for trades/book/ticker (default ``100ms``: Deribit
serves ``raw`` only to authenticated connections, and this collector is public);
``chart_resolution`` (default ``1``, minutes or ``1D``); ``stale_channels`` (default
``book,ticker``): channels that push continuously, so silence on one of them for
``stale_after_s`` means a dead feed even while heartbeats still arrive; ``heartbeat_s``
(default ``max(10, ping_interval_s)``) for ``public/set_heartbeat``.

Venue rules honoured: after connecting we call ``public/set_heartbeat`` (interval
``ping_interval_s``, Deribit's minimum is 10 s) and answer every ``test_request`` with
``public/test``, or Deribit closes the connection; subscriptions go out in requests of at
most ``CHANNELS_PER_REQUEST`` channels, paced to the ~3 subscribe requests/s Deribit allows
sustained. Books come as a WebSocket snapshot then changes, so a resync
(``ctl.snapshot.deribit.<symbol>``) is an unsubscribe + subscribe of that book.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from functools import partial
from typing import Any

import ccxt.async_support as ccxt
import msgspec
import orjson
import websockets
from nats.aio.msg import Msg
from websockets.asyncio.client import ClientConnection

from collectors import base
from streams.bus.runtime import Worker
from streams.settings import VenueSettings
from streams.symbols import deribit as symbols

log = logging.getLogger("collectors.deribit")

VENUE = "deribit"
CHANNELS = ("trades", "book", "quote", "ticker", "chart.trades")
RAW_CHANNEL = {"chart": "chart_trades", "trades": "trades", "book": "book", "quote": "quote",
               "ticker": "ticker"}  # fmt: skip
CHANNELS_PER_REQUEST = 100
SUBSCRIBE_PACING_S = 0.3  # Deribit's sustained subscribe rate is ~3.3 requests/s
MIN_HEARTBEAT_S = 10  # Deribit refuses shorter set_heartbeat intervals
INSTRUMENTS_REFRESH_S = 3600.0
_NOTIFICATION = b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"'
_TEST_REQUEST = b'"test_request"'
_SYMBOL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


class _Params(msgspec.Struct):
    channel: str = ""


class _Probe(msgspec.Struct):
    """Just enough of a frame to route it when the fast prefix does not match."""

    method: str = ""
    id: int | str | None = None
    params: _Params | None = None


_probe = msgspec.json.Decoder(_Probe)


def _from_channel(channel: str) -> tuple[str, str]:
    p = channel.split(".")
    if p[0] == "chart" and len(p) == 4 and p[1] == "trades":
        kind, native = "chart", p[2]
    elif p[0] in RAW_CHANNEL and p[0] != "chart" and len(p) >= 2:
        kind, native = p[0], p[1]
    else:
        return "unknown", "ALL"
    if native and _SYMBOL_CHARS.issuperset(native):
        return RAW_CHANNEL[kind], native
    return "unknown", "ALL"


def route(frame: bytes) -> tuple[str, str]:
    """(raw channel, instrument) of a frame. Deribit writes notifications as
    ``{"jsonrpc":"2.0","method":"subscription","params":{"channel":"...`` so the channel is
    sliced out of the bytes; other frames (replies, heartbeats: rare) get a small decode."""
    if frame.startswith(_NOTIFICATION):
        end = frame.find(b'"', len(_NOTIFICATION), len(_NOTIFICATION) + 120)
        if end > 0:
            return _from_channel(frame[len(_NOTIFICATION) : end].decode("ascii", "replace"))
    try:
        probe = _probe.decode(frame)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return "unknown", "ALL"
    if probe.method == "subscription" and probe.params is not None:
        return _from_channel(probe.params.channel)
    if probe.id is not None or probe.method == "heartbeat":
        return "control", "ALL"
    return "unknown", "ALL"


def channel_names(cfg: VenueSettings) -> list[str]:
    """Every Deribit channel to subscribe, in settings order."""
    interval = cfg.options.get("interval", "100ms")
    resolution = cfg.options.get("chart_resolution", "1")
    out: list[str] = []
    for ch in cfg.channels:
        if ch not in CHANNELS:
            raise ValueError(f"collector.deribit.channels: unknown channel {ch!r}")
        for inst in cfg.symbols:
            if ch == "quote":
                out.append(f"quote.{inst}")
            elif ch == "chart.trades":
                out.append(f"chart.trades.{inst}.{resolution}")
            else:
                out.append(f"{ch}.{inst}.{interval}")
    return out


def instruments_queries(natives: list[str]) -> list[dict[str, str]]:
    """One ``get_instruments`` query per (currency, kind) the symbols need: inverse
    contracts and options under their base coin, linear ones under the quote (USDC)."""
    seen = {(symbols.currency(n), symbols.kind(n)): None for n in natives}
    return [{"currency": c, "kind": k, "expired": "false"} for c, k in seen]


class DeribitCollector:
    def __init__(self, w: Worker, cfg: VenueSettings, flush_every: int) -> None:
        assert w.nc is not None and w.js is not None
        self.w = w
        self.cfg = cfg
        self.channels = channel_names(cfg)
        self.stale_channels = [
            RAW_CHANNEL[c.split(".")[0]]
            for c in cfg.options.get("stale_channels", "book,ticker").split(",")
            if c in cfg.channels
        ]
        self.pub = base.RawPublisher(w.nc, w.js, VENUE, flush_every, settings=w.settings.collector)
        self._conn_event = base.conn_events(self.pub, symbols=sorted(cfg.symbols))
        self.rest_lock = asyncio.Lock()
        # one ccxt instance: its rate limiter is the venue's single REST limiter
        self.exchange = ccxt.deribit({"enableRateLimit": True})
        self.exchange.urls["api"]["rest"] = cfg.rest_url.rstrip("/")
        self.link = base.Link(url=cfg.ws_url, backoff=base.Backoff(cfg.reconnect))
        self.ids = itertools.count(1)
        self.last_by_channel: dict[str, float] = {}

    # -- REST ----------------------------------------------------------------------------
    async def fetch_instruments(self) -> None:
        """One instruments body per (currency, kind), published untouched."""
        for params in instruments_queries(self.cfg.symbols):
            body, recv = await base.rest_body(
                self.exchange, self.rest_lock, VENUE, "get_instruments",
                self.exchange.public_get_get_instruments, params,
            )  # fmt: skip
            await self.pub.publish(
                "instruments", params["currency"], body, recv, "rest", durable=True
            )

    # -- JSON-RPC ------------------------------------------------------------------------
    def _rpc(self, method: str, params: dict[str, Any]) -> str:
        body = {"jsonrpc": "2.0", "id": next(self.ids), "method": method, "params": params}
        return orjson.dumps(body).decode()

    async def _call(self, ws: ClientConnection, method: str, params: dict[str, Any]) -> None:
        await ws.send(self._rpc(method, params))

    async def _subscribe(self, ws: ClientConnection, channels: list[str]) -> None:
        for i in range(0, len(channels), CHANNELS_PER_REQUEST):
            if i:
                await asyncio.sleep(SUBSCRIBE_PACING_S)
            chunk = channels[i : i + CHANNELS_PER_REQUEST]
            await self._call(ws, "public/subscribe", {"channels": chunk})

    # -- resync --------------------------------------------------------------------------
    async def _on_ctl_snapshot(self, msg: Msg) -> None:
        """``ctl.snapshot.deribit.<BTC-USD-PERP>``: re-subscribe that book for a snapshot."""
        symbol = msg.subject.split(".")[-1]
        try:
            native = symbols.to_native(symbol)
        except ValueError:  # outside the symbol scheme: not a book we collect
            native = ""
        if native not in self.cfg.symbols or "book" not in self.cfg.channels:
            error = f"book not collected: {native or symbol}"
            await base.ctl_reply(msg, {"ok": False, "error": error})
            return
        channel = [f"book.{native}.{self.cfg.options.get('interval', '100ms')}"]
        requests = [
            self._rpc(f"public/{op}", {"channels": channel}) for op in ("unsubscribe", "subscribe")
        ]
        await base.resubscribe(msg, self.link.ws, requests, {"ok": True, "instrument": native})

    # -- WebSocket -----------------------------------------------------------------------
    async def _connection_loop(self) -> None:
        # ping_interval None: Deribit's keep-alive is its JSON-RPC heartbeat
        await base.keep_connected(
            self.w, VENUE, self.link, self._session, self._conn_event,
            lambda: self.link.reconnects,
        )  # fmt: skip

    async def _session(self, ws: ClientConnection, link: base.Link) -> str:
        """Heartbeat, subscribe, then read frames until the connection ends."""
        await self._conn_event(link, "connected")
        heartbeat = float(
            self.cfg.options.get("heartbeat_s", max(MIN_HEARTBEAT_S, self.cfg.ping_interval_s))
        )
        interval = int(heartbeat) if heartbeat.is_integer() else heartbeat
        await self._call(ws, "public/set_heartbeat", {"interval": interval})
        self.link.ws = ws
        now = time.monotonic()
        self.link.last_frame = now
        self.last_by_channel = dict.fromkeys(self.stale_channels, now)
        subscriber = asyncio.create_task(self._subscribe(ws, self.channels))
        watchdog = asyncio.create_task(self._watchdog(ws))
        log.info("deribit connected", extra={"conn": link.conn, "channels": len(self.channels)})
        publish = self.pub.publish
        nats_epoch = self.pub.nats_epoch
        epoch = nats_epoch()
        conn = link.conn
        seen = self.last_by_channel
        try:
            while True:
                try:
                    frame = await ws.recv(decode=False)
                except websockets.ConnectionClosed as exc:
                    return self.link.ended[0] if self.link.ended else f"closed by venue: {exc}"
                recv_ns = time.time_ns()
                mono = self.link.last_frame = time.monotonic()
                if isinstance(frame, str):
                    frame = frame.encode()
                channel, target = route(frame)
                seen[channel] = mono
                await publish(channel, target, frame, recv_ns, conn)
                if channel == "control":
                    await self._on_control(ws, frame)
                if nats_epoch() != epoch:
                    return "nats reconnected: frames sent before it may be lost"
        finally:
            subscriber.cancel()
            watchdog.cancel()

    async def _on_control(self, ws: ClientConnection, frame: bytes) -> None:
        if _TEST_REQUEST in frame:
            await self._call(ws, "public/test", {})
        elif b'"error":' in frame:
            log.warning(
                "deribit error reply", extra={"frame": frame[:300].decode("utf-8", "replace")}
            )

    async def _watchdog(self, ws: ClientConnection) -> None:
        """Closes the connection when stopping, when nothing came for stale_after_s, or
        when a continuously pushing channel went silent that long."""
        limit = self.cfg.stale_after_s
        while True:
            if await self.w.sleep(0.25):
                self.link.ended.append("stopping")
                break
            now = time.monotonic()
            if now - self.link.last_frame > limit:
                self.link.ended.append(f"stale: no frame for {limit}s")
                break
            silent = [c for c in self.stale_channels if now - self.last_by_channel[c] > limit]
            if silent:
                self.link.ended.append(f"stale: no {silent[0]} frame for {limit}s")
                break
        await ws.close()

    async def run(self) -> None:
        w = self.w
        # at least a heartbeat every interval while the connection lives
        fresh_s = 5.0 + max(MIN_HEARTBEAT_S, self.cfg.ping_interval_s)
        report = partial(base.report_link, w, self.pub, self.link, fresh_s)
        async with base.collector_running(
            w, VENUE, self._on_ctl_snapshot, report, [self.pub], self.exchange
        ):
            await base.instruments_first(
                w, self.cfg.reconnect, "deribit instruments", self.fetch_instruments,
                self._connection_loop, INSTRUMENTS_REFRESH_S,
            )  # fmt: skip


async def run(w: Worker) -> None:
    """The collector body for ``streams.bus.runtime.run`` (or a test's in-process Worker)."""
    settings = w.settings.collector
    await DeribitCollector(w, settings.deribit, settings.flush_every).run()
