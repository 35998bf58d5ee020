"""A report holds its subject's data only (issue 18, point 5): every report of the school day and of the
school week, in every format, is scanned for every other person's username and name. The header may name
the requester and the subject's line manager; nothing else in it may name anyone but the subject.

The reports are made the way the command and the web page make them (reports/requests.py's `Desk`, with
the explainer `ictwatch report` uses, over a real chDB store that `ictwatch replay` filled); each fixture is
replayed once for the module.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from ictwatch import settings
from ictwatch.commands.common import desk
from reports.requests import Ask
from tests.conftest import SCHOOL_DAY, SCHOOL_WEEK_CONFIG, run_cli, stored_activity

FORMATS = ("html", "csv", "json")
REQUESTER = "hmorgan"  # the headteacher may have anyone's report (her own too)


def _reports(config: Path, store: Path) -> dict[tuple[str, str], str]:
    """(subject, format) → the report's text, for every person of the directory with any activity, over the
    whole of the stored period."""
    rows = stored_activity(store)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ICTWATCH_STORAGE_URL", f"chdb://{store}")  # the audit chain's lock goes beside it
        loaded = settings.load(config)
    zone = loaded.policy.calendar.timezone
    days = rows.get_column("ts").dt.convert_time_zone(zone).dt.date()
    first, last = days.min(), days.max()
    people = {p.username for p in loaded.directory.people}
    subjects = sorted(people & set(rows.get_column("user").to_list()))
    db = loaded.open_store()
    out = {}
    try:
        reports = desk(loaded, db, explained=True)
        for subject in subjects:
            for fmt in FORMATS:
                got = reports.request(Ask(REQUESTER, subject, first, last, "privacy check", fmt))
                assert got.report is not None, got.grounds
                out[subject, fmt] = got.data.decode()
    finally:
        db.close()
    return out


@pytest.fixture(scope="module")
def school_day(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("day")
    config = SCHOOL_DAY / "ictwatch.yaml"
    run_cli("replay", "--config", config, SCHOOL_DAY / "school-day.pcap", SCHOOL_DAY / "squid-access.log",
            store=tmp / "store", check=True)
    return config, _reports(config, tmp / "store")


@pytest.fixture(scope="module")
def week_reports(school_week):
    _, store, _ = school_week  # tests/conftest.py: replayed with each day's iPad check (absences are activity)
    return SCHOOL_WEEK_CONFIG, _reports(SCHOOL_WEEK_CONFIG, store)


def _others(config: Path, subject: str) -> list[str]:
    """Every word that names someone the report of `subject` must not name: the username and the name of
    each other person, except the requester, and the line manager's name (the header gives it)."""
    directory = settings.load(config).directory
    people = directory.by_username()
    manager = people[subject].line_manager
    words = []
    for p in directory.people:
        if p.username in (subject, REQUESTER):
            continue
        words.append(p.username)
        if p.username != manager:
            words.append(p.name)
    return words


def _leaks(config: Path, reports: dict[tuple[str, str], str]) -> list[str]:
    found = []
    for (subject, fmt), text in reports.items():
        for word in _others(config, subject):
            for m in re.finditer(re.escape(word), text, re.I):
                found.append(f"{subject}'s {fmt} report names {word!r}: …{text[m.start() - 60 : m.end() + 40]!r}…")
    return found


def test_the_school_days_reports_name_no_one_else(school_day):
    config, reports = school_day
    assert {s for s, _ in reports} == {"dpatel", "jcarter", "lnguyen", "mshah", "rbaker", "sokafor", "tevans"}
    assert _leaks(config, reports) == []


def test_the_school_weeks_reports_name_no_one_else(week_reports):
    config, reports = week_reports
    assert {s for s, _ in reports} == {"dpatel", "jcarter", "kwhite", "lnguyen", "mshah", "rbaker", "sokafor",
                                       "tevans"}
    assert _leaks(config, reports) == []


def test_a_waiver_is_named_in_its_own_persons_report(week_reports):
    """The check above passes trivially if explanations say nothing of waivers: James Carter's report of the
    week still names his own waiver, and its period, where it applied."""
    _, reports = week_reports
    html = reports["jcarter", "html"]
    assert "w-jcarter-residential" in html
    assert dt.date(2026, 10, 28).isoformat() in html
