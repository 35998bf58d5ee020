"""The policy engine's Prometheus metrics, declared once. Labels name rules, severities, places and roles,
never a person or a device; an open incident is labelled by its opaque id (reports/incidents.py)."""

from __future__ import annotations

import datetime as dt
import hashlib

import polars as pl
from prometheus_client import Counter, Gauge

from collector.metrics import OBSERVATIONS

ACTIVITIES = Counter("ictwatch_activities_total", "Activities judged, by verdict.", ["verdict"])
BREACHES = Counter("ictwatch_breaches_total",
                   "Breaches, one per (activity, rule), by rule, severity, place and role.",
                   ["rule", "severity", "location", "role"])
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


def close_incident(incident: str, rule: str, location: str) -> None:
    """End an open incident's series (the safeguarding lead closed it); nothing if this process has none."""
    labels = (incident, rule, location)
    if labels in _open:
        _open.discard(labels)
        INCIDENT_OPEN.remove(*labels)


def incident_id(ts: dt.datetime, source_ref: str, rule_id: str) -> str:
    """A short, stable id for one (activity, rule): the same breach always has the same id, and the id says
    nothing about the person. Alerts, the incidents page and the `incidents` table use it."""
    key = f"{ts.astimezone(dt.UTC).isoformat()}|{source_ref}|{rule_id}"
    return "INC-" + hashlib.sha256(key.encode()).hexdigest()[:10].upper()


def count(df: pl.DataFrame, severities: dict[str, str]) -> dict[str, int]:
    """Add a judged batch to the counters: observations, verdicts, breaches (each rule with its own
    severity), and an open-incident series for each danger breach. Returns the batch's verdict counts."""
    for source, kind, n in df.group_by("source", "kind").len().iter_rows():
        OBSERVATIONS.labels(source or _UNKNOWN, kind or _UNKNOWN).inc(n)
    verdicts = dict(df.group_by("verdict").len().iter_rows())
    for verdict, n in verdicts.items():
        ACTIVITIES.labels(verdict).inc(n)
    breaches = df.filter(pl.col("verdict") == "breach")
    if breaches.height == 0:
        return verdicts
    rows = breaches.select("ts", "source_ref", "location", "role", "rule_ids").explode("rule_ids")
    for rule, location, role, n in rows.group_by("rule_ids", "location", "role").len().iter_rows():
        BREACHES.labels(rule, severities.get(rule, _UNKNOWN), location or _UNKNOWN, role or _UNKNOWN).inc(n)
    danger = rows.filter(pl.col("rule_ids").is_in([r for r, s in severities.items() if s == "danger"]))
    room = max(MAX_OPEN_SERIES - len(_open), 0)
    for ts, ref, location, _role, rule in danger.head(room).iter_rows():
        labels = (incident_id(ts, ref, rule), rule, location or _UNKNOWN)
        _open.add(labels)
        INCIDENT_OPEN.labels(*labels).set(1)
    for rule, location, n in danger.slice(room).group_by("rule_ids", "location").len().iter_rows():
        INCIDENTS_UNLABELLED.labels(rule, location or _UNKNOWN).inc(n)
    return verdicts
POLICY_INFO = Gauge("ictwatch_policy_info", "The policy in force (value 1).", ["version"])
RELOAD_SUCCESS = Gauge("ictwatch_last_reload_success",
                       "1 if the last reload (SIGHUP) took, 0 if the old configuration stayed.")
RELOAD_TIME = Gauge("ictwatch_last_reload_timestamp_seconds", "When the configuration was last (re)loaded.")
