"""Incidents: the danger-severity breaches that need a human, under ids that say nothing about the person.

The id is what the alert, the incidents page and the `incidents` table share. While a daemon runs, each
incident it raised is a series of `ictwatch_incident_open` (alerts read it) until the safeguarding lead
closes it; how many series one process keeps at once is bounded, and the breaches past the bound are
counted by rule and place instead.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import polars as pl
from prometheus_client import Counter, Gauge

INCIDENT_OPEN = Gauge("ictwatch_incident_open",
                      "1 for each danger-severity breach not yet closed by the safeguarding lead (alerts read it).",
                      ["incident", "rule", "location"])
MAX_OPEN_SERIES = 200
"""Open-incident series this process keeps at once. Each is a series in Prometheus: a flood of danger
breaches (a machine retrying a blocked site all day) must not become a flood of series. The breaches past
it are all stored and on the incidents page; they are counted in `INCIDENTS_UNLABELLED`, which alerts."""
INCIDENTS_UNLABELLED = Counter(
    "ictwatch_incidents_unlabelled_total",
    f"Danger breaches recorded while {MAX_OPEN_SERIES} incidents were already open as series: on the incidents "
    "page, without an alert series of their own.", ["rule", "location"])
_open: set[tuple[str, str, str]] = set()  # the label sets of INCIDENT_OPEN this process has set and not closed
_UNKNOWN = "unknown"


def incident_id(ts: dt.datetime, source_ref: str, rule_id: str) -> str:
    """A short, stable id for one (activity, rule): the same breach always has the same id, and the id says
    nothing about the person. Alerts, the incidents page and the `incidents` table use it."""
    key = f"{ts.astimezone(dt.UTC).isoformat()}|{source_ref}|{rule_id}"
    return "INC-" + hashlib.sha256(key.encode()).hexdigest()[:10].upper()


def open_incidents(danger: pl.DataFrame) -> None:
    """Raise an open-incident series for each danger breach in `danger` (columns ts, source_ref, location,
    rule_ids: one row per activity and rule), as long as there is room; count the rest by rule and place."""
    room = max(MAX_OPEN_SERIES - len(_open), 0)
    for ts, ref, location, rule in danger.select("ts", "source_ref", "location", "rule_ids").head(room).iter_rows():
        labels = (incident_id(ts, ref, rule), rule, location or _UNKNOWN)
        _open.add(labels)
        INCIDENT_OPEN.labels(*labels).set(1)
    for rule, location, n in danger.slice(room).group_by("rule_ids", "location").len().iter_rows():
        INCIDENTS_UNLABELLED.labels(rule, location or _UNKNOWN).inc(n)


def close_incident(incident: str, rule: str, location: str) -> None:
    """End an open incident's series (the safeguarding lead closed it); nothing if this process has none."""
    labels = (incident, rule, location)
    if labels in _open:
        _open.discard(labels)
        INCIDENT_OPEN.remove(*labels)
