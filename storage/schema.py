"""The one definition of the tables (`activity`, `leases`, `report_audit`, `incidents`): their DDL, for one
server or a cluster, insert column order, Arrow types, column comments and retention come from here.

`activity`'s layout: `ORDER BY (user, ts)` because the query that matters most is one person's activity over a
period (a report); partitions by month so retention drops whole parts. Text that repeats (kinds, roles,
places, rule ids) is `LowCardinality`; the clock and counters carry delta codecs.

Each record is one row: `record_id` says which record a row is (storage/records.py); an insert leaves alone
a record stored already, and a record judged anew replaces its row, the old one deleted as the new one is
written (storage/store.py). So every reader reads one row a record as it is, without FINAL, and the sort key
can stay the person's even when a new judgement names another person.

Unknown is one thing with two spellings: an unknown user, device, place (or any text column with nothing
in it) is stored as an empty string, because `user` leads the sort key and ClickHouse keys are not nullable
(making them so needs the `allow_nullable_key` setting and every store's table rebuilt); readers turn it into
null, which every JSON output shows (`breaches --json`, a report's JSON, as `decode --json` does), and only
human views put it in words ("unknown", "unregistered").
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
    Column("school", LC, _S, "the school whose policy judged it (a trust's schools share one cluster)"),
    Column("user", LC, _S, "username, from proxy authentication or the owner of a device of their own use; empty "
           "if unknown, and for a device in someone's care or shared that no login names"),
    Column("role", LC, _S, "the user's role in the staff directory at the time"),
    Column("groups", "Array(LowCardinality(String))", _LS, "the user's directory groups at the time"),
    Column("responsible", LC, _S, "for a device in someone's care (register `use: care`, an iPad bank) that no "
           "login names: that person, who answers for the device but did not do this; empty otherwise"),
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
    Column("source", LC, _S,
           "input type: pcap, squid, e2guardian, squidguard, suricata, dhcpd, dnsmasq, conntrack, or check"),
    Column("source_ref", "String", _S,
           "input and record: file.pcap#frame, file.log:line, or file.log@rotations:offset for a followed log; "
           "where the record was first read (a re-import under another name keeps it)"),
    Column("record_id", "UInt64", _U64,
           "the record's identity: a hash of what was observed, not of where it was read (storage/records.py)"),
    Column("src_ip", "String", _S, "client address"),
    Column("src_port", "Nullable(UInt16)", _U16, "client port"),
    Column("dst_ip", "String", _S, "server address, when known"),
    Column("dst_port", "Nullable(UInt16)", _U16, "server port"),
    Column("proto", LC, _S, "tcp or udp"),
    Column("src_mac", "String", _S, "client MAC when the frame carried one"),
    Column("host", "String", _S, "server name: DNS query, SNI, Host, proxy URL host, or DNS-derived"),
    Column("url", "String", _S, "full URL when seen (plain HTTP, proxy log)"),
    Column("file_ext", LC, _S, "extension of a downloaded file (HTTP, proxy): from the URL or the content type"),
    Column("cleartext_credentials", "Bool", pa.bool_(), "a password crossed the network readable (P2)"),
    Column("mail_encryption", LC, _S,
           "how a mail session was protected: none (in clear), starttls, implicit_tls, or unknown (P5)"),
    Column("method", LC, _S, "HTTP method; for p2p the DHT message (get_peers, announce_peer, ..., response, error) "
           "or the UDP tracker action"),
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
    Column("denied", "Bool", pa.bool_(), "the school's filtering refused the request (not a login challenge)"),
    Column("filter_category", LC, _S, "category a web filter (e2guardian, squidGuard) gave the request"),
    Column("filter_reason", "String", _S, "the web filter's reason for its decision"),
    Column("categories", "Array(LowCardinality(String))", _LS, "content categories of the host"),
    Column("verdict", LC, _S, "allowed, breach, blocked, or waived (a rule matched but a waiver covered it)"),
    Column("rule_ids", "Array(LowCardinality(String))", _LS, "rules the activity broke"),
    Column("clauses", "Array(LowCardinality(String))", _LS, "policy clause ids those rules enforce"),
    Column("severity", LC, _S, "highest severity among the rules broken"),
    Column("reasons", "Array(String)", _LS, "each broken rule's message"),
    Column("rule_clauses", "Array(Array(LowCardinality(String)))", pa.list_(_LS),
           "each broken rule's own clause ids, in the order of rule_ids (empty on rows stored before it existed)"),
    Column("rule_severities", "Array(LowCardinality(String))", _LS,
           "each broken rule's own severity, in the order of rule_ids (empty on rows stored before it existed)"),
    Column("policy_version", LC, _S, "hash of the policy that gave the verdict"),
    Column("judged_at", "DateTime64(6, 'UTC')", pa.timestamp("us", tz="UTC"),
           "when that policy judged it: a record judged again replaces its row (0 on rows stored before it existed)"),
    Column("waiver_ids", "Array(LowCardinality(String))", _LS, "waivers that lifted a rule this activity matched"),
    Column("info_hash", "String", _S, "p2p: the BitTorrent info-hash (40 hex digits) a peer-wire handshake, tracker "
           "announce or DHT query named: the torrent sought (empty on rows stored before it existed)"),
)

ACTIVITY_ARROW = pa.schema([pa.field(c.name, c.arrow) for c in ACTIVITY])
"""Arrow schema of an insert into `activity`, in column order."""

_UNREAD = "nothing after the decoder reads it (no rule, report or identity step); `ictwatch decode` shows it"
_RELAY = "matched against the network map's relay places: kept in `leases` as `place`"
DROPPED: dict[str, str] = {
    "vlan": "read to place the activity (a network-map location may be a VLAN): kept as `location`",
    "service": _UNREAD,
    "helo": _UNREAD,
    "mail_from": _UNREAD + "; it names a correspondent, so keeping it needs a rule that reads it",
    "rcpt_to": _UNREAD + "; it names correspondents, so keeping it needs a rule that reads it",
    "starttls": "the server's acceptance alone; whether TLS then began is kept as `mail_encryption`",
    "auth_mechanism": _UNREAD + "; the breach (P2) is kept as `cleartext_credentials`",
    "auth_user": "a login name seen in clear, maybe not the person's own; the breach is `cleartext_credentials`",
    "auth_success": _UNREAD + "; P2 holds whatever the server answered",
    "dhcp_xid": _UNREAD,
    "hostname": "copied to `host` by the decoder, where it is kept",
    "domain": _UNREAD,
    "requested_ip": _UNREAD,
    "assigned_ip": "kept in `leases` (`ip`): identity learns who had which address",
    "lease_s": "kept in `leases` as `lease_end` (the lease's start plus this)",
    "dhcp_params": _UNREAD,
    "vendor_class": _UNREAD,
    "dhcp_circuit_id": _RELAY,
    "dhcp_remote_id": _RELAY,
    "dhcp_relay_ip": "read to place a DHCP message where its client is: kept as `location`",
    "dhcp_client_ip": "read to place a DHCP message where its client is: kept as `location`",
    "alpn": _UNREAD,
    "tls_version": _UNREAD,
    "quic_version": _UNREAD,
    "ech": _UNREAD,
    "conn_state": _UNREAD,
    "interim": "a flow's interim and final records are stored alike: their counts add up to the flow's totals",
    "proxy_user": "identity's first evidence: kept as `user`, with `identity_source` proxy_auth",
}
"""The observation fields (collector/observation.py) that have no `activity` column, each with why. Every
other observation field is stored as is, in the `activity` column of its own name; a test fails when an
observation field is neither, so a new field cannot be dropped without a line here."""


def sql_string(text: str) -> str:
    """A ClickHouse string literal for `text`."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


LEASES: tuple[Column, ...] = (
    Column("ip", "String", _S, "the leased address"),
    Column("mac", "String", _S, "the client hardware address that held it"),
    Column("lease_start", "DateTime64(6, 'UTC')", pa.timestamp("us", tz="UTC"), "when the lease was granted (ACK)",
           "CODEC(Delta, ZSTD(1))"),
    Column("lease_end", "DateTime64(6, 'UTC')", pa.timestamp("us", tz="UTC"), "when it ran out"),
    Column("evidence", "String", _S,
           "where it was seen: the source_ref of the DHCP ACK (capture#frame) or the lease file's entry"),
    Column("place", "String", _S, "the place the DHCP relay's circuit or remote id named (option 82), if any"),
)
LEASES_ARROW = pa.schema([pa.field(c.name, c.arrow) for c in LEASES])
"""Arrow schema of an insert into `leases`."""


DEDUP_WINDOW = 10_000
"""Inserts whose deduplication token was among the last this many are dropped: a batch replayed or
retried is not stored twice."""

_TS = pa.timestamp("us", tz="UTC")

REPORT_AUDIT: tuple[Column, ...] = (
    Column("seq", "UInt64", _U64, "position in the audit chain, from 1"),
    Column("ts", "DateTime64(6, 'UTC')", _TS, "when the request was made or the report opened"),
    Column("actor", "String", _S, "username of the person who asked"),
    Column("actor_role", LC, _S, "their role in the staff directory then"),
    Column("action", LC, _S, "report, grant, audit_view, incident_update, ..."),
    Column("subject", "String", _S, "username the report is about; empty for other actions"),
    Column("period_start", "Nullable(DateTime64(6, 'UTC'))", _TS, "start of the period asked for"),
    Column("period_end", "Nullable(DateTime64(6, 'UTC'))", _TS, "end of the period asked for (exclusive)"),
    Column("reason", "String", _S, "the reason the person gave"),
    Column("decision", LC, _S, "granted or refused"),
    Column("grounds", "String", _S, "why: headteacher, line manager of the subject, own data, one-off grant, ..."),
    Column("grantee", "String", _S, "for a one-off grant: who may use it (for one report of `subject`)"),
    Column("uses_grant", "UInt64", _U64, "the seq of the one-off grant this request used up; 0 for none"),
    Column("report_sha256", "String", _S, "SHA-256 of the report handed out (empty when refused)"),
    Column("report_format", LC, _S, "html, csv, json, pdf or zip"),
    Column("policy_versions", "Array(LowCardinality(String))", pa.list_(pa.string()),
           "policy versions in force over the period"),
    Column("prev_hash", "String", _S, "row_hash of the row before (the chain that makes tampering evident)"),
    Column("row_hash", "String", _S, "SHA-256 over this row's fields and prev_hash"),
)

INCIDENTS: tuple[Column, ...] = (
    Column("incident_id", "String", _S, "the id alerts carry instead of a person's name"),
    Column("version", "UInt32", pa.uint32(), "revision of the record; the highest one is current"),
    Column("opened", "DateTime64(6, 'UTC')", _TS, "when the breach that opened it happened"),
    Column("rule_id", LC, _S, "the rule broken"),
    Column("clauses", "Array(LowCardinality(String))", pa.list_(pa.string()), "policy clauses that rule enforces"),
    Column("severity", LC, _S, "advisory, caution or danger"),
    Column("user", LC, _S, "the person the breach was attributed to; empty if unknown"),
    Column("device", "String", _S, "device register id; empty if unregistered"),
    Column("location", LC, _S, "where it happened"),
    Column("activity_ref", "String", _S, "source_ref of the activity that opened it"),
    Column("status", LC, _S, "open, under_review or closed"),
    Column("actions", "String", _S, "what was done (the DfE expects actions and outcomes recorded)"),
    Column("outcome", "String", _S, "how it ended"),
    Column("recorded_by", "String", _S, "username of whoever wrote this revision"),
    Column("recorded_at", "DateTime64(6, 'UTC')", _TS, "when this revision was written"),
)


@dataclass(frozen=True, slots=True)
class Table:
    """A table: its columns, engine and keys, and the column its retention counts from."""

    name: str
    columns: tuple[Column, ...]
    engine: str
    """`MergeTree` or `ReplacingMergeTree[(version)]`; `Replicated...` with its Keeper path on a cluster."""
    order_by: str
    comment: str
    partition_by: str = ""
    settings: str = ""
    projections: tuple[str, ...] = ()
    ttl_from: str = ""
    """The time column retention (a TTL) counts from; empty for a table kept whole."""
    shard_by: str = "rand()"
    """Sharding key of the Distributed table on a cluster."""


TABLES = (
    Table("activity", ACTIVITY, "MergeTree", "(user, ts)",
          "one row per observation, with who, where and the policy verdict", partition_by="toYYYYMM(ts)",
          # A part under 32 MB (an insert of up to about 100,000 rows) is written compact: a dozen files, not
          # two hundred and fifty (a file or more per column), whose making and unmaking cost more than the
          # insert on some disks (ext4 without a journal scans the inodes freed in the last minute or so for
          # each new file, and merges free parts all the time). Merges make the larger parts wide again:
          # merging compact parts into a compact one cost twice the CPU, so the limit is not higher.
          # A record judged again replaces its row by a lightweight DELETE of the old one (storage/store.py),
          # which a table with a projection refuses unless told to rebuild the projection of the parts touched.
          settings=f"non_replicated_deduplication_window = {DEDUP_WINDOW}, min_bytes_for_wide_part = {32 << 20}, "
                   "lightweight_mutation_projection_mode = 'rebuild'",
          # dashboards ask for one school's breaches over time; the sort key serves one person's reports
          projections=("breaches_by_school (SELECT school, verdict, ts, severity, location, rule_ids "
                       "ORDER BY (school, verdict, ts))",),
          ttl_from="ts", shard_by="cityHash64(user)"),  # one person's rows on one shard: a report reads one
    Table("leases", LEASES, "ReplacingMergeTree", "(ip, lease_start, mac)",
          "address to MAC history from DHCP, so identity resolves as it was at any time",
          partition_by="toYYYYMM(lease_start)", ttl_from="lease_end", shard_by="cityHash64(ip)"),
    Table("report_audit", REPORT_AUDIT, "MergeTree", "seq",
          "every report request, view and refusal; append-only, each row chained to the one before",
          ttl_from="ts"),
    Table("incidents", INCIDENTS, "ReplacingMergeTree(version)", "incident_id",
          "breaches the safeguarding lead follows up, with the actions and outcome recorded",
          ttl_from="recorded_at", shard_by="cityHash64(incident_id)"),
)


@dataclass(frozen=True, slots=True)
class Retention:
    """How long rows are kept, in days (0: for ever). From the policy's `retention` section (GDPR)."""

    activity_days: int = 0
    url_days: int = 0
    """Full URLs (and User-Agents) are blanked after this many days; hosts stay for `activity_days`."""
    leases_days: int = 0
    audit_days: int = 0

    def table_days(self, table: str) -> int:
        """Days a row of `table` is kept (0: for ever)."""
        return {"activity": self.activity_days, "leases": self.leases_days, "report_audit": self.audit_days,
                "incidents": self.audit_days}.get(table, 0)


MINIMISED = ("url", "user_agent")
"""Activity columns that `url_days` blanks before the row itself expires."""


def ttl_expr(column: str, days: int) -> str:
    """A TTL expression, in the form ClickHouse prints it back (so a migration can compare). ClickHouse
    deletes a row once it is at or before `now()` (at its next merge, so hours later at most)."""
    return f"toDateTime({column}) + toIntervalDay({days})"


def ttl_boundary(days: int) -> str:
    """The latest time, to the second, whose rows `ttl_expr(column, days)` lets ClickHouse delete now: a
    row may be gone once `toDateTime(column)` is at or before it. The same arithmetic turned round: the
    columns are UTC, so a day is always 86,400 seconds, and `toDateTime` drops the fraction of a second."""
    return f"now('UTC') - toIntervalDay({days})"


def column_ddl(column: Column, ttl: str = "") -> str:
    """A column's definition, as CREATE TABLE and ALTER TABLE ADD COLUMN take it (with `ttl`, an expression of
    `ttl_expr`'s, its values blanked after that time)."""
    codec = " " + column.codec if column.codec else ""
    expires = f" TTL {ttl}" if ttl else ""
    return f"`{column.name}` {column.ch_type}{codec} COMMENT {sql_string(column.comment)}{expires}"


def _engine(table: Table, database: str, cluster: str | None) -> str:
    if cluster is None:
        return table.engine
    base, _, args = table.engine.partition("(")
    path = f"'/clickhouse/tables/{{shard}}/{database}/{table.name}_local', '{{replica}}'"
    return f"Replicated{base}({path}{', ' + args.rstrip(')') if args else ''})"


def table_ddl(table: Table, database: str, cluster: str | None = None, retention: Retention | None = None) -> str:
    """CREATE TABLE statement for `table` (idempotent); on a cluster, the replicated local table
    `<name>_local` on every node. With `retention`, its TTLs are in it (else a migration sets them after)."""
    name, on = (f"{table.name}_local", f" ON CLUSTER {cluster}") if cluster else (table.name, "")
    days = retention.table_days(table.name) if retention and table.ttl_from else 0
    url_days = retention.url_days if retention and table.name == "activity" else 0
    body = [column_ddl(c, ttl_expr(table.ttl_from, url_days) if url_days and c.name in MINIMISED else "")
            for c in table.columns] + [f"PROJECTION {p}" for p in table.projections]
    settings = table.settings
    if cluster and settings:
        settings = settings.replace("non_replicated_deduplication_window", "replicated_deduplication_window")
    clauses = [f"ENGINE = {_engine(table, database, cluster)}"]
    clauses += [f"PARTITION BY {table.partition_by}"] if table.partition_by else []
    clauses += [f"ORDER BY {table.order_by}"]
    clauses += [f"TTL {ttl_expr(table.ttl_from, days)}"] if days else []
    clauses += [f"SETTINGS {settings}"] if settings else []
    cols = ",\n".join("    " + line for line in body)
    return (f"CREATE TABLE IF NOT EXISTS {database}.{name}{on} (\n{cols}\n)\n" + "\n".join(clauses)
            + f"\nCOMMENT {sql_string(table.comment)}")


def cluster_ddl(database: str, cluster: str) -> list[str]:
    """Every statement that makes the schema on a cluster (a trust with several schools): the database,
    each table replicated on every shard (`<name>_local`, ClickHouse Keeper keeping the replicas in step),
    and a Distributed table under the plain name that the daemon and reports use as on one server."""
    out = [f"CREATE DATABASE IF NOT EXISTS {database} ON CLUSTER {cluster}"]
    for table in TABLES:
        out.append(table_ddl(table, database, cluster))
        out.append(f"CREATE TABLE IF NOT EXISTS {database}.{table.name} ON CLUSTER {cluster} "
                   f"AS {database}.{table.name}_local\n"
                   f"ENGINE = Distributed({cluster}, {database}, {table.name}_local, {table.shard_by})")
    return out
