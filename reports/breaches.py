"""Stored breaches one line per (activity, rule): what `ictwatch breaches` lists and what incidents open from.

Each line cites its own rule's clauses and severity as they were stored when the activity was judged
(`rule_clauses`, `rule_severities`), so a later change to the policy does not rewrite what an old breach
cited, and a row that broke a danger rule and an advisory one gives a danger line and an advisory line.
Rows stored before those columns existed hold them empty; their lines fall back on the row's own union of
clauses and its highest severity, which is exact for the usual row that broke one rule.

A breach on a device in someone's care (an iPad bank) that no login names is the device's: its `user` is null
and `responsible` names the person in whose care it is (the table's person column says "in the care of"
them); on a shared device, or anyone's own, `responsible` is null.

An unknown person, device, place or host is null in these lines and in their JSON, as it is in
`ictwatch decode --json`; only the table puts it in words ("unknown", "unregistered"). `host` is only ever
a name (from DNS, TLS, HTTP or the proxy); the address of the server the device talked to is `server` (and
`port`), null when the row has none, so a row without a name says so in every output, the report's
included, and still shows where it went.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import polars as pl

from collector.endpoints import endpoint
from reports.build import local_bounds
from reports.words import for_terminal
from rules.config import Directory
from storage.store import Store

_UNKNOWN_WHEN_EMPTY = ("user", "responsible", "device", "device_type", "location", "host", "dst_ip")
"""Text columns stored as "" when nothing was known (storage/schema.py), null in the lines."""


def per_rule(rows: pl.DataFrame) -> pl.DataFrame:
    """Stored breach rows as one line per (activity, rule): `rule` names the rule, and `clauses` and
    `severity` become that rule's own (the row's union and maximum for rows stored without them)."""
    position = pl.int_range(pl.len()).over("_activity")
    own_clauses = pl.col("rule_clauses").list.get(pl.col("_k"), null_on_oob=True)
    own_severity = pl.col("rule_severities").list.get(pl.col("_k"), null_on_oob=True)
    return (rows.with_row_index("_activity").explode("rule_ids").with_columns(_k=position)
            .with_columns(clauses=pl.coalesce(own_clauses, pl.col("clauses")),
                          severity=pl.coalesce(own_severity, pl.col("severity")))
            .rename({"rule_ids": "rule"}).drop("_activity", "_k", "rule_clauses", "rule_severities"))


def lines(store: Store, directory: Directory, timezone: str, user: str | None = None,
          first: dt.date | None = None, last: dt.date | None = None, device: str | None = None) -> pl.DataFrame:
    """The stored breaches of `user` (everyone's when None), or of `device`, from local day `first` to `last`
    (either open), one line per (activity, rule), times in `timezone`, unknown values null."""
    start = local_bounds(first, first, timezone)[0] if first else None
    end = local_bounds(last, last, timezone)[1] if last else None
    names = {p.username: p.name for p in directory.people}
    out = per_rule(store.activity(user, start, end, breaches_only=True, device=device)).with_columns(
        [pl.when(pl.col(c) != "").then(pl.col(c)).alias(c) for c in _UNKNOWN_WHEN_EMPTY])
    return out.select(
        pl.col("ts").dt.convert_time_zone(timezone).alias("time"), "user",
        pl.col("user").replace_strict(names, default=None, return_dtype=pl.String).alias("name"), "responsible",
        pl.col("responsible").replace_strict(names, default=None, return_dtype=pl.String).alias("responsible_name"),
        "device", "device_type", "location", "rule", pl.col("clauses").list.join(",").alias("clause"), "severity",
        "host", pl.col("dst_ip").alias("server"), pl.col("dst_port").alias("port"), "source_ref",
    )


def to_json(breaches: pl.DataFrame) -> Iterator[str]:
    """One JSON object per line of `lines` (times in ISO 8601 with their offset; unknown values null)."""
    for row in breaches.iter_rows(named=True):
        yield json.dumps(row, default=lambda v: v.isoformat())


def _person(line: dict) -> str:
    """Who a line is about, in words: the person, else whose care the device was in, else unknown."""
    if line["user"]:
        return f"{line['name'] or 'unknown'} ({line['user']})"
    if line["responsible"]:
        return f"in the care of {line['responsible_name'] or 'unknown'} ({line['responsible']})"
    return "unknown"


def table(breaches: pl.DataFrame) -> str:
    """`lines` as an aligned text table, unknown values in words; `source` is what `ictwatch explain`
    takes, and the server is `address:port` (an IPv6 address in brackets)."""
    header = ["time", "person", "device", "location", "rule", "clause", "severity", "host", "server", "source"]
    rows = [[
        r["time"].strftime("%Y-%m-%d %H:%M:%S"), _person(r),
        r["device"] or "unregistered", r["location"] or "unknown", r["rule"], r["clause"], r["severity"] or "",
        r["host"] or "", endpoint(r["server"], r["port"]), r["source_ref"],
    ] for r in breaches.iter_rows(named=True)]
    rows = [[for_terminal(cell) for cell in row] for row in rows]  # names and URLs come off the network
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=False)]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
                     for line in [header, *rows])
