"""The activity table in the real embedded engine (chDB): DDL, Arrow inserts, parameterised reads."""

from __future__ import annotations

import datetime as dt
import re

import polars as pl
import pytest

from collector.observation import Observation, to_table
from ictwatch import settings
from storage.schema import ACTIVITY, TABLES, Retention, sql_string, table_ddl
from storage.store import SMALL_GATEWAY, Store, dedup_token, to_record
from tests.conftest import ROOT, SCHOOL_DAY

UTC = dt.UTC


@pytest.fixture
def store(store_url):
    s = Store(store_url, "t")
    s.migrate()
    yield s
    s.close()


def activities(n: int, every_s: int = 60) -> pl.DataFrame:
    eng = settings.load(SCHOOL_DAY / "ictwatch.yaml").engine()
    base = int(dt.datetime(2026, 6, 16, 9, 0, tzinfo=UTC).timestamp() * 1e6)
    obs = [Observation(base + i * every_s * 1_000_000, "tls", "pcap", f"t.pcap#{i}", "10.20.10.131", 40000 + i,
                       "157.240.1.174", 443, "tcp", "3c:22:fb:30:00:01", host="www.instagram.com",
                       sni="www.instagram.com") for i in range(n)]
    return eng.evaluate(to_table(obs))


def test_ddl_has_a_comment_on_every_column_and_survives_quotes(store):
    rows = store._client.query(
        "SELECT name, comment FROM system.columns WHERE database = 't' AND table = 'activity' ORDER BY position"
    ).result_rows
    assert [r[0] for r in rows] == [c.name for c in ACTIVITY]
    assert all(r[1] for r in rows)
    assert dict(rows)["role"] == "the user's role in the staff directory at the time"
    assert sql_string("a'b\\c") == "'a\\'b\\\\c'"


def test_migrate_twice_is_harmless(store):
    store.migrate()
    assert store.count() == 0


def test_insert_and_read_back_one_persons_period(store):
    df = activities(5)
    assert store.insert_activity(df) == 5
    assert store.count() == 5
    start = dt.datetime(2026, 6, 16, 9, 1, tzinfo=UTC)
    got = store.activity("sokafor", start, start + dt.timedelta(minutes=2))
    assert got.get_column("source_ref").to_list() == ["t.pcap#1", "t.pcap#2"]
    row = got.row(0, named=True)
    assert (row["user"], row["device"], row["verdict"], row["rule_ids"], row["clauses"]) == (
        "sokafor", "PH-SOKAFOR", "breach", ["personal-use-restricted-hours"], ["P18"])
    assert row["ts"] == start
    assert store.activity("jcarter", None, None).height == 0


def test_unknown_user_is_stored_as_empty_and_read_back(store):
    df = activities(1).with_columns(user=pl.lit(None, pl.String), device=pl.lit(None, pl.String))
    store.insert_activity(df)
    got = store.activity("", None, None)
    assert (got.height, got.row(0, named=True)["device"]) == (1, "")


def test_user_parameter_is_not_sql(store):
    store.insert_activity(activities(2))
    assert store.activity("x' OR '1'='1", None, None).height == 0


def test_rendered_ddl_parses_in_clickhouse(store):
    formatted = store._client.command(f"SELECT formatQuery({sql_string(table_ddl(TABLES[0], 't'))})")
    assert "ORDER BY (user, ts)" in formatted and "PARTITION BY toYYYYMM(ts)" in formatted


def test_a_batch_inserted_twice_is_stored_once(store):
    df = activities(5)
    store.insert_activity(df)
    store.insert_activity(df)  # a retry, or the same input replayed
    assert store.count() == 5
    store.insert_activity(activities(6))  # the same five records and one more: the new one is stored
    assert store.count() == 6


def test_replaying_the_school_day_twice_does_not_double_it(tmp_path):
    from tests.conftest import run_cli

    config = SCHOOL_DAY / "ictwatch.yaml"
    inputs = [SCHOOL_DAY / "school-day.pcap", SCHOOL_DAY / "squid-access.log"]
    first = run_cli("replay", "--config", config, *inputs, store=tmp_path / "s", check=True)
    run_cli("replay", "--config", config, *inputs, store=tmp_path / "s", check=True)
    s = Store(f"chdb://{tmp_path / 's'}")
    try:
        stored = s.count()
    finally:
        s.close()
    assert f"stored {stored} activities" in first.stdout


def migration_alters(store: Store) -> list[str]:
    """The ALTER TABLE statements one `store.migrate()` sends when it takes every step (the fingerprint of an
    earlier migration, which would let it skip them, wiped first)."""
    store._client.command(f"ALTER DATABASE {store.database} MODIFY COMMENT ''")
    sent: list[str] = []
    command = store._client.command

    def spy(sql, *args, **kwargs):
        sent.append(sql)
        return command(sql, *args, **kwargs)

    store._client.command = spy  # type: ignore[method-assign]
    try:
        store.migrate()
    finally:
        store._client.command = command  # type: ignore[method-assign]
    return [s for s in sent if s.startswith("ALTER TABLE")]


def test_a_store_migrated_to_this_schema_is_known_by_one_query(store):
    """A migration that finished leaves its fingerprint on the database: the next start of the same schema
    and retention sends that one query and nothing else; another retention takes every step again."""
    sent: list[str] = []
    client = store._client
    command, query = client.command, client.query
    client.command = lambda sql, *a, **k: sent.append(sql) or command(sql, *a, **k)  # type: ignore[method-assign]
    client.query = lambda sql, *a, **k: sent.append(sql) or query(sql, *a, **k)  # type: ignore[method-assign]
    store.migrate()
    assert sent == ["SELECT count(), any(comment) FROM system.databases WHERE name = {db:String}"]
    store.retention = Retention(activity_days=30)
    store.migrate()
    assert any(sql.startswith("ALTER TABLE t.activity MODIFY TTL") for sql in sent)
    assert sent[-1].startswith("ALTER DATABASE t MODIFY COMMENT 'ictwatch schema ")


def old_schema_store(url: str, version: str) -> Store:
    """A store at `url`, database `t`, made by the DDL of an earlier released schema (tests/storage/schemas/);
    the caller closes it."""
    old = Store(url, "t")
    old._client.command("CREATE DATABASE IF NOT EXISTS t")
    ddl = (ROOT / "tests" / "storage" / "schemas" / f"{version}.sql").read_text().replace("{database}", "t")
    for statement in re.split(r";$", ddl, flags=re.M):
        if statement.strip():
            old._client.command(statement)
    return old


@pytest.mark.parametrize(("version", "added", "default"), [
    ("v1", "filter_category", ""), ("v2", "dhcp_type", ""), ("v3", "rule_severities", []),
    ("v4", "mail_encryption", ""), ("v4", "info_hash", ""), ("v4", "responsible", "")])
def test_a_store_made_by_an_earlier_schema_is_upgraded(store_url, version, added, default):
    """tests/storage/schemas/ holds the DDL of every earlier released schema (v1: the first, before the
    web-filter columns; v2: 2026-11-28, before `dhcp_type`; v3: 2026-12-07, every table, before each rule's
    own clauses and severity; v4: 2026-12-07, with them and the record ids, before `mail_encryption`,
    `info_hash` and `responsible`). A store made with one, holding a row, is brought to the current schema by
    `migrate()`: the new columns appear in schema order with their comments, the old row keeps its values (a
    new column reads as its empty default), and new rows go in."""
    old = old_schema_store(store_url, version)
    try:
        old._client.command("INSERT INTO t.activity (ts, user, kind, host) "
                            "VALUES (now64(6), 'jcarter', 'dns', 'a.test')")
        before = [r[0] for r in old._client.query("SELECT name FROM system.columns WHERE database = 't' AND "
                                                   "table = 'activity' ORDER BY position").result_rows]
        assert added not in before  # the fixture really is the older schema
        old.migrate()
        assert migration_alters(old) == []  # a second run finds nothing to do
        create = old._client.command("SELECT create_table_query FROM system.tables WHERE database = 't' AND "
                                     "name = 'activity'")
        assert "min_bytes_for_wide_part = 33554432" in str(create)  # table settings added since are set
        rows = old._client.query("SELECT name, comment FROM system.columns WHERE database = 't' AND "
                                 "table = 'activity' ORDER BY position").result_rows
        assert [r[0] for r in rows] == [c.name for c in ACTIVITY]
        assert [r[1] for r in rows] == [c.comment for c in ACTIVITY]
        assert old.insert_activity(activities(3)) == 3
        got = old._client.query(f"SELECT user, host, {added} FROM t.activity WHERE kind = 'dns'").result_rows
        assert got == [("jcarter", "a.test", default)]
    finally:
        old.close()


def test_a_lease_keeps_its_place_through_the_store(store):
    leases = pl.DataFrame({
        "ip": ["10.20.10.50", "10.20.10.51"], "lease_mac": ["00:1b:21:aa:00:02", "3c:22:fb:30:00:03"],
        "lease_start": [dt.datetime(2026, 6, 16, 7, tzinfo=UTC)] * 2,
        "lease_end": [dt.datetime(2026, 6, 16, 8, tzinfo=UTC)] * 2,
        "lease_ref": ["d#1", "d#2"], "lease_place": ["Staff room", None]})
    store.insert_record(to_record(activities(1), leases))  # a batch and the leases learnt from it, as the writer has it
    back = store.leases().sort("ip")
    assert back.get_column("lease_place").to_list() == ["Staff room", None]


def test_the_token_follows_the_rows_not_their_chunks():
    """The deduplication token is the same for the same rows however they were assembled, and differs when
    anything that identifies a row (here one timestamp) differs."""
    rows = activities(20)
    again = pl.concat([rows[:7], rows[7:]], rechunk=False)
    assert dedup_token(again) == dedup_token(rows)
    moved = rows.with_columns(ts=pl.when(pl.int_range(pl.len()) == 3).then(pl.col("ts") + dt.timedelta(seconds=1))
                              .otherwise(pl.col("ts")))
    assert dedup_token(moved) != dedup_token(rows)


def test_an_embedded_store_runs_with_the_small_gateway_settings(tmp_path):
    """The embedded engine's caches are SMALL_GATEWAY's (ClickHouse's own defaults run to gigabytes:
    mark_cache_size 5 GiB in chDB 4.4), and a setting in `storage.engine` wins over them."""
    assert SMALL_GATEWAY["mark_cache_size"] != 64 << 20
    store = Store(f"chdb://{tmp_path / 'store'}", "t", engine={"mark_cache_size": 64 << 20})
    try:
        in_force = dict(store._client.query("SELECT name, value FROM system.server_settings WHERE name IN "
                                            "{names:Array(String)}", parameters={"names": list(SMALL_GATEWAY)}
                                            ).result_rows)
    finally:
        store.close()
    assert in_force == {name: str(value) for name, value in {**SMALL_GATEWAY, "mark_cache_size": 64 << 20}.items()}
