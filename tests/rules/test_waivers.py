"""Waivers ("unless specific permission is given"): a covered activity is recorded as waived with the
waiver's id, not as a breach; the period is local time (BST in June) with its end exclusive; a group
waiver covers its members only; bad waivers stop start-up naming the field."""

from __future__ import annotations

import pytest

from storage.store import Store
from tests.conftest import SCHOOL_DAY, run_cli, school_config

LESSON = """
waivers:
  - id: w-jcarter-esafety
    users: [jcarter]
    rules: [blocked-content]
    start: 2026-06-16T11:00
    end: 2026-06-16T11:16
    granted_by: hmorgan
    reason: showing the class what the filter blocks, in an e-safety lesson
  - id: w-year6-social
    groups: [year6]
    rules: [personal-use-restricted-hours]
    start: 2026-06-16T09:00
    end: 2026-06-16T10:00
    granted_by: dpatel
    reason: year 6 social-media safety project
  - id: w-late
    users: [tevans]
    rules: [blocked-content]
    start: 2026-06-16T14:05:13
    end: 2026-06-16T15:00
    granted_by: hmorgan
    reason: starts one second after Tom Evans's breach at 14:05:12, so it does not cover it
"""


def config_with(tmp_path, waivers: str):
    config = school_config(tmp_path / "school")
    policy = config.parent / "policy.yaml"
    text = policy.read_text()
    policy.write_text(text[:text.index("\nwaivers:\n") + 1] + waivers.lstrip("\n"))  # these instead of the shipped ones
    return config


def test_replayed_day_records_waived_activities(tmp_path):
    config = config_with(tmp_path, LESSON)
    store = tmp_path / "store"
    run_cli("replay", "--config", config, SCHOOL_DAY / "school-day.pcap", SCHOOL_DAY / "squid-access.log",
            store=store, check=True)
    db = Store(f"chdb://{store}")
    try:
        rows = db.activity(None, None, None).filter(verdict="waived").sort("ts").to_dicts()
        breaches = db.activity(None, None, None, breaches_only=True)
    finally:
        db.close()
    assert [(r["user"], r["host"], r["waiver_ids"], r["rule_ids"]) for r in rows] == [
        ("sokafor", "www.instagram.com", ["w-year6-social"], []),  # 09:42 BST: inside 09:00-10:00 local
        ("jcarter", "www.bet365.com", ["w-jcarter-esafety"], []),  # 11:15:31, before the 11:16 end
    ]
    assert breaches.height == 6  # the day's eight breaches less the two waived
    assert "www.bet365.com" not in breaches.get_column("host").to_list()
    assert "hot-videos.example" in breaches.get_column("host").to_list()  # w-late starts too late


@pytest.mark.parametrize(("waiver", "field", "value"), [
    ("users: [nobody]\n    rules: [blocked-content]", "waivers[0].users", "nobody"),
    ("groups: [year9]\n    rules: [blocked-content]", "waivers[0].groups", "year9"),
    ("users: [jcarter]\n    rules: [no-such-rule]", "waivers[0].rules", "no-such-rule"),
])
def test_a_bad_waiver_stops_start_up(tmp_path, waiver, field, value):
    config = config_with(tmp_path, f"""
waivers:
  - id: w-bad
    {waiver}
    start: 2026-06-16T09:00
    end: 2026-06-16T10:00
    granted_by: hmorgan
    reason: a test
""")
    proc = run_cli("check", "--config", config)
    assert proc.returncode == 2
    assert field in proc.stderr and value in proc.stderr
