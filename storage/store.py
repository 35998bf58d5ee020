"""ClickHouse access through clickhouse-connect: `chdb:///path` (embedded, the default) or `http(s)://`.

`Store` creates the schema, inserts activity batches as Arrow tables (the fastest insert path), and
answers the named, parameterised queries the CLI and reports need. No SQL leaves this package.

The connection is made when first needed and dropped after a failure that a new connection could cure,
so a store whose server is down can still be handed to the writer, which keeps batches in the spool and
tries again later; `retryable` says which failures those are. Timeouts are set on every HTTP request: a
server that accepts and then hangs costs `timeout_s`, not the daemon. A store that cannot be opened or
reached raises `StoreUnavailable`, whose message names it (`shown`: never its credentials) and says why.

An embedded store is opened with `SMALL_GATEWAY`'s engine settings (over which `engine` may set others):
ClickHouse's defaults are sized for a server of its own, with caches of gigabytes.

Only one process may open an embedded store (chDB locks its folder; a second one fails, read-only too),
though that process may hold several connections to it: while `ictwatch run` holds it, commands run
inside the daemon (ictwatch/control.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import re
import sys
import tempfile
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import clickhouse_connect
import numpy as np
import polars as pl
import pyarrow as pa
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from storage.errors import StoreUnavailable
from storage.records import record_ids
from storage.schema import (
    ACTIVITY,
    ACTIVITY_ARROW,
    INCIDENTS,
    LEASES_ARROW,
    MINIMISED,
    REPORT_AUDIT,
    TABLES,
    Retention,
    Table,
    column_ddl,
    sql_string,
    table_ddl,
    ttl_boundary,
    ttl_expr,
)
from storage.spool import Record

_log = logging.getLogger(__name__)
_STEPS = "1"
"""The version of `Store.migrate`'s steps: a step that changes a store without changing the DDL (a backfill,
like `_identify_old_rows`) comes with a new version, so that stores migrated before take it."""
_IDS_A_QUERY = 10_000
"""Record ids sent in one look-up (a server takes parameters in the URL, which it bounds at 1 MiB)."""
_NULLABLE_TEXT = {c.name for c in ACTIVITY if c.arrow == pa.string()}
SMALL_GATEWAY: dict[str, int] = {
    "mark_cache_size": 32 << 20,
    "index_mark_cache_size": 8 << 20,
    "primary_index_cache_size": 16 << 20,
    "query_condition_cache_size": 8 << 20,
    "compiled_expression_cache_size": 16 << 20,
    "vector_similarity_index_cache_size": 1 << 20,
}
"""The embedded engine's settings for a small gateway (docs/performance.md, Memory): caches of megabytes
where chDB's defaults allow 5 GiB each. In a replay or a soak of minutes they hold next to nothing (the
engine tracks 7-9 MB in use), so they change nothing measurable there; they bound what a store of months
would keep. Passed as start-up arguments of the embedded engine (chDB reads server settings from its
connection string); a server keeps its own."""
REPORT_AUDIT_ARROW = pa.schema([pa.field(c.name, c.arrow) for c in REPORT_AUDIT])
INCIDENTS_ARROW = pa.schema([pa.field(c.name, c.arrow) for c in INCIDENTS])


@dataclass(frozen=True, slots=True)
class Stored:
    """What an insert stored: the rows written (new records, and records judged anew, whose `rules_before`
    holds the rule ids of the row they replaced; null for a new record), how many records of the batch were
    stored already as they are (left alone), and how many rows replaced an earlier judgement."""

    activity: pl.DataFrame
    known: int
    replaced: int


def shown(url: str) -> str:
    """A storage URL fit to show: an embedded store's path, a server's scheme, host and port only (no user,
    password or query, which may carry either)."""
    if url.startswith("chdb:"):
        return url
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")


class Store:
    """One ClickHouse database holding ictwatch's tables."""

    def __init__(self, url: str, database: str = "ictwatch", timeout_s: float = 30.0,
                 retention: Retention | None = None, engine: Mapping[str, int | str] | None = None) -> None:
        """`engine`: settings for an embedded store's engine, over `SMALL_GATEWAY` (ignored for a server)."""
        if not database.isidentifier():
            raise ValueError(f"bad database name: {database!r}")
        self.url = url
        self.database = database
        self.timeout_s = timeout_s
        self.retention = retention or Retention()
        self.engine = {**SMALL_GATEWAY, **(engine or {})}
        self._connection: Client | None = None
        self._migrated = False

    @property
    def _client(self) -> Client:
        if self._connection is None:
            embedded = self.url.startswith("chdb:")
            options: dict[str, Any] = {"chdb_options": self.engine} if embedded else {
                "connect_timeout": self.timeout_s, "send_receive_timeout": self.timeout_s}
            native = _NativeStderr() if embedded else None
            try:
                with native or contextlib.nullcontext():
                    self._connection = clickhouse_connect.get_client(dsn=self.url, **options)
            except Exception as exc:
                said = native.text if native else ""
                why = ("another process holds it (one process at a time may open an embedded store)"
                       if "Another server instance" in said else _why(exc, said))
                raise StoreUnavailable(f"the store {shown(self.url)} cannot be "
                                       f"{'opened' if embedded else 'reached'}: {why}") from exc
        return self._connection

    def reset(self) -> None:
        """Drop the connection after a failure; the next call makes a new one (and checks the schema)."""
        if self._connection is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close; it is dropped anyway
                self._connection.close()
        self._connection = None
        self._migrated = False

    def migrate(self) -> None:
        """Bring the database to the current schema: each step compares with `system.tables` and
        `system.columns` and does only what differs (safe to run every start). A database that a migration
        to this very schema and retention has finished in carries their fingerprint as its comment, and is
        left as it is after one query (the steps' two dozen queries cost a command 0.2–0.3 s at each start);
        one that did not exist gets its tables, their retention in their DDL, and no comparisons."""
        self._migrated = True
        fingerprint = self._fingerprint()
        found, comment = self._client.query("SELECT count(), any(comment) FROM system.databases WHERE name = "
                                            "{db:String}", parameters={"db": self.database}).result_rows[0]
        if comment == fingerprint:
            return
        new = found == 0
        self._client.command(f"CREATE DATABASE IF NOT EXISTS {self.database}")
        for table in TABLES:
            self._client.command(table_ddl(table, self.database, retention=self.retention))
            if not new:  # in a new database, each table is made just now by this very DDL
                self._upgrade(table)
        if not new:
            self._identify_old_rows()
        with contextlib.suppress(DatabaseError):  # a server too old to comment a database: no fast path
            self._client.command(f"ALTER DATABASE {self.database} MODIFY COMMENT {sql_string(fingerprint)}")

    def _upgrade(self, table: Table) -> None:
        """Bring a table made by an earlier schema to this one: columns, projections, retention, settings."""
        self._add_missing_columns(table)
        create = str(self._client.query(  # a query, not a command: its text unescaped (a setting's quotes)
            "SELECT create_table_query FROM system.tables WHERE database = {db:String} AND name = {t:String}",
            parameters={"db": self.database, "t": table.name}).result_rows[0][0])
        self._add_missing_projections(table, create)
        self._apply_retention(table, create)
        # each setting on its own: one added to an older store is listed after ClickHouse's own
        missing = [s for s in table.settings.split(", ") if s and s not in create]
        if missing:  # e.g. a store made before the dedup window
            self._client.command(f"ALTER TABLE {self.database}.{table.name} MODIFY SETTING {', '.join(missing)}")

    def _fingerprint(self) -> str:
        """What the schema steps bring a database to: a digest of every table's DDL and the retention, with
        the version of the steps themselves (`_STEPS`)."""
        text = "\n".join([_STEPS, repr(self.retention), *(table_ddl(t, self.database) for t in TABLES)])
        return "ictwatch schema " + hashlib.sha256(text.encode()).hexdigest()[:16]

    def _identify_old_rows(self) -> None:
        """Give the rows stored before `record_id` existed (0 there) theirs, a day at a time: read, identified,
        the copies of one record (imported twice under two names) reduced to the first in `source_ref` order,
        written back through `insert_record` (so a record stored since is not doubled either) and the old
        rows deleted. Interrupted, it starts again where it was at the next start."""
        days = [r[0] for r in self._client.query(f"SELECT DISTINCT toDate(ts) AS d FROM {self.database}.activity "
                                                 "WHERE record_id = 0 ORDER BY d").result_rows]
        if days:
            _log.info("store: giving %d days of stored activity their record ids (once, after an upgrade)", len(days))
        for day in days:
            params = {"day": day}
            old = pl.from_arrow(self._client.query_arrow(
                f"SELECT * FROM {self.database}.activity WHERE record_id = 0 AND toDate(ts) = {{day:Date}}",
                parameters=params))
            assert isinstance(old, pl.DataFrame)
            rows = old.drop("record_id").sort("ts", "source_ref")
            self.insert_record(to_record(rows))
            self._client.command(f"DELETE FROM {self.database}.activity WHERE record_id = 0 AND "
                                 "toDate(ts) = {day:Date}", parameters=params)

    def _add_missing_projections(self, table: Table, create: str) -> None:
        for projection in table.projections:
            name = projection.split(" ", 1)[0]
            if f"PROJECTION {name}" not in create:
                self._client.command(f"ALTER TABLE {self.database}.{table.name} ADD PROJECTION IF NOT EXISTS "
                                     f"{projection}")
                self._client.command(f"ALTER TABLE {self.database}.{table.name} MATERIALIZE PROJECTION {name}")

    def _apply_retention(self, table: Table, create: str) -> None:
        """Set the table's TTL (and, for activity, the shorter one of full URLs) to the retention, or
        remove it; each only when the table's definition (`create_table_query`, one line) differs."""
        if not table.ttl_from:
            return
        days = self.retention.table_days(table.name)
        want = f"TTL {ttl_expr(table.ttl_from, days)}" if days else ""
        found = re.search(r"\) ENGINE = .*? (TTL .*?)(?: SETTINGS | COMMENT |$)", create)
        have = found.group(1) if found else ""
        if want != have:
            self._client.command(f"ALTER TABLE {self.database}.{table.name} " + (f"MODIFY {want}" if want else
                                 "REMOVE TTL"), settings={"materialize_ttl_after_modify": 0})
        if table.name != "activity":
            return
        want = f"TTL {ttl_expr(table.ttl_from, self.retention.url_days)}" if self.retention.url_days else ""
        for name in MINIMISED:
            column = re.search(rf"`{name}` (.*?)(?:, `|, PROJECTION |\) ENGINE )", create)
            have = column.group(1).split(" TTL ", 1)[1] if column and " TTL " in column.group(1) else ""
            if want != (f"TTL {have}" if have else ""):
                self._client.command(f"ALTER TABLE {self.database}.activity MODIFY COLUMN `{name}` "
                                     + (want if want else "REMOVE TTL"), settings={"materialize_ttl_after_modify": 0})

    def _add_missing_columns(self, table: Table) -> None:
        """Columns added to the schema since the table was made are added to it, each after the column
        before it in the schema; a column whose comment has changed gets the new one. Nothing else is
        touched, so running it again finds nothing to do."""
        present: dict[str, str] = {name: comment for name, comment in self._client.query(
            "SELECT name, comment FROM system.columns WHERE database = {db:String} AND table = {t:String}",
            parameters={"db": self.database, "t": table.name}).result_rows}
        for before, column in zip((None, *table.columns), table.columns, strict=False):
            if column.name not in present:
                after = f" AFTER `{before.name}`" if before else " FIRST"
                self._client.command(f"ALTER TABLE {self.database}.{table.name} ADD COLUMN IF NOT EXISTS "
                                     f"{column_ddl(column)}{after}")
            elif present[column.name] != column.comment:
                self._client.command(f"ALTER TABLE {self.database}.{table.name} COMMENT COLUMN `{column.name}` "
                                     f"{sql_string(column.comment)}")

    def insert_record(self, record: Record) -> Stored:
        """Insert a prepared batch (leases first, then activity under its deduplication token). A record already
        stored (the same `record_id`) is not stored again: when its stored row says what this batch says
        but for where it was read, it is left as it is; when this batch judged it later and differently (a new
        policy, more known about who had the address), this row replaces the stored one and keeps the stored
        `source_ref`. A batch inserted before with the same token is dropped by ClickHouse."""
        if not self._migrated:
            self.migrate()
        if record.leases is not None and record.leases.num_rows:
            self._client.insert_arrow(f"{self.database}.leases", record.leases)
        if not record.activity.num_rows:
            return Stored(pl.DataFrame(), 0, 0)
        table = with_identity(record.activity)
        stored = self._reconcile(table)
        if stored.activity.height:
            untouched = not stored.replaced and stored.activity.height == table.num_rows  # every row new, as it is
            fresh = table if untouched else to_activity_arrow(stored.activity)
            self._client.insert_arrow(f"{self.database}.activity", fresh,
                                      settings={"insert_deduplication_token": record.token})
        if stored.replaced:
            self._delete_replaced(stored.activity)
        return stored

    def _window(self, rows: pl.DataFrame) -> tuple[str, dict[str, object]]:
        """The WHERE clause of the stored rows in the time span of `rows` (which the sort key can narrow)."""
        return ("ts >= {lo:DateTime64(6, 'UTC')} AND ts <= {hi:DateTime64(6, 'UTC')}",
                {"lo": rows.get_column("ts").min(), "hi": rows.get_column("ts").max()})

    def _reconcile(self, table: pa.Table) -> Stored:
        """The rows of `table` to insert: its records not stored yet, and those this batch judged later than
        their stored row and differently (each with the stored row's `source_ref` and its rule ids, as
        `rules_before`); one row per record. When that is every row, they are `table`'s as they are."""
        rows = pl.from_arrow(table)
        assert isinstance(rows, pl.DataFrame)
        if rows.get_column("record_id").is_duplicated().any():  # seldom; unique() copies every column
            rows = rows.unique("record_id", keep="first", maintain_order=True)
        where, params = self._window(rows)
        stored = pl.from_arrow(self._client.query_arrow(  # through polars: pyarrow's to_numpy imports pandas
            f"SELECT DISTINCT record_id FROM {self.database}.activity WHERE {where}", parameters=params))
        assert isinstance(stored, pl.DataFrame)
        ids = stored.get_column("record_id").to_numpy()
        found = np.intersect1d(rows.get_column("record_id").to_numpy(), ids)
        if not found.size:
            return Stored(rows.with_columns(rules_before=pl.lit(None, pl.List(pl.String))), 0, 0)
        old = pl.concat([self._stored_rows(where, params, found[at:at + _IDS_A_QUERY])
                         for at in range(0, found.size, _IDS_A_QUERY)])
        old = (old.cast({n: t for n, t in rows.schema.items() if n in old.columns})  # LowCardinality → text
               .sort("judged_at", descending=True).unique("record_id", keep="first"))
        same = [c.name for c in ACTIVITY if c.name not in ("source_ref", "record_id", "judged_at")]
        joined = rows.join(old.select("record_id", *same, "source_ref", "judged_at"), on="record_id", how="left",
                           suffix="_stored")
        known = pl.col("source_ref_stored").is_not_null()
        unchanged = pl.all_horizontal([pl.col(c).eq_missing(pl.col(f"{c}_stored")) for c in same])
        later = pl.col("judged_at") > pl.col("judged_at_stored")
        keep = joined.filter(~known | (later & ~unchanged))
        fresh = keep.with_columns(source_ref=pl.coalesce("source_ref_stored", "source_ref"),
                                  rules_before=pl.when(known).then(pl.col("rule_ids_stored")))
        replaced = int(fresh.get_column("source_ref_stored").is_not_null().sum())
        return Stored(fresh.select(*rows.columns, "rules_before"), rows.height - fresh.height, replaced)

    def _stored_rows(self, where: str, params: dict[str, object], ids: np.ndarray) -> pl.DataFrame:
        """The stored rows of the records `ids` (every version) within `where`."""
        found = pl.from_arrow(self._client.query_arrow(
            f"SELECT * FROM {self.database}.activity WHERE {where} AND record_id IN {{ids:Array(UInt64)}}",
            parameters={**params, "ids": ids.tolist()}))
        assert isinstance(found, pl.DataFrame)
        return found

    def _delete_replaced(self, fresh: pl.DataFrame) -> None:
        """Delete the earlier rows of the records `fresh` (one batch, judged at one time) has just replaced."""
        where, params = self._window(fresh)
        params["at"] = fresh.get_column("judged_at")[0]
        self._client.command(
            f"DELETE FROM {self.database}.activity WHERE {where} AND judged_at < {{at:DateTime64(6, 'UTC')}} AND "
            f"record_id IN (SELECT record_id FROM {self.database}.activity WHERE {where} AND "
            "judged_at = {at:DateTime64(6, 'UTC')})", parameters=params)

    def leases(self) -> pl.DataFrame:
        """Every stored lease, in the shape the identity keeps them (deduplicated)."""
        sql = (f"SELECT DISTINCT ip, mac AS lease_mac, lease_start, lease_end, evidence AS lease_ref, "
               f"nullIf(place, '') AS lease_place "
               f"FROM {self.database}.leases ORDER BY ip, lease_start")
        result = pl.from_arrow(self._client.query_arrow(sql))
        assert isinstance(result, pl.DataFrame)
        return result

    def insert_activity(self, df: pl.DataFrame) -> int:
        """Insert an engine batch, each record once (`insert_record`). Returns the number of rows stored."""
        return self.insert_record(to_record(df)).activity.height

    def activity(
        self, user: str | None, start: dt.datetime | None, end: dt.datetime | None, breaches_only: bool = False,
        responsible: str | None = None, device: str | None = None,
    ) -> pl.DataFrame:
        """Rows for `user` (all users when None; "" for no one's) with `start <= ts < end`, oldest first; only
        those of devices in `responsible`'s care, or of `device`, when given."""
        where = ["1"]
        params: dict[str, object] = {}
        for column, value in (("user", user), ("responsible", responsible), ("device", device)):
            if value is not None:
                where.append(f"{column} = {{{column}:String}}")
                params[column] = value
        if start is not None:
            where.append("ts >= {start:DateTime64(6, 'UTC')}")
            params["start"] = start
        if end is not None:
            where.append("ts < {end:DateTime64(6, 'UTC')}")
            params["end"] = end
        if breaches_only:
            where.append("verdict = 'breach'")
        sql = (
            f"SELECT * FROM {self.database}.activity WHERE {' AND '.join(where)} "
            "ORDER BY ts, source_ref"
        )
        result = pl.from_arrow(self._client.query_arrow(sql, parameters=params))
        assert isinstance(result, pl.DataFrame)
        return result

    def activity_at(self, source_ref: str, kind: str | None = None) -> pl.DataFrame:
        """The activities recorded from one input record (a frame or a log line), optionally of one kind."""
        where, params = "source_ref = {ref:String}", {"ref": source_ref}
        if kind is not None:
            where += " AND kind = {kind:String}"
            params["kind"] = kind
        result = pl.from_arrow(self._client.query_arrow(
            f"SELECT * FROM {self.database}.activity WHERE {where} ORDER BY ts, kind", parameters=params))
        assert isinstance(result, pl.DataFrame)
        return result

    def seen(self, user: str) -> bool:
        """Whether any activity is stored under `user` (the sort key's first column: one granule is read)."""
        rows = self._client.query(f"SELECT 1 FROM {self.database}.activity WHERE user = {{user:String}} LIMIT 1",
                                  parameters={"user": user}).result_rows
        return bool(rows)

    def device_seen(self, device: str) -> bool:
        """Whether any activity is stored of the device `device` (a register id)."""
        rows = self._client.query(f"SELECT 1 FROM {self.database}.activity WHERE device = {{device:String}} LIMIT 1",
                                  parameters={"device": device}).result_rows
        return bool(rows)

    def devices_seen(self, start: dt.datetime, end: dt.datetime) -> set[str]:
        """Register ids of the devices with any activity in `start <= ts < end` (absences not counted)."""
        rows = self._client.query(
            f"SELECT DISTINCT device FROM {self.database}.activity WHERE ts >= {{start:DateTime64(6, 'UTC')}} "
            "AND ts < {end:DateTime64(6, 'UTC')} AND device != '' AND kind != 'absence'",
            parameters={"start": start, "end": end}).result_rows
        return {r[0] for r in rows}

    def audit(self) -> pl.DataFrame:
        """The whole report audit chain, in order."""
        result = pl.from_arrow(self._client.query_arrow(f"SELECT * FROM {self.database}.report_audit ORDER BY seq"))
        assert isinstance(result, pl.DataFrame)
        return result

    def audit_tail(self) -> tuple[int, str]:
        """(seq, row_hash) of the last audit row, or (0, "") when there is none."""
        rows = self._client.query(f"SELECT seq, row_hash FROM {self.database}.report_audit "
                                  "ORDER BY seq DESC LIMIT 1").result_rows
        return (int(rows[0][0]), str(rows[0][1])) if rows else (0, "")

    def expired_before(self, table: str) -> dt.datetime | None:
        """The latest time whose rows of `table` its retention may have deleted by now, by the server's clock
        (the one its TTL goes by); None when the table is kept for ever."""
        days = self.retention.table_days(table)
        if not days:
            return None
        value = self._client.query(f"SELECT {ttl_boundary(days)}").result_rows[0][0]
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)

    def insert_audit(self, row: dict[str, object]) -> None:
        """Append one audit row (its seq and hashes already set by the caller)."""
        table = pa.Table.from_pylist([row], schema=REPORT_AUDIT_ARROW)
        self._client.insert_arrow(f"{self.database}.report_audit", table)

    def incidents(self) -> pl.DataFrame:
        """The latest revision of every recorded incident."""
        result = pl.from_arrow(self._client.query_arrow(
            f"SELECT * FROM {self.database}.incidents FINAL ORDER BY incident_id"))
        assert isinstance(result, pl.DataFrame)
        return result

    def insert_incident(self, row: dict[str, object]) -> None:
        """Append one revision of an incident record."""
        self._client.insert_arrow(f"{self.database}.incidents", pa.Table.from_pylist([row], schema=INCIDENTS_ARROW))

    def latest(self) -> dt.datetime | None:
        """When the most recent activity happened (None when there is none)."""
        rows = self._client.query(f"SELECT max(ts), count() FROM {self.database}.activity").result_rows
        return rows[0][0] if rows and rows[0][1] else None

    def count(self) -> int:
        """Rows in `activity`."""
        return int(str(self._client.command(f"SELECT count() FROM {self.database}.activity")))

    def close(self) -> None:
        """Release the connection (and, for chDB, the engine's hold on its folder)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


_IDENTITY_COLUMNS = ("ts", "source_ref", "src_ip", "src_port", "dst_ip", "dst_port", "kind", "host", "url")


def dedup_token(df: pl.DataFrame) -> str:
    """A token for a batch from its content (what was seen, where, when), the policy that judged it and when:
    the same batch retried gives the same token; another day's file with the same name, or the same file
    judged again, does not (a judging again is reconciled record by record by `Store.insert_record`)."""
    # SHA-256 of the identity columns as one Arrow IPC stream: about five times quicker than hashing their
    # text, and the same bytes for the same rows however polars had chunked them
    table = df.select(_IDENTITY_COLUMNS).to_arrow().combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    digest = hashlib.sha256(sink.getvalue()).hexdigest()[:32]
    policy = df.get_column("policy_version")[0] if "policy_version" in df.columns else ""
    judged = df.get_column("judged_at")[0].timestamp() if "judged_at" in df.columns else ""
    return f"{policy}-{judged}-{df.height}-{digest}"


def leases_arrow(leases: pl.DataFrame | None) -> pa.Table | None:
    """The `leases` insert layout of leases the identity learnt (None when there are none)."""
    if leases is None or leases.height == 0:
        return None
    return leases.select(
        "ip", pl.col("lease_mac").alias("mac"), "lease_start", "lease_end", pl.col("lease_ref").alias("evidence"),
        pl.col("lease_place").fill_null("").alias("place")
    ).to_arrow().cast(LEASES_ARROW)


def to_record(df: pl.DataFrame, leases: pl.DataFrame | None = None) -> Record:
    """An engine batch (and the leases learnt with it) as the store and the spool take it."""
    df = _judged(df)
    return Record(dedup_token(df) if df.height else "", to_activity_arrow(df), leases_arrow(leases))


def _judged(df: pl.DataFrame) -> pl.DataFrame:
    """`df` with a `judged_at` (now, unless it has one: the pipeline sets it as it judges)."""
    if "judged_at" in df.columns:
        return df
    return df.with_columns(judged_at=pl.lit(dt.datetime.now(dt.UTC), pl.Datetime("us", "UTC")))


def with_identity(table: pa.Table) -> pa.Table:
    """An `activity` insert with its `record_id`s and every column (a batch spooled by an earlier version may
    lack some: a text column added since is empty in it)."""
    if all(c.name in table.column_names for c in ACTIVITY):
        return table
    rows = pl.from_arrow(table)
    assert isinstance(rows, pl.DataFrame)
    if "judged_at" not in rows.columns:
        rows = rows.with_columns(judged_at=pl.lit(0, pl.Datetime("us", "UTC")))
    return to_activity_arrow(rows)


# ClickHouse error codes that a later attempt can succeed past (capacity, time, the network, a replica
# that is read-only for a while), from ClickHouse's src/Common/ErrorCodes.cpp.
_RETRYABLE_CODES = {159, 164, 202, 209, 210, 241, 242, 243, 252, 319, 425, 999}


def retryable(exc: BaseException) -> bool:
    """Whether a failed insert may succeed if tried again later (so the batch waits in the spool), as
    opposed to a batch ClickHouse refuses as such (set aside in the spool's rejected/ folder)."""
    if isinstance(exc, StoreUnavailable):
        return exc.__cause__ is not None and retryable(exc.__cause__)
    if isinstance(exc, OperationalError | OSError | TimeoutError):
        return True
    if isinstance(exc, DatabaseError):
        code = getattr(exc, "code", None)
        if code is None:
            found = re.search(r"Code: (\d+)", str(exc))
            code = int(found.group(1)) if found else None
        return code in _RETRYABLE_CODES
    return False


def to_activity_arrow(df: pl.DataFrame) -> pa.Table:
    """Select and cast an engine frame into the `activity` insert layout; missing text becomes '' (a text
    column the frame lacks too: one added since it was judged), and a frame without them gets its `record_id`s
    and `judged_at` now."""
    fills = [pl.col(n).fill_null("") for n in df.columns if n in _NULLABLE_TEXT]
    fills += [pl.lit("").alias(n) for n in _NULLABLE_TEXT if n not in df.columns and n != "source_ref"]
    df = _judged(df.with_columns(fills))
    if "record_id" not in df.columns:
        df = df.with_columns(record_ids(df))
    return df.select([c.name for c in ACTIVITY]).to_arrow().cast(ACTIVITY_ARROW)


def _why(exc: BaseException, said: str) -> str:
    """Why a connection failed, in a few words: the error's code or the system's reason, never the
    driver's message (it repeats the URL, credentials and all)."""
    text = f"{exc} {said}"
    for pattern in (r"\[Errno \d+\] ([^\"')\]]+)", r"DB::Exception: ([^.(]+)", r"Code: (\d+)"):
        found = re.search(pattern, text)
        if found:
            return found.group(1).strip()
    return type(exc).__name__


class _NativeStderr:
    """Catches what the embedded engine's C++ writes straight to file descriptor 2 while a connection is
    made (a failure prints its reason there, then raises a bare error): kept in `text`, and handed on to
    the real stderr afterwards except the engine's own `Code: ...` lines (another thread's log lines that
    land in between are not lost)."""

    def __init__(self) -> None:
        self.text = ""

    def __enter__(self) -> _NativeStderr:
        sys.stderr.flush()
        self._saved = os.dup(2)
        self._file = tempfile.TemporaryFile()
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *_: object) -> None:
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.seek(0)
        self.text = self._file.read().decode(errors="replace")
        self._file.close()
        rest = "".join(line for line in self.text.splitlines(keepends=True) if not line.startswith("Code: "))
        if rest:
            os.write(2, rest.encode())
