-- Execution algorithms and transaction-cost analysis from the EXEC stream (executor/algo):
-- every algo command, every parent-order record (its state, terms and progress), and one TCA
-- row per finished child order and parent. Columns are the msgspec fields of AlgoCommand,
-- ParentUpdate and Tca in streams/schemas.py plus stream_seq.

CREATE TABLE IF NOT EXISTS algo_commands (
    account LowCardinality(String),
    venue LowCardinality(String),
    symbol LowCardinality(String),
    ts_event DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    action LowCardinality(String),
    parent_id String CODEC(ZSTD(1)),
    algo LowCardinality(Nullable(String)),
    side LowCardinality(Nullable(String)),
    quantity Nullable(String) CODEC(ZSTD(1)),
    limit_price Nullable(String) CODEC(ZSTD(1)),
    start_ts Nullable(Int64),
    end_ts Nullable(Int64),
    slices Nullable(Int64),
    participation Nullable(Float64),
    display Nullable(String) CODEC(ZSTD(1)),
    offset_ticks Int64,
    venues Array(String),
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts_event)
ORDER BY (account, venue, symbol, ts_event, parent_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS parents (
    account LowCardinality(String),
    venue LowCardinality(String),
    symbol LowCardinality(String),
    ts_event DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    parent_id String CODEC(ZSTD(1)),
    algo LowCardinality(String),
    state LowCardinality(String),
    side LowCardinality(String),
    quantity Float64 CODEC(Gorilla, ZSTD(1)),
    filled Float64 CODEC(Gorilla, ZSTD(1)),
    avg_price Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    children Int64,
    limit_price Nullable(Float64),
    start_ts Int64,
    end_ts Nullable(Int64),
    slices Int64,
    participation Nullable(Float64),
    display Nullable(Float64),
    offset_ticks Int64,
    profile Array(Float64),
    arrival_mid Nullable(Float64),
    market_volume Float64,
    market_notional Float64,
    version Int64,
    cmd_ts Int64,
    venues Array(String),
    reason String CODEC(ZSTD(1)),
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts_event)
ORDER BY (account, venue, symbol, ts_event, parent_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS tca (
    account LowCardinality(String),
    venue LowCardinality(String),
    symbol LowCardinality(String),
    ts_event DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    scope LowCardinality(String),
    id String CODEC(ZSTD(1)),
    parent_id String CODEC(ZSTD(1)),
    algo LowCardinality(String),
    side LowCardinality(String),
    quantity Float64,
    filled Float64,
    avg_price Nullable(Float64),
    arrival_mid Nullable(Float64),
    interval_vwap Nullable(Float64),
    end_mid Nullable(Float64),
    slippage_bps Nullable(Float64),
    vwap_slippage_bps Nullable(Float64),
    shortfall Nullable(Float64),
    shortfall_bps Nullable(Float64),
    fill_ratio Float64,
    fees Float64,
    children Int64,
    ts_start Int64,
    ts_end Int64,
    time_to_fill_s Nullable(Float64),
    ack_latency_ms Nullable(Float64),
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts_event)
ORDER BY (account, venue, symbol, ts_event, scope, id)
SETTINGS non_replicated_deduplication_window = 1000;
