"""`ictwatch explain` and a report's explanations: the words agree with the engine on every activity of the
school day; `explain` says what the activity showed for each condition and which waiver applied and why the
others did not; a report says, in sentences, what happened and why each rule matched."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from collector.observation import Observation, to_table
from ictwatch import settings
from rules.explain import explain, explain_many, for_report
from tests.conftest import SCHOOL_DAY, run_cli, school_config, stored_activity
from tests.rules.test_waivers import LESSON, config_with


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    store = tmp_path_factory.mktemp("explain") / "store"
    run_cli("replay", "--config", SCHOOL_DAY / "ictwatch.yaml", SCHOOL_DAY / "school-day.pcap",
            SCHOOL_DAY / "squid-access.log", store=store, check=True)
    return store


def test_every_activity_is_explained_as_the_engine_judged_it(day):
    engine = settings.load(SCHOOL_DAY / "ictwatch.yaml").engine()
    rows = stored_activity(day)
    assert rows.height == 58 and rows["rule_ids"].list.len().sum() == 8  # the day, and its eight breaches
    for i in range(rows.height):
        text = explain(engine, rows[i : i + 1])
        matched = re.findall(r"^Rule (\S+) \([^)]*\): matched$", text, re.M)
        assert matched == rows["rule_ids"][i].to_list(), text


def test_explaining_many_at_once_says_the_same_as_one_by_one(day):
    """`explain_many` reads many rows in one pass (reports do the same through `for_report`): each text is
    the one-row text."""
    engine = settings.load(SCHOOL_DAY / "ictwatch.yaml").engine()
    rows = stored_activity(day)
    together = explain_many(engine, rows)
    assert together == [explain(engine, rows[i : i + 1]) for i in range(rows.height)]
    assert sum("): matched" in t for t in together) == 8  # the eight breaches, and nothing else matched
    assert for_report(engine, rows) == [for_report(engine, rows[i : i + 1])[0] for i in range(rows.height)]


def test_explain_command_names_rule_clause_value_and_evidence(day):
    proc = run_cli("explain", "--config", SCHOOL_DAY / "ictwatch.yaml", "squid-access.log:3", store=day, check=True)
    out = proc.stdout
    assert "Activity squid-access.log:3 (proxy) at 2026-06-16 11:15:31 BST" in out
    assert "who: James Carter (jcarter); role teacher; identity evidence: proxy_auth (confidence high)" in out
    assert "Tried to open www.bet365.com at 11:15; the school's filter refused it." in out
    assert ("time: Tuesday 16 June 2026 is a school day; 11:15 is in restricted hours, 08:30–15:30; 11:15 is not in "
            "a break (morning break 10:30–10:50 and lunch 12:15–13:00)") in out
    assert "Rule blocked-content (P8, danger): matched" in out
    assert "      yes the site, www.bet365.com, is in the school's list 'gambling'\n" in out
    assert "Rule personal-use-restricted-hours (P18, caution): did not match" in out
    assert ("      no  the site, www.bet365.com, is in the school's list 'gambling', not 'social networks', "
            "'streaming', 'shopping' or 'dating'\n") in out
    assert ("w-jcarter-residential: does not cover this activity: it is for jcarter, 2026-10-28 13:00 to "
            "2026-10-28 15:30 local") in out  # every waiver of the policy: the network manager keeps the file
    missing = run_cli("explain", "--config", SCHOOL_DAY / "ictwatch.yaml", "nothing.log:1", store=day)
    assert missing.returncode == 1 and "no activity was recorded from nothing.log:1" in missing.stderr


def _report_texts(day) -> dict[str, str]:
    engine = settings.load(SCHOOL_DAY / "ictwatch.yaml").engine()
    rows = stored_activity(day).filter(verdict="breach")
    return dict(zip(rows["source_ref"], for_report(engine, rows), strict=True))


def test_a_report_says_why_in_sentences(day):
    """Sam Okafor's phone on Instagram at 09:42 in a classroom: the clause, the rule's message, and why."""
    texts = _report_texts(day)
    (instagram,) = [t for t in texts.values() if "www.instagram.com" in t]
    assert instagram == (
        "P18 (caution), rule personal-use-restricted-hours: Personal use of a device in restricted hours, away from "
        "the staff room and offices or outside breaks.\n"
        "Why: This was a device opening a secure (HTTPS) connection to a site. The site, www.instagram.com, is in "
        "the school's list 'social networks'. Personal use is not allowed here at this time: 09:42 is in restricted "
        "hours, 08:30–15:30, and Classroom block is not a staff room or office.")
    (webmail,) = [t for t in texts.values() if "mail.yahoo.com" in t]  # a `not` reads as what was so instead
    assert webmail.endswith("The device, LT-DPATEL, is a school device. The server's port is 443, not 25, 465, 587, "
                            "110, 995, 143 or 993.")


def test_a_refused_request_is_an_attempt(day):
    """The proxy refused bet365: the report says it was tried and refused, whatever the rule's message says."""
    texts = _report_texts(day)
    assert texts["squid-access.log:3"].startswith(
        "Tried to open www.bet365.com at 11:15; the school's filter refused it.\n"
        "P8 (danger), rule blocked-content: Content in a category the school blocks")
    assert sum(t.startswith("Tried") for t in texts.values()) == 1  # the other breaches got through


def test_a_reports_explanations_are_no_field_dumps(day):
    """No yes/no marks, no raw values (True, none, snake_case names)."""
    for ref, text in _report_texts(day).items():
        assert not re.search(r"\b(True|False|None|none)\b|\b[a-z]+_[a-z]+\b|^(yes|no) ", text, re.M), (ref, text)


def test_ipv6_endpoints_are_in_brackets():
    """A TLS hello over IPv6 (Sam Okafor's phone, by its registered MAC): `explain` gives the addresses with
    their ports, the IPv6 ones in brackets."""
    engine = settings.load(SCHOOL_DAY / "ictwatch.yaml").engine()
    ts = int(dt.datetime(2026, 6, 16, 8, 42, tzinfo=dt.UTC).timestamp() * 1e6)
    obs = Observation(ts, "tls", "pcap", "v6.pcap#1", "2001:db8:20::131", 40000, "2a03:2880:f12f:83:face:b00c::25de",
                      443, "tcp", "3c:22:fb:30:00:01", host="www.instagram.com", sni="www.instagram.com")
    text = explain(engine, engine.evaluate(to_table([obs])))
    assert "client [2001:db8:20::131]:40000, server [2a03:2880:f12f:83:face:b00c::25de]:443" in text


def test_waivers_are_explained(tmp_path):
    config = config_with(tmp_path, LESSON)
    store = tmp_path / "store"
    run_cli("replay", "--config", config, SCHOOL_DAY / "squid-access.log", store=store, check=True)
    out = run_cli("explain", "--config", config, "squid-access.log:3", store=store, check=True).stdout
    assert "verdict: waived" in out and "Rule blocked-content (P8, danger): waived" in out
    assert "w-jcarter-esafety: applied (granted by hmorgan: showing the class" in out
    assert "w-year6-social: does not cover this activity: it is for group year6, 2026-06-16 09:00" in out
    assert "w-late: does not cover this activity: it is for tevans" in out


def test_a_changed_policy_is_noted(day, tmp_path):
    config = school_config(tmp_path / "school")
    policy = config.parent / "policy.yaml"
    policy.write_text(policy.read_text().replace("severity: danger", "severity: caution", 1))
    out = run_cli("explain", "--config", config, "squid-access.log:3", store=day, check=True).stdout
    assert "note: the policy has changed since" in out
    assert "Rule blocked-content (P8, caution): matched" in out
