"""The one map from message type to ClickHouse table (the DDL is in infra/clickhouse/).

Shared by the sink, which writes these tables, and replay, which reads them back; column
names are the msgspec field names of ``streams.schemas`` plus ``stream_seq``.
"""

from __future__ import annotations

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
    "option_greeks": "option_greeks",
    "instrument": "instruments",
    "gap": "gaps",
    "long_short_ratio": "long_short_ratios",
    "taker_volume": "taker_volume",
    "open_interest_hist": "open_interest_hist",
    "volatility_index": "volatility_index",
}
EXEC_TABLES: dict[str, str] = {
    "order_command": "order_commands",
    "order_update": "orders",
    "fill": "fills",
    "position": "positions",
    "algo_command": "algo_commands",
    "parent_update": "parents",
    "tca": "tca",
}
RAW_TABLE = "raw_frames"
RAW_COLUMNS = ["venue", "channel", "symbol", "ts_recv", "conn", "subject", "payload", "stream_seq"]
SEQ = "stream_seq"  # the JetStream sequence of the message a row came from (dedup key)
