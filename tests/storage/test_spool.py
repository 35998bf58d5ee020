"""The disk spool and the writer's faults, with real processes and sockets.

ClickHouse over HTTP is the real client against addresses that misbehave for real: a port where nothing
listens (refused), a socket that accepts and never answers (timeouts). The store they fall back to is
the embedded engine (chDB). A process appending to the spool is killed with SIGKILL in the middle of a
write. After each, the `activity` table holds exactly the rows produced: none lost, none doubled.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import polars as pl
import pytest

from storage.spool import Spool, SpoolFull, encode
from storage.store import Store, to_record
from storage.writer import Writer
from tests.conftest import ROOT, free_port
from tests.storage.spool_child import batch
from tests.storage.test_store import activities

ROWS = 40


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return activities(ROWS)


def batches(frame: pl.DataFrame, count: int) -> list[pl.DataFrame]:
    return [batch(frame, i) for i in range(count)]


def stored_refs(url: str) -> list[str]:
    store = Store(url, "t")
    try:
        store.migrate()
        return store.activity(None, None, None).get_column("source_ref").to_list()
    finally:
        store.close()


def flush(spool_dir, url: str) -> Writer:
    """What `ictwatch spool flush` does: a writer on the store at `url` with nothing new to write."""
    store, spool = Store(url, "t"), Spool(spool_dir)
    try:
        writer = Writer(store, spool=spool, retry_s=0.1)
        writer.close()
    finally:
        store.close()
        spool.close()
    return writer


def expected_refs(frame: pl.DataFrame, count: int) -> list[str]:
    return sorted(r for b in batches(frame, count) for r in b.get_column("source_ref").to_list())


def test_records_come_back_in_order_after_a_restart(tmp_path, frame):
    spool = Spool(tmp_path / "spool")
    for b in batches(frame, 3):
        spool.append(to_record(b))
    spool.close()
    again = Spool(tmp_path / "spool")
    got = [record.activity.column("source_ref")[0].as_py() for _, record in again.pending()]
    assert got == ["t.pcap#0/b0000", "t.pcap#0/b0001", "t.pcap#0/b0002"] and again.records == 3
    first, _ = next(again.pending())
    again.ack(first)
    assert Spool(tmp_path / "spool").records == 2  # the acknowledgement survives a restart too


def test_the_size_cap_refuses_rather_than_drops(tmp_path, frame):
    spool = Spool(tmp_path / "spool", max_bytes=60_000)
    spool.append(to_record(batch(frame, 0)))  # about 30 kB
    with pytest.raises(SpoolFull):
        for i in range(1, 5):
            spool.append(to_record(batch(frame, i)))
    assert 0 < spool.bytes() <= 60_000


def test_refused_connections_spool_then_the_embedded_store_takes_all(tmp_path, store_url, frame):
    """Nothing listens at the ClickHouse address: every batch goes to the spool; a flush into the embedded
    store then writes them all, once, and a second flush writes nothing more."""
    store = Store(f"http://127.0.0.1:{free_port()}", "t", timeout_s=2)
    spool = Spool(tmp_path / "spool")
    writer = Writer(store, spool=spool, retry_s=0.2)
    for b in batches(frame, 5):
        writer.put(b)
    writer.close()
    spool.close()
    assert (writer.stored, writer.spooled) == (0, 5)
    assert flush(tmp_path / "spool", store_url).stored == 5 * ROWS
    assert flush(tmp_path / "spool", store_url).stored == 0
    assert sorted(stored_refs(store_url)) == expected_refs(frame, 5)


@pytest.fixture
def hanging_server():
    """A TCP server that accepts connections, reads what it is sent, and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    held = []

    def serve():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_a_hanging_server_times_out_into_the_spool(tmp_path, store_url, frame, hanging_server):
    store = Store(f"http://127.0.0.1:{hanging_server}", "t", timeout_s=1)
    spool = Spool(tmp_path / "spool")
    started = time.monotonic()
    writer = Writer(store, spool=spool, retry_s=30)  # no retry within the test: one timeout, then the spool
    for b in batches(frame, 3):
        writer.put(b)
    writer.close()
    spool.close()
    assert writer.spooled == 3 and time.monotonic() - started < 20
    flush(tmp_path / "spool", store_url)
    assert sorted(stored_refs(store_url)) == expected_refs(frame, 3)


def test_a_batch_stored_but_not_acknowledged_is_not_stored_twice(tmp_path, store_url, frame):
    """The insert reached ClickHouse but the answer was lost, so the batch was spooled too: replaying it
    carries the same deduplication token, and ClickHouse drops it."""
    record = to_record(batch(frame, 0))
    store = Store(store_url, "t")
    store.insert_record(record)
    store.close()
    spool = Spool(tmp_path / "spool")
    spool.append(record)
    spool.close()
    flush(tmp_path / "spool", store_url)
    assert sorted(stored_refs(store_url)) == expected_refs(frame, 1)


def test_sigkill_in_the_middle_of_a_spool_write(tmp_path, store_url):
    """A process appending large batches is killed with SIGKILL as soon as a new append has started to
    reach the file. On restart the torn record is found, reported and set aside; every whole record is
    stored exactly once. (Tried up to five times: the kill must land inside a write.)"""
    rows = 20_000  # about 2 MB a record, written in 1 MB pieces
    for attempt in range(5):
        folder = tmp_path / f"spool{attempt}"
        child = subprocess.Popen([sys.executable, "-m", "tests.storage.spool_child", str(folder), str(rows)],
                                 cwd=ROOT, stdout=subprocess.PIPE, text=True)
        kept = []
        assert child.stdout is not None
        while len(kept) < 2:
            number, size = map(int, child.stdout.readline().split()[1:])
            kept.append((number, size))
        last_size = kept[-1][1]
        segment = next(folder.glob("segment-*.spool"))
        deadline = time.monotonic() + 30
        while segment.stat().st_size <= last_size and time.monotonic() < deadline:
            pass  # the next append has not reached the file yet
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        spool = Spool(folder)
        whole, torn = spool.records, spool.torn
        spool.close()
        assert whole >= len(kept)  # every append the child saw return is there
        if torn:
            break
    assert torn == 1 and len(list(folder.glob("torn-*.bin"))) == 1, "no kill landed inside a write"
    flush(folder, store_url)
    frame = activities(rows)
    assert sorted(stored_refs(store_url)) == expected_refs(frame, whole)
    assert Spool(folder).torn == 0  # set aside once; the next start finds a clean spool


def test_replay_with_clickhouse_down_then_spool_flush(tmp_path):
    """`ictwatch replay` while the ClickHouse server refuses connections keeps the school day in the spool
    and says so; `ictwatch spool flush` then writes it: the breaches are the hand-written ones and the
    activity count is a direct replay's."""
    from tests.conftest import SCHOOL_DAY, expected_breaches, run_cli, stored_breaches

    config, spool = SCHOOL_DAY / "ictwatch.yaml", tmp_path / "spool"
    inputs = (SCHOOL_DAY / "school-day.pcap", SCHOOL_DAY / "squid-access.log")
    down = {"ICTWATCH_STORAGE_URL": f"http://127.0.0.1:{free_port()}", "ICTWATCH_SPOOL": str(spool)}
    proc = run_cli("replay", "--config", config, *inputs, env=down, check=True)
    assert "ClickHouse cannot be reached" in proc.stderr and "stored 0 activities" in proc.stdout
    assert "2 batches wait in the spool" in proc.stdout  # one from the capture, one from the proxy log
    assert "127.0.0.1" not in proc.stderr  # the store's address (and any password in it) is not logged
    status = run_cli("spool", "status", "--config", config, env=down, check=True).stdout
    assert "records: 2\n" in status and "torn_kept: 0\n" in status
    assert run_cli("spool", "flush", "--config", config, env=down).returncode == 1  # still down: kept
    up = {"ICTWATCH_SPOOL": str(spool)}
    out = run_cli("spool", "flush", "--config", config, store=tmp_path / "store", env=up, check=True).stdout
    assert "flushed 2 of 2 batches" in out and "records: 0\n" in out
    assert stored_breaches(config, tmp_path / "store") == expected_breaches(SCHOOL_DAY)
    direct = run_cli("replay", "--config", config, *inputs, store=tmp_path / "direct",
                     env={"ICTWATCH_SPOOL": str(tmp_path / "spool2")}, check=True).stdout
    assert f"stored {len(stored_refs_all(tmp_path / 'store'))} activities" in direct


def stored_refs_all(path) -> list[str]:
    store = Store(f"chdb://{path}", "ictwatch")
    try:
        return store.activity(None, None, None).get_column("source_ref").to_list()
    finally:
        store.close()


BIG_ROWS, CAP = 4 * ROWS, 60_000
"""A batch of 160 rows, about 127 kB as one spool record, and a spool capped at 60 kB: it takes a quarter of
the batch (about 33 kB) at a time, never the whole of it."""


def test_a_batch_larger_than_the_whole_spool_is_kept_in_parts_that_fit(tmp_path, frame):
    """Each part fits the cap alone; together they are the batch's rows in order, the leases with the first;
    each has a token of its own, the same when the batch is split again."""
    leases = pl.DataFrame({"ip": ["10.20.10.50"], "lease_mac": ["00:1b:21:aa:00:02"],
                           "lease_start": [dt.datetime(2026, 6, 16, 7, tzinfo=dt.UTC)],
                           "lease_end": [dt.datetime(2026, 6, 16, 8, tzinfo=dt.UTC)], "lease_ref": ["d#1"],
                           "lease_place": ["Staff room"]})
    record = to_record(pl.concat(batches(frame, 4)), leases)
    spool = Spool(tmp_path / "spool", max_bytes=CAP)
    parts = list(spool.parts(record))
    assert len(encode(record)) > CAP and len(parts) == 4
    assert all(len(encode(p)) <= CAP for p in parts)
    assert [r for p in parts for r in p.activity.column("source_ref").to_pylist()] == \
        record.activity.column("source_ref").to_pylist()
    assert [p.leases is not None for p in parts] == [True, False, False, False]
    assert len({p.token for p in parts}) == 4 and [p.token for p in spool.parts(record)] == [p.token for p in parts]
    spool.append(parts[0])
    with pytest.raises(SpoolFull):  # the cap still holds: a second quarter waits for room
        spool.append(parts[1])


class OutageThenBack:
    """A fake for the one fault the real parts cannot show here, ClickHouse coming back: the real client
    against a port where nothing listens (refused, as a server that is down refuses) until `back()`, then
    the real embedded store."""

    def __init__(self, url: str) -> None:
        self.down = Store(f"http://127.0.0.1:{free_port()}", "t", timeout_s=2)
        self.up = Store(url, "t")
        self.up.migrate()
        self.current = self.down

    def back(self) -> None:
        self.current = self.up

    def insert_record(self, record):
        return self.current.insert_record(record)

    def reset(self) -> None:
        self.current.reset()

    def close(self) -> None:
        self.down.close()
        self.up.close()


def test_a_batch_larger_than_the_whole_spool_waits_for_room_not_for_ever_fake_outage(tmp_path, store_url, frame):
    """ClickHouse down and the spool empty: the batch goes into the spool a part at a time as it has room,
    and once ClickHouse is back every row is stored, once. (Before, it waited for ever, with nothing in the
    spool, ClickHouse back or not.)"""
    store = OutageThenBack(store_url)
    spool = Spool(tmp_path / "spool", max_bytes=CAP)
    writer = Writer(store, spool=spool, retry_s=0.1)  # type: ignore[arg-type]
    writer.put(pl.concat(batches(frame, 4)))
    deadline = time.monotonic() + 10
    while spool.records == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spool.records == 1 and spool.bytes() <= CAP  # a quarter kept; the rest waits for room
    store.back()
    closing = threading.Thread(target=writer.close, daemon=True)
    closing.start()
    closing.join(timeout=30)
    assert not closing.is_alive(), "the writer never finished once ClickHouse was back"
    store.close()
    spool.close()
    assert (writer.stored, spool.records) == (BIG_ROWS, 0)
    assert sorted(stored_refs(store_url)) == expected_refs(frame, 4)


def test_a_row_larger_than_the_whole_spool_is_set_aside_not_waited_on(tmp_path, caplog):
    """A spool capped below what one row takes (about 8.5 kB), ClickHouse down: each row is set aside in
    rejected/, readable by the service only, with why; the writer finishes at once."""
    store = Store(f"http://127.0.0.1:{free_port()}", "t", timeout_s=2)
    spool = Spool(tmp_path / "spool", max_bytes=5_000)
    writer = Writer(store, spool=spool, retry_s=0.1)
    writer.put(activities(2))
    closing = threading.Thread(target=writer.close, daemon=True)
    closing.start()
    closing.join(timeout=20)
    assert not closing.is_alive(), "the writer waits for a spool that can never hold one row"
    kept = sorted((tmp_path / "spool" / "rejected").iterdir())
    assert len(kept) == 4  # two rows, each a record and its reason
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in kept)
    reasons = [p.read_text() for p in kept if p.name.endswith(".reason.txt")]
    assert len(reasons) == 2 and all("more than storage.spool_max_bytes (5,000)" in r for r in reasons)
    assert spool.records == 0 and spool.status()["rejected"] == 2
    assert "set aside in rejected/" in caplog.text
