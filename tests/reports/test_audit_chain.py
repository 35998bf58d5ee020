"""The audit chain against someone who can write to the store but is not the service: rows cut off the end,
every row deleted, the whole chain rewritten with plain SHA-256 (which anyone can compute). Each is done
to a real chDB store that the real `ictwatch` command wrote, and `ictwatch audit verify` (a subprocess)
must say BROKEN and exit 1; the chain as written verifies. Then the upgrade: a store whose rows were
chained before the key existed is keyed once, the keying recorded, and the old rows still checked; and
the key itself: missing or unreadable, said in one line.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from ictwatch import cli, logs
from reports.audit import row_hash
from storage.store import Store
from tests.conftest import SCHOOL_DAY, run_cli

CONFIG = SCHOOL_DAY / "ictwatch.yaml"
ROWS = 7


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    """A folder holding a store whose audit chain has ROWS rows, each written by the real command line
    (in this process, to save starting a Python per row): readings of the audit, given or refused."""
    folder = tmp_path_factory.mktemp("chain")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ICTWATCH_STORAGE_URL", f"chdb://{folder / 'store'}")
        mp.setattr(logs, "setup", lambda: None)
        mp.setattr(cli, "tune_gc", lambda: None)
        for by in ("hmorgan", "dpatel", "hmorgan", "jcarter", "hmorgan", "tevans", "hmorgan"):
            cli.main(["audit", "show", "--config", str(CONFIG), "--requested-by", by])
    return folder


@pytest.fixture
def copy(written, tmp_path) -> Path:
    """The store (and whatever the service keeps beside it) copied for one test to spoil; returns the store."""
    shutil.copytree(written, tmp_path / "chain", symlinks=True)
    return tmp_path / "chain" / "store"


def tamper(store: Path, *sql: str) -> None:
    db = Store(f"chdb://{store}", "ictwatch")
    try:
        for statement in sql:
            db._client.command(statement + " SETTINGS mutations_sync = 1")
    finally:
        db.close()


def verify(store: Path):
    return run_cli("audit", "verify", "--config", CONFIG, store=store)


def test_the_chain_as_written_is_intact(copy):
    proc = verify(copy)
    assert (proc.returncode, proc.stdout.strip()) == (0, f"audit chain intact: {ROWS} rows")


@pytest.mark.parametrize(("where", "said"), [
    ("seq = 7", "row #7: row #7 is missing (the head file records row #7) (6 rows)"),
    ("seq >= 3", "row #3: rows #3 to #7 are missing (the head file records row #7) (2 rows)"),
    ("1", "row #1: rows #1 to #7 are missing (the head file records row #1 as written within the policy's "
          "6-year retention) (0 rows)"),
], ids=["last row deleted", "last five deleted", "every row deleted"])
def test_rows_cut_off_the_end_are_found(copy, where, said):
    tamper(copy, f"ALTER TABLE ictwatch.report_audit DELETE WHERE {where}")
    proc = verify(copy)
    assert (proc.returncode, proc.stdout.strip()) == (1, f"audit chain BROKEN at {said}")


def test_a_chain_rewritten_with_plain_sha256_is_found(copy):
    """What the README's own description lets anyone do: change a row, then recompute every hash after it
    as SHA-256 over the fields and the hash before."""
    db = Store(f"chdb://{copy}", "ictwatch")
    try:
        rows = db.audit().to_dicts()
        rows[1]["actor"] = "hmorgan"  # row 2: dpatel's refused attempt to read the audit, hidden
        prev = ""
        for row in rows:
            row["prev_hash"] = prev
            row["row_hash"] = prev = row_hash(row)
        db._client.command("TRUNCATE TABLE ictwatch.report_audit")
        for row in rows:
            db.insert_audit(row)
    finally:
        db.close()
    proc = verify(copy)
    assert proc.returncode == 1
    assert proc.stdout.startswith("audit chain BROKEN at row #1: not signed with the audit key")


def legacy_chain(store: Path, reasons: list[str]) -> list[str]:
    """Rows as ictwatch chained them before the key: SHA-256 each over its fields and the hash before; returns
    their hashes."""
    db = Store(f"chdb://{store}", "ictwatch")
    hashes: list[str] = []
    try:
        db.migrate()
        for seq, reason in enumerate(reasons, 1):
            row: dict[str, object] = {
                "seq": seq, "ts": dt.datetime(2026, 11, seq, 9, tzinfo=dt.UTC), "actor": "hmorgan",
                "actor_role": "headteacher", "action": "grant", "subject": "jcarter", "period_start": None,
                "period_end": None, "reason": reason, "decision": "granted", "grounds": "headteacher",
                "grantee": "gwilliams", "uses_grant": 0, "report_sha256": "", "report_format": "",
                "policy_versions": [], "prev_hash": hashes[-1] if hashes else ""}
            row["row_hash"] = row_hash(row)
            db.insert_audit(row)
            hashes.append(str(row["row_hash"]))
    finally:
        db.close()
    return hashes


def test_an_unkeyed_chain_is_keyed_once_on_upgrade_and_its_old_rows_still_checked(tmp_path):
    store = tmp_path / "store"
    hashes = legacy_chain(store, ["one", "two", "three"])
    before = verify(store)
    assert before.returncode == 1 and before.stdout.startswith("audit chain UNVERIFIED: not keyed yet")
    run_cli("audit", "show", "--config", CONFIG, "--requested-by", "hmorgan", store=store, check=True)
    assert (tmp_path / "audit.key").stat().st_mode & 0o777 == 0o600
    head = (tmp_path / "audit.head").read_text().splitlines()
    assert head[:4] == [f"anchor 3 {hashes[2]}", f"1 {hashes[0]} 2026-11-01T09:00:00Z",
                        f"2 {hashes[1]} 2026-11-02T09:00:00Z", f"3 {hashes[2]} 2026-11-03T09:00:00Z"]
    assert len(head) == 6 and head[4].startswith("4 ") and head[5].startswith("5 ")  # audit_keyed, audit_view
    shown = run_cli("audit", "show", "--config", CONFIG, "--requested-by", "hmorgan", store=store, check=True)
    assert [line.split()[4] for line in shown.stdout.splitlines()] == ["grant", "grant", "grant", "audit_keyed",
                                                                       "audit_view", "audit_view"]
    after = verify(store)
    assert (after.returncode, after.stdout.strip()) == (0, "audit chain intact: 6 rows")
    tamper(store, "ALTER TABLE ictwatch.report_audit UPDATE reason = 'nothing' WHERE seq = 2")
    changed = verify(store)
    assert (changed.returncode, changed.stdout.strip()) == (
        1, "audit chain BROKEN at row #2: its contents do not match its hash (changed after it was written) (6 rows)")


def test_a_lost_key_is_said_in_one_line_and_never_replaced(copy):
    key = copy.parent / "audit.key"
    key.unlink()
    proc = verify(copy)
    assert (proc.returncode, proc.stdout.strip()) == (
        1, f"audit chain UNVERIFIED: the key {key} is missing, though the head file says rows were signed with it: "
           f"restore it from the backup ({ROWS} rows)")
    grant = run_cli("grant", "--config", CONFIG, "--by", "hmorgan", "--for", "gwilliams", "--subject", "jcarter",
                    "--from", "2026-06-16", "--to", "2026-06-16", "--reason", "r", store=copy)
    assert grant.returncode == 2 and grant.stderr.count("\n") == 1 and "Traceback" not in grant.stderr
    assert f"audit.key: '{key}': missing, but the head file" in grant.stderr and not key.exists()


def test_an_unreadable_key_stops_the_service_at_start_and_check_says_so(copy):
    key = copy.parent / "audit.key"
    key.unlink()
    key.mkdir()  # the tests run as root, who reads any file: a folder in its place cannot be read even so
    served = run_cli("serve", "--config", CONFIG, store=copy)
    assert served.returncode == 2 and served.stderr.count("\n") == 1
    assert served.stderr.startswith(f"ictwatch: config error: {CONFIG}:")  # and the line, where the file has one
    assert f": audit.key: '{key}': cannot be read (Is a directory)" in served.stderr
    checked = run_cli("check", "--config", CONFIG, store=copy)
    assert checked.returncode == 0 and f"ictwatch: warning: audit key {key}: cannot be read" in checked.stderr
