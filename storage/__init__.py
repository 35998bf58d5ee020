"""Storage: the ClickHouse schema, inserts and the named queries."""
