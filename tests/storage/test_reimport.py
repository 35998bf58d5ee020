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

import polars as pl
import pytest

from collector.observation import to_table
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


def test_a_re_import_does_not_count_or_raise_its_breaches_again(tmp_path):
    """Prometheus: the school day's two danger breaches (blocked-content, jcarter 11:15:31 and tevans 14:05:12)
    count once, and the second import of the same files (renamed) counts none and raises no incident."""
    from prometheus_client import REGISTRY

    from ictwatch.pipeline import replay
    from rules import incidents

    loaded = settings.load(SCHOOL_DAY / "ictwatch.yaml")
    labels = {"rule": "blocked-content", "severity": "danger", "location": "Classroom block", "role": "teacher"}

    def counted() -> float:
        return REGISTRY.get_sample_value("ictwatch_breaches_total", labels) or 0.0

    renamed = tmp_path / "tuesday.pcap"
    shutil.copy(PCAP, renamed)
    store = Store(f"chdb://{tmp_path / 'store'}")
    opened_before = set(incidents._open)
    try:
        store.migrate()
        start = counted()
        replay([PCAP, LOG], loaded.engine(), store)
        assert counted() == start + 1  # jcarter's bet365 attempt (tevans's is in the office)
        raised = set(incidents._open) - opened_before
        assert {rule for _, rule, _ in raised} == {"blocked-content"} and len(raised) == 2
        for incident in raised:  # the safeguarding lead deals with both
            incidents.close_incident(*incident)
        summary = replay([renamed, LOG], loaded.engine(), store)
        assert counted() == start + 1
        assert set(incidents._open) == opened_before
        assert (summary.stored, summary.known) == (0, DAY_ACTIVITIES)
    finally:
        store.close()
        for incident in set(incidents._open) - opened_before:
            incidents.close_incident(*incident)


def test_an_earlier_store_with_doubled_rows_gets_record_ids_and_one_row_a_record(tmp_path):
    """A store of the previous release (tests/storage/schemas/v3.sql) that imported the school day twice, as
    itself and renamed, holds every row twice; the first start of this version gives each row its record id,
    keeps one row a record (the one whose
    source_ref sorts first) and then stores a re-import once."""

    from tests.storage.test_store import migration_alters, old_schema_store

    url = f"chdb://{tmp_path / 'store'}"
    old = old_schema_store(url, "v3")
    try:
        day = settings.load(SCHOOL_DAY / "ictwatch.yaml")
        judged = replay_frame(day.engine())
        old_columns = [r[0] for r in old._client.query(
            "SELECT name FROM system.columns WHERE database = 't' AND table = 'activity'").result_rows]
        for ref in ("school-day.pcap", "monday.pcap"):  # what the previous version stored: every row twice
            rows = judged.with_columns(source_ref=judged["source_ref"].str.replace("school-day.pcap", ref,
                                                                                     literal=True))
            frame = rows.select(old_columns).to_arrow()
            old._client.insert_arrow("t.activity", frame)
        assert old._client.command("SELECT count() FROM t.activity") == 2 * 50
        old.migrate()
        assert migration_alters(old) == []  # a second start finds nothing to do
        assert old._client.command("SELECT count() FROM t.activity") == 50
        assert old._client.command("SELECT countIf(record_id = 0) FROM t.activity") == 0
        refs = old.activity(None, None, None).get_column("source_ref")
        assert refs.str.starts_with("monday.pcap#").all()  # which came first is not recorded: "m" < "s"
        # the capture imported again after the upgrade: its five breaches (expected-breaches.csv's .pcap rows) are
        # judged anew, as v3 stored no rule's own clauses and severity, and so are its two SMTP sessions (13:10
        # and 13:20, STARTTLS), as v3 stored no mail_encryption, and the four rows of IPAD-BANK-5C's visit at
        # 09:15, which v3 gave its owner and are now the device's, in his care (`responsible`); they replace their
        # rows, the rest stay
        assert old.insert_activity(judged) == 5 + 2 + 4
        assert old.count() == 50
    finally:
        old.close()


def replay_frame(engine) -> pl.DataFrame:
    """The school day's capture judged by `engine`, as one frame (the insert layout's columns, filled)."""
    from collector.sources import open_source

    frames: list[pl.DataFrame] = []
    open_source(PCAP).run(lambda obs: frames.append(to_table([obs])))
    return engine.evaluate(pl.concat([pl.from_arrow(f) for f in frames]))


def test_a_followed_log_and_the_same_log_imported_are_the_same_records():
    """The daemon reads a followed Squid log line by line (`access.log@0:OFFSET`); `replay` reads the same
    file rotated with its vectorised reader (`access.log.1:LINE`): every line gets the same record id both
    ways, so importing yesterday's rotated log after the daemon followed it adds nothing."""
    from collector.config import CollectorSettings
    from collector.logs import formats
    from collector.sources import open_source
    from storage.records import record_ids

    parse = formats.followed("squid").follower(LOG, CollectorSettings())
    live: list = []
    for offset, line in enumerate(LOG.read_text().splitlines()):
        if not line.startswith("Jun"):  # the syslog line, which both skip
            live += parse(line, f"access.log@0:{offset}")
    imported: list[pl.DataFrame] = []
    open_source(LOG).run_batches(lambda table, kept=None: imported.append(pl.DataFrame(table)))
    followed, replayed = pl.DataFrame(to_table(live)), pl.concat(imported)
    assert followed.height == replayed.height == 8
    assert sorted(record_ids(followed)) == sorted(record_ids(replayed))
