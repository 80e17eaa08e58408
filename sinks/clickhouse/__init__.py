"""The ClickHouse sink: the single writer of ClickHouse (chdb is one process)."""
