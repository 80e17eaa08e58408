-- Execution records from the EXEC stream: every command, every order state change, every
-- fill and every position/PnL update, keyed by account first (a desk reads its own).
-- Decimal strings in commands are kept as sent (String), the executor's rounded values
-- appear in orders.

CREATE TABLE IF NOT EXISTS order_commands (
    account LowCardinality(String),
    venue LowCardinality(String),
    symbol LowCardinality(String),
    ts_event DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    action LowCardinality(String),
    client_order_id String CODEC(ZSTD(1)),
    side LowCardinality(Nullable(String)),
    order_type LowCardinality(Nullable(String)),
    quantity Nullable(String) CODEC(ZSTD(1)),
    price Nullable(String) CODEC(ZSTD(1)),
    stop_price Nullable(String) CODEC(ZSTD(1)),
    time_in_force LowCardinality(String),
    reduce_only Bool,
    timeout_s Nullable(Float64),
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts_event)
ORDER BY (account, venue, symbol, ts_event, client_order_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS orders (
    account LowCardinality(String),
    venue LowCardinality(String),
    symbol LowCardinality(String),
    ts_event DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    client_order_id String CODEC(ZSTD(1)),
    venue_order_id Nullable(String) CODEC(ZSTD(1)),
    state LowCardinality(String),
    side LowCardinality(String),
    order_type LowCardinality(String),
    quantity Float64 CODEC(Gorilla, ZSTD(1)),
    price Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    filled Float64 CODEC(Gorilla, ZSTD(1)),
    avg_price Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    reason String CODEC(ZSTD(1)),
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts_event)
ORDER BY (account, venue, symbol, ts_event, client_order_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS fills (
    account LowCardinality(String),
    venue LowCardinality(String),
    symbol LowCardinality(String),
    ts_event DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    client_order_id String CODEC(ZSTD(1)),
    venue_order_id Nullable(String) CODEC(ZSTD(1)),
    trade_id String CODEC(ZSTD(1)),
    side LowCardinality(String),
    price Float64 CODEC(Gorilla, ZSTD(1)),
    size Float64 CODEC(Gorilla, ZSTD(1)),
    fee Float64 CODEC(Gorilla, ZSTD(1)),
    fee_currency LowCardinality(String),
    liquidity LowCardinality(String),
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts_event)
ORDER BY (account, venue, symbol, ts_event, trade_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS positions (
    account LowCardinality(String),
    venue LowCardinality(String),
    symbol LowCardinality(String),
    ts_event DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    size Float64 CODEC(Gorilla, ZSTD(1)),
    avg_price Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    realized_pnl Float64 CODEC(Gorilla, ZSTD(1)),
    unrealized_pnl Float64 CODEC(Gorilla, ZSTD(1)),
    fees Float64 CODEC(Gorilla, ZSTD(1)),
    mark_price Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts_event)
ORDER BY (account, venue, symbol, ts_event)
SETTINGS non_replicated_deduplication_window = 1000;
