"""A danger breach opens an incident: its alert series carries the incident id (not the person), and the
safeguarding lead closing it ends the series; the record keeps each revision."""

from __future__ import annotations

import datetime as dt

from prometheus_client import REGISTRY

from collector.observation import Observation, to_table
from ictwatch import settings
from reports import incidents
from rules import metrics
from rules.incidents import incident_id
from storage.store import Store
from tests.conftest import SCHOOL_DAY


def test_a_danger_breach_raises_and_closing_ends_its_alert(tmp_path):
    engine = settings.load(SCHOOL_DAY / "ictwatch.yaml").engine()
    seen = dt.datetime(2026, 6, 16, 13, 5, 12, tzinfo=dt.UTC)
    obs = Observation(int(seen.timestamp() * 1e6), "tls", "pcap", "day.pcap#200", "10.20.2.21", 50000,
                      "203.0.113.50", 443, "tcp", "00:1b:21:aa:00:04", host="hot-videos.example")
    judged = engine.evaluate(to_table([obs]))
    metrics.breaches(judged)
    incident = incident_id(seen, "day.pcap#200", "blocked-content")
    labels = {"incident": incident, "rule": "blocked-content", "location": "School office"}
    assert REGISTRY.get_sample_value("ictwatch_incident_open", labels) == 1
    store = Store(f"chdb://{tmp_path / 'store'}", "t")
    try:
        store.migrate()
        store.insert_activity(judged)
        (found,) = incidents.incidents(store, seen - dt.timedelta(hours=1), seen + dt.timedelta(hours=1))
        assert (found["incident_id"], found["user"], found["status"]) == (incident, "tevans", "open")
        assert incidents.record(store, found, "closed", "spoke to Tom", "no further action", "afinch", seen) == 1
        (after,) = incidents.incidents(store, seen - dt.timedelta(hours=1), seen + dt.timedelta(hours=1))
        assert (after["status"], after["actions"], after["version"]) == ("closed", "spoke to Tom", 1)
    finally:
        store.close()
    assert REGISTRY.get_sample_value("ictwatch_incident_open", labels) is None
