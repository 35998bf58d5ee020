"""storage/schema.py says, for every observation field, whether `activity` keeps it (in the column of its
own name) or drops it (and why): nothing is dropped silently, and what is kept arrives unchanged."""

from __future__ import annotations

import datetime as dt
import re

import pyarrow as pa

from collector.observation import Observation, schema, to_table
from ictwatch import settings
from storage.schema import ACTIVITY, DROPPED
from storage.store import to_activity_arrow
from tests.conftest import ROOT, SCHOOL_DAY

FIELDS = set(schema().names)
KEPT = FIELDS & {c.name for c in ACTIVITY}


def test_every_observation_field_is_a_column_or_dropped_with_a_reason():
    assert set(DROPPED) == FIELDS - KEPT  # a new field fails here until it has a column or a reason
    assert all(DROPPED.values())


def _sample(position: int, field: pa.Field) -> object:
    """A value for the field at `position` that no other field of its type has (booleans aside: all true)."""
    if pa.types.is_list(field.type):
        return [f"{field.name}-1"]
    if pa.types.is_boolean(field.type):
        return True
    if pa.types.is_integer(field.type):
        return 100 + position
    return position + 0.5 if pa.types.is_floating(field.type) else f"{field.name}-x"


def test_a_kept_field_arrives_unchanged_in_its_column():
    """One observation with every field set, judged by the school day's engine and laid out for the insert:
    each kept field's value is in its column as it was seen."""
    seen = dt.datetime(2026, 6, 16, 10, 0, tzinfo=dt.UTC)
    values = {f.name: _sample(i, f) for i, f in enumerate(schema()) if f.name != "ts"}
    values |= {"kind": "http", "source": "pcap", "src_ip": "10.20.2.21", "dst_ip": "203.0.113.50",
               "src_mac": "00:1b:21:aa:00:04", "host": "www.example.org"}
    obs = Observation(int(seen.timestamp() * 1e6), **values)
    row = to_activity_arrow(settings.load(SCHOOL_DAY / "ictwatch.yaml").engine().evaluate(to_table([obs])))
    stored = row.to_pylist()[0]
    assert stored["ts"] == seen
    assert {name: stored[name] for name in KEPT - {"ts"}} == {name: values[name] for name in KEPT - {"ts"}}


def test_the_field_doc_says_which_fields_are_kept_and_which_are_dropped():
    doc = (ROOT / "docs" / "observation-fields.md").read_text()
    listed = {head: set(re.findall(r"`([a-z_]+)`", names)) for head, _, names in
              (line.partition(": ") for line in doc.splitlines()) if head in ("- kept in `activity`", "- not stored")}
    assert listed == {"- kept in `activity`": KEPT, "- not stored": set(DROPPED)}
