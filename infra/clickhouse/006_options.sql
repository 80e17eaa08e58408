-- Option analytics (streams/schemas.py OptionGreeks, market.option_greeks.<venue>.<symbol>):
-- implied volatilities as fractions, Black-Scholes greeks, underlying/index price and open
-- interest from Deribit `ticker`, OKX `opt-summary` and Bybit option `tickers`. The option's
-- strike, expiry and call/put are columns too (they restate the symbol), so a smile at a time
-- and a term structure are plain GROUP BYs (docs/sql.md). Same conventions as
-- 001_market.sql: stream_seq is the sink's high-water mark, Gorilla for floats that change
-- little between neighbours, LowCardinality for the few distinct names.

CREATE TABLE IF NOT EXISTS option_greeks (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    ts_event DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    strike Float64 CODEC(ZSTD(1)),
    expiry_ts DateTime64(9, 'UTC') CODEC(ZSTD(1)),
    option_type LowCardinality(String),
    mark_price Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    bid_price Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    ask_price Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    mark_iv Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    bid_iv Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    ask_iv Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    delta Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    gamma Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    vega Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    theta Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    underlying_price Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    index_price Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    open_interest Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts_event)
ORDER BY (venue, symbol, ts_event)
TTL toDateTime(ts_event) + INTERVAL 30 DAY  -- clickhouse.ttl_days.option_greeks
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;
