"""Our parser next to a leading Python feed handler's, on the same frames, offline.

The feed handler is ccxt pro (MIT; ccxt is already our REST dependency): for each frame
its WebSocket client's own per-message path, ``Client.handle_text_or_binary_message``
(JSON decode, then the exchange's ``handle_message``: dispatch, parse into ccxt's unified
structure, cache, resolve waiting futures). No socket is opened; markets come from
instrument lists shaped as our emulators serve them.

cryptofeed would be the other obvious choice, but it depends on ``order_book``, which is
GPLv3: it is not installed here (no GPL packages), and nautilus_trader is LGPL. Channels
where ccxt does more than parse are left out rather than compared unfairly: its depth
handler applies each delta to a sorted book, which our normalizer leaves to the order-book
service, and channels ccxt has no handler for (Coinbase candles, Kraken instruments) have
nothing to compare.
Where ccxt builds markets only inside ``fetch_markets``, its one REST call is answered with
our emulator's instrument rows. Goal (issue #9): ours >= 2.5x ccxt's rate on every compared
channel."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import ccxt.pro as ccxtpro
from ccxt.async_support.base.ws.client import Client

from benchmarks import bench_coinbase, bench_deribit, bench_kraken
from benchmarks.bench_parse import PASSES, _timed
from benchmarks.bench_venues import _binance, _bybit, _okx
from normalizer.registry import parsers
from normalizer.venues.base import Frame
from tests.venues.coinbase.emulator import ProductSim as CoinbaseProduct
from tests.venues.deribit.emulator import DEFAULT_SPECS as DERIBIT_SPECS
from tests.venues.kraken.emulator import DEFAULT_SPECS as KRAKEN_SPECS
from tests.venues.okx.emulator import DEFAULT_SPECS as OKX_SPECS

SPOT_INFO = {
    "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT",
    "filters": [{"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000",
                 "tickSize": "0.01"},
                {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000",
                 "stepSize": "0.00001"}],
}  # fmt: skip
USDM_INFO = {**SPOT_INFO, "pair": "BTCUSDT", "contractType": "PERPETUAL",
             "deliveryDate": 4133404800000, "marginAsset": "USDT"}  # fmt: skip
BYBIT_LINEAR = {
    "retCode": 0, "retMsg": "OK", "retExtInfo": {}, "time": 1,
    "result": {"category": "linear", "nextPageCursor": "", "list": [{
        "symbol": "BTCUSDT", "status": "Trading", "baseCoin": "BTC", "quoteCoin": "USDT",
        "priceFilter": {"tickSize": "0.01"}, "lotSizeFilter": {"qtyStep": "0.001"},
        "contractType": "LinearPerpetual", "deliveryTime": "0", "settleCoin": "USDT"}]},
}  # fmt: skip
Row = tuple[str, float, float]  # (channel, our frames/s, ccxt pro frames/s)


async def _binance_markets(ex: ccxtpro.Exchange, info: dict) -> list[dict]:
    # parse_market reads these (fetch_markets fills them from margin endpoints first)
    ex.options["crossMarginPairsData"] = []
    ex.options["isolatedMarginPairsData"] = []
    return [ex.parse_market(info)]


async def _okx_markets(ex: ccxtpro.Exchange) -> list[dict]:
    return [ex.parse_market(OKX_SPECS["BTC-USDT"].row())]


async def _bybit_markets(ex: ccxtpro.Exchange) -> list[dict]:
    # ccxt's bybit parses markets only inside fetch_markets: its REST call answers here
    async def instruments_info(params: dict | None = None, context: dict | None = None) -> dict:
        return BYBIT_LINEAR

    ex.publicGetV5MarketInstrumentsInfo = instruments_info
    markets = await ex.fetch_future_markets({"category": "linear"})
    return list({m["symbol"]: m for m in markets}.values())  # its pre-launch call: same list


async def _deribit_markets(ex: ccxtpro.Exchange) -> list[dict]:
    # fetch_markets asks public/get_instruments once (all currencies): answered here
    async def instruments(params: dict | None = None, context: dict | None = None) -> dict:
        return {"jsonrpc": "2.0", "result": [DERIBIT_SPECS["BTC-PERPETUAL"].row()]}

    ex.publicGetGetInstruments = instruments
    return await ex.fetch_markets()


async def _coinbase_markets(ex: ccxtpro.Exchange) -> list[dict]:
    row = CoinbaseProduct("BTC-USD", random.Random(1), 6_500_000).product_row()
    return [ex.parse_spot_market(row, {})]


async def _kraken_markets(ex: ccxtpro.Exchange) -> list[dict]:
    # fetch_markets asks /0/public/AssetPairs: answered here with the emulator's row
    spec = KRAKEN_SPECS["BTC/USD"]

    async def asset_pairs(params: dict | None = None, context: dict | None = None) -> dict:
        return {"error": [], "result": {spec.rest_key: spec.rest_row()}}

    ex.publicGetAssetPairs = asset_pairs
    return await ex.fetch_markets()


@dataclass(frozen=True)
class Venue:
    label: str
    parser: str  # our parser's registry name
    exchange: Callable[[], ccxtpro.Exchange]
    url: str  # the stream URL: ccxt tells spot from futures frames by it
    markets: Callable[[ccxtpro.Exchange], Awaitable[list[dict]]]
    frames: Callable[[], dict[str, list[Frame]]]
    # channels where ccxt only parses (its book handlers also maintain a sorted book)
    channels: frozenset[str]


VENUES = [
    Venue("binance (spot)", "binance", ccxtpro.binance, "wss://stream.binance.com:9443/stream",
          partial(_binance_markets, info=SPOT_INFO), partial(_binance, "binance"),
          frozenset({"trade", "bookTicker", "kline"})),
    Venue("binance (usdm)", "binanceusdm", ccxtpro.binanceusdm, "wss://fstream.binance.com/ws",
          partial(_binance_markets, info=USDM_INFO), partial(_binance, "binanceusdm"),
          frozenset({"trade", "aggTrade", "bookTicker", "kline", "markPrice", "forceOrder"})),
    Venue("okx", "okx", ccxtpro.okx, "wss://ws.okx.com:8443/ws/v5/public", _okx_markets, _okx,
          frozenset({"trades", "bbo-tbt", "tickers"})),
    Venue("bybit (linear)", "bybit_linear", ccxtpro.bybit,
          "wss://stream.bybit.com/v5/public/linear", _bybit_markets,
          lambda: {k[1]: v for k, v in _bybit().items()}, frozenset({"publicTrade", "tickers"})),
    Venue("deribit", "deribit", ccxtpro.deribit, "wss://www.deribit.com/ws/api/v2",
          _deribit_markets, partial(bench_deribit._frames, bench_deribit.N),
          frozenset({"trades", "quote", "ticker", "chart_trades"})),
    # ccxt has no handler for Coinbase's candles channel: nothing to compare there
    Venue("coinbase", "coinbase", ccxtpro.coinbase, "wss://advanced-trade-ws.coinbase.com",
          _coinbase_markets, bench_coinbase.frames, frozenset({"market_trades", "ticker"})),
    Venue("kraken", "kraken", ccxtpro.kraken, "wss://ws.kraken.com/v2", _kraken_markets,
          bench_kraken.frames, frozenset({"trade", "ticker", "ohlc"})),
]  # fmt: skip


async def _ccxt(v: Venue) -> tuple[ccxtpro.Exchange, Callable[[bytes], None]]:
    """A fresh ccxt exchange and its client's per-message entry point (in a running event
    loop: the client creates futures)."""
    ex = v.exchange()
    ex.set_markets(await v.markets(ex))
    client = Client(v.url, ex.handle_message, None, None, None)
    return ex, client.handle_text_or_binary_message


async def _compare(v: Venue, frames: list[Frame]) -> tuple[float, float, int]:
    """(our frames/s, ccxt's frames/s, what ccxt holds after a pass: proof that it parsed
    the frames). Best of ``PASSES`` each, the two sides' passes interleaved so a burst of
    load on this shared box hits both alike; a fresh parser and exchange per pass."""
    datas = [f.data for f in frames]
    ours = theirs = float("inf")
    produced = 0
    for _ in range(PASSES):
        parse = type(parsers()[v.parser])().parse
        ex, handle = await _ccxt(v)

        def run_ours(parse: Callable[[Frame], object] = parse) -> None:
            for f in frames:
                parse(f)

        def run_theirs(handle: Callable[[bytes], None] = handle) -> None:
            for d in datas:
                handle(d)

        ours = min(ours, _timed(run_ours))
        theirs = min(theirs, _timed(run_theirs))
        caches = (ex.trades, ex.ohlcvs, ex.bidsasks, ex.tickers, ex.liquidations)
        produced = sum(len(c) for c in caches if c)
        await ex.close()
    return len(frames) / ours, len(frames) / theirs, produced


async def _bench() -> list[tuple[str, list[Row]]]:
    out = []
    for v in VENUES:
        rows = []
        for channel, frames in v.frames().items():
            if channel not in v.channels:
                continue
            ours, theirs, produced = await _compare(v, frames)
            assert produced, f"ccxt kept nothing from {v.label} {channel}: not comparable"
            rows.append((channel, ours, theirs))
        out.append((v.label, rows))
    return out


def bench() -> list[tuple[str, list[Row]]]:
    """Per venue: (channel, our frames/s, ccxt pro frames/s)."""
    return asyncio.run(_bench())


if __name__ == "__main__":
    for label, rows in bench():
        for channel, ours, theirs in rows:
            print(f"{label:16s} {channel:11s} ours {ours:>9,.0f}/s  ccxt pro {theirs:>8,.0f}/s"
                  f"  {ours / theirs:5.1f}x")  # fmt: skip
