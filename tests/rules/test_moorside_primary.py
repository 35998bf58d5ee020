"""A second school's day, Moorside Primary School's Monday 30 March 2026 (issue 18), through the real CLI: its
generated capture and proxy log replayed into a temporary chDB store, the breaches compared exactly with
the ones written by hand in fixtures/moorside-primary/expected-breaches.csv, and the points the day is
built to show checked one by one.

The day after the clocks went forward (BST); DHCP relayed by the core router with option 82 from the
Wi-Fi controller (access point and SSID); a visitor on the guest Wi-Fi; an authenticating Squid whose
sessions open with 407 challenges, one real refusal and proxied installer downloads; a waiver for one
teacher beside another teacher doing the same thing without one.
"""

from __future__ import annotations

import re

import polars as pl
import pytest

from fixtures import make_moorside_primary as day
from rules.policy import CLAUSE_IDS
from tests.conftest import ROOT, expected_breaches, run_cli, stored_activity, stored_breaches

MOORSIDE = ROOT / "fixtures" / "moorside-primary"
CONFIG = MOORSIDE / "ictwatch.yaml"


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    """(store, replay's output, every stored activity)."""
    out = tmp_path_factory.mktemp("moorside")
    day.main(out)
    store = out / "store"
    # the proxy log named first: the capture's DHCP leases must still name and place the proxy's clients
    proc = run_cli("replay", "--config", CONFIG, out / "access.log", out / "moorside-primary.pcap", store=store,
                   check=True)
    return store, proc.stdout, stored_activity(store)


def _key(row: dict) -> tuple:
    return tuple(row.values())


def test_the_days_breaches_are_exactly_the_hand_written_ones(replayed):
    store, _, _ = replayed
    assert sorted(stored_breaches(CONFIG, store), key=_key) == sorted(expected_breaches(MOORSIDE), key=_key)


def test_every_dhcp_message_of_the_visitor_is_placed_on_the_guest_wifi(replayed):
    """The four messages of the visitor's join are between the core router and the DHCP server in the server
    room; the visitor is on the guest Wi-Fi (option 82's SSID, the giaddr's subnet) for every one of them."""
    *_, rows = replayed
    visitor = rows.filter((pl.col("kind") == "dhcp") & (pl.col("src_mac") == day.VISITOR))
    assert sorted(visitor.get_column("dhcp_type")) == ["ACK", "DISCOVER", "OFFER", "REQUEST"]
    assert visitor.select("location", "location_kind").unique().rows() == [("Guest Wi-Fi", "guest")]
    assert (visitor.get_column("verdict") == "allowed").all()


def test_a_staff_devices_join_is_placed_by_its_access_point(replayed):
    """Baljit Kaur's phone joins in the staff room before school and again in her classroom at 10:20: each
    ACK is where the access point is, not in the server room, and her traffic follows."""
    *_, rows = replayed
    acks = rows.filter((pl.col("kind") == "dhcp") & (pl.col("src_mac") == "a4:83:e7:20:00:02")
                       & (pl.col("dhcp_type") == "ACK")).sort("ts")
    assert acks.get_column("location").to_list() == ["Staff room", "Classrooms"]


def test_the_407_challenges_are_neither_refusals_nor_breaches(replayed):
    """Ten challenges (two for each of five sessions): stored as the proxy's answer, not denied, not blocked,
    and judged like nothing happened; the replay's count of refused requests is the one real refusal."""
    _, summary, rows = replayed
    challenges = rows.filter((pl.col("kind") == "proxy") & (pl.col("status") == 407))
    assert challenges.height == 10
    assert challenges.get_column("proxy_action").unique().to_list() == ["TCP_DENIED"]
    assert not challenges.get_column("denied").any()
    assert (challenges.get_column("verdict") == "allowed").all()
    assert "the proxy refused 1 request" in summary


def test_the_refusal_is_a_blocked_attempt_that_reads_as_tried_and_refused(replayed, tmp_path):
    """The one request the filter turned away is the only one stored as denied; `explain` and Emma Wood's
    report say she tried and was refused, not that she reached the site."""
    store, _, rows = replayed
    refused = rows.filter(pl.col("denied"))
    assert refused.select("status", "host", "user", "verdict").rows() == [(403, "www.bet365.com", "ewood", "breach")]
    explained = run_cli("explain", "--config", CONFIG, refused.item(0, "source_ref"), "--kind", "proxy",
                        store=store, check=True).stdout
    assert "tried" in explained.lower() and "refused" in explained.lower()
    report = tmp_path / "ewood.html"
    run_cli("report", "--config", CONFIG, "--user", "ewood", "--from", "2026-03-30", "--to", "2026-03-30",
            "--requested-by", "oadeyemi", "--reason", "a refused request to a betting site", "-o", report,
            store=store, check=True)
    breach = [r.lower() for r in re.findall(r"<tr\b.*?</tr>", report.read_text(), re.S)
              if "www.bet365.com" in r and "blocked-content" in r]  # the breach's row in the table of breaches
    assert breach and all("tried" in r and "refused" in r and "reached" not in r for r in breach)


def test_proxied_downloads_keep_their_file_type(replayed):
    """The installer by its URL, the other by its content type; a PDF stays a PDF; the HTML pages are not
    programs whatever their URL says."""
    *_, rows = replayed
    proxied = rows.filter((pl.col("kind") == "proxy") & (pl.col("method") == "GET") & (pl.col("status") == 200))
    ext = dict(proxied.select("url", "file_ext").rows())
    assert ext["http://download.example-tools.net/releases/Setup.exe"] == "exe"
    assert ext["http://dl.printer-drivers.example/get?file=4411"] == "exe"
    assert ext["http://www.lea-resources.example/year4/fractions-worksheet.pdf"] == "pdf"
    assert ext["http://search.example.org/search?q=Setup.exe"] in (None, "")
    assert ext["http://www.freeware-hub.example/download.php?id=5521"] not in ("exe", "msi")


def test_the_waiver_covers_one_teacher_only_while_it_lasts(replayed):
    """Aled Hughes's Facebook at 13:40 BST (12:40 UTC) is waived; his at 14:31 and Baljit Kaur's at 13:41 are
    breaches (in the exact comparison)."""
    *_, rows = replayed
    waived = rows.filter(pl.col("verdict") == "waived")
    seen = [(r["user"], r["host"], r["waiver_ids"], r["ts"].isoformat()[:19]) for r in waived.iter_rows(named=True)]
    assert seen == [("ahughes", "www.facebook.com", ["w-ahughes-hospital"], "2026-03-30T12:40:00")]


def test_clause_ids_cited_are_the_policys():
    assert {c for r in expected_breaches(MOORSIDE) for c in r["clause"].split(",")} <= CLAUSE_IDS
