"""Access follows the staff directory's `start` and `leave` dates: someone outside their employment cannot
log in to the web page, request a report, give a grant or read the audit; no one has a report of a future
starter, and a leaver's report covers only the days they were employed, except for the headteacher's. A
one-off grant is for one subject and one period, and expires after the policy's `reports.grant_days` (7
by default).

The people whose dates matter are written into a copy of the school day's directory, dated from the real
today (the commands use the real clock): a headteacher who left ten days ago, a teacher who starts in a
month. Kate White left on 2026-08-31 in the bundled directory.
"""

from __future__ import annotations

import datetime as dt
import http.client
import re
import threading
import urllib.parse
from pathlib import Path

import pytest

from ictwatch import settings
from ictwatch.commands.web import web_server
from reports import access
from reports.accounts import Accounts
from reports.audit import AuditLog, ChainFiles
from reports.requests import Ask, Desk
from rules.config import Role
from rules.policy import ReportAccess
from storage.store import Store
from tests.conftest import SCHOOL_DAY, free_port, run_cli, school_config

TODAY = dt.date.today()
STARTS = TODAY + dt.timedelta(days=30)
LEFT = TODAY - dt.timedelta(days=10)
PASSWORD = "a long passphrase for tests"
DIRECTORY = settings.load(SCHOOL_DAY / "ictwatch.yaml").directory


def school(folder: Path, head_left: bool = False, extra_yaml: str = "") -> Path:
    """The school day's configuration with a future starter (nstarter) added, and the headteacher gone
    when `head_left`."""
    config = school_config(folder, extra_yaml)
    directory = config.parent / "directory.yaml"
    text = directory.read_text() + (f"  - {{username: nstarter, name: Nia Starter, role: teacher, line_manager: "
                                    f"dpatel, start: {STARTS}}}\n")
    if head_left:
        text = text.replace("role: headteacher}", f"role: headteacher, leave: {LEFT}}}")
    directory.write_text(text)
    return config


def test_the_rule_itself_on_the_directory():
    """Each case worked out from the dates: Kate White's last day was 2026-08-31."""
    today = dt.date(2026, 11, 29)
    starter = DIRECTORY.people[0].model_copy(update={"username": "nstarter", "role": Role.teacher,
                                                     "start": dt.date(2027, 1, 4)})
    directory = DIRECTORY.model_copy(update={"people": (*DIRECTORY.people, starter)})
    june, summer = (dt.date(2026, 6, 1), dt.date(2026, 6, 30)), (dt.date(2026, 8, 20), dt.date(2026, 9, 10))
    cases = [
        ("nstarter", "nstarter", june, False, "requester has not started at the school yet"),
        ("hmorgan", "nstarter", june, False, "the subject has not started at the school yet"),
        ("hmorgan", "kwhite", june, True, "headteacher"),
        ("dpatel", "kwhite", june, True, "line manager"),
        ("dpatel", "kwhite", summer, False, "the period runs outside the subject's employment dates"),
        ("hmorgan", "kwhite", summer, True, "headteacher"),  # following up her laptop, still seen (A1)
        ("hmorgan", "jcarter", june, True, "headteacher"),
        ("hmorgan", "visitor1", summer, True, "headteacher"),  # no dates known: no limit
    ]
    for requester, subject, period, granted, grounds in cases:
        decision = access.decide(directory, requester, subject, "r", today, period=period)
        assert (decision.granted, decision.grounds) == (granted, grounds), (requester, subject, period)
    assert not access.may_log_in(directory, "kwhite", today) and not access.may_log_in(directory, "nstarter", today)
    assert access.may_log_in(directory, "jcarter", today) and not access.may_log_in(directory, "ghost", today)
    assert access.may_log_in(directory, "kwhite", dt.date(2026, 8, 31))  # the last day is still a working day


def test_a_headteacher_who_has_left_can_neither_grant_nor_read_the_audit(tmp_path):
    config = school(tmp_path / "school", head_left=True)
    store = tmp_path / "store"
    grant = run_cli("grant", "--config", config, "--by", "hmorgan", "--for", "gwilliams", "--subject", "jcarter",
                    "--from", "2026-06-16", "--to", "2026-06-16", "--reason", "malware", store=store)
    assert (grant.returncode, grant.stderr.strip()) == (
        3, "ictwatch: refused: only the headteacher gives one-off grants, with a reason (audit row #1)")
    shown = run_cli("audit", "show", "--config", config, "--requested-by", "hmorgan", store=store)
    assert (shown.returncode, shown.stderr.strip()) == (
        3, "ictwatch: refused: only the headteacher reads the audit log (audit row #2)")


def test_reports_follow_the_subjects_dates(tmp_path):
    config = school(tmp_path / "school")
    store = tmp_path / "store"

    def ask(user, first, last, by="hmorgan"):
        return run_cli("report", "--config", config, "--user", user, "--from", first, "--to", last, "--requested-by",
                       by, "--reason", "review", "--format", "json", "-o", tmp_path / "r.json", store=store)

    starter = ask("nstarter", str(TODAY - dt.timedelta(days=7)), str(TODAY))
    assert (starter.returncode, starter.stderr.strip()) == (
        3, "ictwatch: refused: the subject has not started at the school yet (recorded as audit row #1)")
    assert ask("kwhite", "2026-06-16", "2026-06-16", by="dpatel").returncode == 0  # her manager, while employed
    after = ask("kwhite", "2026-08-31", "2026-09-01", by="dpatel")
    assert (after.returncode, after.stderr.strip()) == (
        3, "ictwatch: refused: the period runs outside the subject's employment dates (recorded as audit row #3)")


def test_leavers_and_starters_cannot_log_in_to_the_web_page(tmp_path):
    port = free_port()
    config = school(tmp_path / "school", extra_yaml=f"web:\n  listen: 127.0.0.1:{port}\n  accounts: accounts.json\n")
    accounts = Accounts(config.parent / "accounts.json")
    for user in ("kwhite", "nstarter", "jcarter"):
        accounts.set(user, PASSWORD)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ICTWATCH_STORAGE_URL", f"chdb://{tmp_path / 'store'}")
        server, app = web_server(settings.load(config))
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def log_in(user: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("GET", "/login")
            response = conn.getresponse()
            cookie = (response.getheader("Set-Cookie") or "").split(";")[0]
            csrf = re.search(r'name="csrf" value="([^"]+)"', response.read().decode())
            assert csrf is not None
            body = urllib.parse.urlencode({"username": user, "password": PASSWORD, "csrf": csrf.group(1)})
            conn.request("POST", "/login", body, {"Cookie": cookie,
                                                  "Content-Type": "application/x-www-form-urlencoded"})
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    try:
        assert {user: log_in(user) for user in ("kwhite", "nstarter", "jcarter")} == {
            "kwhite": 401, "nstarter": 401, "jcarter": 303}
    finally:
        server.shutdown()
        server.server_close()
        app.close()


@pytest.mark.parametrize(("grant_days", "asked_after", "subject", "period", "grounds"), [
    (None, dt.timedelta(days=6, hours=23), "jcarter", ("2026-06-16", "2026-06-16"), "one-off grant #1 from the "
                                                                                     "headteacher"),
    (None, dt.timedelta(days=7, minutes=1), "jcarter", ("2026-06-16", "2026-06-16"), "expired"),
    (2, dt.timedelta(days=2, minutes=1), "jcarter", ("2026-06-16", "2026-06-16"), "expired"),
    (None, dt.timedelta(hours=1), "jcarter", ("2026-06-15", "2026-06-16"), "another period"),
    (None, dt.timedelta(hours=1), "sokafor", ("2026-06-16", "2026-06-16"), "another subject"),
], ids=["within 7 days", "after 7 days", "after grant_days: 2", "a longer period", "another subject"])
def test_a_grant_is_for_one_subject_and_period_and_expires(tmp_path, grant_days, asked_after, subject, period,
                                                         grounds):
    """The use cases on a real store with the clock set: the headteacher grants the network manager James
    Carter's report for 16 June, then the network manager asks."""
    loaded = settings.load(SCHOOL_DAY / "ictwatch.yaml")
    policy = loaded.policy if grant_days is None else loaded.policy.model_copy(
        update={"reports": ReportAccess(grant_days=grant_days)})
    store = Store(f"chdb://{tmp_path / 'store'}", "t")
    store.migrate()
    granted_at = dt.datetime(2026, 11, 2, 10, tzinfo=dt.UTC)
    clock = [granted_at]
    files = ChainFiles(tmp_path / "lock", tmp_path / "key", tmp_path / "head", SCHOOL_DAY / "ictwatch.yaml")
    desk = Desk(store, AuditLog(store, files), loaded.directory, policy, now=lambda: clock[0])
    try:
        given, seq = desk.grant("hmorgan", "gwilliams", "jcarter", "malware", dt.date(2026, 6, 16),
                                dt.date(2026, 6, 16))
        assert (given.granted, seq) == (True, 1)
        clock[0] = granted_at + asked_after
        got = desk.request(Ask("gwilliams", subject, dt.date.fromisoformat(period[0]),
                               dt.date.fromisoformat(period[1]), "malware"))
    finally:
        store.close()
    if grounds.startswith("one-off"):
        assert (got.seq, got.grounds, got.report is not None) == (2, grounds, True)
    else:  # expired, or not what was granted: the network manager's usual refusal
        assert (got.seq, got.grounds, got.report) == (
            2, "network manager: technical views only, without a one-off grant", None)
