-- Positioning, sentiment and volatility indices (streams/schemas.py LongShortRatio,
-- TakerVolume, OpenInterestHist, VolatilityIndex): one row per venue period (5m .. 1d),
-- polled from the venues' REST history endpoints (Binance futures/data, ...) and Deribit's
-- DVOL channel and candles. Small tables (a row per symbol and period): kept forever, no TTL.
-- Same conventions as 001_market.sql: stream_seq is the sink's high-water mark.

CREATE TABLE IF NOT EXISTS long_short_ratios (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    ts_event DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    kind LowCardinality(String),
    period LowCardinality(String),
    ratio Float64 CODEC(Gorilla, ZSTD(1)),
    long_share Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    short_share Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts_event)
ORDER BY (venue, symbol, kind, period, ts_event)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS taker_volume (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    ts_event DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    period LowCardinality(String),
    buy_volume Float64 CODEC(Gorilla, ZSTD(1)),
    sell_volume Float64 CODEC(Gorilla, ZSTD(1)),
    buy_value Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    sell_value Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts_event)
ORDER BY (venue, symbol, period, ts_event)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS open_interest_hist (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    ts_event DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    period LowCardinality(String),
    open_interest Float64 CODEC(Gorilla, ZSTD(1)),
    open_interest_value Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts_event)
ORDER BY (venue, symbol, period, ts_event)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS volatility_index (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    ts_event DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    index_name LowCardinality(String),
    interval LowCardinality(String),
    value Float64 CODEC(Gorilla, ZSTD(1)),
    open Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    high Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    low Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts_event)
ORDER BY (venue, symbol, index_name, interval, ts_event)
SETTINGS non_replicated_deduplication_window = 1000;
