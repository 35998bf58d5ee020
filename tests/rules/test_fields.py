"""The condition field table: its docs, its columns, the kinds it says fill them, and `check`'s warnings."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from typing import get_args

import polars as pl
import pytest

from collector.observation import to_table
from collector.sources import open_source
from ictwatch import settings
from rules.absence import absences, deadline, expected
from rules.config import Role, load_model
from rules.engine import compile_condition, with_windows
from rules.fields import FIELDS, P2P_ONE_OF, Seen, Window
from rules.policy import Condition, Policy, names_people, never_filled
from storage.schema import ACTIVITY
from tests.conftest import ROOT, SCHOOL_DAY, policy_refused, run_cli, school_config


@pytest.fixture(scope="module")
def day():
    """The school day's observations (capture and proxy log) and one iPad absence, and their activities."""
    loaded = settings.load(SCHOOL_DAY / "ictwatch.yaml")
    observations = []
    for name in ("school-day.pcap", "squid-access.log"):
        open_source(SCHOOL_DAY / name).run(observations.append)
    date = dt.date(2026, 6, 16)
    _, by = deadline(loaded.policy, date)
    observations += absences(expected(loaded.devices.devices, date)[:1], set(), by, date)
    table = to_table(observations)
    return pl.from_arrow(table), loaded.engine().evaluate(table)


def test_the_committed_docs_are_what_the_table_writes():
    written = subprocess.run([sys.executable, "-m", "rules.fields"], capture_output=True, text=True, cwd=ROOT,
                             check=True).stdout
    assert (ROOT / "docs" / "policy-fields.md").read_text() == written, (
        "docs/policy-fields.md is stale: python -m rules.fields > docs/policy-fields.md")


def test_every_field_reads_a_column_of_the_activity_table():
    """`explain` evaluates conditions again over stored rows: each column is stored, or worked out from
    the calendar by `with_windows` as explain does."""
    policy = settings.load(SCHOOL_DAY / "ictwatch.yaml").policy
    one = pl.DataFrame({"ts": [dt.datetime(2026, 6, 16, 9, tzinfo=dt.UTC)], "location_kind": ["office"]})
    worked_out = set(with_windows(one, policy).columns) - set(one.columns)
    read = {f.column for f in FIELDS if f.column is not None}
    assert read - {c.name for c in ACTIVITY} == {"personal_use_allowed"}
    assert {"personal_use_allowed", *get_args(Window)} <= worked_out


def test_the_policy_model_has_each_field_with_its_description():
    assert list(Condition.model_fields) == [f.key for f in FIELDS] + ["all", "any", "not_"]
    assert all(Condition.model_fields[f.key].description == f.description for f in FIELDS)


def test_no_kind_outside_a_fields_list_fills_its_column(day):
    """What the table says against what the decoders made of the school day: a column the observation
    carries is unset on every row of a kind the field does not list."""
    observations, _ = day
    assert set(observations["kind"]) == {"dns", "tls", "http", "email", "flow", "proxy", "absence"}
    checked, strays = 0, {}
    for field in FIELDS:
        if field.column not in observations.columns or field.match is P2P_ONE_OF:
            continue  # dht_method reads `method`, which HTTP fills too: its test itself holds only on p2p
        column = pl.col(field.column)
        unset = column.is_null() if field.unset is None else column == field.unset
        others = observations.filter(~pl.col("kind").is_in(field.kinds) & ~unset)
        strays[field.key] = sorted(set(others["kind"]))
        checked += 1
    assert checked == 13  # kind, host, port, proxy_denied, http_status, proxy_result, cleartext_credentials,
    # mail_encryption, file_ext, bytes_*, dhcp_type, info_hash
    assert strays == {key: [] for key in strays}


EXAMPLES = {
    "kind": ["dns"], "category": ["gambling"], "host": ["example.com"], "port": [443],
    "device_type": ["school_ipad"], "device_owner": "school", "device_registered": True, "role": ["teacher"],
    "group": ["year6"], "location_kind": ["classroom"], "window": ["break"], "personal_use_allowed": False,
    "proxy_denied": True, "http_status": [407], "proxy_result": ["TCP_DENIED"], "cleartext_credentials": True,
    "mail_encryption": ["none"], "file_ext": ["exe"], "bytes_out_min": 1000, "bytes_in_min": 1000,
    "device_status": ["lost"], "owner_left": True, "mac_randomised": True, "dhcp_type": ["ACK"],
    "dht_method": ["get_peers"], "info_hash": ["6d6e6f707172737475767778797a313233343536"],
}


def test_each_field_compiles_to_a_test_of_every_activity(day):
    """Over the engine's own output, as the rules are evaluated: a true or false for every row."""
    _, activities = day
    assert set(EXAMPLES) == {f.key for f in FIELDS}
    frame = with_windows(activities, settings.load(SCHOOL_DAY / "ictwatch.yaml").policy)
    for key, value in EXAMPLES.items():
        result = frame.select(compile_condition(Condition.model_validate({key: value}))).to_series()
        assert (result.dtype, result.len(), result.null_count()) == (pl.Boolean, activities.height, 0), key


# Squid's lines for one morning (native format), and which of them the conditions below hold for.
PROXY_LINES = [
    "1781602200.000 0 10.20.10.21 TCP_DENIED/407 3510 GET http://dl.example.net/Setup.exe - HIER_NONE/- text/html",
    "1781602200.100 812 10.20.10.21 TCP_MISS/200 1843200 GET http://dl.example.net/Setup.exe jcarter "
    "HIER_DIRECT/203.0.113.80 application/x-msdownload",
    "1781602201.000 0 10.20.10.21 TCP_DENIED/403 3429 CONNECT www.bet365.com:443 jcarter HIER_NONE/- text/html",
    "1781602202.000 0 10.20.10.21 TCP_DENIED_REPLY/403 3439 GET http://dl.example.net/tool.exe jcarter "
    "HIER_DIRECT/203.0.113.80 text/html",
    "1781602203.000 31 10.20.10.21 TCP_MISS/502 3412 GET http://down.example/ jcarter HIER_NONE/- text/html",
]


@pytest.mark.parametrize(("condition", "lines"), [
    ({"http_status": [407]}, [1]),  # the login challenges
    ({"proxy_result": ["TCP_DENIED"]}, [1, 3]),  # Squid's tag, whatever the status
    ({"proxy_result": ["TCP_DENIED"], "not": {"http_status": [407]}}, [3]),  # a school's own exception
    ({"proxy_denied": True}, [3, 4]),  # the blocked attempts: a refusal, not a challenge
    ({"http_status": [500, 502, 503, 504]}, [5]),
    ({"kind": ["proxy"], "file_ext": ["exe"]}, [1, 2, 4]),
    ({"file_ext": ["exe"], "not": {"http_status": [401, 407]}, "proxy_denied": False}, [2]),  # really downloaded
])
def test_proxy_conditions_on_squids_lines(condition, lines):
    from collector.logs.squid import parse_line

    table = to_table([parse_line(line, f"access.log:{n}") for n, line in enumerate(PROXY_LINES, 1)])
    activities = settings.load(SCHOOL_DAY / "ictwatch.yaml").engine().evaluate(table)
    held = activities.select(compile_condition(Condition.model_validate(condition)).alias("held"), "source_ref")
    assert [int(ref.split(":")[1]) for ref in held.filter("held")["source_ref"]] == lines


@pytest.mark.parametrize(("key", "value", "words"), [
    ("window", ("break", "restricted_hours"), "falls in break or restricted_hours"),
    ("host", ("example.com", "example.org"), "host is one of example.com, example.org or under one"),
    ("bytes_in_min", 25_000_000, "the client received at least 25,000,000 bytes"),
    ("role", (Role.teacher, Role.office), "role is one of teacher, office"),
    ("proxy_denied", True, "proxy denied is true"),
    ("http_status", (401, 407), "http status is one of 401, 407"),
    ("proxy_result", ("TCP_DENIED", "TCP_DENIED_REPLY"), "proxy result is one of TCP_DENIED, TCP_DENIED_REPLY"),
    ("device_owner", "personal", "device owner is personal"),
])
def test_explain_words(key, value, words):
    (field,) = [f for f in FIELDS if f.key == key]
    assert field.says(value) == words


# Tuesday 16 June 2026, a school day: 12:20 BST (11:20 UTC) is in lunch, 12:15-13:00, and in restricted hours.
LUNCH = {"ts": dt.datetime(2026, 6, 16, 11, 20, tzinfo=dt.UTC), "school_day": True, "restricted_hours": True,
         "break": True, "location": "Staff room", "location_kind": "staff_room", "device": "PH-SOKAFOR"}
AFTER_SCHOOL = LUNCH | {"ts": dt.datetime(2026, 6, 16, 15, 10, tzinfo=dt.UTC), "restricted_hours": False,
                        "break": False}  # 16:10 BST
SATURDAY = LUNCH | {"ts": dt.datetime(2026, 6, 20, 9, 0, tzinfo=dt.UTC), "school_day": False,
                    "restricted_hours": False, "break": False}
IN_CLASS = LUNCH | {"ts": dt.datetime(2026, 6, 16, 8, 42, tzinfo=dt.UTC), "break": False,  # 09:42 BST
                    "location": "Classroom block", "location_kind": "classroom"}
FINDINGS = [  # (key, the rule's value, whether it held, the activity beyond LUNCH, the words), worked out by hand
    ("kind", ("tls", "proxy"), True, {"kind": "proxy"}, "this was a web request through the school's proxy"),
    ("kind", ("flow",), False, {"kind": "dns"},
     "this was a DNS lookup (the device asked for a site's address), not a connection (the record of what it "
     "sent and received)"),
    ("category", ("social_networks", "streaming"), True,
     {"categories": ["social_networks"], "host": "www.instagram.com"},
     "the site, www.instagram.com, is in the school's list 'social networks'"),
    ("category", ("webmail",), False, {"categories": [], "host": "www.bbc.co.uk"},
     "the site, www.bbc.co.uk, is in none of the school's lists (the rule names 'webmail')"),
    ("host", ("office365.com", "gmail.com"), True, {"host": "smtp.gmail.com"},
     "the server, smtp.gmail.com, is under gmail.com"),
    ("host", ("office365.com",), False, {"host": "smtp.gmail.com"},
     "the server, smtp.gmail.com, is not office365.com, nor under it"),
    ("port", (25, 587), False, {"dst_port": 443}, "the server's port is 443, not 25 or 587"),
    ("device_type", ("school_ipad",), True, {"device": "IPAD-BANK-5C", "device_type": "school_ipad"},
     "the device, IPAD-BANK-5C, is a school iPad"),
    ("device_type", ("school_ipad",), False, {"device": "", "device_type": ""},
     "the device is not in the register, so its type is not known"),
    ("device_owner", "school", False, {"device_owner": "personal"}, "the device, PH-SOKAFOR, is a personal device"),
    ("device_registered", False, True, {"device": "", "device_registered": False},
     "the device register does not know this device"),
    ("role", (Role.teacher, Role.office), False, {"role": "teaching_assistant"},
     "the person is a teaching assistant, not a teacher or office staff"),
    ("group", ("year5", "year6"), True, {"groups": ["year5"]}, "the person is in the directory group 'year5'"),
    ("location_kind", ("guest",), False, {}, "Staff room is a staff room, not the guest network"),
    ("window", ("break",), True, {}, "12:20 is in lunch, 12:15–13:00"),
    ("window", ("restricted_hours",), False, AFTER_SCHOOL, "16:10 is outside restricted hours, 08:30–15:30"),
    ("window", ("school_day",), False, SATURDAY, "Saturday 20 June 2026 is a weekend"),
    ("personal_use_allowed", True, True, {},
     "personal use is allowed here at this time: Staff room is a staff room, and 12:20 is in lunch, 12:15–13:00"),
    ("personal_use_allowed", False, True, IN_CLASS,
     "personal use is not allowed here at this time: 09:42 is in restricted hours, 08:30–15:30, and Classroom "
     "block is not a staff room or office"),
    ("proxy_denied", True, True, {"denied": True}, "the school's filter refused the request"),
    ("cleartext_credentials", True, False, {"cleartext_credentials": False},
     "no password was seen crossing the network readable"),
    ("mail_encryption", ("none",), True, {"mail_encryption": "none"}, "the mail session was in clear (no TLS)"),
    ("mail_encryption", ("none",), False, {"mail_encryption": "starttls"},
     "the mail session was protected by TLS (STARTTLS), not in clear (no TLS)"),
    ("mail_encryption", ("none", "unknown"), False, {"mail_encryption": "implicit_tls"},
     "the mail session was protected by TLS from its first byte (implicit TLS), not in clear (no TLS) or of "
     "unknown protection (the capture did not show how it began or went on)"),
    ("mail_encryption", ("none",), False, {"mail_encryption": "unknown"},
     "the mail session was of unknown protection (the capture did not show how it began or went on), not in "
     "clear (no TLS)"),
    ("mail_encryption", ("none",), False, {"mail_encryption": ""}, "this was not a mail session (SMTP, IMAP or POP3)"),
    ("file_ext", ("exe", "msi"), True, {"file_ext": "exe"}, "the download is a .exe file, one of .exe or .msi"),
    ("http_status", (407,), True, {"status": 407}, "the answer's HTTP status was 407 (the proxy asked for a login)"),
    ("http_status", (403, 404), False, {"status": 200},
     "the answer's HTTP status was 200 (the page or file was served), not 403 (refused) or 404 (not found)"),
    ("http_status", (403,), False, {"status": None}, "no HTTP status was seen"),
    ("proxy_result", ("TCP_DENIED",), True, {"proxy_action": "TCP_DENIED"},
     "the proxy's result code was TCP_DENIED"),
    ("proxy_result", ("TCP_DENIED",), False, {"proxy_action": "TCP_TUNNEL"},
     "the proxy's result code was TCP_TUNNEL, not TCP_DENIED"),
    ("bytes_out_min", 5_000_000, True, {"bytes_out": 6_004_378},
     "the device sent 6.0 MB (6,004,378 bytes), at least the 5.0 MB (5,000,000 bytes) the rule sets"),
    ("bytes_in_min", 25_000_000, False, {"bytes_in": None}, "how much the device received is not known"),
    ("bytes_out_min", 20_000_000, False, {"kind": "proxy", "bytes_out": None},  # issue 20, point 2
     "how much the device sent is not known: the proxy's log has no request sizes (docs/log-formats.md)"),
    ("device_status", ("lost",), True, {"device": "IPAD-BANK-3B", "device_status": "lost"},
     "the device register records IPAD-BANK-3B as lost"),
    ("owner_left", True, True, {"device": "PH-KWHITE", "owner_left": True},
     "the owner of PH-KWHITE had left the school by then"),
    ("mac_randomised", False, False, {"device": "", "mac_randomised": True},
     "the device used a private (randomised) Wi-Fi address"),
    ("dhcp_type", ("ACK", "REPLY"), True, {"dhcp_type": "ACK"},
     "the DHCP message was an ACK (the network gave the device an address)"),
    ("dht_method", ("get_peers",), True, {"kind": "p2p", "method": "get_peers"},
     "the BitTorrent DHT message was a get_peers query (asking who has a torrent: the torrent sought)"),
    ("dht_method", ("get_peers", "announce_peer"), False, {"kind": "p2p", "method": "response"},
     "the BitTorrent DHT message was a response, not a get_peers query (asking who has a torrent: the torrent "
     "sought) or an announce_peer query (telling the network the device has a torrent)"),
    ("dht_method", ("get_peers",), False, {"kind": "http", "method": "GET"}, "this was not a BitTorrent DHT message"),
    ("info_hash", ("6d6e6f707172737475767778797a313233343536",), True,
     {"kind": "p2p", "info_hash": "6d6e6f707172737475767778797a313233343536"},
     "the torrent sought has the info-hash 6d6e6f707172737475767778797a313233343536, one the rule names"),
    ("info_hash", ("00" * 20, "ff" * 20), False,
     {"kind": "p2p", "info_hash": "6d6e6f707172737475767778797a313233343536"},
     "the torrent sought has the info-hash 6d6e6f707172737475767778797a313233343536, none of the 2 the rule names"),
    ("info_hash", ("00" * 20,), False, {"kind": "p2p", "info_hash": None}, "no torrent was named"),
]


@pytest.mark.parametrize(("key", "value", "held", "row", "words"), FINDINGS)
def test_each_field_says_what_the_activity_showed(key, value, held, row, words):
    (field,) = [f for f in FIELDS if f.key == key]
    seen = Seen(LUNCH | row, settings.load(SCHOOL_DAY / "ictwatch.yaml").policy)
    assert field.finding(value, held, seen) == words


def test_a_policy_that_allows_personal_use_nowhere_is_said_so():
    """`personal_use.allowed_locations: []` is a valid reading (no place at all); its words once raised an
    IndexError for every activity in restricted hours."""
    policy = settings.load(SCHOOL_DAY / "ictwatch.yaml").policy
    nowhere = policy.model_copy(update={"personal_use": policy.personal_use.model_copy(
        update={"allowed_locations": ()})})
    (field,) = [f for f in FIELDS if f.key == "personal_use_allowed"]
    assert field.finding(False, True, Seen(IN_CLASS, nowhere)) == (
        "personal use is not allowed at this time: 09:42 is in restricted hours, 08:30–15:30, and the policy "
        "names no place where it is")


def test_every_field_has_its_own_words():
    """A field without them would fall back on its test and the raw value ("proxy denied is true: yes, it is
    True"), which a report must not show."""
    assert {key for key, *_ in FINDINGS} == {f.key for f in FIELDS}
    assert [f.key for f in FIELDS if f.tells is None] == []


POLICY = """\
school: Test School
calendar:
  terms: [{start: 2026-09-01, end: 2026-12-18}]
categories: {lists: categories}
rules:
  - id: the-rule
    clauses: [P7]
    severity: advisory
    message: a test
    when:
"""  # the condition starts on line 11

NEVER = ", so this condition never holds"


@pytest.mark.parametrize(("condition", "warnings"), [
    ("all:\n  - kind: [dns]\n  - file_ext: [exe]", ["13: rule the-rule: field file_ext is never filled for kind dns"]),
    ("kind: [dns, flow]\nfile_ext: [exe]", ["12: rule the-rule: field file_ext is never filled for kinds dns, flow"]),
    ("kind: [dns, http]\nfile_ext: [exe]", []),
    ("kind: [proxy]\nfile_ext: [exe]", []),  # a proxied download has one too
    ("kind: [tls]\nhttp_status: [407]", ["12: rule the-rule: field http_status is never filled for kind tls"]),
    ("kind: [http]\nproxy_result: [TCP_DENIED]",
     ["12: rule the-rule: field proxy_result is never filled for kind http"]),
    ("kind: [dns]\ncleartext_credentials: true",
     ["12: rule the-rule: field cleartext_credentials is never filled for kind dns"]),
    ("kind: [dns]\ncleartext_credentials: false", []),  # false on every DNS lookup: it holds
    ("kind: [flow]\nmail_encryption: [none]",  # the mail row is `email`; a flow does not say
     ["12: rule the-rule: field mail_encryption is never filled for kind flow"]),
    ("kind: [http]\ndht_method: [get_peers]",  # the method column is HTTP's there, never a DHT message
     ["12: rule the-rule: field dht_method is never filled for kind http"]),
    ("kind: [p2p]\ndht_method: [get_peers]\ninfo_hash: [6D6E6F707172737475767778797A313233343536]", []),
    ("kind: [dns]\nnot: {file_ext: [exe]}", []),  # the `not` always holds for DNS, so the rule does
    ("file_ext: [exe]", []),  # no kind named
    ("not: {kind: [dns], file_ext: [exe]}", ["11: rule the-rule: field file_ext is never filled for kind dns"]),
    ("all:\n  - any: [{kind: [dns]}, {kind: [proxy]}]\n  - dhcp_type: [ACK]",
     ["13: rule the-rule: field dhcp_type is never filled for kinds dns, proxy"]),
    ("any: [{kind: [dns]}, {dhcp_type: [ACK]}]", []),  # the second branch names no kind
    ("kind: [absence]\nport: [80]\nhost: [example.com]",  # in the table's order: host, then port
     ["13: rule the-rule: field host is never filled for kind absence",
      "12: rule the-rule: field port is never filled for kind absence"]),
])
def test_check_warns_of_a_field_no_named_kind_fills(tmp_path, condition, warnings):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY + "".join(f"      {line}\n" for line in condition.splitlines()))
    assert never_filled(load_model(path, Policy), path) == [f"{path}:{w}{NEVER}" for w in warnings]


def test_check_warns_of_a_message_or_reason_that_names_someone(tmp_path):
    """A report shows its subject's breaches' messages and their own waivers' reasons: naming anyone else there
    would put that person in the report. The warning points at the directory entry, not the name."""
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.replace("message: a test", "message: against what Helen Morgan agreed with the white list")
                    + "      kind: [dns]\n"
                    + "waivers:\n"
                    + "  - {id: w-a, users: [jcarter], rules: [the-rule], start: 2026-10-28T13:00, "
                      "end: 2026-10-28T15:30, granted_by: dpatel, reason: booking from jcarter's phone}\n"
                    + "  - {id: w-b, groups: [year6], rules: [the-rule], start: 2026-10-28T13:00, "
                      "end: 2026-10-28T15:30, granted_by: dpatel, reason: as RBAKER asked}\n"
                    + "  - {id: w-c, users: [jcarter, sokafor], rules: [the-rule], start: 2026-10-28T13:00, "
                      "end: 2026-10-28T15:30, granted_by: dpatel, reason: cover for Sam Okafor}\n")
    # Helen Morgan is people[0], rbaker [7], Sam Okafor [5]: w-c is James Carter's too, and his report would
    # show its reason
    directory = settings.load(SCHOOL_DAY / "ictwatch.yaml").directory
    said = "of the staff directory; reports show it to people who may not see that person's data"
    assert names_people(load_model(path, Policy), directory, path) == [
        f"{path}:9: rules[0].message names people[0] {said}", f"{path}:14: waivers[1].reason names people[7] {said}",
        f"{path}:15: waivers[2].reason names people[5] {said}"]


@pytest.mark.parametrize(("condition", "message"), [
    ("colour: [red]", "policy.yaml:11: rules[0].when.colour: ['red']: Extra inputs are not permitted"),
    ("bytes_out_min: -1",
     "policy.yaml:11: rules[0].when.bytes_out_min: -1: Input should be greater than or equal to 0"),
    ("kind: [dns, tlss]", "policy.yaml:11: rules[0].when.kind: ['dns', 'tlss']: unknown activity kind 'tlss'; kinds "
     "are dns, tls, quic, http, email, dhcp, p2p, flow, proxy, login, absence"),
    ("all: [{dhcp_type: [ack]}]", "policy.yaml:11: rules[0].when.all[0].dhcp_type[0]: 'ack': Input should be 'ACK', "
     "'ADVERTISE', 'CONFIRM', 'DECLINE', 'DISCOVER', 'INFORM', 'INFORMATION-REQUEST', 'NAK', 'OFFER', 'REBIND', "
     "'RECONFIGURE', 'RELEASE', 'RENEW', 'REPLY', 'REQUEST' or 'SOLICIT'"),
    ("mail_encryption: [clear]", "policy.yaml:11: rules[0].when.mail_encryption[0]: 'clear': Input should be "
     "'none', 'starttls', 'implicit_tls' or 'unknown'"),
    ("mail_encryption: false", "policy.yaml:11: rules[0].when.mail_encryption: False: Input should be a valid tuple"),
    ("info_hash: [6d6e6f70717273747576777879]", "policy.yaml:11: rules[0].when.info_hash: "
     "['6d6e6f70717273747576777879']: an info-hash is 40 hex digits (BitTorrent's SHA-1 of the "
     "torrent), not '6d6e6f70717273747576777879'"),
    ("dht_method: [GET_PEERS]", "policy.yaml:11: rules[0].when.dht_method[0]: 'GET_PEERS': Input should be 'ping', "
     "'find_node', 'get_peers', 'announce_peer', 'get', 'put', 'sample_infohashes', 'query', 'response' or 'error'"),
])
def test_a_bad_condition_names_file_line_field_and_value(tmp_path, condition, message):
    assert policy_refused(tmp_path / "policy.yaml", POLICY + f"      {condition}\n") == f"{tmp_path}/{message}"


def test_the_check_command_prints_the_warning_with_the_policy_line(tmp_path):
    config = school_config(tmp_path / "school")
    policy = config.parent / "policy.yaml"
    text = policy.read_text()
    rule = ("  - id: dns-installers\n    clauses: [P7]\n    severity: advisory\n"
            "    message: an installer named in a DNS lookup\n    when: {all: [{kind: [dns]}, {file_ext: [exe]}]}\n")
    policy.write_text(text.replace("waivers:\n", rule + "waivers:\n", 1))
    when = text[: text.index("waivers:\n")].count("\n") + 5  # the rule's fifth line, where `waivers:` was + 4
    proc = run_cli("check", "--config", config, check=True)
    assert proc.stderr.splitlines() == [f"ictwatch: warning: {policy}:{when}: rule dns-installers: field file_ext is "
                                        f"never filled for kind dns{NEVER}"]
    assert proc.stdout.splitlines()[-1] == f"OK: {config} is valid, with 1 warning above; --show prints the " \
                                           "effective policy"
    assert run_cli("check", "--config", SCHOOL_DAY / "ictwatch.yaml", check=True).stderr == ""
