"""Checksums that need the instrument's spec: OKX derivative books carry base-unit sizes,
so the service learns each contract from ``market.instrument.okx.*`` and verifies OKX's
CRC32 over the contract counts it sent (recorded and generated frames)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from normalizer.core import Normalizer
from orderbook.service import OrderBookService
from orderbook.sync import BookState, rule_for
from orderbook.venues.okx import Contract, OkxChecksum, contract_of
from streams import schemas
from streams.bus.runtime import Worker
from tests import recorded
from tests.conftest import make_settings, shared_frames
from tests.venues.okx.emulator import DEFAULT_SPECS, InstrumentSim
from tests.venues.okx.test_okx import instruments_body, norm, push


def _instruments(n: Normalizer, body: bytes, seq: int) -> dict[str, schemas.Instrument]:
    out = norm(n, body, seq)
    assert isinstance(out, list)
    return {m.symbol: m for m in out if isinstance(m, schemas.Instrument)}


def test_contract_from_instrument_message() -> None:
    insts = _instruments(
        Normalizer(), instruments_body("BTC-USDT", "BTC-USDT-SWAP", "BTC-USD-SWAP"), 1
    )
    assert contract_of(insts["BTC-USDT-PERP"]) == Contract(0.01, False, 0)
    assert contract_of(insts["BTC-USD-PERP"]) == Contract(100.0, True, 0)
    assert isinstance(rule_for("okx", "BTC-USDT-PERP", insts["BTC-USDT-PERP"]), OkxChecksum)
    assert not hasattr(rule_for("okx", "BTC-USDT-PERP"), "verify")  # no spec, no checksum


def _swap_book(n: Normalizer, inst_id: str, symbol: str) -> None:
    inst = _instruments(n, instruments_body(inst_id), 1)[symbol]
    sim = InstrumentSim(DEFAULT_SPECS[inst_id], random.Random(5), 650_000)
    st = BookState(rule_for("okx", symbol, inst))  # type: ignore[arg-type]
    seq = 1

    def feed(d: dict, action: str) -> object:
        nonlocal seq
        seq += 1
        [m] = norm(n, push("books", inst_id, [d], action), seq)  # type: ignore[misc]
        return st.feed(m)

    assert feed(sim.snapshot(1), "snapshot") is None and st.valid
    for _ in range(3000):
        assert feed(sim.update(1), "update") is None, inst_id
    bad = sim.update(1)  # its checksum is the venue's true book's ...
    px, sz = sim.true_book()[0][0]
    bad["bids"] = [[px, str(int(sz) + 1), "0", "1"]]  # ... but the best bid arrives wrong
    p = feed(bad, "update")
    assert p is not None and p.reason == "checksum" and not st.valid  # type: ignore[attr-defined]


def test_generated_swap_books_verify_and_corruption_is_caught() -> None:
    n = Normalizer()
    _swap_book(n, "BTC-USDT-SWAP", "BTC-USDT-PERP")  # linear: base = contracts x 0.01
    _swap_book(n, "BTC-USD-SWAP", "BTC-USD-PERP")  # inverse: base = contracts x 100 / price


def test_recorded_derivative_books_verify_through_the_service_path(tmp_path: Path) -> None:
    """Every recorded OKX books push (spot, perpetual, dated future) verifies with the
    rule the service builds from the normalizer's own instrument messages."""
    n = Normalizer()
    svc = OrderBookService(Worker("orderbook", make_settings(tmp_path, "nats://127.0.0.1:1")))
    seq = 0
    for r in recorded.read(shared_frames("cryptofeed/OKX.0")):
        if r.kind == "rest" and "/public/instruments" in r.url:
            seq += 1
            for inst in _instruments(n, r.payload.encode(), seq).values():
                svc.on_instrument(inst)
    assert len(svc.instruments) > 1000
    verified: Counter[str] = Counter()
    for r in recorded.read(shared_frames("cryptofeed/OKX.ws.1.0")):
        if r.kind != "recv":
            continue
        seq += 1
        msgs = norm(n, r.payload.encode(), seq)
        assert isinstance(msgs, list)
        for m in msgs:
            if isinstance(m, schemas.Book):
                st = svc.state(m.venue, m.symbol)
                assert st is not None and isinstance(st.rule, OkxChecksum)
                assert st.feed(m) is None, m.symbol
                verified[m.symbol] += m.checksum is not None
    assert set(verified) == {"BTC-USDT", "UNI-USD-PERP", "BTC-USD-20220527"}
    assert sum(verified.values()) == 290
