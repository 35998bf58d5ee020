"""The policy engine's Prometheus metrics, declared once. Labels name rules, severities, places and roles,
never a person or a device. The open-incident series, labelled by an opaque id, are rules/incidents.py's."""

from __future__ import annotations

import polars as pl
from prometheus_client import Counter

from rules.incidents import open_incidents

ACTIVITIES = Counter("ictwatch_activities_total", "Activities judged, by verdict.", ["verdict"])
BREACHES = Counter("ictwatch_breaches_total",
                   "Breaches, one per (activity, rule), by rule, severity, place and role.",
                   ["rule", "severity", "location", "role"])
_UNKNOWN = "unknown"


def count(df: pl.DataFrame, severities: dict[str, str]) -> dict[str, int]:
    """Add a judged batch to the counters: verdicts, breaches (each rule with its own severity), and an
    open-incident series for each danger breach. Returns the batch's verdict counts."""
    verdicts = dict(df.group_by("verdict").len().iter_rows())
    for verdict, n in verdicts.items():
        ACTIVITIES.labels(verdict).inc(n)
    breaches = df.filter(pl.col("verdict") == "breach")
    if breaches.height == 0:
        return verdicts
    rows = breaches.select("ts", "source_ref", "location", "role", "rule_ids").explode("rule_ids")
    for rule, location, role, n in rows.group_by("rule_ids", "location", "role").len().iter_rows():
        BREACHES.labels(rule, severities.get(rule, _UNKNOWN), location or _UNKNOWN, role or _UNKNOWN).inc(n)
    open_incidents(rows.filter(pl.col("rule_ids").is_in([r for r, s in severities.items() if s == "danger"])))
    return verdicts

