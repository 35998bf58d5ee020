"""`ictwatch check-ipads`: clause I1, the daily check that every issued school iPad was seen."""

from __future__ import annotations

import argparse
from pathlib import Path

from ictwatch.commands.common import date_option
from reports.words import for_terminal, plural


def register(sub: argparse._SubParsersAction) -> None:
    """Add `check-ipads`."""
    ip = sub.add_parser("check-ipads", help="record school iPads not seen by the policy's time (clause I1)")
    ip.add_argument("--config", required=True, type=Path)
    ip.add_argument("--date", required=True, type=date_option, metavar="YYYY-MM-DD")
    ip.set_defaults(func=cmd_check_ipads)


def cmd_check_ipads(args: argparse.Namespace) -> int:
    """Clause I1: record each issued school iPad not seen by the policy's time on a school day."""
    from collector.observation import to_table
    from ictwatch import settings
    from rules.absence import absences, deadline, expected

    loaded = settings.load(args.config)
    window = deadline(loaded.policy, args.date)
    if window is None:
        print(f"{args.date}: no iPad check (not a school day, or the policy has no `ipads` section)")
        return 0
    start, by = window
    ipads = expected(loaded.devices.devices, args.date)
    store = loaded.open_store()
    try:
        store.migrate()
        missing = absences(ipads, store.devices_seen(start, by), by, args.date)
        if missing:
            engine = loaded.engine()
            engine.identity.add(store.leases())
            store.insert_activity(engine.evaluate(to_table(missing)))
    finally:
        store.close()
    local = loaded.policy.ipads.expected_by.strftime("%H:%M") if loaded.policy.ipads else ""
    for obs in missing:
        print(for_terminal(f"{obs.source_ref.rsplit(':', 1)[1]}: not seen on {args.date} by {local}; recorded as an "
                           "absence"))  # the register's asset tag, as an MDM exported it
    print(f"{len(ipads) - len(missing)} of {plural(len(ipads), 'school iPad')} seen by {local} on {args.date}")
    return 0
