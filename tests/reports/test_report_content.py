"""What a report shows, checked against activity whose times are chosen by hand: the hour-by-weekday
heatmap, active minutes by category, the SVG charts, the paging of the activity log, and how each format
says that something is not known."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import xml.etree.ElementTree as ET

import polars as pl
import pytest

from ictwatch import settings
from reports import build, render
from storage.store import Store
from tests.conftest import SCHOOL_DAY
from tests.storage.test_store import activities

LOADED = settings.load(SCHOOL_DAY / "ictwatch.yaml")


@pytest.fixture
def report_of(tmp_path):
    store = Store(f"chdb://{tmp_path / 'store'}", "t")
    store.migrate()

    def make(n: int, last_day: int = 16):
        store.insert_activity(activities(n))  # Sam Okafor's phone, Instagram, from 09:00 UTC a minute apart
        return build.build(store, LOADED.directory, "The Valley School", "Europe/London", "sokafor",
                           dt.date(2026, 6, 16), dt.date(2026, 6, last_day), "dpatel", "review",
                           dt.datetime(2026, 11, 29, tzinfo=dt.UTC), "line manager", 1)

    yield make
    store.close()


def test_heatmap_and_active_minutes(report_of):
    report = report_of(5)  # 10:00 to 10:04 BST on Tuesday 16 June
    assert report.heatmap[1][10] == 5 and sum(map(sum, report.heatmap)) == 5
    assert report.active_minutes == 5
    assert [(c.label, c.activities, c.minutes) for c in report.by_category] == [("social_networks", 5, 5)]
    html = render.to_html(report)
    svg = ET.fromstring(re.search(r'<svg id="heatmap".*?</svg>', html, re.S).group(0))
    cells = svg.findall("{http://www.w3.org/2000/svg}rect")
    assert len(cells) == 7 * 24
    busy = [c for c in cells if c.findtext("{http://www.w3.org/2000/svg}title") != "0"]
    assert len(busy) == 1 and busy[0].get("fill-opacity") == "1.00" and busy[0].get("x") == str(40 + 10 * 20)
    assert "over 5 active minutes" in html and "<script" not in html and "http" not in re.sub(
        r'xmlns="http://www.w3.org/2000/svg"', "", html.split("<h2>All activity")[0])  # nothing fetched


def test_the_activity_log_is_paged_in_html_and_whole_in_csv(report_of):
    report = report_of(2500, last_day=18)  # 2,500 minutes from 10:00 on the 16th end on the 18th
    first = render.to_html(report)
    assert "Rows 1 to 2000 of 2500 (page 1 of 2; the CSV and JSON" in " ".join(first.split())
    assert first.count("<td>tls</td>") == 2000 and 'id="next"' not in first  # a file has no page links
    second = render.to_html(report, page=2, page_link="/reports/x/html?page=")
    assert "Rows 2001 to 2500 of 2500" in " ".join(second.split()) and second.count("<td>tls</td>") == 500
    assert 'href="/reports/x/html?page=1"' in second
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
    assert [(c["label"], c["activities"]) for c in data["devices"] + data["locations"]] == [(None, 2), (None, 2)]
    assert json.loads(render.to_json(stranger))["subject"] == {"username": "visitor1", "name": None, "role": None,
                                                              "line_manager": None}
    rows = list(csv.DictReader(io.StringIO(render.to_csv(report))))
    assert [(r["device"], r["location"]) for r in rows] == [("", ""), ("", "")]
    html = render.to_html(report)
    assert html.count("<td>unknown (unregistered)</td>\n<td>unknown</td>") == 2  # the two breaches
    assert "<td>unknown</td><td>2</td>" in html  # the devices and places tables
    assert "<title>Activity report: unknown (visitor1)" in render.to_html(stranger)
