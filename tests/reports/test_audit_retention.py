"""The audit chain under its own retention: `report_audit` has a TTL (`retention.audit_days`), so ClickHouse
deletes the oldest rows in time, and `ictwatch audit verify` must tell that from someone cutting rows off the
start. A real chDB store under a policy that keeps audit rows 60 days; rows written 100, 50 and 1 days ago
(the AuditLog's `now`); ClickHouse's own TTL removes the old ones (`OPTIMIZE … FINAL` runs the merge now
rather than when the server gets round to it), and the real `ictwatch audit verify` judges what is left.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from ictwatch import settings
from reports.audit import AuditLog, Entry
from storage.store import Store
from tests.conftest import SCHOOL_DAY, run_cli

DAYS = 60
AGES = (100, 100, 100, 50, 50, 1, 1)
"""How many days ago rows #1 to #7 were written: #1 to #3 are past the 60 days, #4 to #7 within."""


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    """The demo school's configuration with `retention.audit_days` of 60."""
    folder = tmp_path_factory.mktemp("config")
    for name in ("ictwatch.yaml", "directory.yaml", "devices.yaml", "network.yaml", "categories"):
        (shutil.copytree if name == "categories" else shutil.copy)(SCHOOL_DAY / name, folder / name)
    policy = (SCHOOL_DAY / "policy.yaml").read_text()
    assert "  audit_days: 2190" in policy
    (folder / "policy.yaml").write_text(policy.replace("  audit_days: 2190", f"  audit_days: {DAYS}"))
    return folder / "ictwatch.yaml"


@pytest.fixture(scope="module")
def written(config, tmp_path_factory) -> Path:
    """A store whose chain has a row for each of AGES, written by the real AuditLog; returns its folder."""
    folder = tmp_path_factory.mktemp("chain")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ICTWATCH_STORAGE_URL", f"chdb://{folder / 'store'}")
        loaded = settings.load(config)
        store = loaded.open_store()
        try:
            store.migrate()
            log = AuditLog(store, loaded.chain_files())
            now = dt.datetime.now(dt.UTC)
            for age in AGES:
                log.append(Entry("hmorgan", "headteacher", "audit_view", "granted", "headteacher"),
                           now - dt.timedelta(days=age))
        finally:
            store.close()
    return folder


@pytest.fixture
def copy(written, tmp_path) -> Path:
    """The store and its head and key, copied for one test; returns the store."""
    shutil.copytree(written, tmp_path / "chain", symlinks=True)
    return tmp_path / "chain" / "store"


def alter(store: Path, *sql: str) -> list[int]:
    """Run `sql` on the store as someone with access to it (not the service); returns the seqs left."""
    db = Store(f"chdb://{store}", "ictwatch")
    try:
        for statement in sql:
            db._client.command(statement)
        return [int(r[0]) for r in db._client.query("SELECT seq FROM ictwatch.report_audit ORDER BY seq").result_rows]
    finally:
        db.close()


def verify(config: Path, store: Path):
    return run_cli("audit", "verify", "--config", config, store=store)


EXPIRE = "OPTIMIZE TABLE ictwatch.report_audit FINAL"
"""Makes ClickHouse merge now, which applies the table's TTL: the retention, as ClickHouse itself does it."""


def test_rows_the_retention_removed_leave_the_chain_intact_and_are_counted(config, copy):
    assert alter(copy, EXPIRE) == [4, 5, 6, 7]
    proc = verify(config, copy)
    assert (proc.returncode, proc.stdout.strip()) == (
        0, "audit chain intact: 4 rows (rows #1–#3 removed by the policy's 60-day retention)")


def test_rows_within_retention_cut_off_the_start_are_found(config, copy):
    assert alter(copy, EXPIRE, "ALTER TABLE ictwatch.report_audit DELETE WHERE seq <= 5 "
                               "SETTINGS mutations_sync = 1") == [6, 7]
    proc = verify(config, copy)
    assert (proc.returncode, proc.stdout.strip()) == (
        1, "audit chain BROKEN at row #4: rows #4 to #5 are missing (the head file records row #4 as written "
           "within the policy's 60-day retention) (2 rows)")


def test_one_row_within_retention_cut_off_the_start_is_found(config, copy):
    assert alter(copy, EXPIRE, "ALTER TABLE ictwatch.report_audit DELETE WHERE seq = 4 "
                               "SETTINGS mutations_sync = 1") == [5, 6, 7]
    proc = verify(config, copy)
    assert (proc.returncode, proc.stdout.strip()) == (
        1, "audit chain BROKEN at row #4: row #4 is missing (the head file records row #4 as written within "
           "the policy's 60-day retention) (3 rows)")


def test_every_row_past_retention_removed_leaves_an_empty_chain_that_goes_on(config, copy):
    """Nothing asked for in 60 days: ClickHouse removes every row. The chain is intact, and the next row
    continues it (row #8 after #7, as the head file records), not a new chain from #1."""
    head = copy.parent / "audit.head"
    head.write_text("".join(line + "\n" for line in head.read_text().splitlines()[:4]))  # rows #1 to #3 only
    alter(copy, "ALTER TABLE ictwatch.report_audit DELETE WHERE seq > 3 SETTINGS mutations_sync = 1")
    assert alter(copy, EXPIRE) == []
    proc = verify(config, copy)
    assert (proc.returncode, proc.stdout.strip()) == (
        0, "audit chain intact: 0 rows (rows #1–#3 removed by the policy's 60-day retention)")
    run_cli("audit", "show", "--config", config, "--requested-by", "hmorgan", store=copy, check=True)
    assert alter(copy) == [4]
    proc = verify(config, copy)
    assert (proc.returncode, proc.stdout.strip()) == (
        0, "audit chain intact: 1 rows (rows #1–#3 removed by the policy's 60-day retention)")


def test_a_head_file_begun_before_the_times_were_recorded_still_verifies(config, copy):
    """A head file with lines written before this change (`SEQ MAC`, no time) among those written after it
    (`SEQ MAC TIME`) is read as it is; rows it records without a time cannot be shown to be past retention,
    unless a later row that is gone too has a time past it (rows are written in time order)."""
    head = copy.parent / "audit.head"
    lines = head.read_text().splitlines()
    assert len(lines) == 8 and all(len(line.split()) == 3 for line in lines[1:])

    def untimed(*seqs: int) -> None:
        head.write_text("".join((" ".join(line.split()[:2]) if n in seqs else line) + "\n"
                                for n, line in enumerate(lines)))

    assert alter(copy, EXPIRE) == [4, 5, 6, 7]
    untimed(1, 2, 4, 5)
    proc = verify(config, copy)
    assert (proc.returncode, proc.stdout.strip()) == (
        0, "audit chain intact: 4 rows (rows #1–#3 removed by the policy's 60-day retention)")
    untimed(2, 3)
    proc = verify(config, copy)
    assert (proc.returncode, proc.stdout.strip()) == (
        1, "audit chain BROKEN at row #2: rows #2 to #3 are missing (the head file records no time for them, "
           "so retention cannot be shown to have removed them) (4 rows)")
