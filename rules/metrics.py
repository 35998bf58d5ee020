"""The policy's Prometheus metrics, declared once: verdicts, breaches, and the age of the category lists in
use. Labels name rules, severities, places and roles, never a person or a device. The open-incident series,
labelled by an opaque id, are rules/incidents.py's."""

from __future__ import annotations

import time

import polars as pl
from prometheus_client import Counter, Gauge

from rules.incidents import open_incidents

ACTIVITIES = Counter("ictwatch_activities_total", "Activities judged, by verdict.", ["verdict"])
BREACHES = Counter("ictwatch_breaches_total",
                   "Breaches, one per (activity, rule), by rule, severity, place and role.",
                   ["rule", "severity", "location", "role"])
CATEGORY_LISTS_AGE = Gauge(
    "ictwatch_category_lists_age_seconds",
    "Seconds since the category lists in use were installed (`ictwatch categories update`), or since "
    "their newest file changed when they were put in place by hand.",
)
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



def lists_in_use(installed_at: float | None) -> None:
    """Make the list-age gauge count from `installed_at` (a Unix time; None: unknown), growing at each scrape."""
    CATEGORY_LISTS_AGE.set_function(lambda: float("nan") if installed_at is None else time.time() - installed_at)
