"""OKX book sync: snapshots come through the WebSocket (``action: snapshot``), every update
chains ``prevSeqId == previous seqId``, and each push carries a CRC32 of the top 25 levels.

Checksum: OKX builds ``bidPx:bidSz:askPx:askSz:...`` over the top 25 levels, interleaving
bid and ask (one side alone once the other runs out), from its own decimal strings, and
sends ``crc32`` as a signed 32-bit int. Our Book carries floats; ``repr`` gives back
OKX's string except that it writes ``1.068e-05`` for ``0.00001068`` and ``3.0`` for ``3``,
so ``fmt`` expands exponents and drops a trailing ``.0`` (OKX never sends trailing zeros).
That is exact for spot. Derivative books carry base-unit sizes (contracts x contract size,
or / price for inverse), so the contract counts OKX summed cannot be recovered without the
instrument's contract spec: ``rule_for`` cannot see it (the service feeds rules books only),
so derivatives get the sequence rule alone unless a ``Contract`` is passed in.
"""

from __future__ import annotations

import zlib
from decimal import Decimal
from typing import NamedTuple

from orderbook.book import L2Book
from orderbook.venues.base import Rule
from streams.schemas import Book, Instrument

DEPTH = 25


class Contract(NamedTuple):
    size: float  # ctVal * ctMult
    inverse: bool  # base = contracts * size / price
    lot_decimals: int  # decimals of lotSz: contract counts are rounded back to these


def fmt(x: float) -> str:
    """A float as OKX writes the decimal: shortest round-trip digits, no exponent, no
    trailing ``.0``."""
    s = repr(x)
    if "e" in s:
        s = format(Decimal(s), "f")
    return s[:-2] if s.endswith(".0") else s


def checksum(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> int:
    """OKX's checksum of best-first string levels (at most the top 25 are used)."""
    parts: list[str] = []
    for i in range(min(DEPTH, max(len(bids), len(asks)))):
        if i < len(bids):
            parts += bids[i]
        if i < len(asks):
            parts += asks[i]
    c = zlib.crc32(":".join(parts).encode())
    return c - (1 << 32) if c >= 1 << 31 else c


class OkxSequence:
    """``prevSeqId == previous seqId``; the first update after a snapshot chains to the
    snapshot's seqId. Frames recorded before OKX sent seqId have ``prev_seq`` None: only
    their order (seq = RAW sequence) and the checksum can be checked."""

    name = "okx"
    rest_snapshot = False

    def stale(self, last: int, d: Book) -> bool:
        return d.seq <= last  # from before the (re)subscription's snapshot

    def bridges(self, snap: int, d: Book) -> bool:
        return d.prev_seq == snap if d.prev_seq is not None else d.seq > snap

    def continues(self, last: int, d: Book) -> bool:
        # seqId == prevSeqId == last is OKX's no-change keep-alive: it continues too
        return d.prev_seq == last if d.prev_seq is not None else d.seq > last


class OkxChecksum(OkxSequence):
    def __init__(self, contract: Contract | None = None) -> None:
        self.contract = contract

    def _size(self, price: float, size: float) -> str:
        c = self.contract
        if c is None:
            return fmt(size)
        n = size * price / c.size if c.inverse else size / c.size
        return fmt(round(n, c.lot_decimals) + 0.0)

    def levels(self, book: L2Book) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        bids, asks = book.top(DEPTH)
        size = self._size
        return (
            [(fmt(p), size(p, s)) for p, s in bids],
            [(fmt(p), size(p, s)) for p, s in asks],
        )

    def verify(self, book: L2Book, m: Book) -> str | None:
        got = checksum(*self.levels(book))
        if got == m.checksum:
            return None
        return f"okx crc32 of top {DEPTH} is {got}, venue sent {m.checksum} (seq {m.seq})"


def rule_for(symbol: str) -> Rule:
    if symbol.count("-") == 1:  # spot: sizes are OKX's own, the checksum is exact
        return OkxChecksum()
    return OkxSequence()


def contract_of(inst: Instrument) -> Contract:
    """The contract spec the normalizer converted sizes with, from the instrument message:
    inverse contracts settle in the base currency (BTC-USD-SWAP settles in BTC)."""
    inverse = inst.settle == inst.base and inst.base != inst.quote
    exponent = Decimal(repr(inst.lot_size)).normalize().as_tuple().exponent
    lot_decimals = max(0, -exponent) if isinstance(exponent, int) else 0
    return Contract(inst.contract_size, inverse, lot_decimals)


def rule_with(symbol: str, inst: Instrument) -> Rule:
    """Derivatives get the checksum too once their contract spec is known: base-unit sizes
    are turned back into the contract counts OKX summed."""
    if symbol.count("-") == 1 or inst.kind == "spot":
        return OkxChecksum()
    return OkxChecksum(contract_of(inst))
