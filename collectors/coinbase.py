"""Coinbase Advanced Trade public collector: one WebSocket, unauthenticated, REST products.

CHANNELS (setting name = subscription channel -> raw subject):
  level2, market_trades, ticker, candles   raw.coinbase.<channel>.<product_id>
      (level2 messages say ``"channel":"l2_data"`` on the wire; filed under level2)
  heartbeats (always subscribed)           raw.coinbase.heartbeats.ALL
  (REST) GET /api/v3/brokerage/market/products?product_type=SPOT&product_ids=..
                                           raw.coinbase.instruments.ALL
  (ours)  connection events                raw.coinbase.conn.ALL
  (venue) subscriptions acks, errors       raw.coinbase.control.ALL
  (venue) anything unroutable              raw.coinbase.unknown.ALL
Frames are published byte for byte and *all* of them go to RAW: ``sequence_num`` counts
every message of the connection, so the normalizer needs heartbeats and acks too to
prove nothing was lost (see orderbook/venues/coinbase.py).

Venue rules honoured: one channel per subscribe message, product ids chunked
(``PRODUCTS_PER_REQUEST``) and requests paced under ``MAX_MSGS_PER_S``; Coinbase closes
channels that send nothing for 60-90 s, so ``heartbeats`` (one message a second) is
always subscribed, which also feeds stale detection. Each subscribed channel has its own
stale timer (``stale_after_s``, or ``options["stale_after_s.<channel>"]`` for a quiet
one such as market_trades on an illiquid product); a silent channel ends the connection
(a ``disconnected`` event with reason ``stale: ...``) and we reconnect with backoff. A
resync (``ctl.snapshot.coinbase.<symbol>``) is an unsubscribe + subscribe of that
product's level2, whose fresh snapshot comes through the stream. REST goes through ccxt
and its rate limiter (one ccxt instance per collector, so one limiter for the venue).
"""

from __future__ import annotations

import asyncio
from typing import Any

import ccxt.async_support as ccxt
import msgspec
import orjson
from websockets.asyncio.client import ClientConnection

from collectors import base, config
from collectors.config import VenueSettings

VENUE = "coinbase"
# ``[collector.coinbase]``: Coinbase Advanced Trade; ``channels`` are CHANNELS keys (below)
# Coinbase Advanced Trade limits (defaults of [collector.coinbase.limits]):
# https://docs.cdp.coinbase.com/advanced-trade/docs/rest-api-rate-limits : public REST 10
#   requests per s per IP, private 30 per s per user; 429 over it.
# https://docs.cdp.coinbase.com/advanced-trade/docs/ws-rate-limits : WebSocket 8 messages
#   per s per IP unauthenticated (we keep to MAX_MSGS_PER_S).
LIMITS = config.LimitsSettings(
    rules=[config.RateLimit(name="public", capacity=10, window_s=1.0, sliding=True,
                            applies=["brokerage/market/products", "brokerage/market/products/"
                                     "{product_id}/book", "brokerage/market/products/"
                                     "{product_id}/candles", "brokerage/market/products/"
                                     "{product_id}/ticker"]),
           config.RateLimit(name="private", capacity=30, window_s=1.0, scope="account",
                            applies=["brokerage/orders", "brokerage/orders/batch_cancel"])],
    ban_statuses=[429],
    default_ban_s=5.0,
    ws={"messages_per_s": 8},
)  # fmt: skip

DATA_CHANNELS = ("level2", "market_trades", "ticker", "candles")

# ``[collector.coinbase]``: its defaults; ``channels`` must be some of DATA_CHANNELS
CoinbaseSettings = config.venue_section("CoinbaseSettings",
    ws_url="wss://advanced-trade-ws.coinbase.com", rest_url="https://api.coinbase.com",
    symbols=["BTC-USD"], channels=["market_trades", "level2", "ticker"],
    limits=LIMITS, known_channels=DATA_CHANNELS)  # fmt: skip

WIRE_TO_CHANNEL = {"l2_data": "level2", "market_trades": "market_trades", "ticker": "ticker",
                   "candles": "candles", "heartbeats": "heartbeats",
                   "subscriptions": "control"}  # fmt: skip
PRODUCTS_PER_REQUEST = 100
MAX_MSGS_PER_S = 8.0  # client messages per second we allow ourselves on one connection
_CHANNEL = b'{"channel":"'
_PRODUCT = b'"product_id":"'
_SYMBOL_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


class _Probe(msgspec.Struct):
    channel: str = ""
    type: str = ""


_probe = msgspec.json.Decoder(_Probe)


def route(frame: bytes) -> tuple[str, str]:
    """(channel, product id) of a frame by slicing bytes: Coinbase writes ``channel``
    first and a data message holds one product, whose first ``product_id`` names it (the
    normalizer reads every event's own product). Others get a two-key decode."""
    if frame.startswith(_CHANNEL):
        end = frame.find(b'"', len(_CHANNEL), 64)
        channel = WIRE_TO_CHANNEL.get(frame[len(_CHANNEL) : end].decode("ascii", "replace"))
    else:
        try:
            p = _probe.decode(frame)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return "unknown", "ALL"
        if p.type == "error":
            return "control", "ALL"
        channel = WIRE_TO_CHANNEL.get(p.channel)
    if channel is None:
        return "unknown", "ALL"
    if channel in ("heartbeats", "control"):
        return channel, "ALL"
    start = frame.find(_PRODUCT)
    if start < 0:
        return channel, "ALL"  # no product in it (an empty trades snapshot)
    start += len(_PRODUCT)
    end = frame.find(b'"', start, start + 40)
    product = frame[start:end]
    if end < 0 or not product or not _SYMBOL_CHARS.issuperset(product):
        return "unknown", "ALL"
    return channel, product.decode()


def subscribe_messages(cfg: VenueSettings, kind: str = "subscribe") -> list[str]:
    """Heartbeats first, then one message per channel and chunk of products."""
    out = [orjson.dumps({"type": kind, "channel": "heartbeats"}).decode()]
    for ch in cfg.channels:
        for i in range(0, len(cfg.symbols), PRODUCTS_PER_REQUEST):
            chunk = cfg.symbols[i : i + PRODUCTS_PER_REQUEST]
            out.append(orjson.dumps({"type": kind, "product_ids": chunk, "channel": ch}).decode())
    return out


def stale_limits(cfg: VenueSettings) -> dict[str, float]:
    """Seconds of silence allowed per subscribed channel (heartbeats included)."""
    limits = {ch: cfg.stale_after_s for ch in (*cfg.channels, "heartbeats")}
    for ch in limits:
        override = cfg.options.get(f"stale_after_s.{ch}")
        if override:
            limits[ch] = float(override)
    return limits


class CoinbaseCollector(base.Collector):
    venue = VENUE
    settings_class = CoinbaseSettings
    ccxt_class = ccxt.coinbase
    # WebSocket pings too: Coinbase answers them, and a dead TCP path is found even on a
    # quiet connection
    ws_pings = True
    watch = frozenset({"control"})  # errors are logged
    error_prefix = b'{"type":"error"'
    error_what = "coinbase error"
    stale_any = False  # each channel has its own limit instead (heartbeats: every second)

    def check(self) -> None:
        unknown = set(self.cfg.channels) - set(DATA_CHANNELS)
        if unknown:
            raise ValueError(f"collector.coinbase.channels: unknown channels {sorted(unknown)}")
        self.requests = subscribe_messages(self.cfg)
        self.stale_limits = stale_limits(self.cfg)

    def describe(self) -> dict[str, Any]:
        return {"requests": len(self.requests)}

    route = staticmethod(route)

    # -- REST ----------------------------------------------------------------------------
    async def fetch_instruments(self) -> None:
        params = {"product_type": "SPOT", "product_ids": list(self.cfg.symbols)}
        body, recv = await self.rest(
            "products", self.exchange.v3PublicGetBrokerageMarketProducts, params
        )
        await self.link.pub.publish("instruments", "ALL", body, recv, "rest", durable=True)

    # -- WebSocket -----------------------------------------------------------------------
    def resync(self, symbol: str) -> tuple[base.Link, list[str], dict[str, Any]] | str:
        """``ctl.snapshot.coinbase.<BTC-USD>``: re-subscribe that product's level2."""
        product = symbol  # spot symbols are Coinbase's product ids
        if product not in self.cfg.symbols or "level2" not in self.cfg.channels:
            return f"book not collected: {product}"
        requests = [
            orjson.dumps({"type": kind, "product_ids": [product], "channel": "level2"}).decode()
            for kind in ("unsubscribe", "subscribe")
        ]
        return self.link, requests, {"ok": True, "product_id": product}

    async def subscribe(self, ws: ClientConnection, link: base.Link) -> None:
        """Paced under MAX_MSGS_PER_S; the stale timers already run meanwhile."""
        for i, req in enumerate(self.requests):
            if i:
                await asyncio.sleep(1.0 / MAX_MSGS_PER_S)
            await ws.send(req)


run = CoinbaseCollector.main  # the collector body for streams.bus.runtime.run
