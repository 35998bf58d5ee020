"""Clause I1: `ictwatch check-ipads` records each issued school iPad not seen by the policy's time on a
school day, and the engine makes it a breach naming the device and the person in whose care it is."""

from __future__ import annotations

import pytest

from tests.conftest import SCHOOL_DAY, run_cli, school_config, stored_activity


@pytest.fixture
def day(tmp_path):
    config = school_config(tmp_path / "school")
    store = tmp_path / "store"
    run_cli("replay", "--config", config, SCHOOL_DAY / "school-day.pcap", store=store, check=True)
    return config, store


def test_an_ipad_not_seen_by_the_time_is_a_breach(day):
    """IPAD-BANK-5C was on the network at 09:15 (before 09:30): a near miss. IPAD-BANK-6A never was: an I1
    breach at 09:30 of the device, Sam Okafor's class iPads (in his care, not his own use). IPAD-BANK-3B was
    reported lost on 1 June, so it is not expected in school."""
    config, store = day
    out = run_cli("check-ipads", "--config", config, "--date", "2026-06-16", store=store, check=True).stdout
    assert "IPAD-BANK-6A: not seen on 2026-06-16 by 09:30" in out and "IPAD-BANK-5C" not in out
    assert "1 of 2 school iPads seen by 09:30 on 2026-06-16" in out
    run_cli("check-ipads", "--config", config, "--date", "2026-06-16", store=store, check=True)  # again: no double
    rows = stored_activity(store).filter(kind="absence").to_dicts()
    assert [(r["device"], r["user"], r["responsible"], r["rule_ids"], r["clauses"], r["ts"].isoformat())
            for r in rows] == [("IPAD-BANK-6A", "", "sokafor", ["ipad-not-seen"], ["I1"], "2026-06-16T08:30:00+00:00")]
    table = run_cli("breaches", "--config", config, "--from", "2026-06-16", "--to", "2026-06-16", store=store,
                    check=True).stdout
    assert "ipad-not-seen" in table and "IPAD-BANK-6A" in table


@pytest.mark.parametrize("date", ["2026-06-20", "2026-05-26"])  # a Saturday; May half term
def test_no_check_when_the_school_is_closed(day, date):
    config, store = day
    out = run_cli("check-ipads", "--config", config, "--date", date, store=store, check=True).stdout
    assert "no iPad check (not a school day" in out
