"""Frames of collectors/ccxt_ws.py -> typed messages, by ccxt's OWN WebSocket handlers.

The collector publishes each frame a ccxt pro client received, untouched, before ccxt
parsed it, plus the few records that make ccxt's state reproducible; all of one exchange
on the one symbol token ``WS`` (so a partitioned RAW keeps them in one partition, in order):

| channel            | frame                                                      |
|--------------------|------------------------------------------------------------|
| ccxt-ws-market     | JSON list of ccxt market structures (what load_markets set) |
| ccxt-ws-open       | ``{"client": k, "url": url}``: client k connected           |
| ccxt-ws-sub        | ``{"client": k, "hash": h, "sub": s}``: ccxt's watch() put   |
|                    | ``s`` in ``client.subscriptions[h]`` (before sending it)     |
| ccxt-ws-close      | ``{"client": k, "reason": text}``: client k is gone          |
| ccxt-ws-t<k>       | a text frame client k received, its bytes as sent          |
| ccxt-ws-b<k>       | a binary frame (compressed as sent: ccxt inflates it here)  |

Here one ccxt exchange object per venue (no network: it is never opened) and one feed
client per collector client replay that: each frame goes through ccxt's own
``Client.handle_message`` -> ``<exchange>.handle_message``, with ccxt's clock pinned to the
frame's receive time, so the same frame sequence gives the same messages. What ccxt put in
its caches during the frame is read out:

- ``trades``: every trade ccxt appended (the caches are emptied after each frame);
- ``tickers``: a ticker object ccxt replaced -> ``ticker`` (and ``bbo`` with sizes);
- ``orderbooks``: a book ccxt resolved -> ``book``: ``snapshot`` with every level for a
  book first seen (or re-created by ccxt after a resubscribe), else the levels that changed
  (size 0 = delete), ``seq`` = the RAW sequence of the frame and ``prev_seq`` = that of the
  symbol's previous book message: a chain the order-book service checks
  (orderbook/venues/ccxt.py). ccxt's own verdicts (a checksum or sequence failure it
  raised, a book it dropped, a resync it started) become a ``gap`` with ccxt's reason and
  break the chain, so the order-book service invalidates the book until the next snapshot.

What cannot be replayed is refused loudly, not guessed: a ccxt resync that needs a REST
snapshot (ccxt spawns a fetch; that answer never passes through the socket) is a
``snapshot`` gap, and frames of a client whose ``ccxt-ws-open`` this parser never saw (a
normalizer started mid-connection) are skipped and counted until the next connection.
"""

from __future__ import annotations

import math
from typing import Any

import ccxt.pro as ccxtpro
import orjson
from aiohttp import WSMessage, WSMsgType
from ccxt.async_support.base.ws.client import Client
from ccxt.async_support.base.ws.order_book import OrderBook

from normalizer.venues.base import SKIPPED, Frame, Naming, Out, Rejected, encode, new_out
from streams import schemas
from streams.symbols import ccxt as symbols

MS = 1_000_000
PREFIX = "ccxt-ws"
TOKEN = "WS"  # the raw symbol token of every ccxt-ws frame
_TEXT, _BINARY = "ccxt-ws-t", "ccxt-ws-b"
# ccxt's exception class names -> our gap reason
_FAILURES = {"ChecksumError": "checksum", "InvalidNonce": "sequence"}


def is_ws_channel(channel: str) -> bool:
    return channel.startswith(PREFIX)


class _Noop:
    """What a feed client hands out where ccxt expects a future: nobody waits on it."""

    def resolve(self, *_: Any) -> None:
        return None

    def reject(self, *_: Any) -> None:
        return None

    def cancelled(self) -> bool:
        return False


class FeedClient(Client):
    """A ccxt client with no socket: ``handle_message`` is ccxt's own (decompression, JSON,
    the exchange's dispatch); what the handlers resolve or reject is recorded per frame
    instead of waking futures. ``Client.__init__`` is not run: it creates asyncio futures
    and needs no event loop here."""

    def __init__(self, url: str, ex: Any) -> None:
        self.url = url
        self.futures = {}
        self.subscriptions = {}
        self.rejections = {}
        self.on_message_callback = ex.handle_message
        self.on_error_callback = self.on_close_callback = lambda *_: None
        self.on_connected_callback = lambda *_: None
        # decompression as ccxt would configure this exchange's client (Exchange.client)
        cfg = {**(ex.streaming or {}), **(ex.safe_value(ex.options, "ws", {}) or {})}
        self.gunzip = bool(cfg.get("gunzip", False))
        self.inflate = bool(cfg.get("inflate", False))
        self.decompressBinary = ex.safe_bool(ex.options, "decompressBinary", True)
        self.verbose = False
        self.connection = None
        self.ping_looper = None
        self.lastPong = None
        self.resolved: list[Any] = []
        self.rejected: list[BaseException] = []

    def future(self, message_hash: str) -> Any:
        return _Noop()

    def resolve(self, result: Any, message_hash: Any = None) -> Any:
        self.resolved.append(result)
        return result

    def reject(self, result: Any, message_hash: Any = None) -> Any:
        if isinstance(result, BaseException):
            self.rejected.append(result)
        return result

    def reset(self, error: Any) -> None:
        self.rejected.append(error if isinstance(error, BaseException) else Exception(error))

    async def send(self, message: Any) -> None:  # a pong or a resubscribe: not ours to send
        return None

    def on_error(self, error: Any) -> None:
        self.reject(error)

    def on_close(self, code: Any) -> None:
        return None


class _Book:
    """What was last published of one symbol's book: the ccxt object it came from, the
    levels as published (price -> size, base units) and the chain's last ``seq``."""

    __slots__ = ("asks", "bids", "obj", "seq")

    def __init__(self) -> None:
        self.obj: Any = None
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.seq: int | None = None


class CcxtWsParser(Naming):
    """One per ccxt exchange id (created by that venue's ccxt parser on first use)."""

    to_symbol = staticmethod(symbols.to_symbol)
    # (normalizer/coverage.py reads this: "" = records that publish nothing themselves)
    channels = {
        "ccxt-ws-t<k>": "trade+ticker+bbo+book", "ccxt-ws-b<k>": "trade+ticker+bbo+book",
        "ccxt-ws-market": "", "ccxt-ws-open": "", "ccxt-ws-sub": "", "ccxt-ws-close": "gap",
    }  # fmt: skip

    def __init__(self, venue: str) -> None:
        self.venue = self.market_venue = venue
        self._names_cache: dict[tuple[str, str], tuple[str, str]] = {}
        self._typed_names: dict[str, dict[str, Any]] = {}
        cls = getattr(ccxtpro, venue, None)
        if cls is None:  # every frame is refused (parse); the coverage table makes one "any"
            self.parse = self._no_exchange  # type: ignore[method-assign]
            cls = ccxtpro.Exchange
        self.ex = ex = cls({"enableRateLimit": False})
        self.now_ms = 0
        self.spawned: list[tuple[str, tuple[Any, ...]]] = []
        # ccxt's clock is the frame's receive time; its background work is recorded, not run
        ex.milliseconds = lambda: self.now_ms
        ex.spawn = lambda method, *args: self.spawned.append((_name(method), args))
        ex.delay = lambda _ms, method, *args: self.spawned.append((_name(method), args))
        self.clients: dict[str, FeedClient] = {}
        self.books: dict[str, _Book] = {}  # unified symbol -> what was published
        self.book_client: dict[str, str] = {}  # unified symbol -> client key it came through
        self._markets: dict[str, dict[str, Any]] = {}
        # books ccxt reported broken: no book output until ccxt subscribes to them again
        self.resyncing: set[str] = set()

    # -- dispatch ------------------------------------------------------------------------
    def parse(self, frame: Frame) -> list[Out]:
        ch = frame.channel
        if ch.startswith(_TEXT):
            return self._frame(frame, ch[len(_TEXT) :], WSMsgType.TEXT)
        if ch.startswith(_BINARY):
            return self._frame(frame, ch[len(_BINARY) :], WSMsgType.BINARY)
        if ch == "ccxt-ws-market":
            return self._market(frame)
        if ch == "ccxt-ws-open":
            return self._open(frame)
        if ch == "ccxt-ws-sub":
            return self._sub(frame)
        if ch == "ccxt-ws-close":
            return self._close(frame)
        raise Rejected(f"unknown ccxt-ws channel {ch!r}")

    def _no_exchange(self, frame: Frame) -> list[Out]:
        raise Rejected(f"ccxt pro has no exchange {self.venue!r}")

    # -- records -------------------------------------------------------------------------
    def _market(self, frame: Frame) -> list[Out]:
        markets = orjson.loads(frame.data)
        if not isinstance(markets, list) or not all(isinstance(m, dict) for m in markets):
            raise Rejected("ccxt-ws-market frame is not a list of market structures")
        for m in markets:
            if not isinstance(m.get("symbol"), str) or not isinstance(m.get("id"), str):
                raise Rejected("ccxt-ws-market: a market without symbol or id")
            self._markets[m["symbol"]] = m
        self.ex.set_markets(list(self._markets.values()))
        return []

    def _record(self, frame: Frame) -> dict[str, Any]:
        rec = orjson.loads(frame.data)
        if not isinstance(rec, dict) or not isinstance(rec.get("client"), str):
            raise Rejected(f"{frame.channel} record without a client key")
        return rec

    def _open(self, frame: Frame) -> list[Out]:
        rec = self._record(frame)
        url = rec.get("url")
        if not isinstance(url, str):
            raise Rejected("ccxt-ws-open record without a url")
        key = rec["client"]
        out: list[Out] = []
        # a new client of a url (a reconnect, a restarted collector): the old one is gone
        for old in [k for k, c in self.clients.items() if c.url == url and k != key]:
            out.extend(self._end(frame, old, "replaced by a new connection"))
        if key not in self.clients:
            self.clients[key] = FeedClient(url, self.ex)
        self.ex.clients[url] = self.clients[key]  # handlers that look their client up by url
        return out

    def _sub(self, frame: Frame) -> list[Out]:
        rec = self._record(frame)
        client = self.clients.get(rec["client"])
        if client is None:  # a watch() before the connection opened: the client is made here
            url = rec.get("url")
            if not isinstance(url, str):
                raise Rejected("ccxt-ws-sub record for an unknown client without a url")
            client = self.clients[rec["client"]] = FeedClient(url, self.ex)
        client.subscriptions[rec.get("hash")] = rec.get("sub", True)
        if self.resyncing:  # ccxt subscribed again: its next book of the symbol is whole
            text = str(rec.get("hash"))
            for sym in list(self.resyncing):
                mid = self._markets.get(sym, {}).get("id")
                if sym in text or (isinstance(mid, str) and mid in text):
                    self.resyncing.discard(sym)
        return []

    def _close(self, frame: Frame) -> list[Out]:
        rec = self._record(frame)
        return self._end(frame, rec["client"], f"closed: {rec.get('reason', '')}")

    def _end(self, frame: Frame, key: str, why: str) -> list[Out]:
        client = self.clients.pop(key, None)
        if client is not None and self.ex.clients.get(client.url) is client:
            del self.ex.clients[client.url]
        out = []
        for sym in [s for s, k in self.book_client.items() if k == key]:
            # the collector's ccxt forgets these books too: the next subscription starts afresh
            if self.ex.orderbooks:
                self.ex.orderbooks.pop(sym, None)
            del self.book_client[sym]
            out.extend(self._fail(frame, sym, "reconnect", f"ccxt client {key} {why}"))
        return out

    # -- frames --------------------------------------------------------------------------
    def _frame(self, frame: Frame, key: str, kind: WSMsgType) -> list[Out]:
        client = self.clients.get(key)
        if client is None:
            SKIPPED.labels(self.venue, "ccxt-ws frame of a client never opened here").inc()
            return []
        ex = self.ex
        self.now_ms = frame.ts_recv // MS
        client.resolved.clear()
        client.rejected.clear()
        self.spawned.clear()
        tickers_before = dict(ex.tickers) if ex.tickers else {}
        data: Any = frame.data
        if kind is WSMsgType.TEXT:
            try:
                data = data.decode()
            except UnicodeDecodeError as exc:
                raise Rejected(f"text frame is not UTF-8: {exc}") from None
        raised: Exception | None = None
        try:
            client.handle_message(WSMessage(kind, data, None))
        except Exception as exc:  # the collector reconnects on this (collectors/ccxt_ws.py)
            if type(exc).__name__ not in _FAILURES:
                raise Rejected(f"ccxt {self.venue} handler failed: {exc!r}"[:400]) from None
            raised = exc
        if raised is not None:
            client.rejected.append(raised)
        out: list[Out] = []
        if ex.trades:
            for cache in ex.trades.values():
                if len(cache):
                    trades = list(cache)
                    cache.clear()  # first: a trade refused below must not come back
                    self._trades(frame, trades, out)
        if ex.tickers:
            for sym, t in ex.tickers.items():
                if tickers_before.get(sym) is not t:
                    self._ticker(frame, t, out)
        failed: dict[str, str] = {}
        for exc in client.rejected:
            reason = _FAILURES.get(type(exc).__name__)
            if reason is not None:
                for sym in self._named_in(str(exc)):
                    failed[sym] = reason
        for name, args in self.spawned:
            if "check_sum" in name or "checksum" in name:
                for sym in (a for a in args if isinstance(a, str) and a in self.books):
                    failed[sym] = "checksum"
                    # what ccxt's resync does first (un_watch_order_book): the book is gone
                    if ex.orderbooks:
                        ex.orderbooks.pop(sym, None)
            elif "order_book" in name or "orderbook" in name or "snapshot" in name:
                for sym in (a for a in args if isinstance(a, str) and a in self._markets):
                    failed.setdefault(sym, "snapshot")
        seen: set[str] = set()
        for r in client.resolved:
            if isinstance(r, OrderBook):
                sym = r.get("symbol")
                if sym in self.resyncing:
                    continue  # ccxt's book of it is partial until it subscribes again
                if isinstance(sym, str) and sym not in seen and sym not in failed:
                    seen.add(sym)
                    book = ex.orderbooks.get(sym) if ex.orderbooks else None
                    if book is not None:
                        self.book_client[sym] = key
                        self._book(frame, sym, book, out)
        for sym, st in self.books.items():  # a book ccxt dropped on its own
            if (
                st.obj is not None
                and sym not in failed
                and sym not in self.resyncing
                and (not ex.orderbooks or ex.orderbooks.get(sym) is not st.obj)
                and sym not in seen
            ):
                failed[sym] = "sequence"
        for sym, reason in failed.items():
            self.resyncing.add(sym)
            detail = "ccxt needs a REST snapshot, which RAW cannot replay" if reason == "snapshot" \
                else f"ccxt {reason} failure"  # fmt: skip
            out.extend(self._fail(frame, sym, reason, detail))
        return out

    def _named_in(self, text: str) -> list[str]:
        """The tracked book symbols an error message of ccxt names."""
        return [s for s in self.books if s in text] or list(self.book_client)

    # -- messages ------------------------------------------------------------------------
    def _to_base(self, unified: str, amount: float, price: float) -> float:
        m = self._markets.get(unified)
        if m is None or not m.get("contract"):
            return amount
        size = m.get("contractSize") or 1.0
        if m.get("inverse"):
            return amount * size / price if price > 0 else 0.0
        return amount * size

    def _trades(self, frame: Frame, trades: list[dict[str, Any]], out: list[Out]) -> None:
        for n, t in enumerate(trades):
            unified, price, amount = t.get("symbol"), t.get("price"), t.get("amount")
            if not isinstance(unified, str) or price is None or amount is None:
                raise Rejected(f"ccxt trade without symbol, price or amount: {t.get('id')!r}")
            price = _finite(float(price), "trade price")
            ts = t.get("timestamp")
            ts_event = int(ts) * MS if ts is not None else frame.ts_recv
            side = t.get("side")
            tid = t.get("id")
            msg = schemas.Trade(
                venue=self.venue, symbol=self._names("trade", unified)[1], ts_event=ts_event,
                ts_recv=frame.ts_recv, id=str(tid) if tid is not None else
                f"{ts}:{frame.raw_seq}:{n}", price=price,
                size=_finite(self._to_base(unified, float(amount), price), "trade amount"),
                side=side if side in ("buy", "sell") else "unknown",
            )  # fmt: skip
            out.append(self._out("trade", unified, msg.id, msg))

    def _ticker(self, frame: Frame, t: dict[str, Any], out: list[Out]) -> None:
        unified = t.get("symbol")
        if not isinstance(unified, str):
            return
        symbol = self._names("ticker", unified)[1]
        ts = t.get("timestamp")
        ts_event = int(ts) * MS if ts is not None else frame.ts_recv
        f = _opt
        msg = schemas.Ticker(
            venue=self.venue, symbol=symbol, ts_event=ts_event, ts_recv=frame.ts_recv,
            last=f(t.get("last")), bid=f(t.get("bid")), ask=f(t.get("ask")),
            open_24h=f(t.get("open")), high_24h=f(t.get("high")), low_24h=f(t.get("low")),
            volume_24h=f(t.get("baseVolume")), quote_volume_24h=f(t.get("quoteVolume")),
        )  # fmt: skip
        out.append(self._out("ticker", unified, f"{ts_event}:{frame.raw_seq}", msg))
        bid, ask, bv, av = msg.bid, msg.ask, f(t.get("bidVolume")), f(t.get("askVolume"))
        if bid is not None and ask is not None and bv is not None and av is not None:
            bbo = schemas.BBO(
                venue=self.venue, symbol=symbol, ts_event=ts_event, ts_recv=frame.ts_recv,
                bid_price=bid, bid_size=self._to_base(unified, bv, bid), ask_price=ask,
                ask_size=self._to_base(unified, av, ask),
            )  # fmt: skip
            out.append(self._out("bbo", unified, f"{ts_event}:{frame.raw_seq}", bbo))

    def _levels(self, unified: str, side: Any) -> dict[float, float]:
        """price -> size in base units of one side of ccxt's book (runs per book message:
        the spot and linear cases without a call per level)."""
        m = self._markets.get(unified)
        if m is None or not m.get("contract"):
            return {float(lvl[0]): float(lvl[1]) for lvl in side}
        size = float(m.get("contractSize") or 1.0)
        if not m.get("inverse"):
            return {float(lvl[0]): float(lvl[1]) * size for lvl in side}
        to_base = self._to_base
        return {float(lvl[0]): to_base(unified, float(lvl[1]), float(lvl[0])) for lvl in side}

    def _book(self, frame: Frame, unified: str, book: Any, out: list[Out]) -> None:
        st = self.books.get(unified)
        if st is None:
            st = self.books[unified] = _Book()
        bids, asks = self._levels(unified, book["bids"]), self._levels(unified, book["asks"])
        snapshot = st.obj is not book or st.seq is None
        if snapshot:
            db, da = sorted(bids.items(), reverse=True), sorted(asks.items())
        else:
            db, da = _diff(st.bids, bids), _diff(st.asks, asks)
            if not db and not da:
                return  # resolved without a change (a heartbeat-driven resolve)
        ts = book.get("timestamp")
        ts_event = int(ts) * MS if ts is not None else frame.ts_recv
        msg = schemas.Book(
            venue=self.venue, symbol=self._names("book", unified)[1], ts_event=ts_event,
            ts_recv=frame.ts_recv, snapshot=snapshot, bids=db, asks=da, seq=frame.raw_seq,
            prev_seq=None if snapshot else st.seq,
        )  # fmt: skip
        st.obj, st.bids, st.asks, st.seq = book, bids, asks, frame.raw_seq
        out.append(self._out("book", unified, f"raw{frame.raw_seq}", msg))

    def _fail(self, frame: Frame, unified: str, reason: str, detail: str) -> list[Out]:
        """ccxt said the book is broken: a gap, and the chain cut so the order-book service
        invalidates it; the next book message is a full snapshot."""
        st = self.books.get(unified)
        if st is not None:
            st.obj, st.seq = None, None
        try:
            subject, symbol = self._names("gap", unified)
        except Rejected:
            return []
        gap = schemas.Gap(
            venue=self.venue, symbol=symbol, ts_event=frame.ts_recv, ts_recv=frame.ts_recv,
            reason=reason, channel="book", detail=detail[:500],  # type: ignore[arg-type]
        )  # fmt: skip
        msg_id = f"{self.venue}:gap:{symbol}:raw{frame.raw_seq}-{reason}"
        return [new_out((subject, msg_id, encode(gap)))]


def _diff(old: dict[float, float], new: dict[float, float]) -> list[tuple[float, float]]:
    changed = [(p, s) for p, s in new.items() if old.get(p) != s]
    changed.extend((p, 0.0) for p in old if p not in new)
    return changed


def _opt(v: Any) -> float | None:
    if v is None:
        return None
    x = float(v)
    return x if math.isfinite(x) else None


def _finite(v: float, what: str) -> float:
    if not math.isfinite(v):
        raise Rejected(f"{what} is not a finite number")
    return v


def _name(method: Any) -> str:
    return getattr(method, "__name__", repr(method))
