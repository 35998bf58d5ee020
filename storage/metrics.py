"""The storage package's Prometheus metrics, declared once. No label holds personal data."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WRITE_SECONDS = Histogram("ictwatch_store_write_seconds", "Time to insert one batch into ClickHouse.",
                          buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
WRITE_FAILURES = Counter("ictwatch_store_write_failures_total",
                         "Inserts into ClickHouse that failed, by what went wrong.", ["reason"])
ROWS_STORED = Counter("ictwatch_store_rows_total", "Activity rows handed to ClickHouse and acknowledged.")
SPOOL_BYTES = Gauge("ictwatch_spool_bytes", "Bytes held in the disk spool's segment files.")
SPOOL_RECORDS = Gauge("ictwatch_spool_records", "Batches waiting in the disk spool.")
SPOOL_MAX_BYTES = Gauge("ictwatch_spool_max_bytes", "The disk spool's size cap (storage.spool_max_bytes).")
SPOOL_FULL = Gauge("ictwatch_spool_full", "1 while the spool is at its size cap (new batches wait), else 0.")
SPOOL_TORN = Counter("ictwatch_spool_torn_records_total",
                     "Torn records (a write cut short) found in the spool and set aside, never replayed.")
SPOOL_REJECTED = Counter("ictwatch_spool_rejected_total",
                         "Spooled batches ClickHouse refused outright, moved to the spool's rejected/ folder.")
