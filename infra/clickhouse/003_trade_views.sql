-- Candles and VWAP computed by ClickHouse from trades as they are inserted.
-- Materialized views feed AggregatingMergeTree tables with partial aggregates per minute
-- and per hour; the plain views candles_1m / candles_1h merge them at query time, so a
-- query never sees a half-merged bucket. Every trade reaches the views exactly once
-- because the sink never inserts a trade twice (stream-sequence watermark).

CREATE TABLE IF NOT EXISTS ohlcv_1m (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    bucket DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)),
    open AggregateFunction(argMin, Float64, DateTime64(9, 'UTC')),
    high SimpleAggregateFunction(max, Float64),
    low SimpleAggregateFunction(min, Float64),
    close AggregateFunction(argMax, Float64, DateTime64(9, 'UTC')),
    volume SimpleAggregateFunction(sum, Float64),
    notional SimpleAggregateFunction(sum, Float64),
    trades SimpleAggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (venue, symbol, bucket);

CREATE MATERIALIZED VIEW IF NOT EXISTS ohlcv_1m_mv TO ohlcv_1m AS
SELECT venue, symbol, toStartOfMinute(ts_event) AS bucket,
       argMinState(price, ts_event) AS open, max(price) AS high, min(price) AS low,
       argMaxState(price, ts_event) AS close, sum(size) AS volume,
       sum(price * size) AS notional, count() AS trades
FROM trades GROUP BY venue, symbol, bucket;

CREATE TABLE IF NOT EXISTS ohlcv_1h (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    bucket DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)),
    open AggregateFunction(argMin, Float64, DateTime64(9, 'UTC')),
    high SimpleAggregateFunction(max, Float64),
    low SimpleAggregateFunction(min, Float64),
    close AggregateFunction(argMax, Float64, DateTime64(9, 'UTC')),
    volume SimpleAggregateFunction(sum, Float64),
    notional SimpleAggregateFunction(sum, Float64),
    trades SimpleAggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (venue, symbol, bucket);

CREATE MATERIALIZED VIEW IF NOT EXISTS ohlcv_1h_mv TO ohlcv_1h AS
SELECT venue, symbol, toStartOfHour(ts_event) AS bucket,
       argMinState(price, ts_event) AS open, max(price) AS high, min(price) AS low,
       argMaxState(price, ts_event) AS close, sum(size) AS volume,
       sum(price * size) AS notional, count() AS trades
FROM trades GROUP BY venue, symbol, bucket;

CREATE VIEW IF NOT EXISTS candles_1m AS
SELECT venue, symbol, bucket, argMinMerge(open) AS open, max(high) AS high, min(low) AS low,
       argMaxMerge(close) AS close, sum(volume) AS volume,
       sum(ohlcv_1m.notional) / sum(ohlcv_1m.volume) AS vwap, sum(trades) AS trades
FROM ohlcv_1m GROUP BY venue, symbol, bucket;

CREATE VIEW IF NOT EXISTS candles_1h AS
SELECT venue, symbol, bucket, argMinMerge(open) AS open, max(high) AS high, min(low) AS low,
       argMaxMerge(close) AS close, sum(volume) AS volume,
       sum(ohlcv_1h.notional) / sum(ohlcv_1h.volume) AS vwap, sum(trades) AS trades
FROM ohlcv_1h GROUP BY venue, symbol, bucket;
