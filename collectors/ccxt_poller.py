"""The long tail: poll any ccxt exchange over REST (``python -m collectors ccxt:<id>``).

One ``ccxt.async_support`` exchange object per exchange id, shared by every symbol and
channel, so ccxt's own limiter (``enableRateLimit``) spaces all of this venue's requests.
Each fetch result is one raw frame, ccxt's unified JSON as orjson writes it, on
``raw.<id>.ccxt-<channel>.<unified symbol>``, published with an acked JetStream publish (a
few requests a second do not need core-publish batching) and a content ``Nats-Msg-Id``.

Trades cursor: the last trades frame in RAW carries it in header ``Jm-Cursor`` (newest
trade time and the ids seen at that millisecond). Reading it back at start means the cursor
is exactly what the stream holds: no separate store that could disagree after a kill -9.
A frame whose ack was lost is re-sent with the same id (JetStream drops the copy) before
anything newer is fetched, so restarts leave neither gaps nor duplicates. (RAW keeps 72 h:
a poller down longer starts again from the exchange's latest trades, and says so.)
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import ccxt.async_support as ccxt_async
import msgspec
import orjson
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from collectors.config import LimitsSettings, venue_settings
from collectors.conn import new_conn_id
from collectors.metrics import FRAMES, REST
from streams import subjects
from streams.bus.bigframes import H_FRAME_REF, H_FRAME_SIZE, FrameStore
from streams.bus.budget import open_budget
from streams.bus.runtime import Worker
from streams.provision import STREAM_RAW
from streams.settings import Section, Settings, SettingsError

log = logging.getLogger("collectors.ccxt")

H_CURSOR = "Jm-Cursor"
CH_TRADES, CH_TICKER, CH_MARKET = "ccxt-trades", "ccxt-ticker", "ccxt-market"
TF_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def ohlcv_channel(timeframe: str, hist: bool = False) -> str:
    return f"ccxt-{'hist-' if hist else ''}ohlcv-{timeframe}"


def timeframe_ms(tf: str) -> int:
    unit = TF_UNITS.get(tf[-1:])
    if unit is None or not tf[:-1].isdigit() or int(tf[:-1]) < 1:
        raise ValueError(f"unsupported timeframe {tf!r}")
    return int(tf[:-1]) * unit


class CcxtExchangeSettings(Section):
    """One exchange polled through ccxt (collectors/ccxt_poller.py). ``symbols`` are ccxt
    unified symbols (``BTC/USDT``, ``BTC/USDT:USDT``); ``channels`` any of trades, ticker,
    ohlcv. ``api_url`` replaces every entry of ccxt's ``urls['api']`` (emulators, proxies);
    ``rate_limit_ms`` replaces ccxt's ``rateLimit`` (ms per unit of request cost): leave it
    unset against a real exchange, ccxt's own value is the venue's published limit."""

    symbols: list[str]
    channels: list[str] = msgspec.field(default_factory=lambda: ["trades", "ticker", "ohlcv"])
    # "auto": WebSocket (collectors/ccxt_ws.py) when ccxt pro watches every asked channel
    # of this exchange, REST polling otherwise; "ws" or "rest" to force one. Over
    # WebSocket, ohlcv is still polled; ``book`` needs WebSocket.
    transport: str = "auto"
    ws_url: str | None = None  # replaces every entry of ccxt's urls['api']['ws'] (emulators)
    book_depth: int | None = None  # watch_order_book's limit (None: ccxt's default)
    timeframe: str = "1m"
    trades_interval_s: float = 5.0
    ticker_interval_s: float = 10.0
    ohlcv_interval_s: float = 30.0
    trades_limit: int = 1000
    api_url: str | None = None
    rate_limit_ms: float | None = None
    timeout_ms: int = 10_000
    options: dict[str, Any] = msgspec.field(default_factory=dict)  # ccxt ``options``
    # shared REST budget (streams/bus/budget.py): empty rules = the venue's limits as its
    # collector published them, else ccxt's rateLimit; proxy as for a native venue
    limits: LimitsSettings = msgspec.field(default_factory=LimitsSettings)

    def _check(self, prefix: str) -> None:
        if not self.symbols:
            raise SettingsError(f"{prefix}.symbols must not be empty")
        unknown = set(self.channels) - {"trades", "ticker", "ohlcv", "book"}
        if unknown or not self.channels:
            raise SettingsError(f"{prefix}.channels must be some of trades, ticker, ohlcv, book")
        if self.transport not in ("auto", "ws", "rest"):
            raise SettingsError(f"{prefix}.transport must be one of auto, ws, rest")
        if self.transport == "rest" and "book" in self.channels:
            raise SettingsError(f"{prefix}.channels: book needs transport ws or auto")
        if min(self.trades_interval_s, self.ticker_interval_s, self.ohlcv_interval_s) <= 0:
            raise SettingsError(f"{prefix}: poll intervals must be > 0")
        if self.rate_limit_ms is not None and self.rate_limit_ms <= 0:
            raise SettingsError(f"{prefix}.rate_limit_ms must be > 0")


class CcxtSettings(Section):
    """ccxt exchange id -> what to poll; started as ``python -m collectors ccxt:<id>``."""

    exchanges: dict[str, CcxtExchangeSettings] = msgspec.field(default_factory=dict)

    def _check(self, prefix: str) -> None:
        for name, ex in self.exchanges.items():  # the settings walk does not enter dicts
            ex._check(f"{prefix}.exchanges.{name}")


def ccxt_settings(settings: Settings) -> CcxtSettings:
    """The section ``[collector.ccxt]`` (every polled exchange), checked."""
    return venue_settings(settings, "ccxt", CcxtSettings)


def make_exchange(exchange_id: str, cfg: CcxtExchangeSettings) -> Any:
    cls = getattr(ccxt_async, exchange_id, None)
    if cls is None:
        raise SystemExit(f"ccxt has no exchange {exchange_id!r}")
    config: dict[str, Any] = {"enableRateLimit": True, "timeout": cfg.timeout_ms}
    if cfg.options:
        config["options"] = dict(cfg.options)
    if cfg.rate_limit_ms is not None:
        config["rateLimit"] = cfg.rate_limit_ms
    ex = cls(config)
    if cfg.api_url:
        api = ex.urls.get("api")
        if isinstance(api, dict):
            ex.urls["api"] = {k: cfg.api_url for k in api}
        else:
            ex.urls["api"] = cfg.api_url
    return ex


def content_id(*parts: object) -> str:
    h = hashlib.blake2b(digest_size=12)
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
        h.update(b"\0")
    return h.hexdigest()


def market_frame(ex: Any, unified: str) -> bytes:
    m = dict(ex.market(unified))
    m["precisionMode"] = ex.precisionMode  # how the normalizer must read ``precision``
    return orjson.dumps(m, default=str)


class Cursor(NamedTuple):
    """Newest trade time seen (ms) and the ids of the trades at exactly that time."""

    ms: int
    ids: frozenset[str]

    def header(self) -> str:
        return f"{self.ms}:{','.join(sorted(self.ids))}"

    @staticmethod
    def parse(text: str) -> Cursor:
        ms, _, ids = text.partition(":")
        return Cursor(int(ms), frozenset(i for i in ids.split(",") if i))

    def new(self, trades: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Trades after the cursor, in time order (ccxt already sorts them)."""
        return [
            t
            for t in trades
            if t.get("timestamp") is not None
            and (
                t["timestamp"] > self.ms or (t["timestamp"] == self.ms and _tid(t) not in self.ids)
            )
        ]

    def advance(self, new: list[dict[str, Any]]) -> Cursor:
        last = new[-1]["timestamp"]
        ids = {_tid(t) for t in new if t["timestamp"] == last}
        return Cursor(last, frozenset(ids | self.ids) if last == self.ms else frozenset(ids))


def _tid(t: dict[str, Any]) -> str:
    return str(t.get("id") or f"{t['timestamp']}:{t.get('price')}:{t.get('amount')}")


async def publish_acked(
    js: JetStreamContext,
    stop: asyncio.Event,
    subject: str,
    data: bytes,
    headers: dict[str, str],
    on_retry: Callable[[str], None] | None = None,
) -> bool:
    """Publish until JetStream acks it (same bytes, same Nats-Msg-Id each try); False if
    asked to stop first. Returns whether JetStream stored it (not a duplicate). Nothing is
    dropped: a refused publish (store full, permissions, no stream) is retried with one log
    line per streak and ``on_retry(why)`` each time (the poller's health says degraded);
    a body over NATS max_payload goes whole into JM_FRAMES by reference (streams/bus/bigframes.py)
    under a name derived from its Nats-Msg-Id, so a retry overwrites the same object."""
    delay = 0.2
    failures = 0
    while True:
        try:
            if len(data) > js._nc.max_payload - 1024:  # type: ignore[attr-defined]
                name = hashlib.sha256(headers.get(subjects.H_MSG_ID, subject).encode()).hexdigest()
                await FrameStore(js).put(f"ccxt.{name}", data)
                ref = {**headers, H_FRAME_REF: f"ccxt.{name}", H_FRAME_SIZE: str(len(data))}
                ack = await js.publish(subject, b"", headers=ref, stream=STREAM_RAW, timeout=5.0)
            else:
                ack = await js.publish(
                    subject, data, headers=headers, stream=STREAM_RAW, timeout=5.0
                )
            if failures:
                log.info("raw publish acked again", extra={"tries": failures + 1})
            return not ack.duplicate
        except Exception as exc:
            failures += 1
            if failures == 1 or failures % 50 == 0:
                log.warning("raw publish not acked, retrying",
                            extra={"error": repr(exc)[:300], "tries": failures})  # fmt: skip
            if on_retry is not None:
                on_retry(f"raw publish not acked ({failures} tries): {exc!r}"[:300])
            if stop.is_set():
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class Poller:
    def __init__(self, w: Worker, exchange_id: str, cfg: CcxtExchangeSettings) -> None:
        self.w, self.id, self.cfg = w, exchange_id, cfg
        self.ex = make_exchange(exchange_id, cfg)
        self.conn = new_conn_id(f"ccxt-{exchange_id}")
        self.counts: dict[str, int] = {}
        self.errors = 0

    # -- plumbing ------------------------------------------------------------------------
    async def _publish(
        self, channel: str, unified: str, data: bytes, recv_ns: int, msg_id: str,
        extra: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        assert self.w.js is not None
        headers = {subjects.H_RECV_NS: str(recv_ns), subjects.H_CONN: self.conn,
                   subjects.H_MSG_ID: f"ccxt:{self.id}:{msg_id}", **(extra or {})}  # fmt: skip
        await publish_acked(
            self.w.js, self.w.stop, subjects.raw(self.id, channel, unified), data, headers,
            on_retry=lambda why: self.w.health.set("degraded", error=why),
        )  # fmt: skip
        if self.w.health.state == "degraded" and not self.errors:  # the publish streak ended
            self.w.health.set("ok", error="")
        FRAMES.labels(self.id, channel).inc()
        self.counts[channel] = self.counts.get(channel, 0) + 1
        self.w.health.set(**{f"{self.id}.{k}": v for k, v in self.counts.items()})

    async def _fetch(self, endpoint: str, call: Any) -> Any | None:
        """One ccxt call; errors are logged (once per streak) and counted, never raised."""
        try:
            result = await call
        except Exception as exc:
            REST.labels(self.id, endpoint, "error").inc()
            self.errors += 1
            if self.errors == 1 or self.errors % 100 == 0:
                log.warning(
                    "ccxt request failed",
                    extra={"exchange": self.id, "endpoint": endpoint, "error": repr(exc)[:300],
                           "errors": self.errors},
                )  # fmt: skip
            self.w.health.set("degraded", errors=self.errors, error=repr(exc)[:200])
            return None
        REST.labels(self.id, endpoint, "ok").inc()
        if self.errors:
            self.errors = 0
            self.w.health.set("ok", errors=0)
        return result

    async def _last(self, channel: str, unified: str) -> Any | None:
        assert self.w.js is not None
        try:
            return await self.w.js.get_last_msg(STREAM_RAW, subjects.raw(self.id, channel, unified))
        except NotFoundError:
            return None

    # -- channels ------------------------------------------------------------------------
    async def run(self) -> None:
        budget = await open_budget(self.w.nc, self.id, self.cfg.limits, self.ex)
        try:
            while await self._fetch("load_markets", self.ex.load_markets()) is None:
                if await self.w.sleep(self.cfg.trades_interval_s):
                    return
            unknown = [s for s in self.cfg.symbols if s not in self.ex.markets]
            if unknown:
                raise SystemExit(f"{self.id} lists no market {unknown} (ccxt unified symbols)")
            for s in self.cfg.symbols:
                data = market_frame(self.ex, s)
                await self._publish(CH_MARKET, s, data, time.time_ns(), content_id(data))
            loops = []
            for s in self.cfg.symbols:
                if "trades" in self.cfg.channels:
                    loops.append(self.trades(s))
                if "ticker" in self.cfg.channels:
                    loops.append(self.ticker(s))
                if "ohlcv" in self.cfg.channels:
                    loops.append(self.ohlcv(s))
            self.w.health.set("ok")
            await asyncio.gather(*loops)
        finally:
            await budget.close()
            await self.ex.close()

    async def trades(self, unified: str) -> None:
        last = await self._last(CH_TRADES, unified)
        cursor = None
        if last is not None and last.headers and H_CURSOR in last.headers:
            cursor = Cursor.parse(last.headers[H_CURSOR])
        else:
            log.info("no trades cursor in RAW: starting at the exchange's latest trades",
                     extra={"exchange": self.id, "symbol": unified})  # fmt: skip
        limit = self.cfg.trades_limit
        while not self.w.stop.is_set():
            since = cursor.ms if cursor else None
            got = await self._fetch("fetch_trades", self.ex.fetch_trades(unified, since, limit))
            if got is None:
                if await self.w.sleep(self.cfg.trades_interval_s):
                    return
                continue
            recv = time.time_ns()
            if cursor is None:
                cursor = Cursor(-1, frozenset())
            new = cursor.new(got)
            if new:
                nxt = cursor.advance(new)
                first = new[0]
                msg_id = f"trades:{unified}:{first['timestamp']}:{_tid(first)}:{nxt.header()}"
                await self._publish(CH_TRADES, unified, orjson.dumps(new), recv, msg_id,
                                    {H_CURSOR: nxt.header()})  # fmt: skip
                cursor = nxt
            elif len(got) >= limit:
                # a whole page inside one millisecond we have seen: step past it, loudly
                log.warning(
                    "more trades in one ms than a page; skipping the rest of it",
                    extra={"exchange": self.id, "symbol": unified, "ms": cursor.ms},
                )
                cursor = Cursor(cursor.ms + 1, frozenset())
            if len(got) < limit and await self.w.sleep(self.cfg.trades_interval_s):
                return  # a full page means more are waiting: fetch again at once

    async def ticker(self, unified: str) -> None:
        while not self.w.stop.is_set():
            got = await self._fetch("fetch_ticker", self.ex.fetch_ticker(unified))
            if got is not None:
                data = orjson.dumps(got)
                await self._publish(CH_TICKER, unified, data, time.time_ns(), content_id(data))
            if await self.w.sleep(self.cfg.ticker_interval_s):
                return

    async def ohlcv(self, unified: str) -> None:
        tf = self.cfg.timeframe
        step = timeframe_ms(tf)
        channel = ohlcv_channel(tf)
        # (open time of the newest candle published, whether it was closed then)
        newest: tuple[int, bool] | None = None
        last = await self._last(channel, unified)
        if last is not None:
            rows = orjson.loads(last.data)
            recv_ms = int(last.headers[subjects.H_RECV_NS]) // 1_000_000
            if rows:
                newest = (rows[-1][0], rows[-1][0] + step <= recv_ms)
        while not self.w.stop.is_set():
            since = newest[0] if newest else None
            got = await self._fetch("fetch_ohlcv", self.ex.fetch_ohlcv(unified, tf, since))
            recv = time.time_ns()
            if got:
                if newest is not None:
                    o, closed = newest
                    got = [c for c in got if c[0] > o or (c[0] == o and not closed)]
                if got:
                    data = orjson.dumps(got)
                    await self._publish(channel, unified, data, recv, content_id(data))
                    newest = (got[-1][0], got[-1][0] + step <= recv // 1_000_000)
            if await self.w.sleep(self.cfg.ohlcv_interval_s):
                return


async def run(w: Worker, exchange_id: str) -> None:
    cfg = ccxt_settings(w.settings).exchanges.get(exchange_id)
    if cfg is None:
        raise SystemExit(
            f"no settings for ccxt exchange {exchange_id!r}: add collector.ccxt.exchanges."
            f"{exchange_id} (symbols, channels, ...)"
        )
    await Poller(w, exchange_id, cfg).run()
