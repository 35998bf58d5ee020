"""What a report shows, checked against activity whose times are chosen by hand: visits (one device, one
site, no pause over a minute) and the network's own traffic set apart, time online, the heatmap in the
shape of the period, plurals, wrapping of hostile host names, the paging of the visits, and how each
format says that something is not known."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import xml.etree.ElementTree as ET

import polars as pl
import pytest

from collector.observation import Observation, to_table
from ictwatch import settings
from reports import build, render
from rules.policy import SEVERITY_MEANING
from storage.store import Store
from tests.conftest import ROOT, SCHOOL_DAY
from tests.storage.test_store import activities

LOADED = settings.load(SCHOOL_DAY / "ictwatch.yaml")
SERVICES = LOADED.network.service_names()
SVG = "{http://www.w3.org/2000/svg}"


def _report(store: Store, last_day: int = 16) -> build.UserReport:
    return build.build(store, LOADED.directory, "The Valley School", "Europe/London", "sokafor",
                       dt.date(2026, 6, 16), dt.date(2026, 6, last_day), "dpatel", "review",
                       dt.datetime(2026, 11, 29, tzinfo=dt.UTC), "line manager", 1, services=SERVICES)



@pytest.fixture
def report_of(store):
    def make(n: int, last_day: int = 16, every_s: int = 60):
        store.insert_activity(activities(n, every_s))  # Sam Okafor's phone, Instagram, from 09:00 UTC
        return _report(store, last_day)

    return make


PHONE, MAC, RESOLVER, INSTAGRAM = "10.20.10.131", "3c:22:fb:30:00:01", "10.20.0.2", "157.240.1.174"


def _at(local: str) -> int:
    """Microseconds since the epoch of a BST clock time on Tuesday 16 June 2026 (UTC+1)."""
    h, m, s = map(int, local.split(":"))
    return int(dt.datetime(2026, 6, 16, h - 1, m, s, tzinfo=dt.UTC).timestamp() * 1e6)


def _day() -> list[Observation]:
    """Sam Okafor's phone in the classroom block, by hand: a lookup of Instagram at 10:00:00 (and its UDP flow
    to the school's resolver), a flow to Instagram's address that carries no name (30 s, 1,000 + 9,000
    bytes), the TLS hello, a second nameless flow 50 s after the first ended, then Instagram again 100 s
    after that (a new visit), the BBC 10 s later (another site), and the phone's DHCP request, its UDP flow
    to the broadcast address, and a multicast DNS flow (devices finding each other)."""
    def flow(t: str, ref: str, dst: str, port: int, out: int, back: int, secs: float) -> Observation:
        return Observation(_at(t), "flow", "pcap", ref, PHONE, 40000, dst, port, "tcp" if port != 53 else "udp",
                           MAC, bytes_out=out, bytes_in=back, duration_s=secs)

    return [
        Observation(_at("10:00:00"), "dns", "pcap", "d.pcap#1", PHONE, 50000, RESOLVER, 53, "udp", MAC,
                    host="www.instagram.com", answers=[INSTAGRAM]),
        flow("10:00:00", "d.pcap#2", RESOLVER, 53, 60, 80, 0.003),
        flow("10:00:00", "d.pcap#3", INSTAGRAM, 443, 1000, 9000, 30.0),
        Observation(_at("10:00:00"), "tls", "pcap", "d.pcap#6", PHONE, 40000, INSTAGRAM, 443, "tcp", MAC,
                    host="www.instagram.com", sni="www.instagram.com"),
        flow("10:01:20", "d.pcap#20", INSTAGRAM, 443, 500, 500, 0.0),
        Observation(_at("10:03:00"), "tls", "pcap", "d.pcap#30", PHONE, 40001, INSTAGRAM, 443, "tcp", MAC,
                    host="www.instagram.com", sni="www.instagram.com"),
        Observation(_at("10:03:10"), "http", "pcap", "d.pcap#40", PHONE, 40002, "151.101.0.81", 80, "tcp", MAC,
                    host="www.bbc.co.uk", url="http://www.bbc.co.uk/news"),
        Observation(_at("10:05:00"), "dhcp", "pcap", "d.pcap#50", "0.0.0.0", 68, "255.255.255.255", 67, "udp",
                    MAC, dhcp_type="REQUEST"),
        Observation(_at("10:05:00"), "flow", "pcap", "d.pcap#51", "0.0.0.0", 68, "255.255.255.255", 67, "udp",
                    MAC, bytes_out=300, bytes_in=0),
        Observation(_at("10:06:00"), "flow", "pcap", "d.pcap#60", PHONE, 5353, "224.0.0.251", 5353, "udp",
                    MAC, bytes_out=100, bytes_in=0),
    ]


def test_a_days_activities_become_visits_and_the_networks_own_traffic_is_apart(store):
    store.insert_activity(LOADED.engine().evaluate(to_table(_day())))
    report = _report(store)
    assert report.total_activities == 10
    # visit 1: the lookup, both nameless flows (named by the lookup's answer) and the hello, 10:00:00 to
    # 10:01:20; visit 2: Instagram at 10:03:00, 100 s after visit 1 ended; visit 3: the BBC.
    assert [(v.number, v.site, v.activities, f"{v.start:%H:%M:%S}", f"{v.end:%H:%M:%S}") for v in report.visits] == [
        (1, "www.instagram.com", 4, "10:00:00", "10:01:20"), (2, "www.instagram.com", 1, "10:03:00", "10:03:00"),
        (3, "www.bbc.co.uk", 1, "10:03:10", "10:03:10")]
    first = report.visits[0]
    assert first.bytes == 1000 + 9000 + 500 + 500 and first.kinds == ("dns", "flow", "tls")
    assert first.evidence == ("dns d.pcap#1", "flow d.pcap#3", "tls d.pcap#6", "flow d.pcap#20")
    # personal use in the classroom block at 10:00 on a school day (P18): each hello breaks it (the lookup and
    # the flows are not kinds the rule reads), so both Instagram visits are breaches
    assert (first.verdict, first.rule_ids, first.clauses, first.severity) == (
        "breach", ("personal-use-restricted-hours",), ("P18",), "caution")
    assert report.visits[2].verdict == "allowed" and report.visits[2].categories == ()
    assert report.visits[2].urls == ("http://www.bbc.co.uk/news",) and report.visits[0].urls == ()
    # the lookup's own flow to the resolver, the DHCP request and its flow, the multicast: the network's
    # upkeep, in no visit
    assert [(c.label, c.activities, c.bytes) for c in report.services] == [
        ("DHCP (joining the network)", 2, 300),
        ("Broadcasts and multicast on the school network (devices finding each other)", 1, 100),
        ("DNS resolver and DHCP server", 1, 140)]
    assert [a.visit for a in report.activity] == [1, None, 1, 1, 1, 2, 3, None, None, None]
    # minutes under way: 10:00 and 10:01 (visit 1), 10:03 (visits 2 and 3, counted once)
    assert report.minutes_online == 3 and [v.minutes for v in report.visits] == [2, 1, 1]
    assert [(c.label, c.visits, c.activities, c.minutes) for c in report.by_category] == [
        ("social_networks", 2, 5, 3), ("uncategorised", 1, 1, 1)]
    assert [(c.label, c.visits, c.minutes, c.identified_by) for c in report.devices] == [
        ("PH-SOKAFOR", 3, 3, "registered device (MAC), high confidence")]
    html = render.to_html(report)
    # the bracket counts visits, by the worst breach of each (it once read as a count of breaches)
    assert ("<strong>2 policy breaches</strong> in 2 visits\n(by the most serious breach of each visit: "
            '<span class="caution">2 caution</span>)') in html
    assert "3 visits to 2 sites, about 3 minutes online" in html
    assert "4 lookups and connections went to the school" in html and "10.20.0.2" not in html
    assert "<td>2026-06-16 10:00:00–10:01:20</td>" in html  # a time always with its date
    assert "<small>http:/<wbr>/<wbr>www.<wbr>bbc.<wbr>co.<wbr>uk/<wbr>news</small>" in html
    data = json.loads(render.to_json(report))
    assert len(data["visits"]) == 3 and len(data["activity"]) == 10 and data["activity"][1]["visit"] is None
    rows = list(csv.DictReader(io.StringIO(render.to_csv(report))))
    assert [r["visit"] for r in rows] == ["1", "", "1", "1", "1", "2", "3", "", "", ""]


def test_an_ipad_not_seen_is_a_breach_but_no_time_online(store):
    """The daily check's absence of Sam Okafor's class iPad at 09:30 (clause I1): a breach of the iPads in his
    care (not of his own use), with no visit, no minute online and no device identified by its MAC (it was
    not seen at all)."""
    absence = Observation(_at("09:30:00"), "absence", "check", "ipad-check:2026-06-16:IPAD-BANK-6A",
                          src_mac="f0:99:bf:10:00:09", service="ipad-check")
    store.insert_activity(LOADED.engine().evaluate(to_table([absence, *_day()])))
    report = _report(store)
    assert [(b.device, b.rule_ids, b.visit) for b in report.care_breaches] == [
        ("IPAD-BANK-6A", ("ipad-not-seen",), None)]
    assert [(d.device, d.visits, d.minutes, d.breaches) for d in report.in_care] == [("IPAD-BANK-6A", 0, 0, 1)]
    assert "ipad-not-seen" not in {r for b in report.breaches for r in b.rule_ids}
    assert len(report.visits) == 3 and report.minutes_online == 3
    assert [c.label for c in report.devices] == ["PH-SOKAFOR"]


def test_an_open_connection_a_stale_answer_and_the_proxys_name_make_no_hours_online(store):
    """By hand: the phone opens Instagram at 10:00 (lookup, hello) and keeps a push connection to it open
    for 5 h 30 min; at 10:30 a flow to the address Instagram's lookup gave at 10:00 (half an hour old: a
    shared CDN address can be anyone's by then); at 10:40 it looks up the school's own resolver's name and
    sends it 20 flows. Time online: 10:00 and 10:01 for Instagram (the open connection counts for 60 s),
    10:30 for the address; the resolver's flows are the network's upkeep."""
    def flow(t: str, ref: str, dst: str, secs: float) -> Observation:
        return Observation(_at(t), "flow", "pcap", ref, PHONE, 40000, dst, 443, "tcp", MAC, bytes_out=10,
                           bytes_in=10, duration_s=secs)

    rows = [
        Observation(_at("10:00:00"), "dns", "pcap", "e.pcap#1", PHONE, 50000, RESOLVER, 53, "udp", MAC,
                    host="www.instagram.com", answers=[INSTAGRAM]),
        Observation(_at("10:00:01"), "tls", "pcap", "e.pcap#2", PHONE, 40000, INSTAGRAM, 443, "tcp", MAC,
                    host="www.instagram.com", sni="www.instagram.com"),
        flow("10:00:01", "e.pcap#3", INSTAGRAM, 5.5 * 3600),
        flow("10:30:00", "e.pcap#4", INSTAGRAM, 1.0),
        Observation(_at("10:40:00"), "dns", "pcap", "e.pcap#5", PHONE, 50000, RESOLVER, 53, "udp", MAC,
                    host="dns.valley.sch.uk", answers=[RESOLVER]),
        *(flow("10:40:01", f"e.pcap#{6 + i}", RESOLVER, 600.0) for i in range(20)),
    ]
    store.insert_activity(LOADED.engine().evaluate(to_table(rows)))
    report = _report(store)
    assert [(v.site, f"{v.start:%H:%M:%S}", f"{v.end:%H:%M:%S}", v.minutes) for v in report.visits] == [
        ("www.instagram.com", "10:00:00", "10:01:01", 2), (INSTAGRAM, "10:30:00", "10:30:01", 1),
        ("dns.valley.sch.uk", "10:40:00", "10:40:00", 1)]
    assert report.minutes_online == 4
    assert [(c.label, c.activities) for c in report.services] == [("DNS resolver and DHCP server", 20)]


def test_a_day_is_drawn_by_hour_with_a_legend(report_of):
    report = report_of(5)  # 10:00 to 10:04 BST on Tuesday 16 June: one visit of five minutes
    assert len(report.visits) == 1 and report.minutes_online == 5
    hm = report.heatmap
    assert (hm.shape, len(hm.rows), len(hm.columns), hm.peak) == ("hours", 1, 24, 5)
    assert [(c.label, c.minutes) for c in hm.rows[0].cells if c.minutes] == [("2026-06-16 10:00–11:00", 5)]
    html = render.to_html(report)
    svg = ET.fromstring(re.search(r'<svg id="heatmap".*?</svg>', html, re.S).group(0))
    cells = svg.findall(f"{SVG}rect")
    busy = [c for c in cells if not c.findtext(f"{SVG}title").endswith(": 0 minutes online")]
    assert len(cells) == 24 and len(busy) == 1
    assert busy[0].findtext(f"{SVG}title") == "2026-06-16 10:00–11:00: 5 minutes online"
    assert busy[0].get("fill-opacity") == "1.00"
    legend = ET.fromstring(re.search(r'<svg id="heatmap-legend".*?</svg>', html, re.S).group(0))
    assert [t.text for t in legend.findall(f"{SVG}text")] == ["Minutes online:", "0", "1", "2", "4", "5"]
    # nothing fetched from elsewhere: the only "http" are the SVG namespace and the CSP's <meta http-equiv>
    assert "<script" not in html and "http" not in re.sub(r'xmlns="http://www.w3.org/2000/svg"|http-equiv=', "", html)


def test_a_few_days_are_drawn_as_days_by_hour_and_a_month_as_a_calendar(report_of, store):
    report = report_of(3, last_day=18, every_s=24 * 3600)  # 10:00 on the 16th, 17th and 18th
    assert report.heatmap.shape == "days"
    assert [r.label for r in report.heatmap.rows] == ["Tue 16 Jun", "Wed 17 Jun", "Thu 18 Jun"]
    assert [[c.minutes for c in r.cells][10] for r in report.heatmap.rows] == [1, 1, 1]
    month = build.build(store, LOADED.directory, "V", "Europe/London", "sokafor", dt.date(2026, 6, 16),
                        dt.date(2026, 7, 25), "dpatel", "r", dt.datetime(2026, 11, 29, tzinfo=dt.UTC))
    cal = month.heatmap
    # weeks commencing Monday 15 June to Monday 20 July: six rows; days outside the period are None
    assert cal.shape == "calendar" and cal.columns[0] == "Mon" and len(cal.rows) == 6
    assert cal.rows[0].label == "w/c 15 Jun 2026" and [c.minutes for c in cal.rows[0].cells] == [None, 1, 1, 1, 0, 0, 0]
    assert [c.minutes for c in cal.rows[5].cells] == [0, 0, 0, 0, 0, 0, None]
    assert cal.rows[5].cells[5].label == "Sat 2026-07-25"


def test_the_severity_legend_is_the_one_docs_policy_gives(report_of):
    html = render.to_html(report_of(1))
    docs = (ROOT / "docs" / "policy.md").read_text()
    for severity, meaning in SEVERITY_MEANING.items():
        assert f"- `{severity.value}`: {meaning}." in docs
        assert f'<dt class="{severity.value}">{severity.value}</dt><dd>{meaning}</dd>' in html


def test_plurals_and_durations():
    assert [render.plural(n, "policy breach") for n in (0, 1, 2)] == [
        "0 policy breaches", "1 policy breach", "2 policy breaches"]
    assert render.plural(1, "visit") == "1 visit" and render.plural(2500, "visit") == "2,500 visits"
    assert render.plural(2, "activity", "activities") == "2 activities"
    assert [render.duration(m) for m in (1, 59, 65)] == ["1 minute", "59 minutes", "1 h 05 min"]


def test_host_names_wrap_at_dots_and_slashes_and_stay_escaped():
    assert str(render.wrap("www.instagram.com/p/x")) == "www.<wbr>instagram.<wbr>com/<wbr>p/<wbr>x"
    hostile = str(render.wrap('<script>alert("x")</script>.example'))
    assert "<script" not in hostile and hostile == "&lt;script&gt;alert(&#34;x&#34;)&lt;/<wbr>script&gt;.<wbr>example"


def test_a_hostile_site_name_is_escaped_in_every_table(store):
    hostile = '<script>alert(1)</script>.example'
    store.insert_activity(LOADED.engine().evaluate(to_table([
        Observation(_at("10:00:00"), "tls", "pcap", "h.pcap#1", PHONE, 40000, INSTAGRAM, 443, "tcp", MAC,
                    host=hostile, sni=hostile)])))
    html = render.to_html(_report(store))
    assert "<script" not in html and html.count("&lt;script&gt;alert(1)&lt;/<wbr>script&gt;.<wbr>example") == 2


def test_the_visits_are_paged_in_html_and_every_activity_is_in_csv(report_of):
    report = report_of(2500, last_day=19, every_s=120)  # 2,500 visits two minutes apart, to the 19th
    assert len(report.visits) == 2500
    first = render.to_html(report)
    assert "Visits 1 to 2000 of 2500 (page 1 of 2; the CSV and JSON" in " ".join(first.split())
    assert first.count('<tr id="visit-') == 2000 and first.count('<tr id="evidence-') == 2000
    assert 'id="next"' not in first  # a file has no page links
    second = render.to_html(report, page=2, page_link="/reports/x/html?page=")
    assert "Visits 2001 to 2500 of 2500" in " ".join(second.split()) and second.count('<tr id="visit-') == 500
    assert 'href="/reports/x/html?page=1"' in second and "t.<wbr>pcap#2499" in second
    assert len(render.to_csv(report).splitlines()) == 2501


def test_what_is_not_known_is_null_in_json_and_a_word_in_html(tmp_path):
    """Sam Okafor's activity from a device and place nobody registered, reported to the headteacher along
    with a subject the directory lacks: null in the JSON, an empty cell in the CSV, "unknown" in the HTML."""
    store = Store(f"chdb://{tmp_path / 'store'}", "t")
    try:
        store.migrate()
        store.insert_activity(activities(2).with_columns(device=pl.lit(None, pl.String),
                                                         device_type=pl.lit(None, pl.String),
                                                         location=pl.lit(None, pl.String)))
        report = build.build(store, LOADED.directory, "The Valley School", "Europe/London", "sokafor",
                             dt.date(2026, 6, 16), dt.date(2026, 6, 16), "hmorgan", "review",
                             dt.datetime(2026, 11, 29, tzinfo=dt.UTC), "headteacher", 1)
        stranger = build.build(store, LOADED.directory, "The Valley School", "Europe/London", "visitor1",
                               dt.date(2026, 6, 16), dt.date(2026, 6, 16), "hmorgan", "review",
                               dt.datetime(2026, 11, 29, tzinfo=dt.UTC), "headteacher", 2)
    finally:
        store.close()
    data = json.loads(render.to_json(report))
    assert {(b["device"], b["device_type"], b["location"]) for b in data["breaches"]} == {(None, None, None)}
    assert [(v["device"], v["location"], v["activities"]) for v in data["visits"]] == [(None, None, 2)]
    assert [(c["label"], c["visits"]) for c in data["devices"] + data["locations"]] == [(None, 1), (None, 1)]
    assert json.loads(render.to_json(stranger))["subject"] == {"username": "visitor1", "name": None, "role": None,
                                                              "line_manager": None}
    rows = list(csv.DictReader(io.StringIO(render.to_csv(report))))
    assert [(r["device"], r["location"]) for r in rows] == [("", ""), ("", "")]
    html = render.to_html(report)
    assert "<td>unknown (unregistered), unknown</td>" in html  # the breaching visit
    assert "<td>unknown</td><td class=\"n\">1</td>" in html  # the devices and places tables
    assert "<title>Activity report: unknown (visitor1)" in render.to_html(stranger)
