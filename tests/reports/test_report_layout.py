"""The HTML report as a reader sees it: real replays (the school day, the school week) into chDB, reports
written by the command, loaded in Debian's Chromium through Playwright at A4 width, on screen and as
printed. Nothing may be wider than the page, and every section must be there."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SCHOOL_DAY, SCHOOL_WEEK_CONFIG, run_cli
from tests.reports.conftest import need_chromium

A4_PX = 794
"""210 mm at 96 CSS pixels to the inch."""
A4_PRINTED_PX = 703
"""The same less the report's 12 mm print margins each side (186 mm)."""
SECTIONS = ("at-a-glance", "request", "summary", "when", "heatmap", "heatmap-legend", "by-day", "by-category",
            "devices", "locations", "services", "breaches", "severity-legend", "waived", "blocked", "in-care", "visits",
            "evidence")


def _report(config: Path, store: Path, out: Path, user: str, first: str, last: str) -> Path:
    run_cli("report", "--config", config, "--user", user, "--from", first, "--to", last, "--requested-by", "hmorgan",
            "--reason", "layout check", "-o", out, store=store, check=True)
    return out


@pytest.fixture(scope="module")
def reports(tmp_path_factory, school_week) -> dict[str, Path]:
    """Sam Okafor's school day; James Carter's school week (days by hours) and his autumn months around it
    (a calendar), each as the command writes it."""
    need_chromium()
    tmp = tmp_path_factory.mktemp("layout")
    day = tmp / "day"
    run_cli("replay", "--config", SCHOOL_DAY / "ictwatch.yaml", SCHOOL_DAY / "school-day.pcap",
            SCHOOL_DAY / "squid-access.log", store=day, check=True)
    _, week, _ = school_week  # tests/conftest.py
    return {
        "day": _report(SCHOOL_DAY / "ictwatch.yaml", day, tmp / "day.html", "sokafor", "2026-06-16", "2026-06-16"),
        "week": _report(SCHOOL_WEEK_CONFIG, week, tmp / "week.html", "jcarter", "2026-10-26", "2026-10-30"),
        "months": _report(SCHOOL_WEEK_CONFIG, week, tmp / "months.html", "jcarter", "2026-10-01", "2026-11-30"),
    }


_TOO_WIDE = """() => {
  const page = document.documentElement.clientWidth;
  return [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > page + 0.5 || e.getBoundingClientRect().left < -0.5)
    .map(e => `${e.tagName.toLowerCase()}#${e.id}: ${e.textContent.slice(0, 40)}`);
}"""


@pytest.mark.parametrize("media", ["screen", "print"])
@pytest.mark.parametrize("name", ["day", "week", "months"])
def test_the_report_fits_an_a4_page_and_has_every_section(reports, browser, name, media):
    width = A4_PX if media == "screen" else A4_PRINTED_PX
    page = browser.new_page(viewport={"width": width, "height": 1123})
    page.emulate_media(media=media)
    page.goto(reports[name].as_uri())
    assert [s for s in SECTIONS if page.locator(f"#{s}").count() != 1] == []
    scroll, client = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert scroll <= client == width
    assert page.evaluate(_TOO_WIDE) == []
    page.close()


def test_the_heatmap_takes_the_shape_of_the_period(reports, browser):
    page = browser.new_page(viewport={"width": A4_PX, "height": 1123})
    shapes = {}
    for name, path in reports.items():
        page.goto(path.as_uri())
        shapes[name] = (page.get_attribute("#heatmap", "aria-label"), page.locator("#heatmap > text").count())
    page.close()
    # a day: 8 hour labels (every third hour) and 1 day; a week: the same and 5 days; October and November
    # 2026 from Monday 28 September: 10 weeks and 7 weekday labels
    assert shapes == {"day": ("time online hours", 8 + 1), "week": ("time online days", 8 + 5),
                      "months": ("time online calendar", 7 + 10 + 61)}
