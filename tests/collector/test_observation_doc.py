"""The documented field list and the code's field list must not drift apart."""

from __future__ import annotations

import re

from collector.observation import FIELD_NAMES, schema
from tests.conftest import ROOT


def test_every_field_is_documented_and_nothing_else():
    doc = (ROOT / "docs" / "observation-fields.md").read_text()
    documented = set()
    for line in doc.splitlines():
        if line.startswith("| `"):
            documented |= set(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    expected = {"ts" if n == "ts_us" else n for n in FIELD_NAMES}
    assert documented == expected


def test_every_skip_reason_in_the_code_is_documented():
    doc = (ROOT / "docs" / "observation-fields.md").read_text()
    code = "".join(p.read_text() for p in (ROOT / "collector").rglob("*.py"))
    reasons = set(re.findall(r'_skip\("([a-z_]+)"', code)) | set(re.findall(r'skip\("([a-z_]+)", f', code))
    assert reasons and all(f"`{r}`" in doc for r in reasons)


def test_arrow_schema_names_the_time_column_ts():
    assert schema().names[0] == "ts" and schema().field("ts").type.tz == "UTC"


def test_committed_json_schema_matches_the_code():
    """docs/observation.schema.json is the published contract: a field added, removed or retyped in the
    code fails here until the file is regenerated (`ictwatch schema > docs/observation.schema.json`)."""
    import json

    from collector.observation import json_schema

    assert json.loads((ROOT / "docs" / "observation.schema.json").read_text()) == json_schema()


def test_decode_output_validates_against_the_schema():
    import json

    import jsonschema

    from collector.observation import json_schema
    from tests.conftest import SCHOOL_DAY, run_cli

    validator = jsonschema.Draft202012Validator(json_schema())
    for path in (SCHOOL_DAY / "school-day.pcap", SCHOOL_DAY / "squid-access.log"):
        lines = run_cli("decode", "--json", path, check=True).stdout.splitlines()
        assert lines
        for line in lines:
            validator.validate(json.loads(line))
