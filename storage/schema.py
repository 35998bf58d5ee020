"""The one definition of the `activity` table: DDL, insert column order and Arrow types come from here.

Layout: `ORDER BY (user, ts)` because the query that matters most is one person's activity over a
period (a report); partitions by month so retention drops whole parts. Text that repeats (kinds, roles,
places, rule ids) is `LowCardinality`; the clock and counters carry delta codecs. Unknown user, device or
place is stored as an empty string (ClickHouse sort keys cannot be nullable) and shown as "unknown".
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True, slots=True)
class Column:
    """One column: ClickHouse type, Arrow type for inserts, and what it holds."""

    name: str
    ch_type: str
    arrow: pa.DataType
    comment: str
    codec: str = ""


_S, _LS = pa.string(), pa.list_(pa.string())
_U16, _U64 = pa.uint16(), pa.uint64()
LC = "LowCardinality(String)"

ACTIVITY: tuple[Column, ...] = (
    Column("ts", "DateTime64(6, 'UTC')", pa.timestamp("us", tz="UTC"), "when it happened (UTC)",
           "CODEC(Delta, ZSTD(1))"),
    Column("user", LC, _S, "username, from proxy authentication or the device owner; empty if unknown"),
    Column("role", LC, _S, "the user's role in the staff directory at the time"),
    Column("device", "String", _S, "device register id; empty for an unregistered device"),
    Column("device_type", LC, _S, "school_laptop, school_ipad, personal_phone, ..."),
    Column("device_owner", LC, _S, "school or personal"),
    Column("device_registered", "Bool", pa.bool_(), "whether the register knows the device"),
    Column("location", LC, _S, "named place from the network map; empty if no subnet matched"),
    Column("location_kind", LC, _S, "staff_room, office, classroom, ..."),
    Column("identity_source", LC, _S, "evidence: proxy_auth, register_mac, dhcp_lease, register_address"),
    Column("identity_confidence", LC, _S, "high (login, registered MAC), medium (DHCP lease), low (address only)"),
    Column("mac_randomised", "Bool", pa.bool_(), "the client MAC is locally administered (a private Wi-Fi address)"),
    Column("device_status", LC, _S, "the register's status of the device that day: issued, lost or returned"),
    Column("owner_left", "Bool", pa.bool_(), "the device's owner had left the school by that day"),
    Column("kind", LC, _S, "observation kind: dns, tls, http, flow, proxy, ..."),
    Column("source", LC, _S, "input type: pcap or squid"),
    Column("source_ref", "String", _S, "input and record: file.pcap#frame or file.log:line"),
    Column("src_ip", "String", _S, "client address"),
    Column("src_port", "Nullable(UInt16)", _U16, "client port"),
    Column("dst_ip", "String", _S, "server address, when known"),
    Column("dst_port", "Nullable(UInt16)", _U16, "server port"),
    Column("proto", LC, _S, "tcp or udp"),
    Column("src_mac", "String", _S, "client MAC when the frame carried one"),
    Column("host", "String", _S, "server name: DNS query, SNI, Host, proxy URL host, or DNS-derived"),
    Column("url", "String", _S, "full URL when seen (plain HTTP, proxy log)"),
    Column("file_ext", LC, _S, "extension of a downloaded file (HTTP)"),
    Column("cleartext_credentials", "Bool", pa.bool_(), "a password crossed the network readable (P2)"),
    Column("method", LC, _S, "HTTP method"),
    Column("user_agent", "String", _S, "HTTP User-Agent"),
    Column("status", "Nullable(UInt16)", _U16, "HTTP status"),
    Column("content_type", LC, _S, "response Content-Type"),
    Column("qtype", LC, _S, "DNS query type"),
    Column("rcode", LC, _S, "DNS response code"),
    Column("answers", "Array(String)", _LS, "DNS answers"),
    Column("sni", "String", _S, "TLS server name indication"),
    Column("dhcp_type", LC, _S, "DHCP message type: REQUEST, ACK (the network gave the device an address), ..."),
    Column("bytes_out", "Nullable(UInt64)", _U64, "client to server, IP bytes for flows", "CODEC(T64, ZSTD(1))"),
    Column("bytes_in", "Nullable(UInt64)", _U64, "server to client, IP bytes for flows, reply size for proxy",
           "CODEC(T64, ZSTD(1))"),
    Column("packets_out", "Nullable(UInt64)", _U64, "client to server packets", "CODEC(T64, ZSTD(1))"),
    Column("packets_in", "Nullable(UInt64)", _U64, "server to client packets", "CODEC(T64, ZSTD(1))"),
    Column("duration_s", "Nullable(Float64)", pa.float64(), "flow duration or proxy elapsed time"),
    Column("proxy_action", LC, _S, "Squid result code"),
    Column("denied", "Bool", pa.bool_(), "the proxy refused the request"),
    Column("filter_category", LC, _S, "category a web filter (e2guardian, squidGuard) gave the request"),
    Column("filter_reason", "String", _S, "the web filter's reason for its decision"),
    Column("categories", "Array(LowCardinality(String))", _LS, "content categories of the host"),
    Column("verdict", LC, _S, "allowed, breach, blocked, or waived (a rule matched but a waiver covered it)"),
    Column("rule_ids", "Array(LowCardinality(String))", _LS, "rules the activity broke"),
    Column("clauses", "Array(LowCardinality(String))", _LS, "policy clause ids those rules enforce"),
    Column("severity", LC, _S, "highest severity among the rules broken"),
    Column("reasons", "Array(String)", _LS, "each broken rule's message"),
    Column("policy_version", LC, _S, "hash of the policy that gave the verdict"),
    Column("waiver_ids", "Array(LowCardinality(String))", _LS, "waivers that lifted a rule this activity matched"),
)

ACTIVITY_ARROW = pa.schema([pa.field(c.name, c.arrow) for c in ACTIVITY])
"""Arrow schema of an insert into `activity`, in column order."""


def sql_string(text: str) -> str:
    """A ClickHouse string literal for `text`."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


LEASES: tuple[Column, ...] = (
    Column("ip", "String", _S, "the leased address"),
    Column("mac", "String", _S, "the client hardware address that held it"),
    Column("lease_start", "DateTime64(6, 'UTC')", pa.timestamp("us", tz="UTC"), "when the lease was granted (ACK)",
           "CODEC(Delta, ZSTD(1))"),
    Column("lease_end", "DateTime64(6, 'UTC')", pa.timestamp("us", tz="UTC"), "when it ran out"),
    Column("evidence", "String", _S, "where it was seen: capture#frame"),
    Column("place", "String", _S, "the place the DHCP relay's circuit or remote id named (option 82), if any"),
)
LEASES_ARROW = pa.schema([pa.field(c.name, c.arrow) for c in LEASES])
"""Arrow schema of an insert into `leases`."""


DEDUP_WINDOW = 10_000
"""Inserts whose deduplication token was among the last this many are dropped: a batch replayed or
retried is not stored twice."""


@dataclass(frozen=True, slots=True)
class Table:
    """A table: its columns and the clauses after them."""

    name: str
    columns: tuple[Column, ...]
    layout: str
    comment: str


TABLES = (
    Table("activity", ACTIVITY, "ENGINE = MergeTree\nPARTITION BY toYYYYMM(ts)\nORDER BY (user, ts)\n"
          f"SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}",
          "one row per observation, with who, where and the policy verdict"),
    Table("leases", LEASES, "ENGINE = ReplacingMergeTree\nPARTITION BY toYYYYMM(lease_start)\n"
                            "ORDER BY (ip, lease_start, mac)",
          "address to MAC history from DHCP, so identity resolves as it was at any time"),
)


def column_ddl(column: Column) -> str:
    """A column's definition, as CREATE TABLE and ALTER TABLE ADD COLUMN take it."""
    codec = " " + column.codec if column.codec else ""
    return f"`{column.name}` {column.ch_type}{codec} COMMENT {sql_string(column.comment)}"


def table_ddl(table: Table, database: str) -> str:
    """CREATE TABLE statement for `table` (idempotent)."""
    cols = ",\n".join("    " + column_ddl(c) for c in table.columns)
    return (f"CREATE TABLE IF NOT EXISTS {database}.{table.name} (\n{cols}\n)\n{table.layout}\n"
            f"COMMENT {sql_string(table.comment)}")


def activity_ddl(database: str) -> str:
    """CREATE TABLE statement for `activity` (idempotent)."""
    return table_ddl(TABLES[0], database)
