"""Rendering a `UserReport` as HTML (jinja2, autoescaped), CSV (the activity rows) or JSON.

Hostnames, URLs and user agents come off the network and are hostile input: the HTML environment
escapes every value, and no template marks anything safe; the one filter that returns markup, `wrap`,
escapes its text first and only then adds the `<wbr>` break points.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
from typing import Any

import jinja2
import markupsafe

from reports.model import ActivityRow, UserReport
from reports.words import plural
from rules.policy import SEVERITY_MEANING
from rules.visits import VISIT_GAP

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("reports", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)



def wrap(text: object) -> markupsafe.Markup:
    """`text` escaped, then with a line-break opportunity (`<wbr>`) after each dot and slash, so a host name or
    URL wraps between its labels and path segments, never inside one."""
    escaped = str(markupsafe.escape(text))
    return markupsafe.Markup(escaped.replace(".", ".<wbr>").replace("/", "/<wbr>"))


def when(t: dt.datetime) -> str:
    """A time with its date, to the second."""
    return f"{t:%Y-%m-%d %H:%M:%S}"


def span(start: dt.datetime, end: dt.datetime) -> str:
    """From `start` to `end`, the date said once when it is the same, the end left out when it is the same
    second: "2026-06-16 09:42:10–09:43:05"."""
    if (end - start) < dt.timedelta(seconds=1) and end.second == start.second:
        return when(start)
    return f"{when(start)}–{end:%H:%M:%S}" if end.date() == start.date() else f"{when(start)} – {when(end)}"


def duration(minutes: int) -> str:
    """Minutes as a reader says them: "5 minutes", "1 h 05 min"."""
    return plural(minutes, "minute") if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


_ENV.filters["bytes"] = lambda n: _human_bytes(int(n or 0))
_ENV.filters["label"] = lambda name: str(name).replace("_", " ").capitalize()
_ENV.filters["device_kind"] = lambda kind: str(kind).replace("_", " ").replace("ipad", "iPad")  # school iPad
_ENV.filters["unknown"] = lambda value: "unknown" if value is None else value  # the model's None, in words
_ENV.filters["plural"] = plural
_ENV.filters["wrap"] = wrap
_ENV.filters["when"] = when
_ENV.filters["span"] = span
_ENV.filters["duration"] = duration
_ENV.filters["multiply"] = lambda x, y: x * y
_ENV.globals["SEVERITY_MEANING"] = SEVERITY_MEANING
_ENV.globals["KIND_WORDS"] = {
    "dns": "DNS lookup", "tls": "TLS hello", "quic": "QUIC hello", "http": "web request", "proxy": "proxied request",
    "flow": "connection", "email": "mail session", "dhcp": "joining the network", "p2p": "peer-to-peer",
    "login": "login", "absence": "not seen on the network",
}
"""Each observation kind as a reader would say it."""
_ENV.globals["URLS_SHOWN"] = 3  # a visit's URLs shown under its site; the CSV and JSON hold them all
_ENV.globals["VISIT_GAP_S"] = int(VISIT_GAP.total_seconds())


def _human_bytes(n: int) -> str:
    """In the decimal units the policy's thresholds and the explanations use (1 MB is 1,000,000 bytes), so a
    table's figures add up to what a breach says."""
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def page(template: str, **context: Any) -> str:
    """A page of the web interface (reports/templates/web/), autoescaped like the reports."""
    return _ENV.get_template(template).render(**context)


PAGE_ROWS = 2000
"""Visits on one HTML page, with their evidence (the CSV and JSON hold every activity)."""


def to_html(report: UserReport, page: int = 1, page_link: str = "") -> str:
    """The report as one self-contained HTML page (inline CSS and SVG, no requests), showing page `page`
    of the visits; `page_link` + a number links to the other pages, where there are links."""
    pages = max(1, -(-len(report.visits) // PAGE_ROWS))
    page = min(max(page, 1), pages)
    breaches: dict[int | None, list[ActivityRow]] = {}
    for row in report.breaches:
        breaches.setdefault(row.visit, []).append(row)
    return _ENV.get_template("report.html.j2").render(r=report, page=page, pages=pages, page_rows=PAGE_ROWS,
                                                      page_link=page_link, breaches_of=breaches)


def to_csv(report: UserReport) -> str:
    """Every activity row of the report, one CSV line each, with the number of the visit it belongs to (empty
    for the school's network services)."""
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
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v  # a spreadsheet would run it as a formula
    return v.isoformat() if hasattr(v, "isoformat") else v


def to_json(report: UserReport) -> str:
    """The whole typed report as JSON."""
    return json.dumps(dataclasses.asdict(report), default=lambda v: v.isoformat(), indent=1)
