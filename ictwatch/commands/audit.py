"""`ictwatch audit`: verify the report audit chain, show it to the headteacher, or check that a report file is
one the chain recorded, unchanged."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from ictwatch.commands.common import desk
from ictwatch.errors import Refused, UsageError

if TYPE_CHECKING:
    from storage.store import Store


def register(sub: argparse._SubParsersAction) -> None:
    """Add `audit`."""
    au = sub.add_parser("audit", help="the report audit chain: verify it, show it to the headteacher, or check a "
                                      "report file against it")
    au.add_argument("action", choices=("verify", "show", "check"))
    au.add_argument("--config", required=True, type=Path)
    au.add_argument("--requested-by", help="for `show`: the headteacher's username")
    au.add_argument("--report", type=Path, metavar="FILE", help="for `check`: a report file that was handed out")
    au.set_defaults(func=cmd_audit, via_daemon=True)


def cmd_audit(args: argparse.Namespace) -> int:
    """`audit verify`: check the chain; `audit show`: print it, for the headteacher (recorded too);
    `audit check --report FILE`: whether the file is one the chain recorded handing out, unchanged."""
    from ictwatch import settings
    from reports.access import AUDIT_REFUSED
    from reports.audit import AuditLog

    loaded = settings.load(args.config)
    data = _report_file(args) if args.action == "check" else b""
    store = loaded.open_store()
    try:
        store.migrate()
        if args.action == "check":
            return _check(args.report, data, store, loaded.policy.calendar.timezone)
        if args.action == "verify":
            verdict = AuditLog(store, loaded.chain_files()).verify()
            print(verdict.summary())
            return 1 if verdict.problem else 0
        seq, chain = desk(loaded, store).read_audit(args.requested_by or "")
    finally:
        store.close()
    if chain is None:
        raise Refused(f"refused: {AUDIT_REFUSED} (audit row #{seq})")
    from reports.words import for_terminal

    tz = loaded.policy.calendar.timezone
    for r in chain.with_columns(ts=chain.get_column("ts").dt.convert_time_zone(tz)).iter_rows(named=True):
        print(for_terminal(f"#{r['seq']:<5} {r['ts']:%Y-%m-%d %H:%M:%S}  {r['actor']:<12} {r['action']:<11} "
                           f"{r['decision']:<8} {r['subject'] or '-':<12} {r['grounds']}; "
                           f"reason: {r['reason'] or '-'}"))  # the reason and subject are as typed, on the web too
    return 0


REPORT_BYTES = 256 << 20
"""The largest report file `audit check` reads."""


def _report_file(args: argparse.Namespace) -> bytes:
    if args.report is None:
        raise UsageError("audit check: --report FILE: the report file to check")
    from ictwatch import caller

    try:
        return caller.current().read_file(Path(args.report), REPORT_BYTES)
    except OSError as exc:
        raise UsageError(f"--report: {str(args.report)!r}: {exc.strerror or exc}") from None


def _check(path: Path, data: bytes, store: Store, timezone: str) -> int:
    """Say whether the file is unchanged and which audit rows recorded it; 1 when it is neither."""
    from reports.audit import handed_out
    from reports.seal import fingerprint

    digest = fingerprint(data)
    if digest is None:
        print(f"{path.name}: CHANGED since it was made: its contents do not match the fingerprint it states")
        return 1
    rows = handed_out(store, digest)
    if not rows:
        print(f"{path.name}: sha256 {digest} is in no granted row of the audit log: not a report ictwatch handed "
              "out here, or changed since")
        return 1
    for r in rows:
        when = r["ts"].astimezone(ZoneInfo(timezone))
        print(f"{path.name}: unchanged; handed out as audit row #{r['seq']} ({r['action']}, {r['report_format']}) "
              f"on {when:%Y-%m-%d %H:%M}")
    return 0
