"""`ictwatch breaches`: stored breaches, one line per activity and rule."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

    from ictwatch import settings



def register(sub: argparse._SubParsersAction) -> None:
    """Add `breaches`."""
    b = sub.add_parser("breaches", help="list stored breaches")
    b.add_argument("--config", required=True, type=Path)
    b.add_argument("--user")
    b.add_argument("--from", dest="start", type=dt.date.fromisoformat)
    b.add_argument("--to", dest="end", type=dt.date.fromisoformat)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_breaches)


def _breach_rows(loaded: settings.Loaded, df: pl.DataFrame) -> pl.DataFrame:
    import polars as pl

    tz = loaded.policy.calendar.timezone
    rules = {r.id: r for r in loaded.policy.rules}
    names = {p.username: p.name for p in loaded.directory.people}
    out = df.explode("rule_ids").with_columns(
        time=pl.col("ts").dt.convert_time_zone(tz),
        clause=pl.col("rule_ids").replace_strict({k: ",".join(r.clauses) for k, r in rules.items()},
                                                  default="", return_dtype=pl.String),
        name=pl.col("user").replace_strict(names, default="unknown", return_dtype=pl.String),
    )
    return out.select(
        "time", "user", "name", "device", "device_type", "location", pl.col("rule_ids").alias("rule"),
        "clause", "severity", "host", "source_ref",
    )


def cmd_breaches(args: argparse.Namespace) -> int:
    """List breaches, one line per (activity, rule)."""
    from ictwatch import settings
    from reports import build

    loaded = settings.load(args.config)
    tz = loaded.policy.calendar.timezone
    start = build.local_bounds(args.start, args.start, tz)[0] if args.start else None
    end = build.local_bounds(args.end, args.end, tz)[1] if args.end else None
    store = loaded.open_store()
    try:
        store.migrate()
        rows = _breach_rows(loaded, store.activity(args.user, start, end, breaches_only=True))
    finally:
        store.close()
    if args.json:
        for row in rows.iter_rows(named=True):
            print(json.dumps(row, default=lambda v: v.isoformat()))
        return 0
    print(_table(rows))
    print(f"{rows.height} breach(es)")
    return 0


def _table(rows: pl.DataFrame) -> str:
    header = ["time", "person", "device", "location", "rule", "clause", "host"]
    lines = [[
        r["time"].strftime("%Y-%m-%d %H:%M:%S"), f"{r['name']} ({r['user']})" if r["user"] else "unknown",
        f"{r['device'] or 'unregistered'}", r["location"] or "unknown", r["rule"], r["clause"], r["host"],
    ] for r in rows.iter_rows(named=True)]
    widths = [max(len(x) for x in col) for col in zip(header, *lines, strict=False)]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
                     for line in [header, *lines])
