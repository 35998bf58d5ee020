"""ClickHouse access through clickhouse-connect: `chdb:///path` (embedded, the default) or `http(s)://`.

`Store` creates the schema, inserts activity batches as Arrow tables (the fastest insert path), and
answers the named, parameterised queries the CLI and reports need. No SQL leaves this package.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import clickhouse_connect
import polars as pl
import pyarrow as pa

from storage.schema import (
    ACTIVITY,
    ACTIVITY_ARROW,
    DEDUP_WINDOW,
    LEASES_ARROW,
    TABLES,
    Table,
    column_ddl,
    sql_string,
    table_ddl,
)

_NULLABLE_TEXT = {c.name for c in ACTIVITY if c.arrow == pa.string()}


class Store:
    """One ClickHouse database holding ictwatch's tables."""

    def __init__(self, url: str, database: str = "ictwatch") -> None:
        if not database.isidentifier():
            raise ValueError(f"bad database name: {database!r}")
        self.url = url
        self.database = database
        self._client = clickhouse_connect.get_client(dsn=url)

    def migrate(self) -> None:
        """Create the database and tables if they are missing (safe to run every start)."""
        self._client.command(f"CREATE DATABASE IF NOT EXISTS {self.database}")
        for table in TABLES:
            self._client.command(table_ddl(table, self.database))
            self._add_missing_columns(table)
        # stores made before the deduplication window existed get it (idempotent)
        self._client.command(f"ALTER TABLE {self.database}.activity MODIFY SETTING "
                             f"non_replicated_deduplication_window = {DEDUP_WINDOW}")

    def _add_missing_columns(self, table: Table) -> None:
        """Columns added to the schema since the table was made are added to it, each after the column
        before it in the schema; a column whose comment has changed gets the new one. Nothing else is
        touched, so running it again finds nothing to do."""
        present = dict(self._client.query(
            "SELECT name, comment FROM system.columns WHERE database = {db:String} AND table = {t:String}",
            parameters={"db": self.database, "t": table.name}).result_rows)
        for before, column in zip((None, *table.columns), table.columns, strict=False):
            if column.name not in present:
                after = f" AFTER `{before.name}`" if before else " FIRST"
                self._client.command(f"ALTER TABLE {self.database}.{table.name} ADD COLUMN IF NOT EXISTS "
                                     f"{column_ddl(column)}{after}")
            elif present[column.name] != column.comment:
                self._client.command(f"ALTER TABLE {self.database}.{table.name} COMMENT COLUMN `{column.name}` "
                                     f"{sql_string(column.comment)}")

    def insert_leases(self, leases: pl.DataFrame) -> int:
        """Store leases learnt from DHCP (columns ip, lease_mac, lease_start, lease_end, lease_ref)."""
        if leases.height == 0:
            return 0
        table = leases.select(
            "ip", pl.col("lease_mac").alias("mac"), "lease_start", "lease_end", pl.col("lease_ref").alias("evidence"),
            pl.col("lease_place").fill_null("").alias("place")
        ).to_arrow().cast(LEASES_ARROW)
        self._client.insert_arrow(f"{self.database}.leases", table)
        return table.num_rows

    def leases(self) -> pl.DataFrame:
        """Every stored lease, in the shape the identity keeps them (deduplicated)."""
        sql = (f"SELECT DISTINCT ip, mac AS lease_mac, lease_start, lease_end, evidence AS lease_ref, "
               f"nullIf(place, '') AS lease_place "
               f"FROM {self.database}.leases ORDER BY ip, lease_start")
        result = pl.from_arrow(self._client.query_arrow(sql))
        assert isinstance(result, pl.DataFrame)
        return result

    def insert_activity(self, df: pl.DataFrame) -> int:
        """Insert an engine batch, once: a batch with the same content and policy inserted before (a
        replay, a retry) is dropped by ClickHouse. Returns the number of rows handed over."""
        if df.height == 0:
            return 0
        table = to_activity_arrow(df)
        self._client.insert_arrow(f"{self.database}.activity", table,
                                  settings={"insert_deduplication_token": dedup_token(df)})
        return table.num_rows

    def activity(
        self, user: str | None, start: dt.datetime | None, end: dt.datetime | None, breaches_only: bool = False
    ) -> pl.DataFrame:
        """Rows for `user` (all users when None) with `start <= ts < end`, oldest first."""
        where = ["1"]
        params: dict[str, object] = {}
        if user is not None:
            where.append("user = {user:String}")
            params["user"] = user
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

    def devices_seen(self, start: dt.datetime, end: dt.datetime) -> set[str]:
        """Register ids of the devices with any activity in `start <= ts < end` (absences not counted)."""
        rows = self._client.query(
            f"SELECT DISTINCT device FROM {self.database}.activity WHERE ts >= {{start:DateTime64(6, 'UTC')}} "
            "AND ts < {end:DateTime64(6, 'UTC')} AND device != '' AND kind != 'absence'",
            parameters={"start": start, "end": end}).result_rows
        return {r[0] for r in rows}

    def count(self) -> int:
        """Rows in `activity`."""
        return int(self._client.command(f"SELECT count() FROM {self.database}.activity"))

    def close(self) -> None:
        """Release the connection (and, for chDB, the engine's hold on its folder)."""
        self._client.close()


_IDENTITY_COLUMNS = ("ts", "source_ref", "src_ip", "src_port", "dst_ip", "dst_port", "kind", "host", "url")


def dedup_token(df: pl.DataFrame) -> str:
    """A token for a batch from its content (what was seen, where, when) and the policy that judged it:
    the same input replayed gives the same token; another day's file with the same name does not."""
    text = df.select(pl.col(c).cast(pl.String) for c in _IDENTITY_COLUMNS).write_csv()
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    policy = df.get_column("policy_version")[0] if "policy_version" in df.columns else ""
    return f"{policy}-{df.height}-{digest}"


def to_activity_arrow(df: pl.DataFrame) -> pa.Table:
    """Select and cast an engine frame into the `activity` insert layout; missing text becomes ''."""
    fills = [pl.col(n).fill_null("") for n in df.columns if n in _NULLABLE_TEXT]
    table = df.with_columns(fills).select([c.name for c in ACTIVITY]).to_arrow()
    return table.cast(ACTIVITY_ARROW)
