"""Who may see whose report: the permission matrix over the school's real directory, each attempt written
to the audit chain; the chain checked and then tampered with; the whole flow through the `ictwatch`
command (refusal, one-off grant used once, the headteacher reading the audit); encrypted export opened
with 7-Zip. Expected decisions are from the rules in reports/access.py's docstring, one by one."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess

import pytest

from ictwatch import settings
from reports import access
from reports.audit import AuditLog, ChainFiles, Entry
from reports.seal import check
from storage.store import Store
from tests.conftest import SCHOOL_DAY, run_cli

TODAY = dt.date(2026, 11, 29)  # Kate White left on 31 August
DIRECTORY = settings.load(SCHOOL_DAY / "ictwatch.yaml").directory

# (requester, their relation to the subject, subject, reason, granted, grounds)
MATRIX = [
    ("hmorgan", "headteacher, anyone", "rbaker", "r", True, "headteacher"),
    ("hmorgan", "headteacher, herself", "hmorgan", "r", True, "own data (right of access)"),
    ("hmorgan", "headteacher, someone the directory lacks", "visitor1", "r", True, "headteacher"),
    ("dpatel", "senior leader, direct report", "jcarter", "r", True, "line manager"),
    ("dpatel", "senior leader, report's report", "rbaker", "r", False,
     "manages the subject only indirectly (the policy allows direct reports)"),
    ("jcarter", "teacher, direct report", "rbaker", "r", True, "line manager"),
    ("jcarter", "teacher, another team", "sokafor", "r", False, "not the subject's line manager or the headteacher"),
    ("rbaker", "teaching assistant, own line manager", "jcarter", "r", False,
     "not the subject's line manager or the headteacher"),
    ("rbaker", "teaching assistant, herself", "rbaker", "r", True, "own data (right of access)"),
    ("tevans", "office, direct report", "mshah", "r", True, "line manager"),
    ("gwilliams", "network manager, a teacher", "jcarter", "r", False,
     "network manager: technical views only, without a one-off grant"),
    ("gwilliams", "network manager, himself", "gwilliams", "r", True, "own data (right of access)"),
    ("afinch", "safeguarding lead, a teacher", "jcarter", "r", False,
     "safeguarding lead: works from incidents, not personal reports"),
    ("kwhite", "leaver, herself", "kwhite", "r", False, "requester has left the school"),
    ("ghost", "not in the directory", "jcarter", "r", False, "requester not in the staff directory"),
    ("hmorgan", "headteacher, no reason given", "jcarter", "  ", False, "no reason given"),
]


@pytest.fixture
def log(tmp_path):
    store = Store(f"chdb://{tmp_path / 'store'}", "t")
    store.migrate()
    files = ChainFiles(tmp_path / "audit.lock", tmp_path / "audit.key", tmp_path / "audit.head", tmp_path / "x.yaml")
    yield AuditLog(store, files), store
    store.close()


def test_permission_matrix_with_an_audit_row_for_every_attempt(log):
    audit, store = log
    for requester, relation, subject, reason, granted, grounds in MATRIX:
        decision = access.decide(DIRECTORY, requester, subject, reason, TODAY)
        assert (decision.granted, decision.grounds) == (granted, grounds), relation
        audit.append(Entry(requester, "", "report", "granted" if granted else "refused", decision.grounds, reason,
                           subject))
    rows = store.audit()
    assert rows.height == len(MATRIX)
    assert rows.get_column("decision").to_list() == ["granted" if m[4] else "refused" for m in MATRIX]
    assert audit.verify()[:3] == (len(MATRIX), None, "")


def test_the_reporting_chain_when_the_policy_allows_it():
    decision = access.decide(DIRECTORY, "dpatel", "rbaker", "review", TODAY, chain=True)
    assert (decision.granted, decision.grounds) == (True, "line manager, through the reporting chain")


def test_tampering_with_the_audit_is_evident(log):
    audit, store = log
    for who in ("hmorgan", "dpatel", "jcarter"):
        audit.append(Entry(who, "", "report", "granted", "g", "r", "sokafor"))
    assert audit.verify()[1] is None
    store._client.command("ALTER TABLE t.report_audit UPDATE reason = 'nothing to see' WHERE seq = 2 "
                          "SETTINGS mutations_sync = 1")
    assert audit.verify()[1:3] == (2, "not signed with the audit key: changed after it was written, or written by "
                                     "someone without the key")
    store._client.command("ALTER TABLE t.report_audit DELETE WHERE seq = 2 SETTINGS mutations_sync = 1")
    assert audit.verify()[1:3] == (2, "row 2 is missing (found 3 in its place)")


def test_the_command_refuses_grants_once_and_records_everything(tmp_path):
    store = tmp_path / "store"
    config = SCHOOL_DAY / "ictwatch.yaml"
    run_cli("replay", "--config", config, SCHOOL_DAY / "school-day.pcap", store=store, check=True)
    ask = ["report", "--config", config, "--user", "jcarter", "--from", "2026-06-16", "--to", "2026-06-16",
           "--requested-by", "gwilliams", "--reason", "laptop suspected of malware", "--format", "json"]
    refused = run_cli(*ask, store=store)
    assert refused.returncode == 3 and "refused: network manager" in refused.stderr and refused.stdout == ""
    grant = ["grant", "--config", config, "--for", "gwilliams", "--subject", "jcarter", "--from", "2026-06-16", "--to",
             "2026-06-16"]
    assert run_cli(*grant, "--by", "dpatel", "--reason", "r", store=store).returncode == 3  # the headteacher only
    run_cli(*grant, "--by", "hmorgan", "--reason", "malware investigation", store=store, check=True)
    out = tmp_path / "r.json"
    granted = run_cli(*ask, "-o", out, store=store, check=True)
    text = out.read_text()
    assert check(text) is not None and f"sha256 {check(text)}" in granted.stdout  # it states its own fingerprint
    assert '"grounds": "one-off grant #3 from the headteacher"' in text
    assert run_cli(*ask, store=store).returncode == 3  # the grant is used up
    shown = run_cli("audit", "show", "--config", config, "--requested-by", "hmorgan", store=store, check=True)
    lines = shown.stdout.splitlines()
    assert [ln.split()[4:6] for ln in lines] == [["report", "refused"], ["grant", "refused"], ["grant", "granted"],
                                                  ["report", "granted"], ["report", "refused"],
                                                  ["audit_view", "granted"]]
    assert run_cli("audit", "show", "--config", config, "--requested-by", "dpatel", store=store).returncode == 3
    assert "audit chain intact: 7 rows" in run_cli("audit", "verify", "--config", config, store=store,
                                                   check=True).stdout
    db = Store(f"chdb://{store}")
    try:
        recorded = db.audit().filter(seq=4).to_dicts()[0]
    finally:
        db.close()
    assert (recorded["report_sha256"], recorded["uses_grant"], recorded["report_format"]) == (check(text), 3, "json")


def test_an_encrypted_export_opens_in_7zip(tmp_path):
    seven = shutil.which("7z")
    if seven is None:
        pytest.skip("7-Zip is not installed (./dev test installs p7zip-full as root)")
    store = tmp_path / "store"
    config = SCHOOL_DAY / "ictwatch.yaml"
    run_cli("replay", "--config", config, SCHOOL_DAY / "school-day.pcap", store=store, check=True)
    out = tmp_path / "export.zip"
    secret = "correct horse battery staple"
    run_cli("report", "--config", config, "--user", "sokafor", "--from", "2026-06-16", "--to", "2026-06-16",
            "--requested-by", "dpatel", "--reason", "review", "--encrypt", "-o", out, store=store, check=True,
            env={"ICTWATCH_EXPORT_PASSPHRASE": secret})
    listing = subprocess.run([seven, "l", "-slt", f"-p{secret}", str(out)], capture_output=True, text=True)
    assert "Method = AES-256 Deflate" in listing.stdout and "Encrypted = +" in listing.stdout
    wrong = subprocess.run([seven, "x", "-pnot-the-passphrase", f"-o{tmp_path / 'bad'}", str(out)],
                           capture_output=True, text=True)
    assert wrong.returncode != 0
    subprocess.run([seven, "x", f"-p{secret}", f"-o{tmp_path / 'x'}", str(out)], check=True, capture_output=True)
    (html,) = (tmp_path / "x").iterdir()
    assert html.name == "report.html" and check(html.read_text()) is not None
    short = run_cli("report", "--config", config, "--user", "sokafor", "--from", "2026-06-16", "--to", "2026-06-16",
                    "--requested-by", "dpatel", "--reason", "review", "--encrypt", "-o", out, store=store,
                    env={"ICTWATCH_EXPORT_PASSPHRASE": "short"})
    assert short.returncode == 2 and "short" not in short.stderr  # the passphrase is never echoed
    db = Store(f"chdb://{store}")
    try:
        assert db.audit().height == 1  # refused before anything was decided: only the export is recorded
    finally:
        db.close()


def test_pdf_by_chromium_is_recorded_with_its_own_hash(tmp_path):
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (./dev test installs it as root)")
    store = tmp_path / "store"
    config = SCHOOL_DAY / "ictwatch.yaml"
    run_cli("replay", "--config", config, SCHOOL_DAY / "school-day.pcap", store=store, check=True)
    out = tmp_path / "r.pdf"
    proc = run_cli("report", "--config", config, "--user", "sokafor", "--from", "2026-06-16", "--to", "2026-06-16",
                   "--requested-by", "dpatel", "--reason", "review", "--format", "pdf", "-o", out, store=store,
                   check=True)
    data = out.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF") and b"/Type /Page" in data
    import hashlib

    assert f"sha256 {hashlib.sha256(data).hexdigest()}" in proc.stdout


def test_audit_check_tells_a_handed_out_report_from_a_changed_one(tmp_path):
    """`audit check` finds a report file in the chain by its fingerprint: the stated one for JSON (and
    HTML), the file's own SHA-256 for CSV; one changed byte, or a file never handed out, is exit 1."""
    store = tmp_path / "store"
    config = SCHOOL_DAY / "ictwatch.yaml"
    run_cli("replay", "--config", config, SCHOOL_DAY / "school-day.pcap", store=store, check=True)
    ask = ["report", "--config", config, "--user", "sokafor", "--from", "2026-06-16", "--to", "2026-06-16",
           "--requested-by", "dpatel", "--reason", "line manager review"]
    files = {fmt: tmp_path / f"r.{fmt}" for fmt in ("json", "csv")}
    for fmt, path in files.items():
        run_cli(*ask, "--format", fmt, "-o", path, store=store, check=True)

    def audit_check(path):
        return run_cli("audit", "check", "--config", config, "--report", path, store=store)

    for row, (fmt, path) in enumerate(files.items(), 1):
        ok = audit_check(path)
        assert ok.returncode == 0
        assert ok.stdout.startswith(f"{path.name}: unchanged; handed out as audit row #{row} (report, {fmt}) on ")
    changed = tmp_path / "changed.json"
    changed.write_text(files["json"].read_text().replace("Sam Okafor", "Sam Okafor ", 1))
    assert (audit_check(changed).returncode, "CHANGED since it was made" in audit_check(changed).stdout) == (1, True)
    changed_csv = tmp_path / "changed.csv"
    changed_csv.write_bytes(files["csv"].read_bytes() + b"\n")
    stranger = audit_check(changed_csv)
    assert stranger.returncode == 1 and "is in no granted row of the audit log" in stranger.stdout
    missing = run_cli("audit", "check", "--config", config, store=store)
    assert missing.returncode == 2 and "--report FILE" in missing.stderr
