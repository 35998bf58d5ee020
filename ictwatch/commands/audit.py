"""`ictwatch audit`: verify the report audit chain, or show it to the headteacher."""

from __future__ import annotations

import argparse
from pathlib import Path

from ictwatch.commands.common import desk
from ictwatch.errors import Refused


def register(sub: argparse._SubParsersAction) -> None:
    """Add `audit`."""
    au = sub.add_parser("audit", help="the report audit chain: verify it, or show it to the headteacher")
    au.add_argument("action", choices=("verify", "show"))
    au.add_argument("--config", required=True, type=Path)
    au.add_argument("--requested-by", help="for `show`: the headteacher's username")
    au.set_defaults(func=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    """`audit verify`: check the chain; `audit show`: print it, for the headteacher (recorded too)."""
    from ictwatch import settings
    from reports.access import AUDIT_REFUSED
    from reports.audit import verify

    loaded = settings.load(args.config)
    store = loaded.open_store()
    try:
        store.migrate()
        if args.action == "verify":
            rows, broken, problem = verify(store)
            if broken is not None:
                print(f"audit chain BROKEN at row #{broken}: {problem} ({rows} rows)")
                return 1
            print(f"audit chain intact: {rows} rows")
            return 0
        seq, chain = desk(loaded, store).read_audit(args.requested_by or "")
    finally:
        store.close()
    if chain is None:
        raise Refused(f"refused: {AUDIT_REFUSED} (audit row #{seq})")
    tz = loaded.policy.calendar.timezone
    for r in chain.with_columns(ts=chain.get_column("ts").dt.convert_time_zone(tz)).iter_rows(named=True):
        print(f"#{r['seq']:<5} {r['ts']:%Y-%m-%d %H:%M:%S}  {r['actor']:<12} {r['action']:<11} {r['decision']:<8} "
              f"{r['subject'] or '-':<12} {r['grounds']}; reason: {r['reason'] or '-'}")
    return 0
