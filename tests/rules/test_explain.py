"""`ictwatch explain`: the words agree with the engine on every activity of the school day, name the
value that decided each condition, and say which waiver applied and why the others did not."""

from __future__ import annotations

import re

import pytest

from ictwatch import settings
from rules.explain import explain, explain_many
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
    """Reports explain their breaches in one pass (`explain_many`): each text is the one-row text."""
    engine = settings.load(SCHOOL_DAY / "ictwatch.yaml").engine()
    rows = stored_activity(day)
    together = explain_many(engine, rows)
    assert together == [explain(engine, rows[i : i + 1]) for i in range(rows.height)]
    assert sum("): matched" in t for t in together) == 8  # the eight breaches, and nothing else matched


def test_explain_command_names_rule_clause_value_and_evidence(day):
    proc = run_cli("explain", "--config", SCHOOL_DAY / "ictwatch.yaml", "squid-access.log:3", store=day, check=True)
    out = proc.stdout
    assert "Activity squid-access.log:3 (proxy) at 2026-06-16 11:15:31 BST" in out
    assert "who: James Carter (jcarter); role teacher; identity evidence: proxy_auth (confidence high)" in out
    assert "Rule blocked-content (P8, danger): matched" in out
    assert ("yes category is one of pornography, discrimination, drugs, extremism, gambling, malware-hacking, "
            "self-harm, violence (categories: gambling)") in out
    assert "Rule personal-use-restricted-hours (P18, caution): did not match" in out
    assert "no  category is one of social_networks, streaming, shopping, dating (categories: gambling)" in out
    assert ("w-jcarter-residential: does not cover this activity: it is for jcarter, 2026-10-28 13:00 to "
            "2026-10-28 15:30 local") in out
    missing = run_cli("explain", "--config", SCHOOL_DAY / "ictwatch.yaml", "nothing.log:1", store=day)
    assert missing.returncode == 1 and "no activity was recorded from nothing.log:1" in missing.stderr


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
