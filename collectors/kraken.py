"""Kraken spot WebSocket v2 public collector: one connection, explicit subscribes, REST
instruments (AssetPairs via ccxt).

CHANNELS (setting name = Kraken v2 channel -> subscribe params -> raw subject):
  ticker                       {"channel", "symbol": [..]}         raw.kraken.ticker.<BTC/USD>
  trade                        + "snapshot" (options.trade_snapshot, false)  raw.kraken.trade.<..>
  book                         + "depth" (options.depth, 10)       raw.kraken.book.<BTC/USD>
  ohlc                         + "interval" (options.interval, 1)  raw.kraken.ohlc.<BTC/USD>
  instrument                   {"channel": "instrument"}           raw.kraken.instrument.ALL
  (REST)  GET /0/public/AssetPairs                                 raw.kraken.instruments.ALL
  (ours)  connection events                                        raw.kraken.conn.ALL
  (venue) acks/errors, pong, heartbeat, status                     raw.kraken.control.ALL
  (venue) anything unroutable                                      raw.kraken.unknown.ALL
Frames are published byte for byte. Venue rules honoured: symbols are batched per subscribe
request (``SYMBOLS_PER_REQUEST``); Kraken pushes ``{"channel":"heartbeat"}`` every second
while subscribed, and we send ``{"method":"ping"}`` after ping_interval_s of silence;
books come as a WebSocket snapshot then updates, so a resync (``ctl.snapshot.kraken.
<BTC-USD>``) is an unsubscribe + subscribe of that book, whose fresh snapshot arrives
through the stream. Stale feeds: no frame at all for stale_after_s, or none on a channel
listed in ``options.stale_channels`` (default ``book``) for stale_after_s, ends the
connection (a ``disconnected`` event, so gaps are recorded) and reconnects.
"""

from __future__ import annotations

import itertools
from typing import Any

import ccxt.async_support as ccxt
import orjson
from websockets.asyncio.client import ClientConnection

from collectors import base, config
from collectors.config import VenueSettings
from streams import subjects

VENUE = "kraken"
# ``[collector.kraken]``: Kraken WebSocket v2; ``channels`` are CHANNELS keys (below)
# Kraken spot limits (defaults of [collector.kraken.limits]):
# https://docs.kraken.com/api/docs/guides/spot-rest-ratelimits : public endpoints about 1
#   request per s per IP; private calls add to a counter (max 15, decaying 0.33/s for a
#   starter tier); over it "EAPI:Rate limit exceeded" / "EGeneral:Too many requests" in
#   the body (ccxt: RateLimitExceeded / DDoSProtection), with no HTTP status to read.
# https://docs.kraken.com/api/docs/guides/spot-ws-intro : about 150 connection attempts
#   per rolling 10 minutes per IP.
LIMITS = config.LimitsSettings(
    rules=[config.RateLimit(name="public", capacity=1, window_s=1.0,
                            applies=["AssetPairs", "Depth", "Trades", "OHLC", "Ticker",
                                     "Assets", "Time", "SystemStatus", "Spread"]),
           config.RateLimit(name="private", capacity=15, window_s=45.0, scope="account",
                            applies=["AddOrder", "CancelOrder", "QueryOrders",
                                     "OpenOrders", "ClosedOrders", "TradesHistory"])],
    ban_statuses=[429],
    default_ban_s=15.0,
    ws={"connections_per_10min": 150},
)  # fmt: skip

PER_SYMBOL = ("trade", "book", "ticker", "ohlc")
CHANNELS = frozenset((*PER_SYMBOL, "instrument"))

# ``[collector.kraken]``: its defaults; ``channels`` must be some of CHANNELS
KrakenSettings = config.venue_section("KrakenSettings",
    ws_url="wss://ws.kraken.com/v2", rest_url="https://api.kraken.com",
    symbols=["BTC/USD"], channels=["trade", "book", "ticker"],
    limits=LIMITS, known_channels=CHANNELS)  # fmt: skip

DEPTHS = (10, 25, 100, 500, 1000)
INTERVALS = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)
# Kraken documents no per-request symbol cap; small batches keep each ack burst short.
SYMBOLS_PER_REQUEST = 50
_CHANNEL = b'{"channel":"'
_SYMBOL = b'"symbol":"'


def _classify(channel: str, pair: Any) -> tuple[str, str]:
    if channel in ("heartbeat", "status"):
        return "control", "ALL"
    if channel == "instrument":
        return "instrument", "ALL"
    if (
        channel in PER_SYMBOL
        and isinstance(pair, str)
        and pair.count("/") == 1
        and subjects.token(pair) == pair
    ):
        return channel, pair
    return "unknown", "ALL"


def route(frame: bytes) -> tuple[str, str]:
    """(channel, pair) of a frame. Kraken writes ``channel`` first and the pair as the
    first ``symbol`` of ``data``, so slicing bytes routes data frames without a parse (the
    normalizer parses properly); anything else (acks, other key orders: rare) is decoded."""
    if frame.startswith(_CHANNEL):
        end = frame.find(b'"', len(_CHANNEL), 40)
        if end > 0:
            channel = frame[len(_CHANNEL) : end].decode("ascii", "replace")
            if channel not in PER_SYMBOL:
                return _classify(channel, None)
            i = frame.find(_SYMBOL, end, 400)
            j = frame.find(b'"', i + len(_SYMBOL), i + len(_SYMBOL) + 40) if i > 0 else -1
            if j > 0:
                return _classify(channel, frame[i + len(_SYMBOL) : j].decode("utf-8", "replace"))
    try:
        body = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return "unknown", "ALL"
    if not isinstance(body, dict):
        return "unknown", "ALL"
    if "method" in body:
        return "control", "ALL"
    data = body.get("data")
    first = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
    return _classify(str(body.get("channel", "")), first.get("symbol"))


def _params(cfg: VenueSettings, channel: str) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if channel == "book":
        extra["depth"] = int(cfg.options.get("depth", "10"))
    elif channel == "ohlc":
        extra["interval"] = int(cfg.options.get("interval", "1"))
    elif channel == "trade":
        # Kraken's trade snapshot replays the last 50 trades on every (re)connect; on a
        # quiet pair those can be older than the MARKET duplicate window and would show up
        # twice downstream, so it is off unless options.trade_snapshot = "true".
        extra["snapshot"] = cfg.options.get("trade_snapshot", "false") == "true"
    return extra


def subscriptions(cfg: VenueSettings) -> list[dict[str, Any]]:
    """The subscribe requests' ``params``, symbols batched per channel."""
    out: list[dict[str, Any]] = []
    for ch in cfg.channels:
        if ch == "instrument":
            out.append({"channel": "instrument"})
            continue
        for i in range(0, len(cfg.symbols), SYMBOLS_PER_REQUEST):
            chunk = cfg.symbols[i : i + SYMBOLS_PER_REQUEST]
            out.append({"channel": ch, "symbol": chunk, **_params(cfg, ch)})
    return out


def check(cfg: VenueSettings) -> None:
    unknown = set(cfg.channels) - CHANNELS
    if unknown:
        raise ValueError(f"collector.kraken.channels: unknown channels {sorted(unknown)}")
    if int(cfg.options.get("depth", "10")) not in DEPTHS:
        raise ValueError(f"collector.kraken.options.depth must be one of {DEPTHS}")
    if int(cfg.options.get("interval", "1")) not in INTERVALS:
        raise ValueError(f"collector.kraken.options.interval must be one of {INTERVALS}")
    bad = [s for s in cfg.symbols if s.count("/") != 1 or "-" in s]
    if bad:
        raise ValueError(f"collector.kraken.symbols: not Kraken v2 pairs (BTC/USD): {bad}")


class KrakenCollector(base.Collector):
    venue = VENUE
    settings_class = KrakenSettings
    ccxt_class = ccxt.kraken
    api = ("public", "")
    instruments_what = "AssetPairs"
    watch = frozenset({"control"})  # failed requests are logged

    def check(self) -> None:
        check(self.cfg)
        self.subs = subscriptions(self.cfg)
        self.req_ids = itertools.count(1)
        self.stale_limits = {
            c.strip(): self.cfg.stale_after_s
            for c in self.cfg.options.get("stale_channels", "book").split(",")
            if c.strip() in self.cfg.channels
        }

    def describe(self) -> dict[str, Any]:
        return {"requests": len(self.subs)}

    route = staticmethod(route)

    def _request(self, method: str, params: dict[str, Any] | None = None) -> str:
        body: dict[str, Any] = {"method": method, "req_id": next(self.req_ids)}
        if params is not None:
            body["params"] = params
        return orjson.dumps(body).decode()

    def ping_text(self, link: base.Link) -> str:
        return self._request("ping")  # after ping_interval_s of silence

    def fresh_s(self) -> float:
        # a heartbeat every second while subscribed, a pong after our ping otherwise
        return 5.0 + self.cfg.ping_interval_s

    # -- REST ----------------------------------------------------------------------------
    async def fetch_instruments(self) -> None:
        body, recv = await self.rest("AssetPairs", self.exchange.public_get_assetpairs)
        await self.link.pub.publish("instruments", "ALL", body, recv, "rest", durable=True)

    # -- WebSocket -----------------------------------------------------------------------
    def resync(self, symbol: str) -> tuple[base.Link, list[str], dict[str, Any]] | str:
        """``ctl.snapshot.kraken.<BTC-USD>``: re-subscribe that book for a new snapshot."""
        native = symbol.replace("-", "/", 1)
        if native not in self.cfg.symbols or "book" not in self.cfg.channels:
            return f"book not collected: {symbol}"
        params = {"channel": "book", "symbol": [native], **_params(self.cfg, "book")}
        requests = [self._request("unsubscribe", params), self._request("subscribe", params)]
        return self.link, requests, {"ok": True, "symbol": native}

    async def subscribe(self, ws: ClientConnection, link: base.Link) -> None:
        for params in self.subs:
            await ws.send(self._request("subscribe", params))

    async def on_frame(
        self, ws: ClientConnection, link: base.Link, channel: str, symbol: str, frame: bytes
    ) -> None:
        if b'"success":false' in frame:
            self.warn_frame("kraken request failed", frame)


run = KrakenCollector.main  # the collector body for streams.bus.runtime.run
