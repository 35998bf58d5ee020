"""The writer thread: batches reach the real embedded store in order, a failed insert reaches the
producer, and a full queue makes the producer wait."""

from __future__ import annotations

import threading
import time

import polars as pl
import pytest
from clickhouse_connect.driver.exceptions import OperationalError

from storage.errors import StoreUnavailable
from storage.store import Store, Stored
from storage.writer import Writer
from tests.conftest import free_port
from tests.storage.test_store import activities


def test_batches_are_stored_in_order_and_counted(store_url):
    store = Store(store_url, "t")
    store.migrate()
    try:
        batch = activities(30)
        writer = Writer(store, depth=1)
        for piece in (batch[:10], batch[10:20], batch[20:]):
            writer.put(piece)
        writer.close()
        assert writer.stored == 30 == store.count()
        refs = store.activity(None, None, None).get_column("source_ref").to_list()
        assert refs == batch.get_column("source_ref").to_list()
    finally:
        store.close()


def test_without_a_spool_a_failed_insert_reaches_the_producer():
    """A real failure: nothing listens at the store's address, so the insert is refused."""
    writer = Writer(Store(f"http://127.0.0.1:{free_port()}", "t", timeout_s=2))
    writer.put(activities(3))
    with pytest.raises(StoreUnavailable) as failed:
        for _ in range(50):  # the failure arrives with a later put, or at close
            writer.put(activities(1))
            time.sleep(0.02)
        writer.close()
    assert isinstance(failed.value.__cause__, OperationalError)


def test_backpressure_with_a_fake_slow_store():
    """A fake store (the real one cannot be made slow on demand): with room for one batch, the producer
    waits while the writer is busy with the batch before."""
    release = threading.Event()

    class SlowStore:
        def insert_record(self, record):
            release.wait(10)
            return Stored(pl.from_arrow(record.activity), 0, 0)

    writer = Writer(SlowStore(), depth=1)  # type: ignore[arg-type]
    writer.put(activities(1))  # taken by the writer, which now waits
    time.sleep(0.1)
    writer.put(activities(1))  # fills the queue
    third = threading.Thread(target=writer.put, args=(activities(1),))
    third.start()
    third.join(0.5)
    assert third.is_alive()  # the third waits for room
    release.set()
    third.join(5)
    writer.close()
    assert writer.stored == 3
