"""The Binance emulator with a per-connection ledger of the trades it wrote, and stalls."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import orjson

from tests.venues.binance.emulator import BinanceEmulator, Client

Key = tuple[str, int]  # (our symbol, trade id)


@dataclass
class Ledger:
    """The trades one WebSocket connection was sent, in order."""

    number: int
    opened: float  # wall seconds
    keys: list[Key] = field(default_factory=list)
    closed: bool = False


class LedgerEmulator(BinanceEmulator):
    """Records, per connection, every trade written to its socket; ``stall()`` keeps the
    current connections open but sends them nothing more (new connections are served)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.ledgers: list[Ledger] = []
        # keyed by the socket object itself: ids of closed sockets are reused
        self._by_ws: dict[object, Ledger] = {}
        self.stalled: set[object] = set()
        self.generated: dict[Key, float] = {}  # trade -> wall time the venue made it

    def ledger(self, c: Client) -> Ledger:
        led = self._by_ws.get(c.ws)
        if led is None:
            led = self._by_ws[c.ws] = Ledger(len(self.ledgers), time.time())
            self.ledgers.append(led)
        return led

    def stall(self) -> int:
        self.stalled.update(c.ws for c in self.clients)
        return len(self.clients)

    def close_gone(self) -> None:
        """Mark the ledgers of connections that no longer exist."""
        live = {c.ws for c in self.clients}
        for ws, led in self._by_ws.items():
            if ws not in live or ws in self.stalled:
                led.closed = True

    async def _broadcast(self, batch: list[tuple[str, bytes, bytes]]) -> None:
        now = time.time()
        keys: list[Key | None] = []
        for stream, _, raw in batch:
            if stream.endswith("@trade"):
                d = orjson.loads(raw)
                key = (self.sims[d["s"]].symbol, int(d["t"]))
                self.generated[key] = now
                keys.append(key)
            else:
                keys.append(None)
        for c in list(self.clients):
            if c.ws in self.stalled:
                continue
            led = self.ledger(c)
            try:
                for (stream, combined, raw), key in zip(batch, keys, strict=True):
                    if stream in c.streams:
                        await c.ws.send_str((combined if c.combined else raw).decode())
                        self.frames_sent += 1
                        if key is not None:
                            led.keys.append(key)
            except (ConnectionError, RuntimeError):
                pass  # the client went away; what it was sent is in its ledger

    async def emit_big_trade(self, native: str, pad: int) -> Key:
        """One real trade of ``native`` whose frame is padded to ``pad`` bytes (an extra
        field the parser ignores): over NATS max_payload, it must still be stored whole."""
        sim = self.sims[native]
        data, (p, q, side) = sim.trade(int(time.time() * 1000))
        self.emitted_trades[(sim.symbol, str(data["t"]))] = (sim.symbol, p, q, side)
        stream = f"{native.lower()}@trade"
        padded = {**data, "pad": "x" * pad}
        frame = (stream, orjson.dumps({"stream": stream, "data": padded}), orjson.dumps(padded))
        await self._broadcast([frame])
        return (sim.symbol, int(data["t"]))
