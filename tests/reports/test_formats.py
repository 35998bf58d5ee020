"""Every entry of the formats table writes a report whose recorded fingerprint anyone can check from the
file alone: a sealed text states it (reports/seal.py), anything else hashes to it; and `--format` offers
what the table lists."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from ictwatch import settings
from reports import build, formats
from reports.seal import check
from storage.store import Store
from tests.conftest import SCHOOL_DAY, run_cli
from tests.storage.test_store import activities

LOADED = settings.load(SCHOOL_DAY / "ictwatch.yaml")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    store = Store(f"chdb://{tmp_path_factory.mktemp('formats') / 'store'}", "t")
    try:
        store.migrate()
        store.insert_activity(activities(3))
        return build.build(store, LOADED.directory, "The Valley School", "Europe/London", "sokafor",
                           dt.date(2026, 6, 16), dt.date(2026, 6, 16), "dpatel", "review",
                           dt.datetime(2026, 11, 29, tzinfo=dt.UTC), "line manager", 1)
    finally:
        store.close()


@pytest.mark.parametrize("name", list(formats.FORMATS))
def test_the_fingerprint_recorded_is_the_one_the_file_shows(report, name):
    fmt = formats.FORMATS[name]
    if fmt.missing():
        pytest.skip(fmt.missing())
    data, digest = formats.write(report, name)
    if fmt.sealed and fmt.printed is None:
        assert check(data.decode()) == digest
    else:
        assert hashlib.sha256(data).hexdigest() == digest


def test_the_command_offers_what_the_table_lists():
    said = " ".join(run_cli("report", "--help", check=True).stdout.split())  # the help's lines joined
    assert "--format FORMAT html, csv, json, pdf;" in said
    assert "choose from 'html', 'csv', 'json', 'pdf'" in run_cli("report", "--format", "odt").stderr
