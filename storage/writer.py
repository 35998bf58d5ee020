"""The writer: one thread that inserts the engine's batches, behind a bounded queue, with a disk spool.

The engine (polars) and the insert (ClickHouse) each release the GIL for most of their work, so with the
insert on its own thread a replay parses and judges the next batch while the last one is written: on
two cores the slower of the two sets the pace instead of their sum. The queue holds at most `depth`
batches; when it is full `put` waits (backpressure), so memory stays bounded however fast the input
is read.

With a spool (the daemon and the CLI always give one), a batch that cannot be inserted — server down,
network cut, a request that times out, a disk full on the server — is appended to the spool (fsynced)
and the writer goes on. While the spool holds anything, new batches are appended behind it so order is
kept, and every `retry_s` the writer replays the spool in order, acknowledging each record as it is
stored. A batch carries a deduplication token made from its content, so one that reached ClickHouse
but whose acknowledgement was lost is dropped by ClickHouse when it is replayed, and each of its rows is
a record the store keeps once (`Store.insert_record`): nothing is stored twice. A record ClickHouse
refuses as such is set aside in the spool's `rejected/` folder. When the spool is full the writer waits
(and the queue, then the producer, with it) instead of dropping; a batch larger than the whole spool goes
in as parts that each fit (`Spool.parts`), so it waits for room, never for a spool that could not hold it.

Without a spool, a failed insert stops the writer and the failure is raised to the producer at its
next `put` or at `close`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

import polars as pl

from storage import metrics
from storage.spool import Record, Spool, SpoolFull
from storage.store import Store, retryable, to_record

_POLL_S = 0.2  # how often a waiting producer looks whether the writer has failed
_log = logging.getLogger(__name__)


class Writer:
    """Inserts batches into `store` from one thread, in the order they were put."""

    def __init__(self, store: Store, depth: int = 2, spool: Spool | None = None, retry_s: float = 5.0,
                 on_stored: Callable[[pl.DataFrame], None] | None = None) -> None:
        """`on_stored` is called (on the writer's thread) with the rows of each batch that were new to the
        store or judged anew (`Stored.activity`); for a batch sent to the spool, with all its rows, as
        whether they are new cannot be known then (they are not reported again when the spool is
        replayed)."""
        self._store = store
        self._on_stored = on_stored
        self._spool = spool
        self._retry_s = retry_s
        self._next_try = 0.0
        self._queue: queue.Queue[tuple[Record, Callable[[], None] | None] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self.stored = 0
        """Activity rows the store has acknowledged so far (directly or from the spool)."""
        self.known = 0
        """Records that were stored already, judged the same: left as they were."""
        self.replaced = 0
        """Rows that replaced an earlier judgement of their record."""
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    @property
    def spooled(self) -> int:
        """Batches waiting in the spool."""
        return self._spool.records if self._spool is not None else 0

    def put(self, activity: pl.DataFrame, leases: pl.DataFrame | None = None,
            kept: Callable[[], None] | None = None) -> None:
        """Queue one engine batch (and the leases learnt from it, written first); waits while the queue is
        full. Raises the writer's failure, if it has failed. The batch is put in its insert layout here, on
        the producer's thread, so that the writer's thread does nothing but insert: on two cores the two
        halves overlap. `kept` is called (on the writer's thread) once the batch is safe: acknowledged by
        ClickHouse or fsynced in the spool; a log follower commits its checkpoint then."""
        self._enqueue((to_record(activity, leases), kept))

    def close(self) -> None:
        """Write what is queued (what cannot be written stays in the spool), stop the thread, and raise its
        failure if it had one."""
        if self._thread.is_alive():
            self._enqueue(None)
            self._thread.join()
        self._raise_failure()

    def _enqueue(self, item: tuple[Record, Callable[[], None] | None] | None) -> None:
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
        try:
            while True:
                waiting = self._spool is not None and self._spool.records > 0
                try:
                    item = self._queue.get(timeout=self._retry_s if waiting else None)
                except queue.Empty:
                    self._drain()
                    continue
                if item is None:
                    self._drain(final=True)
                    return
                self._write(item[0])
                if item[1] is not None:
                    item[1]()
        except BaseException as exc:  # handed to the producer; the thread stops here
            self._error = exc

    def _write(self, record: Record) -> None:
        if self._spool is None:
            self._insert(record, report=True)
            return
        if self._spool.records == 0:
            try:
                self._insert(record, report=True)
                return
            except Exception as exc:  # noqa: BLE001 - every failure sends the batch to the spool
                self._failed(exc)
        self._keep(record)
        if self._on_stored is not None:
            rows = pl.from_arrow(record.activity)
            assert isinstance(rows, pl.DataFrame)
            self._on_stored(rows.with_columns(rules_before=pl.lit(None, pl.List(pl.String))))
        self._drain()

    def _insert(self, record: Record, report: bool = False) -> None:
        """Insert `record`, count what it stored, and hand the stored rows to `on_stored` when `report`."""
        start = time.perf_counter()
        stored = self._store.insert_record(record)
        metrics.WRITE_SECONDS.observe(time.perf_counter() - start)
        metrics.ROWS_STORED.inc(stored.activity.height)
        self.stored += stored.activity.height
        self.known += stored.known
        self.replaced += stored.replaced
        if report and self._on_stored is not None and stored.activity.height:
            self._on_stored(stored.activity)

    def _failed(self, exc: BaseException) -> None:
        """Count a failed insert, drop the connection, and wait `retry_s` before the next attempt."""
        reason = "unreachable" if retryable(exc) else "rejected"
        metrics.WRITE_FAILURES.labels(reason).inc()
        _log.warning("store: insert failed (%s: %s); batches go to the spool", reason, type(exc).__name__)
        self._store.reset()
        self._next_try = time.monotonic() + self._retry_s

    def _keep(self, record: Record) -> None:
        """Append to the spool (in parts the spool can hold, when the batch is larger than its whole cap),
        waiting (and trying to drain it) while it is full."""
        assert self._spool is not None
        for part in self._spool.parts(record):
            while True:
                try:
                    self._spool.append(part)
                    break
                except SpoolFull:
                    _log.warning("store: the spool is full; waiting for ClickHouse before taking more")
                    time.sleep(self._retry_s)
                    self._drain(final=True)

    def _drain(self, final: bool = False) -> None:
        """Replay the spool in order while inserts succeed (not before the retry time, unless `final`)."""
        spool = self._spool
        if spool is None or spool.records == 0 or (not final and time.monotonic() < self._next_try):
            return
        for position, record in spool.pending():
            try:
                self._insert(record)
            except Exception as exc:  # noqa: BLE001 - sorted below into "try later" and "refused"
                if retryable(exc):
                    self._failed(exc)
                    return
                metrics.WRITE_FAILURES.labels("rejected").inc()
                _log.warning("store: a spooled batch was refused (%s); set aside in rejected/", type(exc).__name__)
                spool.reject(position, record, f"{type(exc).__name__}: {exc}")
                continue
            spool.ack(position)
