"""The one mapping from message type to table and columns.

Column names equal the msgspec field names of ``streams.schemas`` (checked by a test
against the live DDL), plus ``stream_seq`` (the JetStream sequence, used for dedup).
Rows are built column-oriented: one list per column per batch, no per-row dicts.
"""

from __future__ import annotations

from operator import attrgetter

from streams.schemas import MARKET_TYPES, Base

TABLES: dict[str, str] = {
    "trade": "trades",
    "book": "book_updates",
    "bbo": "bbo",
    "depth": "depth",
    "ticker": "tickers",
    "candle": "candles",
    "funding": "funding",
    "open_interest": "open_interest",
    "liquidation": "liquidations",
    "mark": "marks",
    "instrument": "instruments",
    "gap": "gaps",
}
TABLE_OF_CLASS: dict[type, str] = {MARKET_TYPES[t]: name for t, name in TABLES.items()}
RAW_TABLE = "raw_frames"
RAW_COLUMNS = ["venue", "channel", "symbol", "ts_recv", "conn", "subject", "payload", "stream_seq"]
SEQ = "stream_seq"


def fields(cls: type[Base]) -> tuple[str, ...]:
    return cls.__struct_fields__


def columns(cls: type[Base]) -> list[str]:
    return [*fields(cls), SEQ]


_getters: dict[type, list[attrgetter]] = {
    cls: [attrgetter(f) for f in fields(cls)] for cls in TABLE_OF_CLASS
}


def to_columns(cls: type[Base], msgs: list[Base], seqs: list[int]) -> list[list]:
    return [[g(m) for m in msgs] for g in _getters[cls]] + [seqs]
