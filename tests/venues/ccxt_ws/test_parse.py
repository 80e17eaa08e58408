"""The ccxt-ws parser offline: Bitfinex frames as the emulator writes them, through the
normalizer's own per-frame path (no NATS). Same frames -> same messages; the book messages
rebuild the venue's book; what ccxt says is broken becomes a gap and a held book; bad input
is a dead letter that leaves the parser working."""

from __future__ import annotations

import itertools
from typing import Any

import orjson

from collectors.ccxt_poller import CcxtExchangeSettings
from collectors.ccxt_ws import make_ws_exchange
from normalizer.core import Dead, Normalizer
from orderbook.book import L2Book
from streams import schemas, subjects
from tests.venues.ccxt_ws.emulator_bitfinex import BitfinexWsEmulator, Conn

RECV = 1_760_000_000_000_000_000


class _Ws:
    def __init__(self) -> None:
        self.out: list[bytes] = []

    async def send_str(self, s: str) -> None:
        self.out.append(s.encode())


async def _session(emu: BitfinexWsEmulator, steps: int) -> tuple[bytes, _Ws, Conn]:
    """The market record and the frames of one subscribed connection after ``steps``."""
    cfg = CcxtExchangeSettings(symbols=["BTC/USD", "ETH/USD"], api_url=emu.rest_url)
    ex = make_ws_exchange("bitfinex", cfg)
    try:
        await ex.load_markets()
        markets = orjson.dumps([ex.market(s) for s in cfg.symbols], default=str)
    finally:
        await ex.close()
    ws = _Ws()
    c = Conn(ws)  # type: ignore[arg-type]
    c.checksums = True
    emu.clients.append(c)
    for sym in emu.markets:
        for ch in ("trades", "book", "ticker"):
            await emu._subscribe(c, {"event": "subscribe", "channel": ch, "symbol": sym})
    await emu.play(steps)
    return markets, ws, c


class Feed:
    """A fresh normalizer fed RAW-shaped frames of the venue ``bitfinex``."""

    def __init__(self, markets: bytes) -> None:
        self.n = Normalizer()
        self.seq = 0
        self.record("ccxt-ws-market", markets)
        # what ccxt's watch() stored when the collector subscribed (bitfinex's handlers
        # delete the book's entry when its checksum fails)
        for ch in ("trades", "book", "ticker"):
            for sym in ("tBTCUSD", "tETHUSD"):
                sub = {"client": "k1", "url": "wss://x/ws/2", "hash": f"{ch}:{sym}",
                       "sub": {"checksum": False}}  # fmt: skip
                self.record("ccxt-ws-sub", sub)
        self.record("ccxt-ws-open", {"client": "k1", "url": "wss://x/ws/2"})

    def put(self, channel: str, data: bytes) -> list[Any] | Dead:
        self.seq += 1
        hdr = {subjects.H_RECV_NS: str(RECV + self.seq)}
        return self.n.normalize(f"raw.bitfinex.{channel}.WS", data, hdr, self.seq)

    def record(self, channel: str, body: Any) -> list[Any] | Dead:
        return self.put(channel, body if isinstance(body, bytes) else orjson.dumps(body))

    def frames(self, frames: list[bytes]) -> list[Any]:
        out: list[Any] = []
        for f in frames:
            got = self.put("ccxt-ws-tk1", f)
            assert isinstance(got, list), got.reason  # type: ignore[union-attr]
            out.extend(got)
        return out


def _decoded(outs: list[Any], kind: type) -> list[Any]:
    return [m for m in (schemas.decode(o.data) for o in outs) if isinstance(m, kind)]


def _rebuilt(outs: list[Any], symbol: str) -> L2Book:
    book = L2Book()
    for b in _decoded(outs, schemas.Book):
        if b.symbol == symbol:
            (book.load if b.snapshot else book.apply)(b.bids, b.asks)
    return book


async def test_same_frames_same_messages_and_the_venue_book_rebuilt() -> None:
    async with BitfinexWsEmulator() as emu:
        markets, ws, _ = await _session(emu, 60)
    first = Feed(markets).frames(ws.out)
    again = Feed(markets).frames(ws.out)
    assert [tuple(o) for o in first] == [tuple(o) for o in again]  # bit for bit
    trades = _decoded(first, schemas.Trade)
    want = sorted((m.unified, t.id, t.price, t.size, t.side) for m in emu.markets.values()
                  for t in m.trades)  # fmt: skip
    got = sorted((t.symbol.replace("-", "/"), int(t.id), t.price, t.size, t.side) for t in trades)
    assert got == want  # "te" and its "tu" copy: one trade
    for m in emu.markets.values():
        book = _rebuilt(first, m.unified.replace("/", "-"))
        bids, asks = book.levels()
        assert {"bids": dict(bids), "asks": dict(asks)} == m.book()
    books = _decoded(first, schemas.Book)
    assert sum(b.snapshot for b in books) == 2  # one per symbol; the rest are deltas
    chain = [b for b in books if b.symbol == "BTC-USD"]
    assert all(b.prev_seq == a.seq for a, b in itertools.pairwise(chain))
    assert _decoded(first, schemas.Ticker) and not _decoded(first, schemas.Gap)


async def test_a_checksum_ccxt_refuses_is_a_gap_and_the_book_waits_for_a_resubscribe() -> None:
    async with BitfinexWsEmulator() as emu:
        markets, ws, c = await _session(emu, 5)
        feed = Feed(markets)
        feed.frames(ws.out)
        m = emu.markets["tBTCUSD"]
        chan = c.chans[("book", "tBTCUSD")]
        ws.out.clear()
        await emu._checksum(c, chan, m, bad=True)
        (gap,) = _decoded(feed.frames(ws.out), schemas.Gap)
        assert (gap.symbol, gap.reason, gap.channel) == ("BTC-USD", "checksum", "book")
        # ccxt dropped the book (its other books go on); a frame of it now, before ccxt
        # subscribed again, publishes nothing of it: ccxt's book would be partial
        ws.out.clear()
        await emu._send(c, c.chans[("book", "tETHUSD")], [3499.9, 1, 0.5])
        await emu._send(c, chan, [64000.1, 1, 0.5])
        held = _decoded(feed.frames(ws.out), schemas.Book)
        assert [b.symbol for b in held] == ["ETH-USD"]
        # ccxt would take the venue's next snapshot as a delta to that partial book (its
        # quirk: the first message after the drop is its snapshot; the next checksum then
        # fails again and the collector reconnects). Here the stray delta is undone, to see
        # the resubscription's snapshot published as one.
        feed.n.parsers.get("bitfinex")._ws.ex.orderbooks.pop("BTC/USD")
        # ccxt's watch() subscribes again; the venue's new snapshot is a snapshot again
        feed.record("ccxt-ws-sub", {"client": "k1", "hash": "book:tBTCUSD", "sub": {}})
        ws.out.clear()
        c.chans.pop(("book", "tBTCUSD"))
        await emu._subscribe(c, {"event": "subscribe", "channel": "book", "symbol": "tBTCUSD"})
        (snap,) = [b for b in _decoded(feed.frames(ws.out), schemas.Book) if b.symbol == "BTC-USD"]
        assert snap.snapshot and snap.prev_seq is None
        book = L2Book()
        book.load(snap.bids, snap.asks)
        bids, asks = book.levels()
        assert {"bids": dict(bids), "asks": dict(asks)} == m.book()


async def test_bad_input_is_a_dead_letter_and_the_parser_goes_on() -> None:
    async with BitfinexWsEmulator() as emu:
        markets, ws, _ = await _session(emu, 3)
    feed = Feed(markets)
    feed.frames(ws.out[:10])
    for channel, data, why in [
        ("ccxt-ws-tk1", b"[1, {not json", "handler failed"),
        ("ccxt-ws-tk1", b"\xff\xfe", "not UTF-8"),
        ("ccxt-ws-market", b'{"a": 1}', "not a list of market structures"),
        ("ccxt-ws-market", b'[{"symbol": "X/Y"}]', "without symbol or id"),
        ("ccxt-ws-open", b'{"client": "k2"}', "without a url"),
        ("ccxt-ws-sub", b'{"hash": "x"}', "without a client key"),
        ("ccxt-ws-what", b"{}", "unknown ccxt-ws channel"),
        ("ccxt-ws-tk1", b"[" * 100_000, "handler failed"),
    ]:
        dead = feed.put(channel, data)
        assert isinstance(dead, Dead) and why in dead.reason, (channel, dead)
    # a frame of a client this parser never saw open: skipped (counted), not guessed
    assert feed.put("ccxt-ws-tzz", ws.out[12]) == []
    # and the rest of the session still parses
    assert _decoded(feed.frames(ws.out[10:]), schemas.Trade)
