-- Raw exchange frames exactly as received (the RAW stream is the source of truth; this
-- table keeps it past the stream's retention). Keyed by receive time: raw frames have no
-- parsed exchange time. ZSTD(3): JSON frames compress ~10x and are rarely read.
-- Kept clickhouse.ttl_days.raw_frames days (30; the sink applies the setting at start).

CREATE TABLE IF NOT EXISTS raw_frames (
    venue LowCardinality(String),
    channel LowCardinality(String),
    symbol LowCardinality(String),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    conn LowCardinality(String),
    subject LowCardinality(String),
    payload String CODEC(ZSTD(3)),
    stream_seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts_recv)
ORDER BY (venue, channel, symbol, ts_recv, stream_seq)
TTL toDateTime(ts_recv) + INTERVAL 30 DAY  -- clickhouse.ttl_days.raw_frames
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;
