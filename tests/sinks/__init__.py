"""The ClickHouse sink and sql.query."""
