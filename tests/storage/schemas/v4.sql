-- ictwatch schema at commit 37e81b4 (2026-12-07): every table, before `responsible` (devices in someone's care)
CREATE TABLE IF NOT EXISTS {database}.activity (
    `ts` DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)) COMMENT 'when it happened (UTC)',
    `school` LowCardinality(String) COMMENT 'the school whose policy judged it (a trust\'s schools share one cluster)',
    `user` LowCardinality(String) COMMENT 'username, from proxy authentication or the device owner; empty if unknown',
    `role` LowCardinality(String) COMMENT 'the user\'s role in the staff directory at the time',
    `groups` Array(LowCardinality(String)) COMMENT 'the user\'s directory groups at the time',
    `device` String COMMENT 'device register id; empty for an unregistered device',
    `device_type` LowCardinality(String) COMMENT 'school_laptop, school_ipad, personal_phone, ...',
    `device_owner` LowCardinality(String) COMMENT 'school or personal',
    `device_registered` Bool COMMENT 'whether the register knows the device',
    `location` LowCardinality(String) COMMENT 'named place from the network map; empty if no subnet matched',
    `location_kind` LowCardinality(String) COMMENT 'staff_room, office, classroom, ...',
    `identity_source` LowCardinality(String) COMMENT 'evidence: proxy_auth, register_mac, dhcp_lease, register_address',
    `identity_confidence` LowCardinality(String) COMMENT 'high (login, registered MAC), medium (DHCP lease), low (address only)',
    `mac_randomised` Bool COMMENT 'the client MAC is locally administered (a private Wi-Fi address)',
    `device_status` LowCardinality(String) COMMENT 'the register\'s status of the device that day: issued, lost or returned',
    `owner_left` Bool COMMENT 'the device\'s owner had left the school by that day',
    `kind` LowCardinality(String) COMMENT 'observation kind: dns, tls, http, flow, proxy, ...',
    `source` LowCardinality(String) COMMENT 'input type: pcap, squid, e2guardian, squidguard, suricata, dhcpd, dnsmasq, conntrack, or check',
    `source_ref` String COMMENT 'input and record: file.pcap#frame, file.log:line, or file.log@rotations:offset for a followed log; where the record was first read (a re-import under another name keeps it)',
    `record_id` UInt64 COMMENT 'the record\'s identity: a hash of what was observed, not of where it was read (storage/records.py)',
    `src_ip` String COMMENT 'client address',
    `src_port` Nullable(UInt16) COMMENT 'client port',
    `dst_ip` String COMMENT 'server address, when known',
    `dst_port` Nullable(UInt16) COMMENT 'server port',
    `proto` LowCardinality(String) COMMENT 'tcp or udp',
    `src_mac` String COMMENT 'client MAC when the frame carried one',
    `host` String COMMENT 'server name: DNS query, SNI, Host, proxy URL host, or DNS-derived',
    `url` String COMMENT 'full URL when seen (plain HTTP, proxy log)',
    `file_ext` LowCardinality(String) COMMENT 'extension of a downloaded file (HTTP, proxy): from the URL or the content type',
    `cleartext_credentials` Bool COMMENT 'a password crossed the network readable (P2)',
    `method` LowCardinality(String) COMMENT 'HTTP method',
    `user_agent` String COMMENT 'HTTP User-Agent',
    `status` Nullable(UInt16) COMMENT 'HTTP status',
    `content_type` LowCardinality(String) COMMENT 'response Content-Type',
    `qtype` LowCardinality(String) COMMENT 'DNS query type',
    `rcode` LowCardinality(String) COMMENT 'DNS response code',
    `answers` Array(String) COMMENT 'DNS answers',
    `sni` String COMMENT 'TLS server name indication',
    `dhcp_type` LowCardinality(String) COMMENT 'DHCP message type: REQUEST, ACK (the network gave the device an address), ...',
    `bytes_out` Nullable(UInt64) CODEC(T64, ZSTD(1)) COMMENT 'client to server, IP bytes for flows',
    `bytes_in` Nullable(UInt64) CODEC(T64, ZSTD(1)) COMMENT 'server to client, IP bytes for flows, reply size for proxy',
    `packets_out` Nullable(UInt64) CODEC(T64, ZSTD(1)) COMMENT 'client to server packets',
    `packets_in` Nullable(UInt64) CODEC(T64, ZSTD(1)) COMMENT 'server to client packets',
    `duration_s` Nullable(Float64) COMMENT 'flow duration or proxy elapsed time',
    `proxy_action` LowCardinality(String) COMMENT 'Squid result code',
    `denied` Bool COMMENT 'the school\'s filtering refused the request (not a login challenge)',
    `filter_category` LowCardinality(String) COMMENT 'category a web filter (e2guardian, squidGuard) gave the request',
    `filter_reason` String COMMENT 'the web filter\'s reason for its decision',
    `categories` Array(LowCardinality(String)) COMMENT 'content categories of the host',
    `verdict` LowCardinality(String) COMMENT 'allowed, breach, blocked, or waived (a rule matched but a waiver covered it)',
    `rule_ids` Array(LowCardinality(String)) COMMENT 'rules the activity broke',
    `clauses` Array(LowCardinality(String)) COMMENT 'policy clause ids those rules enforce',
    `severity` LowCardinality(String) COMMENT 'highest severity among the rules broken',
    `reasons` Array(String) COMMENT 'each broken rule\'s message',
    `rule_clauses` Array(Array(LowCardinality(String))) COMMENT 'each broken rule\'s own clause ids, in the order of rule_ids (empty on rows stored before it existed)',
    `rule_severities` Array(LowCardinality(String)) COMMENT 'each broken rule\'s own severity, in the order of rule_ids (empty on rows stored before it existed)',
    `policy_version` LowCardinality(String) COMMENT 'hash of the policy that gave the verdict',
    `judged_at` DateTime64(6, 'UTC') COMMENT 'when that policy judged it: a record judged again replaces its row (0 on rows stored before it existed)',
    `waiver_ids` Array(LowCardinality(String)) COMMENT 'waivers that lifted a rule this activity matched',
    PROJECTION breaches_by_school (SELECT school, verdict, ts, severity, location, rule_ids ORDER BY (school, verdict, ts))
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (user, ts)
SETTINGS non_replicated_deduplication_window = 10000, min_bytes_for_wide_part = 33554432, lightweight_mutation_projection_mode = 'rebuild'
COMMENT 'one row per observation, with who, where and the policy verdict';
CREATE TABLE IF NOT EXISTS {database}.leases (
    `ip` String COMMENT 'the leased address',
    `mac` String COMMENT 'the client hardware address that held it',
    `lease_start` DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)) COMMENT 'when the lease was granted (ACK)',
    `lease_end` DateTime64(6, 'UTC') COMMENT 'when it ran out',
    `evidence` String COMMENT 'where it was seen: the source_ref of the DHCP ACK (capture#frame) or the lease file\'s entry',
    `place` String COMMENT 'the place the DHCP relay\'s circuit or remote id named (option 82), if any'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(lease_start)
ORDER BY (ip, lease_start, mac)
COMMENT 'address to MAC history from DHCP, so identity resolves as it was at any time';
CREATE TABLE IF NOT EXISTS {database}.report_audit (
    `seq` UInt64 COMMENT 'position in the audit chain, from 1',
    `ts` DateTime64(6, 'UTC') COMMENT 'when the request was made or the report opened',
    `actor` String COMMENT 'username of the person who asked',
    `actor_role` LowCardinality(String) COMMENT 'their role in the staff directory then',
    `action` LowCardinality(String) COMMENT 'report, grant, audit_view, incident_update, ...',
    `subject` String COMMENT 'username the report is about; empty for other actions',
    `period_start` Nullable(DateTime64(6, 'UTC')) COMMENT 'start of the period asked for',
    `period_end` Nullable(DateTime64(6, 'UTC')) COMMENT 'end of the period asked for (exclusive)',
    `reason` String COMMENT 'the reason the person gave',
    `decision` LowCardinality(String) COMMENT 'granted or refused',
    `grounds` String COMMENT 'why: headteacher, line manager of the subject, own data, one-off grant, ...',
    `grantee` String COMMENT 'for a one-off grant: who may use it (for one report of `subject`)',
    `uses_grant` UInt64 COMMENT 'the seq of the one-off grant this request used up; 0 for none',
    `report_sha256` String COMMENT 'SHA-256 of the report handed out (empty when refused)',
    `report_format` LowCardinality(String) COMMENT 'html, csv, json, pdf or zip',
    `policy_versions` Array(LowCardinality(String)) COMMENT 'policy versions in force over the period',
    `prev_hash` String COMMENT 'row_hash of the row before (the chain that makes tampering evident)',
    `row_hash` String COMMENT 'SHA-256 over this row\'s fields and prev_hash'
)
ENGINE = MergeTree
ORDER BY seq
COMMENT 'every report request, view and refusal; append-only, each row chained to the one before';
CREATE TABLE IF NOT EXISTS {database}.incidents (
    `incident_id` String COMMENT 'the id alerts carry instead of a person\'s name',
    `version` UInt32 COMMENT 'revision of the record; the highest one is current',
    `opened` DateTime64(6, 'UTC') COMMENT 'when the breach that opened it happened',
    `rule_id` LowCardinality(String) COMMENT 'the rule broken',
    `clauses` Array(LowCardinality(String)) COMMENT 'policy clauses that rule enforces',
    `severity` LowCardinality(String) COMMENT 'advisory, caution or danger',
    `user` LowCardinality(String) COMMENT 'the person the breach was attributed to; empty if unknown',
    `device` String COMMENT 'device register id; empty if unregistered',
    `location` LowCardinality(String) COMMENT 'where it happened',
    `activity_ref` String COMMENT 'source_ref of the activity that opened it',
    `status` LowCardinality(String) COMMENT 'open, under_review or closed',
    `actions` String COMMENT 'what was done (the DfE expects actions and outcomes recorded)',
    `outcome` String COMMENT 'how it ended',
    `recorded_by` String COMMENT 'username of whoever wrote this revision',
    `recorded_at` DateTime64(6, 'UTC') COMMENT 'when this revision was written'
)
ENGINE = ReplacingMergeTree(version)
ORDER BY incident_id
COMMENT 'breaches the safeguarding lead follows up, with the actions and outcome recorded';
