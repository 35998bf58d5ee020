"""Rendering a `UserReport` as HTML (jinja2, autoescaped), CSV (the activity rows) or JSON.

Hostnames, URLs and user agents come off the network and are hostile input: the HTML environment
escapes every value, and no template marks anything safe.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from typing import Any

import jinja2

from reports.model import ActivityRow, UserReport

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("reports", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters["bytes"] = lambda n: _human_bytes(int(n or 0))
_ENV.filters["label"] = lambda name: str(name).replace("_", " ").capitalize()
_ENV.filters["unknown"] = lambda value: "unknown" if value is None else value  # the model's None, in words


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def page(template: str, **context: Any) -> str:
    """A page of the web interface (reports/templates/web/), autoescaped like the reports."""
    return _ENV.get_template(template).render(**context)


PAGE_ROWS = 2000
"""Activity rows on one HTML page (the CSV and JSON hold them all)."""


def to_html(report: UserReport, page: int = 1, page_link: str = "") -> str:
    """The report as one self-contained HTML page (inline CSS and SVG, no requests), showing page `page`
    of the activity log; `page_link` + a number links to the other pages, where there are links."""
    pages = max(1, -(-len(report.activity) // PAGE_ROWS))
    page = min(max(page, 1), pages)
    return _ENV.get_template("report.html.j2").render(r=report, page=page, pages=pages, page_rows=PAGE_ROWS,
                                                      page_link=page_link)


def to_csv(report: UserReport) -> str:
    """Every activity row of the report, one CSV line each."""
    out = io.StringIO()
    names = [f.name for f in dataclasses.fields(ActivityRow)]
    writer = csv.writer(out)
    writer.writerow(names)
    for row in report.activity:
        writer.writerow([_csv_value(getattr(row, n)) for n in names])
    return out.getvalue()


def _csv_value(v: Any) -> Any:
    if isinstance(v, tuple):
        return ";".join(v)
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@"):
        return "'" + v  # a spreadsheet would run it as a formula
    return v.isoformat() if hasattr(v, "isoformat") else v


def to_json(report: UserReport) -> str:
    """The whole typed report as JSON."""
    return json.dumps(dataclasses.asdict(report), default=lambda v: v.isoformat(), indent=1)
