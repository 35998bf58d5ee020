"""Incidents: each danger-severity breach, under an id that alerts and pages carry instead of a name,
with what the safeguarding lead records about it (status, actions, outcome) as revisions in `incidents`.
A breach of a device in someone's care names the device and that person (`responsible`, read from the
activity), no user.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from reports.breaches import per_rule
from rules.incidents import close_incident, incident_id
from storage.store import Store


def incidents(store: Store, since: dt.datetime, until: dt.datetime) -> list[dict]:
    """Breaches of a danger-severity rule in `since <= ts < until`, newest first, each with its latest
    recorded revision (a rule of lower severity broken by the same activity opens none)."""
    stored = per_rule(store.activity(None, since, until, breaches_only=True))
    recorded = {r["incident_id"]: r for r in store.incidents().to_dicts()}
    out = []
    for row in stored.filter(pl.col("severity") == "danger").iter_rows(named=True):
        iid = incident_id(row["ts"], row["source_ref"], row["rule"])
        latest = recorded.get(iid, {})
        out.append({
            "incident_id": iid, "opened": row["ts"], "rule_id": row["rule"], "clauses": row["clauses"],
            "severity": row["severity"], "user": row["user"], "device": row["device"], "location": row["location"],
            "responsible": row["responsible"],
            "activity_ref": row["source_ref"], "status": latest.get("status", "open"),
            "actions": latest.get("actions", ""), "outcome": latest.get("outcome", ""),
            "version": latest.get("version", 0),
        })
    return sorted(out, key=lambda r: r["opened"], reverse=True)


def record(store: Store, incident: dict, status: str, actions: str, outcome: str, by: str, now: dt.datetime) -> int:
    """Store a new revision of `incident` (one of `incidents()`); returns its version number. Closing it
    ends its alert (the `ictwatch_incident_open` series) when the daemon serving the page raised it."""
    version = int(incident["version"]) + 1
    if status == "closed":
        close_incident(incident["incident_id"], incident["rule_id"], incident["location"] or "unknown")
    store.insert_incident({
        "incident_id": incident["incident_id"], "version": version, "opened": incident["opened"],
        "rule_id": incident["rule_id"], "clauses": list(incident["clauses"]), "severity": incident["severity"],
        "user": incident["user"], "device": incident["device"], "location": incident["location"],
        "activity_ref": incident["activity_ref"], "status": status, "actions": actions, "outcome": outcome,
        "recorded_by": by, "recorded_at": now,
    })
    return version
