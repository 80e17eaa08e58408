-- jetmarket market tables, one per message type (streams/schemas.py). Applied at sink start;
-- every statement is idempotent. Column names equal the schema's field names, plus
-- `stream_seq`: the JetStream sequence of the message, which the single-writer sink uses as
-- a per-table high-water mark so redelivered messages never become duplicate rows.
--
-- Codecs: timestamps and sequences grow almost monotonically inside a sort key, so
-- DoubleDelta/Delta turn them into small numbers before ZSTD; prices and sizes are floats
-- that change little between neighbours, which is what Gorilla encodes well; free text,
-- ids and level arrays are just compressed with ZSTD. LowCardinality for venue/symbol/side
-- style columns with few distinct values. The dedup window makes a re-sent block with the
-- same insert_deduplication_token a no-op.
--
-- TTL: the fast-growing tables expire whole days (ttl_only_drop_parts) after the days of
-- clickhouse.ttl_days (defaults written here); the sink ALTERs every table to the configured
-- days at start (sinks/clickhouse/ttl.py), so the TTL lines below are only the first value.

CREATE TABLE IF NOT EXISTS trades (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    ts_event DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    id String CODEC(ZSTD(1)),
    price Float64 CODEC(Gorilla, ZSTD(1)),
    size Float64 CODEC(Gorilla, ZSTD(1)),
    side LowCardinality(String),
    aggregated Bool,
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts_event)
ORDER BY (venue, symbol, ts_event, id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS book_updates (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    ts_event DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    snapshot Bool,
    bids Array(Tuple(Float64, Float64)) CODEC(ZSTD(1)),
    asks Array(Tuple(Float64, Float64)) CODEC(ZSTD(1)),
    seq Int64 CODEC(Delta, ZSTD(1)),
    prev_seq Nullable(Int64) CODEC(Delta, ZSTD(1)),
    first_seq Nullable(Int64) CODEC(Delta, ZSTD(1)),
    checksum Nullable(Int64) CODEC(ZSTD(1)),
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts_event)
ORDER BY (venue, symbol, ts_event, seq)
TTL toDateTime(ts_event) + INTERVAL 30 DAY  -- clickhouse.ttl_days.book_updates
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS bbo (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    ts_event DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    bid_price Float64 CODEC(Gorilla, ZSTD(1)),
    bid_size Float64 CODEC(Gorilla, ZSTD(1)),
    ask_price Float64 CODEC(Gorilla, ZSTD(1)),
    ask_size Float64 CODEC(Gorilla, ZSTD(1)),
    seq Nullable(Int64) CODEC(Delta, ZSTD(1)),
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts_event)
ORDER BY (venue, symbol, ts_event)
TTL toDateTime(ts_event) + INTERVAL 30 DAY  -- clickhouse.ttl_days.bbo
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS depth (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    ts_event DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    bids Array(Tuple(Float64, Float64)) CODEC(ZSTD(1)),
    asks Array(Tuple(Float64, Float64)) CODEC(ZSTD(1)),
    seq Int64 CODEC(Delta, ZSTD(1)),
    levels UInt16,
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts_event)
ORDER BY (venue, symbol, ts_event, seq)
TTL toDateTime(ts_event) + INTERVAL 7 DAY  -- clickhouse.ttl_days.depth
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS tickers (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    ts_event DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    last Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    bid Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    ask Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    open_24h Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    high_24h Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    low_24h Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    volume_24h Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    quote_volume_24h Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts_event)
ORDER BY (venue, symbol, ts_event)
TTL toDateTime(ts_event) + INTERVAL 30 DAY  -- clickhouse.ttl_days.tickers
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS candles (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    ts_event DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    interval LowCardinality(String),
    ts_open DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    open Float64 CODEC(Gorilla, ZSTD(1)),
    high Float64 CODEC(Gorilla, ZSTD(1)),
    low Float64 CODEC(Gorilla, ZSTD(1)),
    close Float64 CODEC(Gorilla, ZSTD(1)),
    volume Float64 CODEC(Gorilla, ZSTD(1)),
    closed Bool,
    trades Nullable(Int64) CODEC(Delta, ZSTD(1)),
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts_event)
ORDER BY (venue, symbol, ts_event, interval, ts_open)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS funding (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    ts_event DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    rate Float64 CODEC(Gorilla, ZSTD(1)),
    next_funding_ts Nullable(DateTime64(9, 'UTC')) CODEC(DoubleDelta, ZSTD(1)),
    predicted_rate Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts_event)
ORDER BY (venue, symbol, ts_event)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS open_interest (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    ts_event DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    open_interest Float64 CODEC(Gorilla, ZSTD(1)),
    open_interest_value Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts_event)
ORDER BY (venue, symbol, ts_event)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS liquidations (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    ts_event DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    side LowCardinality(String),
    price Float64 CODEC(Gorilla, ZSTD(1)),
    size Float64 CODEC(Gorilla, ZSTD(1)),
    id Nullable(String) CODEC(ZSTD(1)),
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts_event)
ORDER BY (venue, symbol, ts_event)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS marks (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    ts_event DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    mark_price Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    index_price Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts_event)
ORDER BY (venue, symbol, ts_event)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS instruments (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    ts_event DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    native_symbol String CODEC(ZSTD(1)),
    kind LowCardinality(String),
    base LowCardinality(String),
    quote LowCardinality(String),
    settle LowCardinality(Nullable(String)),
    tick_size Float64 CODEC(Gorilla, ZSTD(1)),
    lot_size Float64 CODEC(Gorilla, ZSTD(1)),
    contract_size Float64 CODEC(Gorilla, ZSTD(1)),
    expiry_ts Nullable(DateTime64(9, 'UTC')) CODEC(ZSTD(1)),  -- few distinct values
    strike Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    option_type LowCardinality(Nullable(String)),
    active Bool,
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts_event)
ORDER BY (venue, symbol, ts_event)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS gaps (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    ts_event DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    reason LowCardinality(String),
    channel LowCardinality(String),
    expected_seq Nullable(Int64) CODEC(ZSTD(1)),  -- sparse, not monotonic
    got_seq Nullable(Int64) CODEC(ZSTD(1)),
    detail String CODEC(ZSTD(1)),
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts_event)
ORDER BY (venue, symbol, ts_event)
SETTINGS non_replicated_deduplication_window = 1000;
