"""The sink's batch -> columns step (``ClickHouseSink.market_columns``), without NATS or
ClickHouse: rows at or below a table's high-water mark are skipped per table, a message
class whose rows were all stored leaves no empty block behind, and a row out of its
column's range becomes a dead letter quoting its own message."""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg

from sinks.clickhouse.worker import ClickHouseSink
from streams import schemas
from streams.bus.delivery import Delivery

NS = 1_700_000_000_000_000_000


class _Sink:
    """The state ``market_columns`` reads: high-water marks, column limits, dead letters."""

    def __init__(self, watermarks: dict[str, int], limits: dict[str, dict]) -> None:
        self.watermarks = watermarks
        self.limits = limits
        self.dead: list[tuple[Msg, int, str]] = []

    async def _dead_letters(self, dead: list[tuple[Msg, int, str]]) -> None:
        self.dead += dead


def _msg(obj: schemas.Base, seq: int) -> Delivery:
    reply = f"$JS.ACK.MARKET.sink-market.1.{seq}.{seq}.{NS}.0"
    kind = "trade" if isinstance(obj, schemas.Trade) else "bbo"
    return Delivery(None, f"market.{kind}.binance.BTC-USDT", reply, schemas.encode(obj), b"")  # type: ignore[arg-type]


def _trade(i: int, ts: int = NS) -> schemas.Trade:
    return schemas.Trade(venue="binance", symbol="BTC-USDT", ts_event=ts, ts_recv=NS, id=str(i),
                         price=100.0 + i, size=1.0, side="buy")  # fmt: skip


def _bbo(i: int) -> schemas.BBO:
    return schemas.BBO(venue="binance", symbol="BTC-USDT", ts_event=NS, ts_recv=NS,
                       bid_price=1.0, bid_size=1.0, ask_price=2.0, ask_size=float(i))  # fmt: skip


def test_marks_skip_per_table_and_a_bad_row_is_a_dead_letter_with_its_message() -> None:
    objs = [_trade(1), _bbo(2), _trade(3), _bbo(4), _trade(5), _trade(6, ts=NS + 10**18), _trade(7)]
    msgs = [_msg(o, seq) for seq, o in enumerate(objs, 1)]
    sink = _Sink({"trades": 3, "bbo": 4}, {"trades": {"ts_event": (0, NS + 10)}})
    out = asyncio.run(ClickHouseSink.market_columns(sink, msgs, seqs=list(range(1, 8))))  # type: ignore[arg-type]
    assert set(out) == {"trades"}  # every bbo row already stored: no empty block for it
    names, data, first, last = out["trades"]
    assert (first, last) == (5, 7) and data[-1] == [5, 7]
    assert data[names.index("id")] == ["5", "7"]
    assert [(m.data, seq) for m, seq, _ in sink.dead] == [(msgs[5].data, 6)]
    assert "value out of range for trades" in sink.dead[0][2]
