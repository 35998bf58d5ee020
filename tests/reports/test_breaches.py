"""Breach lines, one per (activity, rule), cite what was stored when the activity was judged: each rule its
own clauses and severity, unchanged by a later policy; rows stored before the per-rule columns existed
fall back on the row's own. Unknown values are null in the JSON and words in the table."""

from __future__ import annotations

import csv
import datetime as dt
import json
from zoneinfo import ZoneInfo

from collector.observation import Observation, to_table
from ictwatch import settings
from reports import breaches, incidents
from storage.store import Store
from tests.conftest import SCHOOL_DAY, run_cli, school_config
from tests.storage.test_store import old_schema_store

LOADED = settings.load(SCHOOL_DAY / "ictwatch.yaml")
TEN = dt.datetime(2026, 6, 16, 10, 0, tzinfo=ZoneInfo("Europe/London"))



def test_each_rule_of_one_activity_is_a_line_with_its_own_clauses_and_severity(store):
    """An installer from a gambling site on James Carter's school laptop breaks blocked-content (P8, danger)
    and installer-download (P7, advisory): two lines, and only the danger rule opens an incident."""
    download = Observation(int(TEN.timestamp() * 1e6), "http", "pcap", "t.pcap#1", "10.20.10.21", 40000,
                           "192.0.2.1", 80, "tcp", "00:1b:21:aa:00:01", host="www.bet365.com",
                           url="http://www.bet365.com/setup.exe", file_ext="exe", status=200)
    store.insert_activity(LOADED.engine().evaluate(to_table([download])))
    got = breaches.lines(store, LOADED.directory, "Europe/London", "jcarter", TEN.date(), TEN.date())
    assert got.select("name", "rule", "clause", "severity").rows() == [
        ("James Carter", "blocked-content", "P8", "danger"), ("James Carter", "installer-download", "P7", "advisory")]
    opened = incidents.incidents(store, TEN - dt.timedelta(hours=1), TEN + dt.timedelta(hours=1))
    assert [(i["rule_id"], i["clauses"], i["severity"]) for i in opened] == [("blocked-content", ["P8"], "danger")]


def test_a_row_from_the_schema_before_per_rule_columns_reads_with_its_own_union(tmp_path):
    """A store made by the schema of 2026-12-07 holds a breach of two rules with the row's union of clauses
    and highest severity only; after the upgrade each of its lines shows those, not today's policy."""
    old = old_schema_store(f"chdb://{tmp_path / 'store'}", "v3")
    try:
        old._client.command("INSERT INTO t.activity (ts, user, kind, host, verdict, rule_ids, clauses, severity) "
                            "VALUES ('2026-06-16 09:00:00', 'jcarter', 'http', 'www.bet365.com', 'breach', "
                            "['blocked-content', 'installer-download'], ['P8', 'P7'], 'danger')")
        old.migrate()
        got = breaches.lines(old, LOADED.directory, "Europe/London")
    finally:
        old.close()
    assert got.select("rule", "clause", "severity").rows() == [("blocked-content", "P8,P7", "danger"),
                                                               ("installer-download", "P8,P7", "danger")]


def test_a_policy_changed_since_does_not_rewrite_what_a_breach_cited(tmp_path):
    """The school day judged by its policy, then listed with a policy in which blocked-content cites P8 and
    P11 at caution: James Carter's bet365 line still cites P8 at danger, as judged."""
    store = tmp_path / "store"
    run_cli("replay", "--config", SCHOOL_DAY / "ictwatch.yaml", SCHOOL_DAY / "squid-access.log", store=store,
            check=True)
    config = school_config(tmp_path / "school")
    policy = config.parent / "policy.yaml"
    text = policy.read_text()
    changed = text.replace("  - id: blocked-content\n    clauses: [P8]\n    severity: danger\n",
                           "  - id: blocked-content\n    clauses: [P8, P11]\n    severity: caution\n")
    assert changed != text
    policy.write_text(changed)
    proc = run_cli("breaches", "--config", config, "--user", "jcarter", "--json", store=store, check=True)
    (line,) = [json.loads(x) for x in proc.stdout.splitlines()]
    assert (line["host"], line["rule"], line["clause"], line["severity"]) == (
        "www.bet365.com", "blocked-content", "P8", "danger")


def test_a_breach_without_a_name_says_so_everywhere_and_gives_its_server(tmp_path):
    """James Carter's laptop sends mail on port 587 straight to an IPv6 address that no lookup, hello or
    proxy line named: unapproved-email-server (P5, caution). Its host is null in `breaches --json` and in
    the report's JSON, empty in the report's CSV and the table; the server has its own field and column,
    bracketed in the table, in every output alike."""
    db = Store(f"chdb://{tmp_path / 'store'}")
    try:
        db.migrate()
        mail = Observation(int(TEN.timestamp() * 1e6), "flow", "pcap", "t.pcap#7", "2001:db8:10::21", 40000,
                           "2001:db8:25::1", 587, "tcp", "00:1b:21:aa:00:01", bytes_out=900, bytes_in=300)
        db.insert_activity(LOADED.engine().evaluate(to_table([mail])))
    finally:
        db.close()
    config = SCHOOL_DAY / "ictwatch.yaml"
    store = tmp_path / "store"
    (line,) = [json.loads(x) for x in run_cli("breaches", "--config", config, "--json", store=store,
                                              check=True).stdout.splitlines()]
    assert {k: line[k] for k in ("user", "rule", "severity", "host", "server", "port", "source_ref")} == {
        "user": "jcarter", "rule": "unapproved-email-server", "severity": "caution", "host": None,
        "server": "2001:db8:25::1", "port": 587, "source_ref": "t.pcap#7"}
    table = run_cli("breaches", "--config", config, store=store, check=True).stdout.splitlines()
    assert table[1].split()[-5:] == ["unapproved-email-server", "P5", "caution", "[2001:db8:25::1]:587", "t.pcap#7"]
    header, row = table[0], table[1]
    assert row[header.index("host"):header.index("server")].strip() == ""  # no name: the host cell is empty
    ask = ["report", "--config", config, "--user", "jcarter", "--from", "2026-06-16", "--to", "2026-06-16",
           "--requested-by", "hmorgan", "--reason", "review"]
    report = json.loads(run_cli(*ask, "--format", "json", store=store, check=True).stdout)
    (breach,) = report["breaches"]
    assert (breach["host"], breach["server"]) == (None, "2001:db8:25::1")
    (csv_row,) = list(csv.DictReader(run_cli(*ask, "--format", "csv", store=store, check=True).stdout.splitlines()))
    assert (csv_row["host"], csv_row["server"]) == ("", "2001:db8:25::1")
