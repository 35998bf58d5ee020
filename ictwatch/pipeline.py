"""The pipeline: inputs → observations → policy engine → store, batch by batch.

`replay` runs captures and log files to their end; `run_live` is the daemon's: a live capture, the
followed logs (each on a thread of its own, its checkpoint advanced only once the writer has its lines
safe) and, in line-rate mode, conntrack's flows named from the DNS answers seen, through one engine
(swapped on reload) and one writer.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import subprocess
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa

from collector.capture.live import LiveCaptureSource
from collector.config import CollectorSettings
from collector.logs.conntrack import ConntrackFlows
from collector.logs.followed import Followed
from collector.naming import name_flows
from collector.observation import BatchBuilder, to_table
from collector.source import Source
from collector.sources import LogLineSource, open_source
from ictwatch.metrics import CAPTURE_RUNNING, PACKETS, count_observations
from rules import metrics
from rules.engine import Engine
from storage.records import record_ids
from storage.spool import Spool
from storage.store import Store, retryable
from storage.writer import Writer

_log = logging.getLogger(__name__)

ProgressHook = Callable[[Source | None], None]

BATCH_ROWS = 16384
"""Rows in a batch of observations judged and stored together. Every row of a batch is held at once, as
Python values, then Arrow, polars and the engine's insert: at 65,536 a replay of the benchmark's mix
(one batch) peaked about 100 MB higher; each batch also has a fixed cost in the engine, so at 8,192 the
same replay took 15% more CPU, at 16,384 5% (docs/performance.md, Memory). Live, a batch is rarely this
big (`MAX_AGE_S`)."""
MAX_AGE_S = 1.0
"""While capturing, a batch is judged and stored once its oldest row has waited this long."""


@dataclass
class ReplaySummary:
    """What a replay read, decided and stored."""

    inputs: list[str] = field(default_factory=list)
    packets: int = 0
    observations: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    denied: int = 0
    """Requests the proxy refused, whether or not they also broke a rule."""
    stored: int = 0
    """Rows stored: records new to the store, and records judged anew (`replaced` of them)."""
    known: int = 0
    """Records the store had already, judged the same: left as they were (a re-import)."""
    replaced: int = 0
    dropped: int = 0
    """Packets the capture tool reported dropped (live capture)."""
    spooled: int = 0
    """Batches left waiting in the spool (ClickHouse could not be reached for them)."""
    skipped: Counter[str] = field(default_factory=Counter)


def load_history(engine: Engine, store: Store) -> None:
    """Give the identity the stored lease history (identity as it was, whatever was replayed or captured
    before), and the window rules the stored activity to read back the windows they had not counted; when
    ClickHouse cannot be reached, go on with what the inputs themselves show."""
    engine.windows.history = lambda user, start, end: _stored_activity(store, user, start, end)
    try:
        engine.identity.add(store.leases())
    except Exception as exc:
        if not retryable(exc):
            raise
        store.reset()
        _log.warning("store unreachable (%s): identity starts without the stored lease history", type(exc).__name__)


def _stored_activity(store: Store, user: str | None, start: dt.datetime, end: dt.datetime) -> pl.DataFrame | None:
    """The stored activity of a window the engine reads back; None (try again later) when the store is out of
    reach."""
    try:
        return store.activity(user, start, end)
    except Exception as exc:
        if not retryable(exc):
            raise
        store.reset()
        _log.warning("store unreachable (%s): window totals count only what this process has seen",
                     type(exc).__name__)
        return None


def replay(
    inputs: list[Path], engine: Engine, store: Store, on_source: ProgressHook | None = None,
    collector: CollectorSettings | None = None, spool: Spool | None = None,
    ahead: dict[Path, subprocess.Popen[bytes]] | None = None,
) -> ReplaySummary:
    """Run every input through the engine into `store` (batches it cannot take wait in `spool`); bad
    records are skipped and counted. `collector` says how inputs are read (decoder, log time zone, Squid
    logformat); `ahead` holds the capture workers already decoding some of the inputs
    (`collector.capture.messages.decode_ahead`)."""
    summary = ReplaySummary()
    ahead = ahead or {}
    try:  # every input is checked before anything is stored
        sources = [open_source(p, collector, ahead.pop(p, None)) for p in inputs]
    finally:
        for proc in ahead.values():  # not taken: an input failed its check
            proc.kill()
            proc.wait()
    # Captures, Suricata's log and lease files carry the DHCP leases that name and place the devices behind
    # a proxy's or filter's lines: they are read first, whatever order the inputs were given in.
    sources.sort(key=lambda source: isinstance(source, LogLineSource))
    load_history(engine, store)

    writer = Writer(store, spool=spool, on_stored=metrics.breaches)
    try:
        sink = _sink(engine, writer, summary)
        # a file is judged in whole batches however long it takes to read: each batch has a fixed cost
        builder = BatchBuilder(sink, BATCH_ROWS, max_age_s=math.inf)
        batch_rows_in = 0
        for source in sources:
            if on_source:
                on_source(source)
            if source.run_batches is not None:  # a chunk at a time, straight into batches
                batch_rows_in += source.run_batches(sink)
            else:
                source.run(builder.add)
                builder.flush()
            summary.inputs.append(str(source.path))
            summary.packets += source.packets
            PACKETS.inc(source.packets)
            summary.skipped.update(source.skips.by_reason)
    finally:
        writer.close()  # what was judged is stored (or spooled), even when reading stopped early
        _tally(summary, writer)
    if on_source:
        on_source(None)
    summary.observations = builder.rows_emitted + batch_rows_in
    return summary


Reloader = Callable[[Engine], Engine | None]
"""Called about once a second while capturing: a new engine to judge with from now on, or None."""


def run_live(source: LiveCaptureSource, engine: Engine, store: Store,
             spool: Spool | None = None, reload: Reloader | None = None,
             follow: tuple[Followed, ...] = (), capture_flows: bool = True,
             flows: ConntrackFlows | None = None) -> ReplaySummary:
    """Capture until the source is stopped; batches are stored at `BATCH_ROWS` rows or `MAX_AGE_S` old. `reload`
    may swap the engine between batches (SIGHUP): the lease history learnt so far goes with it. Each log
    in `follow` is read on a thread of its own as it is written, through the same engine and writer.
    Without `capture_flows` (line-rate mode: the capture is filtered) the capture's flow records are
    dropped; Suricata's (a followed EVE log) or the kernel's (`flows`, conntrack) count the bytes instead."""
    summary = ReplaySummary(inputs=[source.interface])
    load_history(engine, store)
    writer = Writer(store, spool=spool, on_stored=metrics.breaches)
    current = [engine]
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        sink = _sink(lambda: current[0], writer, summary)
        for log in follow:
            threads.append(threading.Thread(target=log.run, args=(sink, stop, source.skips), daemon=True,
                                            name=f"follow-{log.follower.path.name}"))
            threads[-1].start()
        if flows is not None:
            threads.append(threading.Thread(target=flows.run, args=(lambda found: sink(to_table(found)), stop),
                                            daemon=True, name="conntrack"))
            threads[-1].start()
        builder = BatchBuilder(sink, max_age_s=MAX_AGE_S)
        counted = 0

        def tick() -> None:
            nonlocal counted
            PACKETS.inc(source.packets - counted)
            counted = source.packets
            fresh = reload(current[0]) if reload is not None else None
            if fresh is not None:
                builder.flush()  # what was gathered is judged by the policy in force when it was seen
                fresh.identity.add(current[0].identity.leases)
                fresh.windows.take_over(current[0].windows)
                current[0] = fresh
            builder.tick()

        CAPTURE_RUNNING.set(1)
        try:
            source.run(builder.add_columns, on_tick=tick, flows=capture_flows)
        finally:
            CAPTURE_RUNNING.set(0)
        builder.flush()
        PACKETS.inc(source.packets - counted)
    finally:
        stop.set()
        if flows is not None:
            flows.stop()
        for thread in threads:
            thread.join(30)
        writer.close()  # every batch written or spooled, and each follower's checkpoint saved with it
        for log in follow:
            log.follower.close()
        _tally(summary, writer)
    summary.packets, summary.dropped = source.packets, source.dropped
    summary.skipped.update(source.skips.by_reason)
    summary.observations += builder.rows_emitted
    return summary


def _tally(summary: ReplaySummary, writer: Writer) -> None:
    summary.stored, summary.known, summary.replaced = writer.stored, writer.known, writer.replaced
    summary.spooled = writer.spooled


def _sink(engine: Engine | Callable[[], Engine], writer: Writer,
          summary: ReplaySummary) -> Callable[..., None]:
    """Judge a batch and hand it to the writer (`kept` is called when it is safe); one batch at a time,
    whichever thread (capture, a log follower) brings it. Verdicts are counted here, as judged; breaches
    and incidents once the writer has them stored, and only those the store did not have already."""
    current = (lambda: engine) if isinstance(engine, Engine) else engine
    lock = threading.Lock()
    names: dict[str, str] = {}  # address → the name a DNS answer gave it, for flows that come unnamed

    def on_batch(table: pa.Table | pl.DataFrame, kept: Callable[[], None] | None = None) -> None:
        with lock:
            judge = current()
            df = table if isinstance(table, pl.DataFrame) else pl.from_arrow(table)
            assert isinstance(df, pl.DataFrame)
            df = name_flows(df, names)
            df = df.with_columns(record_ids(df))  # what the window rules count each record once by
            df = judge.evaluate(df).with_columns(judged_at=pl.lit(dt.datetime.now(dt.UTC), pl.Datetime("us", "UTC")))
            count_observations(df)
            summary.verdicts.update(metrics.verdicts(df))
            summary.denied += int(df.get_column("denied").sum())
            summary.observations += 0 if kept is None else df.height
            writer.put(df, judge.new_leases, kept)

    return on_batch
