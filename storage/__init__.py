"""Storage: the ClickHouse schema, the store (migrations, inserts, the named queries), the writer and its spool."""
