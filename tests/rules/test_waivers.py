"""Waivers ("unless specific permission is given"): a covered activity is recorded as waived with the
waiver's id, not as a breach; the period is local time (BST in June) with its end exclusive; a group
waiver covers its members only; bad waivers stop start-up naming the field."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from collector.observation import Observation, to_table
from ictwatch import settings
from rules.config import ConfigError
from rules.engine import with_windows
from rules.waivers import Waiver, Weekly, parts
from storage.store import Store
from tests.conftest import ROOT, SCHOOL_DAY, run_cli, school_config

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


# Recurring and narrower waivers (issue 20, point 4). The engine is given single observations, each at a
# UTC instant worked out by hand from the local time it stands for.

LT_JCARTER = ("00:1b:21:aa:00:01", "10.20.10.21")
PH_SOKAFOR_CLASSROOM = ("3c:22:fb:30:00:01", "10.20.10.131")
PH_SOKAFOR_HALL = ("3c:22:fb:30:00:01", "10.20.30.131")
LT_SOKAFOR = ("00:1b:21:aa:00:02", "10.20.10.22")
IPAD_5C, IPAD_6A = ("f0:99:bf:10:00:01", "10.20.10.150"), ("f0:99:bf:10:00:09", "10.20.10.151")


def _verdicts(tmp_path, waivers: str, seen: list[tuple[str, tuple[str, str], str]]) -> list[tuple[str, list[str]]]:
    """(verdict, waiver ids) of each (UTC time, (MAC, address), host) as the engine judges a TLS hello."""
    engine = settings.load(config_with(tmp_path, waivers)).engine()
    obs = [Observation(int(dt.datetime.fromisoformat(at).timestamp() * 1e6), "tls", "pcap", f"t.pcap#{i}",
                       client, 40000, "198.51.100.7", 443, "tcp", mac, host=host, sni=host)
           for i, (at, (mac, client), host) in enumerate(seen)]
    out = engine.evaluate(to_table(obs))
    return list(zip(out["verdict"].to_list(), out["waiver_ids"].to_list(), strict=True))


WEEKLY = """
waivers:
  - id: w-esafety-weekly
    users: [jcarter]
    rules: [blocked-content]
    weekly:
      days: [wednesday]
      start: "13:00"
      end: "15:30"
      school_days_only: true
      first: 2026-09-30
      last: 2026-12-16
    granted_by: hmorgan
    reason: the weekly e-safety lesson shows the class what the filter blocks
"""


def test_a_weekly_waiver_follows_the_local_clock_the_days_and_the_calendar(tmp_path):
    """Wednesdays 13:00-15:30 local on school days, 30 September to 16 December 2026. The clocks go back on
    25 October: before, 13:00 local is 12:00 UTC; after, 13:00 UTC. The half term (19-23 October) is no
    school day."""
    seen = [
        ("2026-10-14T12:00:00+00:00", "waived"),  # 13:00 BST: the start is inside
        ("2026-10-14T14:29:59+00:00", "waived"),  # 15:29:59 BST
        ("2026-10-14T14:30:00+00:00", "breach"),  # 15:30 BST: the end is outside
        ("2026-10-14T11:59:59+00:00", "breach"),  # 12:59:59 BST
        ("2026-10-28T12:30:00+00:00", "breach"),  # 12:30 GMT (13:30 if summer time were kept)
        ("2026-10-28T15:00:00+00:00", "waived"),  # 15:00 GMT (16:00 if summer time were kept)
        ("2026-10-21T12:30:00+00:00", "breach"),  # 13:30 BST, a Wednesday of the October half term
        ("2026-10-29T13:30:00+00:00", "breach"),  # Thursday
        ("2026-09-30T12:00:00+00:00", "waived"),  # 13:00 BST on the first day, which is inside
        ("2026-09-23T12:30:00+00:00", "breach"),  # 13:30 BST, a Wednesday in term before the first day
        ("2026-12-16T13:30:00+00:00", "waived"),  # 13:30 GMT on the last day
    ]
    got = _verdicts(tmp_path, WEEKLY, [(at, LT_JCARTER, "www.bet365.com") for at, _ in seen])
    assert [v for v, _ in got] == [want for _, want in seen]
    assert {tuple(ids) for v, ids in got if v == "waived"} == {("w-esafety-weekly",)}


def test_the_weekly_time_agrees_with_the_zone_database(tmp_path):
    """Every 7 minutes 13 seconds of 2026, both clock changes among them: the weekly waiver's time holds
    exactly where Python's zone database puts the instant on a Wednesday, 13:00-15:30, between the first and
    last days, on a school day of the calendar."""
    policy = settings.load(config_with(tmp_path, WEEKLY)).policy
    (w,) = policy.waivers
    london, cal = ZoneInfo("Europe/London"), policy.calendar
    instants = [dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=433 * k) for k in range(72_800)]
    frame = with_windows(pl.DataFrame({"ts": instants, "location_kind": [None] * len(instants)},
                                      schema={"ts": pl.Datetime("us", "UTC"), "location_kind": pl.String}), policy)
    got = frame.select(parts(w, cal.timezone, {})["time"]).to_series().to_list()
    local = [t.astimezone(london) for t in instants]
    want = [t.weekday() == 2 and dt.time(13) <= t.time() < dt.time(15, 30) and cal.is_school_day(t.date())
            and dt.date(2026, 9, 30) <= t.date() <= dt.date(2026, 12, 16) for t in local]
    # 11 Wednesdays (12 less the half term's) of 9,000 seconds: 20 or 21 instants 433 seconds apart in each
    assert 11 * 20 <= sum(want) <= 11 * 21 and got == want


FOR_THE_DAY = """
    rules: [personal-use-restricted-hours, ipad-personal-use]
    start: 2026-06-16T08:00
    end: 2026-06-16T16:00
    granted_by: dpatel
    reason: a test
"""


@pytest.mark.parametrize(("narrowed", "covered", "missed"), [
    ("users: [sokafor]\n    devices: [PH-SOKAFOR]",
     (PH_SOKAFOR_CLASSROOM, "www.instagram.com"), (LT_SOKAFOR, "www.instagram.com")),  # another device
    ("users: [sokafor]\n    places: [Classroom block]",
     (PH_SOKAFOR_CLASSROOM, "www.instagram.com"), (PH_SOKAFOR_HALL, "www.instagram.com")),  # another place
    ("users: [sokafor]\n    place_kinds: [hall]",
     (PH_SOKAFOR_HALL, "www.instagram.com"), (PH_SOKAFOR_CLASSROOM, "www.instagram.com")),  # another kind
    ("users: [sokafor]\n    hosts: [instagram.com]",
     (PH_SOKAFOR_CLASSROOM, "www.instagram.com"), (PH_SOKAFOR_CLASSROOM, "www.facebook.com")),  # another site
    ("users: [sokafor]\n    categories: [social_networks]",
     (PH_SOKAFOR_CLASSROOM, "www.instagram.com"), (PH_SOKAFOR_CLASSROOM, "www.amazon.co.uk")),  # shopping
    ("devices: [IPAD-BANK-5C]",  # a device's waiver, whoever uses it
     (IPAD_5C, "www.instagram.com"), (IPAD_6A, "www.instagram.com")),
])
def test_a_narrowed_waiver_covers_only_what_it_names(tmp_path, narrowed, covered, missed):
    """Tuesday 16 June 2026 at 09:42 BST (08:42 UTC), personal use in restricted hours: the waiver covers
    the activity it is narrowed to and not its near miss."""
    waivers = f"waivers:\n  - id: w-narrow\n    {narrowed}{FOR_THE_DAY}"
    at = "2026-06-16T08:42:00+00:00"
    got = _verdicts(tmp_path, waivers, [(at, *covered), (at, *missed)])
    assert got == [("waived", ["w-narrow"]), ("breach", [])]


def _bad(tmp_path, body: str):
    """The school's configuration with one waiver, `body` after its id, and the line of `waivers:`."""
    config = config_with(tmp_path, f"waivers:\n  - id: w-bad\n{body}")
    text = (config.parent / "policy.yaml").read_text()
    return config, text[: text.index("\nwaivers:\n")].count("\n") + 2


NARROW = """    users: [jcarter]
    rules: [blocked-content]
    start: 2026-06-16T09:00
    end: 2026-06-16T10:00
    granted_by: hmorgan
    reason: a test
"""
RECUR = """    users: [jcarter]
    rules: [blocked-content]
    granted_by: hmorgan
    reason: a test
    weekly:
"""


@pytest.mark.parametrize(("body", "offset", "field", "said"), [
    (NARROW + "    devices: [PH-NOBODY]\n", 8, "waivers[0].devices", "'PH-NOBODY': not in the device register"),
    (NARROW + "    places: [Gym]\n", 8, "waivers[0].places", "'Gym': not a place on the network map"),
    (NARROW + "    categories: [knitting]\n", 8, "waivers[0].categories", "'knitting': category not in categories.map"),
    (NARROW + "    place_kinds: [gym]\n", 8, "waivers[0].place_kinds[0]", "'gym': Input should be"),
    (NARROW + "    hosts: ['https://www.youtube.com/']\n", 8, "waivers[0].hosts", "not a domain"),
    (NARROW + "    places: [Hall]\n    place_kinds: [hall]\n", 9, "waivers[0].place_kinds",
     "give places or place_kinds, not both"),
    (NARROW + "    devices: [LT-JCARTER, LT-JCARTER]\n", 8, "waivers[0].devices", "LT-JCARTER is given twice"),
    (NARROW + "    weekly: {days: [monday], start: '13:00', end: '14:00'}\n", 8, "waivers[0].weekly",
     "give either start and end (one period) or weekly, not both"),
    (RECUR + "      days: [wednesday]\n      start: '15:30'\n      end: '13:00'\n", 9, "waivers[0].weekly.end",
     "ends (13:00) before it starts (15:30)"),
    (RECUR + "      days: [wednesday]\n      start: 13:00\n      end: '15:30'\n", 8, "waivers[0].weekly.start",
     "in quotes"),  # YAML reads 13:00 unquoted as the number 780
    (RECUR + "      days: [wednesday, wednesday]\n      start: '13:00'\n      end: '15:30'\n", 7,
     "waivers[0].weekly.days", "wednesday is given twice"),
    (RECUR + "      days: [saturday]\n      start: '13:00'\n      end: '15:30'\n      school_days_only: true\n", 10,
     "waivers[0].weekly.school_days_only", "a school day is never a saturday"),
    (RECUR + "      days: [wednesday]\n      start: '13:00'\n      end: '15:30'\n      first: 2026-12-16\n"
     "      last: 2026-12-09\n", 11, "waivers[0].weekly.last", "before its first day (2026-12-16)"),
    (RECUR + "      days: [thursday]\n      start: '13:00'\n      end: '15:30'\n      first: 2026-10-30\n"
     "      last: 2026-11-04\n", 7, "waivers[0].weekly", "covers no day"),  # Friday to Wednesday
    (RECUR + "      days: [thursday]\n      start: '13:00'\n      end: '15:30'\n      school_days_only: true\n"
     "      first: 2026-10-19\n      last: 2026-10-23\n", 7, "waivers[0].weekly", "covers no day"),  # half term
    (NARROW.replace("    start: 2026-06-16T09:00\n    end: 2026-06-16T10:00\n", ""), 1, "waivers[0]",
     "give start and end (one period) or weekly"),
    (NARROW.replace("T09:00\n", "T09:00+01:00\n"), 1, "waivers[0]", "give local times without a zone"),
])
def test_a_bad_recurring_or_narrowed_waiver_names_its_line(tmp_path, body, offset, field, said):
    """Each mistake is named with the policy file's line, the field and the value (offsets counted by hand
    from `waivers:`)."""
    config, line = _bad(tmp_path, body)
    with pytest.raises(ConfigError) as caught:
        settings.load(config)
    assert str(caught.value).startswith(f"{config.parent / 'policy.yaml'}:{line + offset}: {field}: ")
    assert said in str(caught.value)


def test_check_refuses_a_bad_waiver_with_exit_2(tmp_path):
    config, line = _bad(tmp_path, NARROW + "    devices: [PH-NOBODY]\n")
    proc = run_cli("check", "--config", config)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"ictwatch: config error: {config.parent / 'policy.yaml'}:{line + 8}: waivers[0].devices: 'PH-NOBODY': "
        "not in the device register"]


def test_a_policy_of_the_first_form_keeps_its_version():
    """A waiver written as before (people, rules, one period) is dumped with the first form's keys only, so
    a policy that has only such waivers keeps the version it had (Moorside Primary's has one): what it
    judged before the upgrade is not said to be under another policy."""
    policy = settings.load(ROOT / "fixtures" / "moorside-primary" / "ictwatch.yaml").policy
    dump = policy.model_dump(mode="json", by_alias=True)
    assert [sorted(w) for w in dump["waivers"]] == [
        ["end", "granted_by", "groups", "id", "reason", "rules", "start", "users"]]


def test_the_docs_name_every_waiver_key():
    section = (ROOT / "docs" / "policy.md").read_text().split("## Waivers\n")[1].split("\n## ")[0]
    keys = set(Waiver.model_fields) | set(Weekly.model_fields)
    assert sorted(k for k in keys if f"`{k}`" not in section) == []
