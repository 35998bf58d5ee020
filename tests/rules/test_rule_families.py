"""Every rule family of the default policy fires on its signal, and each has a near miss that must not.

Observations are built by hand for The Valley School's network (fixtures/school-day): addresses and MACs
from its device register and network map. The expected rule for each was decided from the policy's
clauses (shared/policy-clauses.md), not read off the engine.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from collector.observation import Observation, to_table
from ictwatch import settings
from tests.conftest import SCHOOL_DAY, school_config

LONDON = ZoneInfo("Europe/London")
LAPTOP, IPAD, PHONE_LN = "00:1b:21:aa:00:01", "f0:99:bf:10:00:01", "3c:22:fb:30:00:02"


def at(clock: str, day: int = 16) -> int:
    return int(dt.datetime(2026, 6, day, *map(int, clock.split(":")), tzinfo=LONDON).timestamp() * 1_000_000)


def obs(kind: str, clock: str, src_ip: str, mac: str | None, **fields) -> Observation:
    return Observation(at(clock), kind, "pcap", f"t.pcap#{clock}", src_ip, 50000, "198.51.100.7",
                       fields.pop("dst_port", 443), "tcp", mac, **fields)


CASES = [
    # (case, observation, rules that must fire)
    ("IMAP login in clear", obs("email", "10:00", "10.20.10.21", LAPTOP, dst_port=143, host="imap.example.net",
                                auth_mechanism="LOGIN", cleartext_credentials=True, mail_encryption="none"),
     ["insecure-credentials", "mail-in-clear"]),  # the password (P2), and the whole session (P5, P2)
    ("IMAP login after STARTTLS", obs("email", "10:01", "10.20.10.21", LAPTOP, dst_port=143,
                                      host="imap.example.net", starttls=True, mail_encryption="starttls"), []),
    ("a message submitted in clear", obs("email", "10:01", "10.20.2.21", "00:1b:21:aa:00:04", dst_port=25,
                                         host="smtp.valleyschool.example", mail_from="tevans@valleyschool.example",
                                         mail_encryption="none"), ["mail-in-clear"]),
    ("IMAP over implicit TLS", obs("email", "10:01", "10.20.10.21", LAPTOP, dst_port=993,
                                   host="outlook.office365.com", mail_encryption="implicit_tls"), []),
    ("a mail session begun before the capture", obs("email", "10:01", "10.20.10.21", LAPTOP, dst_port=143,
                                                    host="imap.example.net", mail_encryption="unknown"), []),
    ("installer to a school laptop", obs("http", "10:02", "10.20.10.21", LAPTOP, dst_port=80,
                                         host="dl.example.net", url="http://dl.example.net/setup.EXE",
                                         file_ext="exe", status=200), ["installer-download"]),
    ("an installer that was not there (404)", obs("http", "10:02", "10.20.10.21", LAPTOP, dst_port=80,
                                                 host="dl.example.net", url="http://dl.example.net/old.exe",
                                                 file_ext="exe", status=404), []),
    ("installer to a personal phone", obs("http", "10:03", "10.20.1.40", PHONE_LN, dst_port=80,
                                          host="dl.example.net", file_ext="apk"), []),
    ("a PDF to a school laptop", obs("http", "10:04", "10.20.10.21", LAPTOP, dst_port=80,
                                     host="dl.example.net", file_ext="pdf"), []),
    ("unknown hardware is given an address", obs("dhcp", "10:05", "10.20.1.77", "00:11:22:33:44:55",
                                                 dst_port=67, dhcp_type="ACK"), ["unregistered-device-joined"]),
    ("unknown hardware asks for one (the ACK, not the REQUEST, is the join)", obs(
        "dhcp", "10:05", "10.20.1.77", "00:11:22:33:44:55", dst_port=67, dhcp_type="REQUEST"), []),
    ("a phone's private Wi-Fi address", obs("dhcp", "10:06", "10.20.1.78", "da:a1:19:00:00:42", dst_port=67,
                                            dhcp_type="ACK"), []),
    ("BitTorrent", obs("p2p", "10:07", "10.20.10.21", LAPTOP, dst_port=6881, info_hash="ab" * 20),
     ["peer-to-peer"]),
    ("a warez site", obs("tls", "10:08", "10.20.10.21", LAPTOP, host="thepiratebay.org", sni="thepiratebay.org"),
     ["peer-to-peer"]),
    ("a VPN", obs("tls", "12:30", "10.20.1.40", PHONE_LN, host="nordvpn.com", sni="nordvpn.com"),
     ["filter-circumvention"]),
    ("an open web proxy", obs("tls", "12:31", "10.20.1.40", PHONE_LN, host="www.croxyproxy.com",
                              sni="www.croxyproxy.com"), ["filter-circumvention"]),
    ("Tor: a relay's address, under a made-up name", Observation(
        at("12:32"), "tls", "pcap", "t.pcap#tor", "10.20.1.40", 50000, "192.0.2.201", 443, "tcp", PHONE_LN,
        host="www.q7xkz2mvd4.com", sni="www.q7xkz2mvd4.com"), ["filter-circumvention"]),
    ("HTTPS to an address next to a relay's", Observation(
        at("12:33"), "tls", "pcap", "t.pcap#near", "10.20.1.40", 50000, "192.0.2.20", 443, "tcp", PHONE_LN,
        host="www.example.org", sni="www.example.org"), []),
    ("looking up a DoH resolver's name", obs("dns", "10:09", "10.20.10.21", LAPTOP, dst_port=53, host="dns.google",
                                             qtype="A"), []),
    ("social media on a school iPad in the staff room at lunch", obs(
        "tls", "12:30", "10.20.1.50", IPAD, host="www.facebook.com", sni="www.facebook.com"), ["ipad-personal-use"]),
    ("a dating site on a school iPad in a lesson", obs("tls", "10:16", "10.20.10.60", IPAD, host="www.tinder.com",
                                                      sni="www.tinder.com"),
     ["personal-use-restricted-hours", "ipad-personal-use", "ipad-unsuitable-for-pupils"]),  # P18 too: a lesson
    ("a dating site on a teacher's own phone at lunch in the staff room", obs(
        "tls", "12:30", "10.20.1.40", PHONE_LN, host="www.tinder.com", sni="www.tinder.com"), []),
    ("a lesson site on a school iPad", obs("tls", "10:10", "10.20.10.60", IPAD, host="classroom.google.com",
                                           sni="classroom.google.com"), []),
    ("a large upload from a school iPad to a photo site", obs(
        "flow", "10:11", "10.20.10.60", IPAD, host="www.flickr.com", bytes_out=6_000_000, bytes_in=40_000),
     ["ipad-photo-upload"]),
    ("a small upload from a school iPad to a photo site", obs(
        "flow", "10:12", "10.20.10.60", IPAD, host="www.flickr.com", bytes_out=900_000, bytes_in=40_000), []),
    ("the MIS from a personal phone", obs("tls", "10:13", "10.20.1.40", PHONE_LN, host="mis.valleyschool.example",
                                          sni="mis.valleyschool.example"), ["mis-from-personal-device"]),
    ("the MIS from an unknown laptop", obs("tls", "10:14", "10.20.10.99", "00:11:22:33:44:66",
                                           host="mis.valleyschool.example", sni="mis.valleyschool.example"),
     ["mis-from-personal-device"]),
    ("the MIS from a school laptop", obs("tls", "10:15", "10.20.10.21", LAPTOP, host="mis.valleyschool.example",
                                         sni="mis.valleyschool.example"), []),
    ("30 MB to a file-sharing site", obs("flow", "10:17", "10.20.10.21", LAPTOP, host="www.wetransfer.com",
                                         bytes_out=30_000_000, bytes_in=90_000), ["unapproved-file-sharing-upload"]),
    ("30 MB to the school's own cloud storage", obs("flow", "10:18", "10.20.10.21", LAPTOP,
                                                    host="valleyschool.sharepoint.com", bytes_out=30_000_000,
                                                    bytes_in=90_000), []),
    ("an app store from a school laptop", obs("tls", "10:19", "10.20.10.21", LAPTOP, host="apps.apple.com",
                                              sni="apps.apple.com"), ["app-store-from-school-device"]),
    ("an app store from a personal phone", obs("tls", "12:34", "10.20.1.40", PHONE_LN, host="play.google.com",
                                               sni="play.google.com"), []),
]


@pytest.fixture(scope="module")
def engine():
    return settings.load(SCHOOL_DAY / "ictwatch.yaml").engine()


@pytest.mark.parametrize(("case", "observation", "expected"), CASES, ids=[c[0] for c in CASES])
def test_family_fires_or_stays_quiet(engine, case, observation, expected):
    (row,) = engine.evaluate(to_table([observation])).iter_rows(named=True)
    assert row["rule_ids"] == expected, case


def _engine(tmp_path, devices_edit=None, directory_edit=None):
    config = school_config(tmp_path / "school")
    for name, edit in (("devices.yaml", devices_edit), ("directory.yaml", directory_edit)):
        if edit:
            path = config.parent / name
            path.write_text(path.read_text().replace(*edit))
    return settings.load(config).engine()


PHONE_ENTRY = '{id: PH-LNGUYEN, type: personal_phone, owner: lnguyen, macs: ["3c:22:fb:30:00:02"]}'


@pytest.mark.parametrize(("since", "expected"), [("2026-06-10", ["lost-device-seen"]), ("2026-06-20", [])])
def test_a_lost_device_seen_again(tmp_path, since, expected):
    """Reported lost on 10 June: seen on the 16th, it is an I4 alert with where and when. Reported lost
    only on the 20th: on the 16th it was still in use."""
    eng = _engine(tmp_path, devices_edit=(PHONE_ENTRY, PHONE_ENTRY[:-1] + f", status: lost, status_since: {since}}}"))
    sighting = obs("tls", "10:15", "10.20.30.9", PHONE_LN, host="www.bbc.co.uk", sni="www.bbc.co.uk")
    (row,) = eng.evaluate(to_table([sighting])).iter_rows(named=True)
    assert (row["rule_ids"], row["device_status"], row["location"]) == (
        expected, "lost" if expected else "issued", "Hall")


@pytest.mark.parametrize(("leave", "expected"), [("2026-06-12", ["returned-or-leaver-device-seen"]),
                                                 ("2026-06-16", [])])
def test_a_leavers_device_seen_again(tmp_path, leave, expected):
    """Linh Nguyen left on 12 June: her phone on the 16th is an A1 case. Leaving on the 16th itself, she
    may still be in school that day."""
    person = "{username: lnguyen, name: Linh Nguyen, role: teacher, line_manager: dpatel, groups: [year3]}"
    eng = _engine(tmp_path, directory_edit=(person, person[:-1] + f", leave: {leave}}}"))
    sighting = obs("tls", "10:15", "10.20.1.40", PHONE_LN, host="www.bbc.co.uk", sni="www.bbc.co.uk")
    (row,) = eng.evaluate(to_table([sighting])).iter_rows(named=True)
    assert row["rule_ids"] == expected


@pytest.fixture(scope="module")
def school_day_capture():
    """The school day's capture: its DHCP exchanges tell identity which laptop had 10.20.10.21."""
    from collector.sources import open_source

    out: list[Observation] = []
    open_source(SCHOOL_DAY / "school-day.pcap").run(out.append)
    return out


def test_an_installer_downloaded_through_the_proxy_is_p7s(engine, school_day_capture):
    """James Carter's school laptop fetches installers through the authenticating proxy, as Squid logs them
    natively and in a school's own logformat; an HTML page beside them is a near miss."""
    from collector.logs.squid import parse_line
    from collector.logs.squid_logformat import LogFormat

    stamp = f"{at('10:30') / 1e6:.3f}"
    native = (f"{stamp} 812 10.20.10.21 TCP_MISS/200 1843200 GET http://dl.example.net/tools/Setup.exe jcarter "
              "HIER_DIRECT/203.0.113.80 application/x-msdownload")
    php = (f"{stamp} 640 10.20.10.21 TCP_MISS/200 1843200 GET http://dl.example.net/download.php?id=3 jcarter "
           "HIER_DIRECT/203.0.113.80 application/x-msdownload")
    page = (f"{stamp} 233 10.20.10.21 TCP_MISS/200 15562 GET http://www.bbc.co.uk/bitesize/articles/z3c6tfr jcarter "
            "HIER_DIRECT/151.101.0.81 text/html")
    school = LogFormat('%tl %>a:%>p %un %rm %ru %>Hs %<st %tr %Ss %mt "%{User-Agent}>h"')
    custom = ('16/Jun/2026:10:31:00 +0100 10.20.10.21:51234 jcarter GET http://dl.example.net/tools/Setup.exe 200 '
              '1843200 805 TCP_MISS application/x-msdownload "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"')
    mine = [parse_line(native, "access.log:1"), parse_line(php, "access.log:2"), parse_line(page, "access.log:3"),
            school.parse(custom, "school.log:1")]
    activities = engine.evaluate(to_table(school_day_capture + mine))
    rows = activities.filter(pl.col("source_ref").is_in([o.source_ref for o in mine])).sort("source_ref")
    assert rows.select("source_ref", "device", "file_ext", "rule_ids").rows() == [
        ("access.log:1", "LT-JCARTER", "exe", ["installer-download"]),
        ("access.log:2", "LT-JCARTER", "exe", ["installer-download"]),
        ("access.log:3", "LT-JCARTER", None, []),
        ("school.log:1", "LT-JCARTER", "exe", ["installer-download"]),
    ]


def test_the_proxys_login_challenge_breaks_no_rule(engine, school_day_capture):
    """Each site James Carter's browser opens through the authenticating proxy is first answered 407 (no
    credentials yet), then allowed or refused: only the second line is his activity."""
    from collector.logs.squid import parse_line

    stamp = f"{at('11:15') / 1e6:.3f}"
    lines = [
        f"{stamp} 0 10.20.10.21 TCP_DENIED/407 3912 CONNECT www.bet365.com:443 - HIER_NONE/- text/html",
        f"{stamp} 0 10.20.10.21 TCP_DENIED/403 3912 CONNECT www.bet365.com:443 jcarter HIER_NONE/- text/html",
        f"{stamp} 0 10.20.10.21 TCP_DENIED/407 3912 CONNECT www.facebook.com:443 - HIER_NONE/- text/html",
        f"{stamp} 9000 10.20.10.21 TCP_TUNNEL/200 88120 CONNECT www.facebook.com:443 jcarter "
        "HIER_DIRECT/157.240.1.35 -",
    ]
    mine = [parse_line(line, f"access.log:{n}") for n, line in enumerate(lines, 1)]
    activities = engine.evaluate(to_table(school_day_capture + mine))
    rows = activities.filter(pl.col("source_ref").str.starts_with("access.log:")).sort("source_ref")
    assert rows.select("source_ref", "status", "rule_ids", "verdict").rows() == [
        ("access.log:1", 407, [], "allowed"),
        ("access.log:2", 403, ["blocked-content"], "breach"),
        ("access.log:3", 407, [], "allowed"),
        ("access.log:4", 200, ["personal-use-restricted-hours"], "breach"),
    ]
    from rules.explain import explain

    said = explain(engine, rows.head(1))
    assert "The proxy asked for a login here" in said and "Rule blocked-content" in said
    assert "matched" not in said.split("Rule blocked-content", 1)[1].split("\n", 1)[0]
