"""Book sync rules on generated sequences: exact rebuild, and every injected fault detected."""

from __future__ import annotations

import random
import re

import orjson
import pytest

from normalizer.core import Normalizer
from orderbook.book import L2Book
from orderbook.sync import BookState
from orderbook.venues.binance import BinanceFutures, BinanceSpot
from streams import schemas, subjects
from tests import recorded
from tests.conftest import shared_frames


def book(seq: int, first: int, bids: list, asks: list, snapshot: bool = False) -> schemas.Book:
    return schemas.Book(
        venue="binance", symbol="BTC-USDT", ts_event=seq, ts_recv=seq,
        snapshot=snapshot, bids=bids, asks=asks, seq=seq, first_seq=first,
    )  # fmt: skip


class TrueBook:
    """A generated venue book: random level changes that never cross, U/u ids like Binance."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.bids = {100.0 - i * 0.01: 1.0 for i in range(1, 50)}
        self.asks = {100.0 + i * 0.01: 1.0 for i in range(1, 50)}
        self.u = 1000
        self.history: dict[int, tuple[list, list]] | None = None  # seq -> top 20, if wanted

    def snapshot(self) -> schemas.Book:
        return book(self.u, self.u, sorted(self.bids.items(), reverse=True),
                    sorted(self.asks.items()), snapshot=True)  # fmt: skip

    def delta(self) -> schemas.Book:
        r = self.rnd
        bids, asks = [], []
        for _ in range(r.randint(1, 4)):
            bid_side = r.random() < 0.5
            side, out = (self.bids, bids) if bid_side else (self.asks, asks)
            best_other = min(self.asks) if bid_side else max(self.bids)
            tick = r.randint(1, 80)
            price = (
                round(best_other - tick * 0.01, 2)
                if bid_side
                else round(best_other + tick * 0.01, 2)
            )
            size = 0.0 if (price in side and r.random() < 0.4) else round(r.uniform(0.1, 9), 3)
            if size == 0.0:
                del side[price]
            else:
                side[price] = size
            out.append((price, size))
        first = self.u + 1
        self.u += r.randint(1, 3)
        if self.history is not None:
            self.history[self.u] = self.top(20)
        return book(self.u, first, bids, asks)

    def top(self, n: int) -> tuple[list, list]:
        return sorted(self.bids.items(), reverse=True)[:n], sorted(self.asks.items())[:n]

    def as_book(self) -> L2Book:
        b = L2Book()
        b.load(list(self.bids.items()), list(self.asks.items()))
        return b


def test_rebuild_exact_after_100k_deltas_with_buffered_start() -> None:
    tb = TrueBook(1)
    st = BookState(BinanceSpot())
    before = [tb.delta() for _ in range(30)]  # older than the snapshot: dropped
    snap = tb.snapshot()  # taken while deltas are already flowing
    after = [tb.delta() for _ in range(20)]  # buffered; the first one bridges
    later = [tb.delta() for _ in range(100_000)]
    for d in before + after:
        assert st.feed(d) is None
        assert not st.valid
    assert st.feed(snap) is None
    assert st.valid
    for d in later:
        assert st.feed(d) is None
    assert st.book == tb.as_book()
    assert st.seq == tb.u


@pytest.mark.parametrize("fault", ["drop", "duplicate", "reorder", "crossing level"])
def test_faults_are_detected_and_healed_by_snapshot(fault: str) -> None:
    tb = TrueBook(2)
    st = BookState(BinanceSpot())
    st.feed(tb.snapshot())
    for _ in range(100):
        assert st.feed(tb.delta()) is None
    a, b = tb.delta(), tb.delta()
    if fault == "drop":
        problems = [st.feed(b)]
    elif fault == "duplicate":
        problems = [st.feed(a), st.feed(a), st.feed(b)]
    elif fault == "reorder":
        problems = [st.feed(b), st.feed(a)]
    else:
        best_ask = min(tb.asks)
        bad = book(a.seq, a.first_seq, [(best_ask + 1.0, 5.0)], [])  # type: ignore[arg-type]
        problems = [st.feed(bad)]
    found = [p for p in problems if p is not None]
    assert found, f"{fault} not detected"
    if fault == "duplicate":
        assert not found[0].fatal and st.valid and st.book == tb.as_book()
        return
    assert found[0].fatal and not st.valid
    assert found[0].reason == ("crossed" if fault == "crossing level" else "sequence")
    # heal: later deltas buffer, a fresh snapshot bridges them
    more = [tb.delta() for _ in range(5)]
    for d in more[:2]:
        st.feed(d)
    snap = tb.snapshot()
    for d in more[2:]:
        st.feed(d)
    tb2 = [tb.delta() for _ in range(3)]
    assert st.feed(snap) is None and st.valid
    for d in tb2:
        assert st.feed(d) is None
    assert st.book == tb.as_book()


@pytest.mark.parametrize(
    ("capture", "raw_venue", "rule"),
    [("BINANCE", "binance", BinanceSpot()), ("BINANCE_FUTURES", "binanceusdm", BinanceFutures())],
)
def test_recorded_binance_snapshots_bridge_real_deltas(
    capture: str, raw_venue: str, rule: BinanceSpot
) -> None:
    """Real Binance traffic: each REST snapshot bridges the recorded diff stream and every
    later update continues it (spot: U == previous u + 1; futures: pu == previous u)."""
    ws = shared_frames(f"cryptofeed/{capture}.ws.1.0")
    rest = shared_frames(f"cryptofeed/{capture}.http.0.0")
    n = Normalizer()
    hdr = {subjects.H_RECV_NS: "1"}
    snaps = {}
    for rec in recorded.read(rest):
        sym = re.search(r"symbol=(\w+)", rec.url).group(1)  # type: ignore[union-attr]
        raw = subjects.raw(raw_venue, "snapshot", sym)
        [o] = n.normalize(raw, rec.payload.encode(), hdr, 1)  # type: ignore[misc]
        snaps[sym] = (rec.ts, schemas.decode(o.data))
    states: dict[str, BookState] = {}
    applied = 0
    for rec in recorded.read(ws):
        if rec.kind != "recv" or "@depth" not in rec.payload[:40]:
            continue
        sym = orjson.loads(rec.payload)["data"]["s"]
        st = states.setdefault(sym, BookState(rule))
        if sym in snaps and rec.ts >= snaps[sym][0] and st.seq is None:
            assert st.feed(snaps[sym][1]) is None  # type: ignore[arg-type]
        raw = subjects.raw(raw_venue, "depth", sym)
        [o] = n.normalize(raw, rec.payload.encode(), hdr, 1)  # type: ignore[misc]
        p = st.feed(schemas.decode(o.data))  # type: ignore[arg-type]
        assert p is None or not p.fatal, (sym, p)
        applied += st.valid
    assert applied > 100
    assert sum(s.valid for s in states.values()) >= 2
