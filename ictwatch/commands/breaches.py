"""`ictwatch breaches`: stored breaches, one line per activity and rule (reports/breaches.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ictwatch.commands.common import check_period, date_option
from reports.words import plural


def register(sub: argparse._SubParsersAction) -> None:
    """Add `breaches`."""
    b = sub.add_parser("breaches", help="list stored breaches")
    b.add_argument("--config", required=True, type=Path)
    b.add_argument("--user", help="the person's own use only (not the devices in their care)")
    b.add_argument("--device", help="one device's breaches (a register id), whoever was identified on it")
    b.add_argument("--from", dest="start", type=date_option, metavar="YYYY-MM-DD")
    b.add_argument("--to", dest="end", type=date_option, metavar="YYYY-MM-DD")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_breaches, via_daemon=True)


def cmd_breaches(args: argparse.Namespace) -> int:
    """List breaches, one line per (activity, rule): a table, or JSON lines with `--json`."""
    from ictwatch import settings
    from reports import breaches

    check_period(args.start, args.end)
    loaded = settings.load(args.config)
    store = loaded.open_store()
    try:
        store.migrate()
        rows = breaches.lines(store, loaded.directory, loaded.policy.calendar.timezone, args.user, args.start,
                              args.end, args.device)
    finally:
        store.close()
    if args.json:
        for line in breaches.to_json(rows):
            print(line)
        return 0
    print(breaches.table(rows))
    print(plural(rows.height, "breach"))
    return 0
