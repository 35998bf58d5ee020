"""Where the storage tests store: the embedded engine always, and a ClickHouse server as well when
ICTWATCH_TEST_CLICKHOUSE_URL names one (http://user:password@host:8123). The tests use the database `t`,
which on a server is dropped before and after each test, so point this at a server kept for testing."""

from __future__ import annotations

import os

import pytest

from storage.store import Store

SERVER = os.environ.get("ICTWATCH_TEST_CLICKHOUSE_URL", "")


def _drop(url: str) -> None:
    store = Store(url, "t")
    try:
        store._client.command("DROP DATABASE IF EXISTS t")
    finally:
        store.close()


@pytest.fixture(params=["chdb", "server"] if SERVER else ["chdb"])
def store_url(request, tmp_path):
    """A store address for one test: a fresh embedded folder, or the test server with `t` dropped."""
    if request.param == "chdb":
        yield f"chdb://{tmp_path / 'store'}"
        return
    _drop(SERVER)
    yield SERVER
    _drop(SERVER)
