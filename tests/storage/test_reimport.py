"""Re-imports do not double the evidence (issue 19, point 7), through the real `ictwatch replay` into the
real embedded store: the school day imported once, then again as files renamed, gzipped or rotated, or under
an edited policy. The same record is stored once whatever its file is called; judging it again replaces its
verdict and the row names the policy that judged it.

The expected figures are the school day's own: 58 activities (README, `./dev demo`) and the 8 breaches of
fixtures/school-day/expected-breaches.csv, written by hand.
"""

from __future__ import annotations

import gzip
import shutil

import pytest

from ictwatch import settings
from storage.store import Store
from tests.conftest import SCHOOL_DAY, expected_breaches, run_cli, school_config, stored_activity, stored_breaches

PCAP, LOG = SCHOOL_DAY / "school-day.pcap", SCHOOL_DAY / "squid-access.log"
DAY_ACTIVITIES = 58
"""What one import of the school day stores (50 from the capture and 8 proxy lines, one line being syslog)."""


def _key(row: dict) -> tuple:
    return tuple(row.values())


@pytest.fixture
def day(tmp_path):
    """The school day imported once into a fresh store: (config, store, folder for the copies)."""
    config, store = SCHOOL_DAY / "ictwatch.yaml", tmp_path / "store"
    run_cli("replay", "--config", config, PCAP, LOG, store=store, check=True)
    return config, store, tmp_path


def test_the_same_files_renamed_gzipped_or_rotated_are_stored_once(day):
    config, store, tmp = day
    renamed, zipped, rotated = tmp / "monday.pcap", tmp / "school-day.pcap.gz", tmp / "access.log.1"
    shutil.copy(PCAP, renamed)
    zipped.write_bytes(gzip.compress(PCAP.read_bytes()))
    shutil.copy(LOG, rotated)
    out = run_cli("replay", "--config", config, renamed, zipped, rotated, store=store, check=True)
    activity = stored_activity(store)
    assert activity.height == DAY_ACTIVITIES
    # the records keep the names they were first read under
    assert set(activity.get_column("source_ref").str.replace(r"[#:]\d+$", "")) == {PCAP.name, LOG.name}
    assert sorted(stored_breaches(config, store), key=_key) == sorted(expected_breaches(SCHOOL_DAY), key=_key)
    assert "stored 0 activities" in out.stdout  # nothing new to store


def test_a_rotated_log_overlapping_half_of_the_original_adds_only_its_new_lines(day):
    config, store, tmp = day
    lines = LOG.read_text().splitlines(keepends=True)
    rotated = tmp / "access.log.1"
    # the second half of the original (the syslog line among it), then a line the original does not have
    new = ("1781617000.000    100 10.20.10.21 TCP_MISS/200 2048 GET http://www.bbc.co.uk/weather jcarter "
           "HIER_DIRECT/151.101.0.81 text/html\n")
    rotated.write_text("".join(lines[len(lines) // 2:]) + new)
    run_cli("replay", "--config", config, rotated, store=store, check=True)
    activity = stored_activity(store)
    assert activity.height == DAY_ACTIVITIES + 1
    assert activity.filter(url="http://www.bbc.co.uk/weather").get_column("source_ref").to_list() == [
        "access.log.1:6"]
    assert sorted(stored_breaches(config, store), key=_key) == sorted(expected_breaches(SCHOOL_DAY), key=_key)


def test_judging_again_under_an_edited_policy_replaces_the_verdict(tmp_path):
    """The school drops its personal-webmail rule and imports the day again: Deepa Patel's Yahoo Mail visit
    at 11:40:09 is now allowed, by the new policy; every other breach is listed once, as before."""
    config = school_config(tmp_path / "conf")
    store = tmp_path / "store"
    run_cli("replay", "--config", config, PCAP, LOG, store=store, check=True)
    policy = config.parent / "policy.yaml"
    text = policy.read_text()
    start, end = text.index("  - id: personal-webmail"), text.index("  - id: unapproved-email-server")
    policy.write_text(text[:start] + text[end:])
    new_version = settings.load(config).policy.version()

    run_cli("replay", "--config", config, PCAP, LOG, store=store, check=True)
    activity = stored_activity(store)
    assert activity.height == DAY_ACTIVITIES
    assert set(activity.get_column("policy_version")) == {new_version}
    yahoo = activity.filter(host="mail.yahoo.com").to_dicts()
    assert [(r["verdict"], r["rule_ids"], r["policy_version"]) for r in yahoo] == [("allowed", [], new_version)]
    expected = [r for r in expected_breaches(SCHOOL_DAY) if r["rule"] != "personal-webmail"]
    assert sorted(stored_breaches(config, store), key=_key) == sorted(expected, key=_key)


def test_a_re_import_in_the_same_command_is_stored_once(tmp_path):
    """The capture given twice in one replay (as itself and gzipped): the second copy's records are in the
    writer's queue while the first copy's are being stored, and still count once."""
    zipped = tmp_path / "school-day.pcap.gz"
    zipped.write_bytes(gzip.compress(PCAP.read_bytes()))
    store = tmp_path / "store"
    run_cli("replay", "--config", SCHOOL_DAY / "ictwatch.yaml", PCAP, zipped, LOG, store=store, check=True)
    db = Store(f"chdb://{store}")
    try:
        assert db.count() == DAY_ACTIVITIES
    finally:
        db.close()
