"""The engine: local-time windows across DST, the P18 reading switch, and conditions with not/any."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import polars as pl
import pytest

import rules.engine
from collector.observation import Observation, to_table
from ictwatch import settings
from rules.engine import Engine, compile_condition, with_local_time, with_windows
from rules.policy import Condition, Policy
from tests.conftest import SCHOOL_DAY

LONDON = ZoneInfo("Europe/London")


def at(day: dt.date, clock: str) -> int:
    return int(dt.datetime.combine(day, dt.time.fromisoformat(clock), LONDON).timestamp() * 1_000_000)


def observe(ts_us: int, mac: str = "3c:22:fb:30:00:01", ip: str = "10.20.10.131", host: str = "www.instagram.com",
            kind: str = "tls") -> Observation:
    return Observation(ts_us, kind, "pcap", "t#1", ip, 40000, "157.240.1.174", 443, "tcp", mac, host=host)


def engine(**personal_use) -> Engine:
    loaded = settings.load(SCHOOL_DAY / "ictwatch.yaml")
    policy = loaded.policy
    if personal_use:
        data = policy.model_dump(by_alias=True, exclude_none=True)
        data["personal_use"].update(personal_use)
        policy = Policy.model_validate(data)
    return Engine(policy, loaded.categories, loaded.engine()._identity)


def verdicts(eng: Engine, *obs: Observation) -> list[tuple[str, list[str]]]:
    df = eng.evaluate(to_table(obs))
    return list(zip(df.get_column("verdict").to_list(), df.get_column("rule_ids").to_list(), strict=True))


@pytest.mark.parametrize(
    ("day", "clock", "expect"),
    [
        (dt.date(2026, 6, 16), "08:29:59", "allowed"),  # BST: 07:29:59 UTC, before restricted hours
        (dt.date(2026, 6, 16), "08:30:00", "breach"),
        (dt.date(2026, 6, 16), "15:29:59", "breach"),
        (dt.date(2026, 6, 16), "15:30:00", "allowed"),
        (dt.date(2026, 3, 17), "08:30:00", "breach"),  # GMT: same local rule, different UTC offset
        (dt.date(2026, 3, 17), "08:29:00", "allowed"),
        (dt.date(2026, 6, 20), "11:00:00", "allowed"),  # Saturday
        (dt.date(2026, 5, 27), "11:00:00", "allowed"),  # half term
        (dt.date(2026, 6, 26), "11:00:00", "allowed"),  # INSET day
        (dt.date(2026, 8, 4), "11:00:00", "allowed"),  # summer holiday
    ],
)
def test_restricted_hours_follow_local_time_and_the_calendar(day, clock, expect):
    ((verdict, _),) = verdicts(engine(), observe(at(day, clock)))
    assert verdict == expect


def _windows_by_hand(policy: Policy, ts_us: int, location_kind: str) -> tuple[bool, bool, bool, bool]:
    """The four window columns for one instant, worked out with the zone database and plain comparisons."""
    cal = policy.calendar
    local = dt.datetime.fromtimestamp(ts_us / 1_000_000, dt.UTC).astimezone(ZoneInfo(cal.timezone))
    day, clock = local.date(), local.time().replace(tzinfo=None)
    school_day = cal.is_school_day(day)
    restricted = school_day and cal.restricted_hours.start <= clock < cal.restricted_hours.end
    in_break = school_day and any(b.start <= clock < b.end for b in cal.breaks)
    place = location_kind in {k.value for k in policy.personal_use.allowed_locations}
    return school_day, restricted, in_break, not restricted or (place and in_break)


@pytest.mark.parametrize("by_second_rows", [0, 1_000_000])
@pytest.mark.parametrize("lunch_end", [None, dt.time(13, 0, 30), dt.time(13, 0, 0, 250_000)])
def test_windows_per_second_agree_with_each_row_by_hand(lunch_end, by_second_rows, monkeypatch):
    """Just either side of every boundary (a microsecond before, on it, a microsecond after), on a school
    day in BST and in GMT, a Saturday and an INSET day, in the staff room and a classroom; with the
    fixture's calendar, a lunch that ends half a minute past the hour (whole seconds: worked out per
    second, in a batch as big as `BY_SECOND_ROWS`), and one that ends a quarter second past it (worked
    out per row). A batch smaller than `BY_SECOND_ROWS` is worked out per row whatever its calendar."""
    monkeypatch.setattr(rules.engine, "BY_SECOND_ROWS", by_second_rows)
    policy = engine().policy
    if lunch_end is not None:
        data = policy.model_dump(by_alias=True, exclude_none=True)
        data["calendar"]["breaks"][1]["end"] = lunch_end
        policy = Policy.model_validate(data)
    cal = policy.calendar
    edges = [t for r in (cal.restricted_hours, *cal.breaks) for t in (r.start, r.end)]
    rows = []
    for day in (dt.date(2026, 6, 16), dt.date(2026, 3, 17), dt.date(2026, 6, 20), dt.date(2026, 6, 26)):
        for edge in edges:
            base = int(dt.datetime.combine(day, edge, ZoneInfo(cal.timezone)).timestamp() * 1_000_000)
            for delta in (-1_000_001, -1, 0, 1, 999_999):
                for kind in ("staff_room", "classroom"):
                    rows.append((base + delta, kind))
    frame = pl.DataFrame({"ts": [ts for ts, _ in rows], "location_kind": [k for _, k in rows]}).with_columns(
        pl.col("ts").cast(pl.Datetime("us", "UTC")))
    got = with_windows(frame, policy).select("school_day", "restricted_hours", "break", "personal_use_allowed")
    assert got.rows() == [_windows_by_hand(policy, ts, kind) for ts, kind in rows]
    assert sum(r[2] for r in got.rows()) > 0 and sum(not r[3] for r in got.rows()) > 0  # both ways, both columns


def test_p18_reading_switch():
    staff_room_mid_morning = observe(at(dt.date(2026, 6, 16), "11:30"), ip="10.20.1.31")
    classroom_lunch = observe(at(dt.date(2026, 6, 16), "12:30"), ip="10.20.10.131")
    strict = verdicts(engine(), staff_room_mid_morning, classroom_lunch)
    loose = verdicts(engine(reading="any_time"), staff_room_mid_morning, classroom_lunch)
    assert [v for v, _ in strict] == ["breach", "breach"]
    assert [v for v, _ in loose] == ["allowed", "breach"]  # a classroom is never an allowed place


def test_policy_version_changes_with_the_policy():
    assert engine().version != engine(reading="any_time").version


def test_mail_to_an_unknown_server_is_not_approved():
    t = at(dt.date(2026, 6, 16), "13:00")
    unnamed = observe(t, ip="10.20.2.22", host=None, kind="flow")
    unnamed.dst_port = 587
    approved = observe(t, ip="10.20.2.22", host="smtp.office365.com", kind="flow")
    approved.dst_port = 587
    assert verdicts(engine(), unnamed, approved) == [("breach", ["unapproved-email-server"]), ("allowed", [])]


def test_any_and_not_combine():
    cond = Condition.model_validate({"any": [{"kind": ["dns"]}, {"not": {"port": [443]}}]})
    eng = engine()
    df = eng.evaluate(to_table([observe(0, kind="dns"), observe(0), observe(0, kind="flow")]))
    df = df.with_columns(dst_port=df.get_column("dst_port").scatter(2, 80))
    assert df.select(compile_condition(cond)).to_series().to_list() == [True, False, True]


def test_unknown_device_is_a_value_not_a_dropped_row():
    df = engine().evaluate(to_table([observe(at(dt.date(2026, 6, 16), "11:05"), mac="02:00:00:00:00:01",
                                             ip="10.20.30.77", host="www.facebook.com")]))
    row = df.row(0, named=True)
    assert (row["user"], row["device"], row["device_registered"], row["location"], row["verdict"]) == (
        None, None, False, "Hall", "breach")


def test_local_time_by_quarter_hour_offsets_matches_the_zone_database():
    """`with_local_time` converts each quarter hour once: across both 2026 clock changes in London and in
    a zone with a 45-minute offset (Nepal), every minute's wall-clock time equals polars' own conversion."""
    instants = []
    for day in (dt.datetime(2026, 3, 28, 22, tzinfo=dt.UTC), dt.datetime(2026, 10, 24, 22, tzinfo=dt.UTC)):
        instants += [day + dt.timedelta(minutes=m, seconds=17) for m in range(0, 8 * 60)]
    frame = pl.DataFrame({"ts": instants}, schema={"ts": pl.Datetime("us", "UTC")})
    for zone in ("Europe/London", "Asia/Kathmandu"):
        ours = with_local_time(frame, zone).get_column("_local")
        theirs = frame.get_column("ts").dt.convert_time_zone(zone).dt.replace_time_zone(None)
        assert ours.to_list() == theirs.to_list()
    spring = with_local_time(frame, "Europe/London").get_column("_local").to_list()
    assert spring[179].hour == 0 and spring[180].hour == 2  # 00:59 GMT, then 01:00 UTC is 02:00 BST


def test_a_group_condition_reads_the_directory_groups_at_the_time(tmp_path):
    """A rule for one directory group: Sam Okafor (year6) on Instagram matches it, James Carter (year5)
    does not; the activity stores the groups it was judged with."""
    from collector.observation import Observation, to_table
    from ictwatch import settings
    from tests.conftest import school_config

    config = school_config(tmp_path / "school")
    policy = config.parent / "policy.yaml"
    rule = ("  - id: year6-social\n    clauses: [P18]\n    severity: advisory\n"
            "    message: year 6 staff on social media\n    when: {all: [{kind: [tls]}, {group: [year6]}]}\n")
    policy.write_text(policy.read_text().replace("waivers:\n", rule + "waivers:\n", 1))
    engine = settings.load(config).engine()
    at = 1781600000_000000
    obs = [Observation(at, "tls", "pcap", "t#1", "10.20.10.131", 5000, "157.240.1.174", 443, "tcp", "3c:22:fb:30:00:01",
                       host="www.instagram.com"),
           Observation(at, "tls", "pcap", "t#2", "10.20.10.134", 5000, "157.240.1.174", 443, "tcp", "3c:22:fb:30:00:04",
                       host="www.instagram.com")]
    rows = engine.evaluate(to_table(obs)).select("user", "groups", "rule_ids").to_dicts()
    assert [(r["user"], r["groups"], "year6-social" in r["rule_ids"]) for r in rows] == [
        ("sokafor", ["year6"], True), ("jcarter", ["year5"], False)]


def test_each_broken_rule_keeps_its_own_clauses_and_severity():
    """An installer fetched from a gambling site on James Carter's school laptop breaks blocked-content (P8,
    danger) and installer-download (P7, advisory): the row's summary columns hold the union of clauses and
    the highest severity, and each rule keeps its own beside it, in the order of `rule_ids`."""
    download = Observation(at(dt.date(2026, 6, 16), "10:00"), "http", "pcap", "t#1", "10.20.10.21", 40000,
                           "192.0.2.1", 80, "tcp", "00:1b:21:aa:00:01", host="www.bet365.com",
                           url="http://www.bet365.com/setup.exe", file_ext="exe", status=200)
    row = engine().evaluate(to_table([download])).row(0, named=True)
    assert (row["rule_ids"], row["clauses"], row["severity"]) == (
        ["blocked-content", "installer-download"], ["P8", "P7"], "danger")
    assert (row["rule_clauses"], row["rule_severities"]) == ([["P8"], ["P7"]], ["danger", "advisory"])
    allowed = engine().evaluate(to_table([observe(at(dt.date(2026, 6, 20), "11:00"))])).row(0, named=True)
    assert (allowed["rule_ids"], allowed["rule_clauses"], allowed["rule_severities"]) == ([], [], [])
