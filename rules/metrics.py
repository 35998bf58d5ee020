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


def verdicts(df: pl.DataFrame) -> dict[str, int]:
    """Add a judged batch to the verdict counter; returns the batch's verdict counts."""
    counts = dict(df.group_by("verdict").len().iter_rows())
    for verdict, n in counts.items():
        ACTIVITIES.labels(verdict).inc(n)
    return counts


def breaches(stored: pl.DataFrame) -> None:
    """Count the breaches among rows just stored, each (activity, rule) with the rule's own severity, and raise
    an open-incident series for each danger one. A rule that the record's earlier stored judgement already
    broke (`rules_before`, when the row replaced one: a re-import) is not counted or raised again."""
    rows = stored.filter(pl.col("verdict") == "breach")
    if rows.height == 0:
        return
    before = (pl.col("rules_before") if "rules_before" in rows.columns else pl.lit(None)).cast(pl.List(pl.String))
    rows = (rows.select("ts", "source_ref", "location", "role", "rule_ids", "rule_severities",
                        before.fill_null(pl.lit([], pl.List(pl.String))).alias("_before"))
            .explode("rule_ids", "rule_severities").filter(~pl.col("_before").list.contains(pl.col("rule_ids"))))
    for rule, severity, location, role, n in rows.group_by(
            "rule_ids", "rule_severities", "location", "role").len().iter_rows():
        BREACHES.labels(rule, severity or _UNKNOWN, location or _UNKNOWN, role or _UNKNOWN).inc(n)
    open_incidents(rows.filter(pl.col("rule_severities") == "danger"))


def lists_in_use(installed_at: float | None) -> None:
    """Make the list-age gauge count from `installed_at` (a Unix time; None: unknown), growing at each scrape."""
    CATEGORY_LISTS_AGE.set_function(lambda: float("nan") if installed_at is None else time.time() - installed_at)
