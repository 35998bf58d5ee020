"""Each danger breach raises an open-incident series under its id, up to a bound; past it, the breaches are
counted by rule and place."""

from __future__ import annotations

import datetime as dt

from prometheus_client import REGISTRY

from collector.observation import Observation, to_table
from ictwatch import settings
from rules import incidents, metrics
from tests.conftest import SCHOOL_DAY


def test_a_flood_of_danger_breaches_keeps_the_series_bounded():
    """Past `MAX_OPEN_SERIES` open incidents, further danger breaches are counted by rule and place (an
    alert reads the counter) instead of each becoming a series of its own."""
    engine = settings.load(SCHOOL_DAY / "ictwatch.yaml").engine()
    seen = dt.datetime(2026, 6, 16, 13, 5, 12, tzinfo=dt.UTC)
    extra = 50
    room = incidents.MAX_OPEN_SERIES - len(incidents._open)
    flood = [Observation(int(seen.timestamp() * 1e6) + i, "tls", "pcap", f"flood.pcap#{i}", "10.20.2.21", 50000,
                         "203.0.113.50", 443, "tcp", "00:1b:21:aa:00:04", host="hot-videos.example")
             for i in range(room + extra)]
    labels = {"rule": "blocked-content", "location": "School office"}
    before = REGISTRY.get_sample_value("ictwatch_incidents_unlabelled_total", labels) or 0
    opened_before = set(incidents._open)
    try:
        metrics.breaches(engine.evaluate(to_table(flood)))
        assert len(incidents._open) == incidents.MAX_OPEN_SERIES
        assert REGISTRY.get_sample_value("ictwatch_incidents_unlabelled_total", labels) == before + extra
        first = {"incident": incidents.incident_id(seen, "flood.pcap#0", "blocked-content"), **labels}
        assert REGISTRY.get_sample_value("ictwatch_incident_open", first) == 1
    finally:  # the other tests in this process need room for their own incidents
        for incident in set(incidents._open) - opened_before:
            incidents.close_incident(*incident)
