"""The `ictwatch` command end to end, as a person runs it: a real subprocess on the bundled school day."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import (
    SCHOOL_DAY,
    ZEEK,
    expected_breaches,
    need,
    run_cli,
    run_cli_imports,
    school_config,
    stored_breaches,
)

CONFIG = SCHOOL_DAY / "ictwatch.yaml"
PCAP = SCHOOL_DAY / "school-day.pcap"
SQUID = SCHOOL_DAY / "squid-access.log"


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    store = tmp_path_factory.mktemp("day") / "store"
    proc = run_cli("replay", "--config", CONFIG, PCAP, SQUID, store=store, check=True)
    return store, proc


def test_replay_breaches_equal_the_hand_written_expectation(replayed):
    store, _ = replayed
    assert stored_breaches(CONFIG, store) == expected_breaches(SCHOOL_DAY)


def test_replay_summary_counts_the_garbage_line(replayed):
    _, proc = replayed
    assert "replayed 2 inputs: 200 packets" in proc.stdout
    assert "8 breaches" in proc.stdout
    assert "the proxy refused 1 request" in proc.stdout  # bet365: refused, and a P8 breach
    assert "skipped 1 bad record: bad_squid_line=1" in proc.stdout
    assert "squid-access.log:7" in proc.stderr  # where, never what


def test_breaches_table_and_filters(replayed):
    store, _ = replayed
    proc = run_cli("breaches", "--config", CONFIG, "--user", "sokafor", "--from", "2026-06-16", "--to",
                   "2026-06-16", store=store, check=True)
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["time", "person", "device", "location", "rule", "clause", "severity", "host",
                                "server", "source"]
    assert len(lines) == 4 and lines[-1] == "2 breaches"
    # 09:42:10, his phone's TLS hello to Instagram's 157.240.1.174:443 (fixtures/make_school_day.py); P18 is a
    # caution rule (policy.yaml)
    assert lines[1].split()[:4] == ["2026-06-16", "09:42:10", "Sam", "Okafor"]
    assert lines[1].split()[-5:-1] == ["P18", "caution", "www.instagram.com", "157.240.1.174:443"]
    source = lines[1].split()[-1]
    assert source.startswith("school-day.pcap#")
    explained = run_cli("explain", "--config", CONFIG, source, "--kind", "tls", store=store, check=True)
    assert "personal-use-restricted-hours" in explained.stdout  # the source column is what explain takes
    other_day = run_cli("breaches", "--config", CONFIG, "--from", "2026-06-17", store=store, check=True)
    assert other_day.stdout.strip().endswith("0 breaches")


@pytest.fixture(scope="module")
def listless(tmp_path_factory):
    """The school day's configuration without its category lists: the folders the policy maps are gone."""
    config = school_config(tmp_path_factory.mktemp("listless") / "school")
    shutil.rmtree(config.parent / "categories")
    return config


@pytest.mark.parametrize("command", [["check"], ["replay", PCAP], ["run"]])
def test_lists_that_cannot_be_loaded_stop_the_commands_that_need_them(listless, command, tmp_path):
    proc = run_cli(command[0], "--config", listless, *command[1:], store=tmp_path / "store")
    assert proc.returncode == 2
    assert "categories.map.app_stores" in proc.stderr and "no UT1 list with a domains file" in proc.stderr


@pytest.mark.parametrize("command", [["breaches"], ["audit", "verify"], ["spool", "status"],
                                     ["explain", "school-day.pcap#82"]])
def test_commands_that_judge_no_traffic_never_load_the_lists(replayed, listless, command):
    """The same configuration that `check` and `replay` refuse (above) does for these, and they say what they
    say with the lists in place: they never read them (the full UT1 set takes 1.4 s and 360 MB to load)."""
    store, _ = replayed
    with_lists = run_cli(*command, "--config", CONFIG, store=store, check=True)
    without = run_cli(*command, "--config", listless, store=store, check=True)
    assert without.stdout == with_lists.stdout and without.stdout


def test_a_report_explains_its_breaches_without_the_lists(listless, tmp_path):
    """A report explains each breach from what its stored row carries (its categories among it), so the
    same report comes with or without the lists, apart from when it was made and its audit row."""
    store = tmp_path / "store"
    run_cli("replay", "--config", CONFIG, PCAP, SQUID, store=store, check=True)
    ask = ["--user", "jcarter", "--from", "2026-06-16", "--to", "2026-06-16", "--requested-by", "dpatel",
           "--reason", "review", "--format", "json"]
    reports = [json.loads(run_cli("report", "--config", config, *ask, store=store, check=True).stdout)
               for config in (CONFIG, listless)]
    for report in reports:
        for made in ("sha256", "audit_seq", "generated_at"):
            report.pop(made)
    with_lists, without = reports
    assert without == with_lists
    (bet,) = [b for b in without["breaches"] if b["host"] == "www.bet365.com"]
    assert "gambling" in bet["explanation"] and bet["rule_ids"] == ["blocked-content"]


def test_an_unknown_person_is_null_in_json_and_a_word_in_the_table(replayed):
    """The phone nobody registered, in the hall at 11:05 (fixtures/school-day/expected-breaches.csv)."""
    store, _ = replayed
    rows = [json.loads(line) for line in run_cli("breaches", "--config", CONFIG, "--json", store=store,
                                                 check=True).stdout.splitlines()]
    (hall,) = [r for r in rows if r["time"].startswith("2026-06-16T11:05:00")]
    assert {k: hall[k] for k in ("user", "name", "device", "device_type", "location", "host")} == {
        "user": None, "name": None, "device": None, "device_type": None, "location": "Hall",
        "host": "www.facebook.com"}
    table = run_cli("breaches", "--config", CONFIG, store=store, check=True).stdout.splitlines()
    (line,) = [ln for ln in table if ln.startswith("2026-06-16 11:05:00")]
    assert line.split()[2:5] == ["unknown", "unregistered", "Hall"]


def test_report_html_for_one_person(replayed, tmp_path):
    store, _ = replayed
    out = tmp_path / "r.html"
    proc = run_cli("report", "--config", CONFIG, "--user", "sokafor", "--from", "2026-06-16", "--to", "2026-06-16",
                   "--requested-by", "dpatel", "--reason", "review <b>", "-o", out, store=store, check=True)
    assert str(out) in proc.stdout
    html = out.read_text()
    assert "Sam Okafor" in html and "Deepa Patel" in html
    assert "review &lt;b&gt;" in html
    # each of the two breaches names its rule, and its explanation says why it matched (P18's reading)
    assert html.count("personal-use-restricted-hours") == 4
    assert html.count("P18 (caution), rule personal-use-restricted-hours: Personal use of a device") == 2
    assert ("Personal use is not allowed here at this time: 09:42 is in restricted hours, 08:30–15:30, and "
            "Classroom block is not a staff room or office.") in html
    # the phone by its registered MAC, the laptop by the proxy login
    assert "registered device (MAC), high confidence" in html and "proxy login, high confidence" in html
    assert "www.amazon.co.uk" in html and "PH-SOKAFOR" in html and "LT-SOKAFOR" in html
    # 13 activities: 3 visits to Instagram on the phone (a lookup, a flow and a hello each, at 08:10, 09:42
    # and 10:40), 1 to Amazon through the proxy; the 3 lookups' own UDP flows to the school's resolver are
    # the network's upkeep, in no visit, and nothing is uncategorised.
    assert "4 visits to 2 sites, about 5 minutes online" in html
    assert '<td>Social networks</td><td class="n">3</td>' in html and '<td>Shopping</td><td class="n">1</td>' in html
    assert "Uncategorised" not in html and "10.20.0.2" not in html
    assert '<td>DNS resolver and DHCP server</td><td class="n">3</td>' in html


def test_a_refused_request_reads_as_an_attempt_in_the_report(replayed, tmp_path):
    """bet365 through the proxy at 11:15, refused (squid-access.log:3): the breach's "why" says it was tried."""
    store, _ = replayed
    out = tmp_path / "jcarter.html"
    run_cli("report", "--config", CONFIG, "--user", "jcarter", "--from", "2026-06-16", "--to", "2026-06-16",
            "--requested-by", "dpatel", "--reason", "review", "-o", out, store=store, check=True)
    breaches = out.read_text().split("<h2>Breaches</h2>")[1].split("<h2>")[0]
    assert ("Tried, and refused by the school's filter: content in a category the school blocks as offensive, "
            "illegal or harmful") in breaches
    assert "Tried to open www.bet365.com at 11:15; the school&#39;s filter refused it." in breaches


def test_report_csv_and_json(replayed):
    store, _ = replayed
    common = ["report", "--config", CONFIG, "--user", "dpatel", "--from", "2026-06-16", "--to", "2026-06-16",
              "--requested-by", "hmorgan", "--reason", "annual review"]
    rows = list(csv.DictReader(run_cli(*common, "--format", "csv", store=store, check=True).stdout.splitlines()))
    assert [(r["host"], r["verdict"]) for r in rows] == [("mail.yahoo.com", "breach"),
                                                         ("outlook.office365.com", "allowed")]
    report = json.loads(run_cli(*common, "--format", "json", store=store, check=True).stdout)
    assert report["subject"]["line_manager"] == "Helen Morgan"
    assert [b["clauses"] for b in report["breaches"]] == [["P5"]]


def test_hostile_input_is_escaped_in_the_report(tmp_path):
    log = tmp_path / "evil.log"
    log.write_text('1781600000.000 10 10.20.10.21 TCP_MISS/200 10 GET http://x.example/"><script>alert(1)</script> '
                   "jcarter HIER_DIRECT/192.0.2.1 text/html\n")
    store = tmp_path / "store"
    config = school_config(tmp_path / "school")
    run_cli("replay", "--config", config, log, store=store, check=True)
    out = tmp_path / "r.html"
    run_cli("report", "--config", config, "--user", "jcarter", "--from", "2026-06-16", "--to", "2026-06-16",
            "--requested-by", "dpatel", "--reason", "r", "-o", out, store=store, check=True)
    html = out.read_text()
    # the HTML's visit names the site (the host), escaped; the JSON keeps the whole hostile URL
    assert "<script>alert" not in html and "x.<wbr>example" in html
    run_cli("report", "--config", config, "--user", "jcarter", "--from", "2026-06-16", "--to", "2026-06-16",
            "--requested-by", "dpatel", "--reason", "r", "--format", "json", "-o", out, store=store, check=True)
    (row,) = json.loads(out.read_text())["activity"]
    assert row["url"] == 'http://x.example/"><script>alert(1)</script>'


def test_decode_json_fields():
    proc = run_cli("decode", "--json", PCAP, check=True)
    objs = [json.loads(line) for line in proc.stdout.splitlines()]
    tls = next(o for o in objs if o["kind"] == "tls" and o["sni"] == "hot-videos.example")
    assert tls["ts"] == "2026-06-16T13:05:12.015000Z"  # 14:05:12 BST, after the DNS lookup's 6 ms and 3 packets
    assert (tls["src_ip"], tls["dst_ip"], tls["dst_port"], tls["proto"], tls["host"]) == (
        "10.20.2.21", "203.0.113.50", 443, "tcp", "hot-videos.example")
    flow = next(o for o in objs if o["kind"] == "flow" and o["dst_port"] == 587 and o["host"] == "smtp.gmail.com")
    assert set(flow) >= {"bytes_out", "bytes_in", "packets_out", "packets_in", "source_ref"}
    # Client: SYN, ACK, ACK(banner), EHLO, ACK(250), STARTTLS, ACK(220), hello, data, FIN, last ACK = 11;
    # server: SYN-ACK, banner, ACK, 250, ACK, 220, ACK, ACK, FIN = 9 (fixtures/make_school_day.py).
    assert (flow["packets_out"], flow["packets_in"]) == (11, 9)
    dns = next(o for o in objs if o["kind"] == "dns")
    assert (dns["qtype"], dns["rcode"], dns["answers"]) == ("A", "NOERROR", ["157.240.1.174"])


def test_decode_reads_logs_too():
    proc = run_cli("decode", "--json", SQUID, check=True)
    kinds = {json.loads(line)["kind"] for line in proc.stdout.splitlines()}
    assert kinds == {"proxy"}
    assert "1 skipped: bad_squid_line=1" in proc.stderr


@pytest.mark.parametrize("name", ["Z25_trunc__ip4-trunc.pcap", "Z26_trunc__trunc-hdr.pcap",
                                  "Z27_tcp__truncated-header.pcap", "Z28_empty.pcap"])
def test_malformed_peer_captures_replay_with_status_0(name, tmp_path):
    proc = run_cli("replay", "--config", CONFIG, need(ZEEK) / name, store=tmp_path / "s")
    assert proc.returncode == 0, proc.stderr
    if name != "Z28_empty.pcap":
        assert "skipped" in proc.stdout


def test_cut_off_pcap_keeps_what_came_before(tmp_path):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(PCAP.read_bytes()[:-25])
    proc = run_cli("decode", cut)
    assert proc.returncode == 0
    assert "truncated_capture=1" in proc.stderr
    # the day's nine HTTPS sessions and two STARTTLS hellos: the cut only hit the last ACK
    assert proc.stdout.count(" tls ") == 11


@pytest.mark.parametrize("content", [b"", b"GIF89a not a capture", b"\xa1\xb2"])
def test_unreadable_input_exits_2(tmp_path, content):
    path = tmp_path / "x.bin"
    path.write_bytes(content)
    proc = run_cli("replay", "--config", CONFIG, path, store=tmp_path / "s")
    assert proc.returncode == 2
    assert "x.bin" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_input_exits_2_before_storing_anything(tmp_path):
    proc = run_cli("replay", "--config", CONFIG, PCAP, tmp_path / "nope.log", store=tmp_path / "s")
    assert proc.returncode == 2 and "nope.log" in proc.stderr
    assert "stored" not in proc.stdout


def test_bad_config_exits_2_naming_file_field_value(tmp_path):
    school = school_config(tmp_path / "school").parent
    policy = school / "policy.yaml"
    policy.write_text(policy.read_text().replace("severity: danger", "severity: dire"))
    for command in (["check"], ["replay", PCAP]):
        proc = run_cli(command[0], "--config", school / "ictwatch.yaml", *command[1:], store=tmp_path / "s")
        assert proc.returncode == 2
        assert "policy.yaml" in proc.stderr and "rules[0].severity" in proc.stderr and "'dire'" in proc.stderr


@pytest.mark.parametrize(("listen", "why"), [
    ("127.1:8443", "not a full IPv4 address"),  # the socket would take it as 127.0.0.1
    ("0:8443", "not a full IPv4 address"),  # ... and this as every interface
    ("[::1]:8443", "IPv6"),
    ("127.0.0.1:0", "port from 1 to 65535"),
    ("127.0.0.1:70000", "port from 1 to 65535"),
    ("bad_host!:8443", "neither an address nor a host name"),
])
def test_a_listen_address_that_is_not_one_is_a_config_error(tmp_path, listen, why):
    """Issue 19, point 5: `web.listen` (and `metrics.listen`) that the loopback check or the socket could not
    read ended in a ValueError traceback; now exit 2 naming the file, the field and the value."""
    for section in ("web", "metrics"):
        config = school_config(tmp_path / section, f"{section}:\n  listen: '{listen}'\n")
        proc = run_cli("check", "--config", config)
        assert proc.returncode == 2, proc.stderr
        assert f"{section}.listen" in proc.stderr and listen in proc.stderr and why in proc.stderr
        assert "Traceback" not in proc.stderr


def test_check_says_ok_in_a_short_summary():
    """Ten lines: where things are (the audit chain's key among them), what was loaded, how packets will be
    captured, the categories no list feeds (the UK SIC ones the school did not map: policy.yaml), the policy,
    and one OK line last."""
    proc = run_cli("check", "--config", CONFIG, check=True)
    lines = proc.stdout.splitlines()
    assert len(lines) == 10 and proc.stderr == ""
    assert lines[2].startswith("audit key: ")
    assert lines[3] == "directory: 11 people; devices: 14 (3 in someone's care); locations: 5"  # the iPad banks
    assert lines[4].startswith("capture: the capture worker ")  # the path itself: tests/collector/capture
    assert lines[7] == "  no list, so nothing is found in: drugs, extremism, malware-hacking, self-harm"
    assert lines[8].endswith(": The Valley School, 23 rules, 2 waivers")
    assert lines[9] == f"OK: {CONFIG} is valid; --show prints the effective policy"


def test_check_show_prints_the_effective_policy():
    proc = run_cli("check", "--config", CONFIG, "--show", check=True)
    assert "11 people; devices: 14 (3 in someone's care); locations: 5" in proc.stdout
    assert '"reading": "breaks_only"' in proc.stdout
    assert proc.stdout.splitlines()[-1] == f"OK: {CONFIG} is valid"
    # the UK Safer Internet Centre categories the school did not map come from the built-in table, and
    # the network manager is told which of them no list feeds
    assert "  pornography (UK SIC): adult, mixed_adult\n" in proc.stdout
    assert "  violence (UK SIC): agressif\n" in proc.stdout
    assert "  self-harm (UK SIC): no list: nothing is found in this category\n" in proc.stdout


def test_decode_into_a_closed_pipe_is_quiet():
    """`ictwatch decode ... | head`: the reader stops early; no traceback, no skipped frames."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    proc = subprocess.run(f"{sys.executable} -m ictwatch.cli decode {PCAP} | head -1", shell=True, cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ})
    assert proc.stdout.count("\n") == 1
    assert "Traceback" not in proc.stderr and "decoder_error" not in proc.stderr


def test_json_logs_name_where_and_why_never_what(tmp_path):
    """With ICTWATCH_LOG_FORMAT=json (as the systemd unit sets) each log line is one JSON object; the bad
    proxy-log line is named by place and reason, and nothing from its content appears."""
    bad = tmp_path / "access.log"
    bad.write_text(SQUID.read_text() + "this line has jcarter and www.secret-site.example in it\n")
    proc = run_cli("replay", "--config", CONFIG, bad, store=tmp_path / "store", env={"ICTWATCH_LOG_FORMAT": "json"},
                   check=True)
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert {"ts", "level", "logger", "msg"} <= set(lines[0])
    skipped = [ln["msg"] for ln in lines if ln["level"] == "warning"]
    assert "skipped access.log:7 (bad_squid_line, 1 so far)" in skipped
    assert "secret-site" not in proc.stderr and "jcarter" not in proc.stderr


@pytest.mark.parametrize(("args", "named"), [
    (["decode", "--log-timezone", "Mars/Olympus", str(SQUID)], "--log-timezone: 'Mars/Olympus'"),
    (["ddl", "--database", "a b"], "--database: 'a b'"),
    (["ddl", "--cluster", "x;DROP"], "--cluster: 'x;DROP'"),
])
def test_a_usage_error_names_the_option_and_exits_2_without_a_traceback(args, named):
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"ictwatch: {named}") and "Traceback" not in proc.stderr


ASK_SOKAFOR = ["--user", "sokafor", "--requested-by", "dpatel", "--reason", "review"]


@pytest.mark.parametrize(("args", "said"), [
    (["breaches", "--from", "2026-13-01"], "argument --from: expected YYYY-MM-DD, got '2026-13-01'"),
    (["breaches", "--to", "16/06/2026"], "argument --to: expected YYYY-MM-DD, got '16/06/2026'"),
    (["breaches", "--from", "20260616"], "argument --from: expected YYYY-MM-DD, got '20260616'"),
    (["breaches", "--from", "0001-01-01"], "argument --from: 0001-01-01 is out of range: dates run from 1970-01-01"),
    (["breaches", "--to", "9999-12-31"], "argument --to: 9999-12-31 is out of range: dates run from 1970-01-01"),
    (["check-ipads", "--date", "9999-12-31"], "argument --date: 9999-12-31 is out of range"),
    (["report", *ASK_SOKAFOR, "--from", "0001-01-01", "--to", "2026-06-16"], "argument --from: 0001-01-01 is out"),
    (["report", *ASK_SOKAFOR, "--from", "2026-06-16", "--to", "9999-12-31"], "argument --to: 9999-12-31 is out"),
    (["grant", "--by", "hmorgan", "--to", "gwilliams", "--subject", "sokafor", "--reason", "cover"],
     "argument --to: expected YYYY-MM-DD, got 'gwilliams'; who may request the report is given with --for"),
])
def test_a_date_that_cannot_be_used_exits_2_saying_what_was_expected(args, said, tmp_path):
    proc = run_cli(args[0], "--config", CONFIG, *args[1:], store=tmp_path / "store")
    assert proc.returncode == 2
    assert f"error: {said}" in proc.stderr
    assert "Traceback" not in proc.stderr and "fromisoformat" not in proc.stderr


def test_the_first_and_last_dates_the_store_holds_are_accepted(replayed):
    store, _ = replayed
    proc = run_cli("breaches", "--config", CONFIG, "--from", "1970-01-01", "--to", "2099-12-31", store=store,
                   check=True)
    assert proc.stdout.splitlines()[-1] == "8 breaches"


@pytest.mark.parametrize("command", [["breaches"], ["report", *ASK_SOKAFOR]])
def test_a_period_that_ends_before_it_starts_exits_2_and_records_nothing(replayed, command):
    store, _ = replayed
    before = run_cli("audit", "verify", "--config", CONFIG, store=store, check=True).stdout
    proc = run_cli(command[0], "--config", CONFIG, *command[1:], "--from", "2026-06-17", "--to", "2026-06-16",
                   store=store)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("ictwatch: --from 2026-06-17 --to 2026-06-16: the period is empty: it starts on "
                           "2026-06-17 and ends before that, on 2026-06-16\n")
    assert run_cli("audit", "verify", "--config", CONFIG, store=store, check=True).stdout == before


def test_a_report_of_a_username_nobody_has_exits_2_and_is_recorded(replayed):
    """A mistyped username (in neither the directory nor the store) gets no sealed, empty report: the
    headteacher is told, exit 2, and the attempt is in the audit chain; a line manager, who may not have
    that report whoever it is, is refused on those grounds first (exit 3), learning nothing of the store."""
    store, _ = replayed
    ask = ["--user", "sokafr", "--from", "2026-06-16", "--to", "2026-06-16", "--reason", "review"]
    head = run_cli("report", "--config", CONFIG, *ask, "--requested-by", "hmorgan", store=store)
    assert head.returncode == 2 and head.stdout == ""
    assert head.stderr.startswith("ictwatch: --user: no such person in the directory, and no activity stored under "
                                  "that username: check the spelling (recorded as audit row #")
    manager = run_cli("report", "--config", CONFIG, *ask, "--requested-by", "dpatel", store=store)
    assert manager.returncode == 3 and "not the subject's line manager or the headteacher" in manager.stderr
    shown = run_cli("audit", "show", "--config", CONFIG, "--requested-by", "hmorgan", store=store, check=True)
    rows = [line.split(None, 7)[3:] for line in shown.stdout.splitlines() if " sokafr " in line]
    assert rows == [["hmorgan", "report", "refused", "sokafr", "no such person in the directory, and no activity "
                     "stored under that username; reason: review"],
                    ["dpatel", "report", "refused", "sokafr", "not the subject's line manager or the headteacher; "
                     "reason: review"]]


def test_a_report_of_someone_the_directory_lacks_but_the_store_holds_is_made(tmp_path):
    """A supply teacher's proxy login that the directory never listed (as a leaver removed from it): the
    headteacher still gets the report, naming the login without a name."""
    log = tmp_path / "access.log"
    log.write_text("1781600000.000 10 10.20.10.21 TCP_MISS/200 10 GET http://www.bbc.co.uk/news supply7 "
                   "HIER_DIRECT/192.0.2.1 text/html\n")
    store = tmp_path / "store"
    run_cli("replay", "--config", CONFIG, log, store=store, check=True)
    proc = run_cli("report", "--config", CONFIG, "--user", "supply7", "--from", "2026-06-16", "--to", "2026-06-16",
                   "--requested-by", "hmorgan", "--reason", "review", "--format", "json", store=store, check=True)
    report = json.loads(proc.stdout)
    assert report["subject"] == {"username": "supply7", "name": None, "role": None, "line_manager": None}
    assert [a["url"] for a in report["activity"]] == ["http://www.bbc.co.uk/news"]


def in_terminal(*args: str | Path, store: Path) -> tuple[int, str, str]:
    """(exit status, what reached the terminal, stderr) of `ictwatch` run with its standard output on a
    pseudo-terminal, as a person at a shell runs it."""
    import os
    import pty
    import subprocess
    import sys
    import threading

    from tests.conftest import ROOT

    primary, secondary = pty.openpty()
    shown = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the terminal's last writer has gone
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    proc = subprocess.run([sys.executable, "-m", "ictwatch.cli", *map(str, args)], stdout=secondary,
                          stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "ICTWATCH_STORAGE_URL": f"chdb://{store}"})
    os.close(secondary)
    reader.join(timeout=30)
    os.close(primary)
    return proc.returncode, shown.decode(), proc.stderr


def test_a_report_is_not_printed_into_a_terminal_unless_asked_for(replayed):
    """Without -o, a report goes to standard output only when that is a pipe or a file (as every test
    above reads it); into a terminal it is refused before anything is recorded, and `-o -` prints it."""
    store, _ = replayed
    ask = ["report", "--config", CONFIG, *ASK_SOKAFOR, "--from", "2026-06-16", "--to", "2026-06-16"]
    before = run_cli("audit", "verify", "--config", CONFIG, store=store, check=True).stdout
    status, shown, stderr = in_terminal(*ask, store=store)
    assert (status, shown) == (2, "")
    assert stderr == ("ictwatch: -o FILE: a report is confidential and is not printed into a terminal; write it to "
                      "a file (or give `-o -` to print it all the same)\n")
    assert run_cli("audit", "verify", "--config", CONFIG, store=store, check=True).stdout == before
    status, shown, _ = in_terminal(*ask, "-o", "-", store=store)
    assert status == 0 and shown.startswith("<!doctype html>") and "Sam Okafor" in shown


def test_decode_text_puts_ipv6_endpoints_in_brackets(tmp_path):
    """A lookup over IPv6: `[address]:port`, so the port is not read as the address's last group."""
    from scapy.all import DNS, DNSQR, DNSRR, UDP, Ether, IPv6, wrpcap

    ask = DNS(id=7, rd=1, qd=DNSQR(qname="www.example.org", qtype="AAAA"))
    answer = DNS(id=7, qr=1, rd=1, ra=1, qd=DNSQR(qname="www.example.org", qtype="AAAA"),
                 an=DNSRR(rrname="www.example.org", type="AAAA", rdata="2001:db8:80::1"))
    packets = [Ether() / IPv6(src="2001:db8:10::21", dst="2001:db8::53") / UDP(sport=40000, dport=53) / ask,
               Ether() / IPv6(src="2001:db8::53", dst="2001:db8:10::21") / UDP(sport=53, dport=40000) / answer]
    for i, p in enumerate(packets):
        p.time = 1781600000 + i / 100
    wrpcap(str(tmp_path / "v6.pcap"), packets)
    lines = run_cli("decode", tmp_path / "v6.pcap", check=True).stdout.splitlines()
    assert any(" dns   [2001:db8:10::21]:40000 > [2001:db8::53]:53 www.example.org" in line for line in lines), lines


def test_a_name_off_the_network_cannot_drive_the_terminal(tmp_path):
    """A lookup whose name carries an xterm title sequence (ESC ] 0 ; … BEL) and a screen clear (ESC [ 2 J):
    `decode` prints the name with each control character as \\xNN, never the raw bytes."""
    from scapy.all import DNS, DNSQR, IP, UDP, Ether, wrpcap

    name = b"\x1b]0;pwned\x07\x1b[2Jevil.example"
    packet = Ether() / IP(src="10.20.10.21", dst="10.20.0.2") / UDP(sport=40000, dport=53) / DNS(
        id=9, rd=1, qd=DNSQR(qname=name))
    packet.time = 1781600000
    wrpcap(str(tmp_path / "esc.pcap"), [packet])
    out = run_cli("decode", tmp_path / "esc.pcap", check=True).stdout
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b]0;pwned\\x07\\x1b[2jevil.example" in out  # names are lower-cased, as DNS compares them


def test_text_for_the_terminal_escapes_control_characters_only():
    from reports.words import for_terminal

    assert for_terminal("café\tbar\x9b\x7f\nnext") == "café\\x09bar\\x9b\\x7f\\x0anext"
    assert for_terminal("a\u2028b\u202ec\u2066d\u200fe\u00e9") == "a\\u2028b\\u202ec\\u2066d\\u200fe\u00e9"


ENGINE = {"chdb", "clickhouse_connect"}
"""The embedded ClickHouse and its client: 70 MB and 0.3 s of a command's start-up."""


@pytest.mark.parametrize(("args", "unused"), [
    (["--help"], {*ENGINE, "polars", "pyarrow", "numpy", "pandas", "pydantic"}),
    (["check", "--config", CONFIG], {*ENGINE, "pandas"}),
])
def test_help_and_check_do_not_open_the_engine(args, unused):
    proc, imported = run_cli_imports(*args)
    assert proc.returncode == 0, proc.stderr
    assert not imported & unused


@pytest.mark.parametrize("args", [
    ["breaches", "--config", CONFIG, "--from", "2026-06-16", "--to", "2026-06-16"],
    ["report", "--config", CONFIG, *ASK_SOKAFOR, "--from", "2026-06-16", "--to", "2026-06-16", "-o", "-"],
])
def test_no_command_imports_pandas(replayed, args):
    """pyarrow imports pandas (0.2 s, 30 MB) the first time it turns Python values into Arrow, unless refused."""
    store, _ = replayed
    proc, imported = run_cli_imports(*args, store=store)
    assert proc.returncode == 0, proc.stderr
    assert "pyarrow" in imported and "pandas" not in imported


def test_a_replay_does_not_import_pandas(tmp_path):
    proc, imported = run_cli_imports("replay", "--config", CONFIG, PCAP, store=tmp_path / "store")
    assert proc.returncode == 0, proc.stderr
    assert "pyarrow" in imported and "pandas" not in imported

