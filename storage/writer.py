"""The writer: one thread that inserts the engine's batches, behind a bounded queue.

The engine (polars) and the insert (ClickHouse) each release the GIL for most of their work, so with the
insert on its own thread a replay parses and judges the next batch while the last one is written: on
two cores the slower of the two sets the pace instead of their sum. The queue holds at most `depth`
batches; when it is full `put` waits (backpressure), so memory stays bounded however fast the input
is read. A failed insert stops the writer; the failure is raised to the producer at its next `put` or
at `close`, and nothing after it is attempted (the spool that keeps such batches is a later step).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

import polars as pl

from storage.store import Store

_POLL_S = 0.2  # how often a waiting producer looks whether the writer has failed


@dataclass(frozen=True, slots=True)
class _Batch:
    activity: pl.DataFrame
    leases: pl.DataFrame | None


class Writer:
    """Inserts batches into `store` from one thread, in the order they were put."""

    def __init__(self, store: Store, depth: int = 2) -> None:
        self._store = store
        self._queue: queue.Queue[_Batch | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self.stored = 0
        """Activity rows handed to the store so far."""
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def put(self, activity: pl.DataFrame, leases: pl.DataFrame | None = None) -> None:
        """Queue one engine batch (and the leases learnt from it, written first); waits while the queue is
        full. Raises the writer's failure, if it has failed."""
        self._enqueue(_Batch(activity, leases))

    def close(self) -> None:
        """Write what is queued, stop the thread, and raise its failure if it had one."""
        if self._thread.is_alive():
            self._enqueue(None)
            self._thread.join()
        self._raise_failure()

    def _enqueue(self, item: _Batch | None) -> None:
        while True:
            self._raise_failure()
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            try:
                if batch.leases is not None and batch.leases.height:
                    self._store.insert_leases(batch.leases)
                self.stored += self._store.insert_activity(batch.activity)
            except BaseException as exc:  # handed to the producer; the thread stops here
                self._error = exc
                return
