"""Retention (GDPR storage limitation) as ClickHouse TTLs from the policy, migrations that only change
what differs, and the cluster layout's DDL checked by ClickHouse's own parser."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from storage.schema import ACTIVITY, TABLES, Retention, cluster_ddl, sql_string
from storage.store import Store
from tests.storage.test_store import activities, migration_alters

SHIPPED = Retention(activity_days=400, url_days=90, leases_days=400, audit_days=2190)  # the Valley School's


@pytest.fixture
def store(store_url):
    s = Store(store_url, "t", retention=SHIPPED)
    s.migrate()
    yield s
    s.close()


def alters(store: Store, retention: Retention) -> list[str]:
    """The ALTER statements a migration to `retention` issues."""
    store.retention = retention
    return migration_alters(store)


def test_migrations_change_only_what_differs(store):
    assert alters(store, SHIPPED) == []  # already as the policy says: nothing to do
    changed = alters(store, Retention(activity_days=400, url_days=30, leases_days=400, audit_days=2190))
    assert changed == ["ALTER TABLE t.activity MODIFY COLUMN `url` TTL toDateTime(ts) + toIntervalDay(30)",
                       "ALTER TABLE t.activity MODIFY COLUMN `user_agent` TTL toDateTime(ts) + toIntervalDay(30)"]
    assert len(alters(store, Retention())) == 6  # for ever: four table TTLs and two column TTLs removed
    assert alters(store, Retention()) == []
    create = store._client.command("SELECT create_table_query FROM system.tables WHERE database = 't' AND "
                                   "name = 'activity'")
    assert " TTL " not in create


def test_rows_and_urls_expire_as_the_policy_says(store):
    """Three activities 500, 100 and 1 days old, with a URL and a User-Agent: after a merge the first is
    gone (over 400 days), the second keeps its host but not its URL or User-Agent (over 90 days), the
    third is whole."""
    now = dt.datetime.now(dt.UTC)
    rows = activities(3).with_columns(
        ts=pl.Series([now - dt.timedelta(days=d) for d in (500, 100, 1)], dtype=pl.Datetime("us", "UTC")),
        url=pl.lit("http://www.instagram.com/p/1"), user_agent=pl.lit("Mozilla/5.0"))
    store.insert_activity(rows)
    store._client.command("OPTIMIZE TABLE t.activity FINAL")
    got = store._client.query("SELECT dateDiff('day', ts, now64(6)) AS age, host, url, user_agent "
                              "FROM t.activity ORDER BY ts").result_rows
    assert [(age >= 99 and age <= 101, host, url, ua) for age, host, url, ua in got][0] == (
        True, "www.instagram.com", "", "")
    assert len(got) == 2 and got[1][1:] == ("www.instagram.com", "http://www.instagram.com/p/1", "Mozilla/5.0")


def test_cluster_ddl_parses_and_names_the_layout(store):
    """Every statement of the cluster layout goes through ClickHouse's own parser (formatQuery) in chDB:
    replicated local tables with Keeper paths and macros, Distributed tables under the plain names."""
    statements = cluster_ddl("ictwatch", "trust")
    assert len(statements) == 1 + 2 * len(TABLES)
    formatted = [store._client.query(f"SELECT formatQuery({sql_string(s)})").result_rows[0][0] for s in statements]
    assert all("ON CLUSTER trust" in f for f in formatted)
    local = formatted[1]
    assert "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/ictwatch/activity_local', '{replica}')" in local
    assert "replicated_deduplication_window = 10000" in local and "PROJECTION breaches_by_school" in local
    assert all(f"`{c.name}`" in local for c in ACTIVITY)
    assert "ENGINE = Distributed(trust, ictwatch, activity_local, cityHash64(user))" in formatted[2]
    incidents = formatted[-2]
    assert ("ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/ictwatch/incidents_local', '{replica}', "
            "version)") in incidents
