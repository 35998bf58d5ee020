"""`ictwatch report` and `ictwatch grant`: one person's activity report, and the headteacher's one-off
grants of one."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import sys
from pathlib import Path

from ictwatch.commands.common import audit_log, role
from ictwatch.errors import Refused
from rules.config import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    """Add `report` and `grant`."""
    rep = sub.add_parser("report", help="one person's activity report for a period")
    rep.add_argument("--config", required=True, type=Path)
    rep.add_argument("--user", required=True)
    rep.add_argument("--from", dest="start", required=True, type=dt.date.fromisoformat)
    rep.add_argument("--to", dest="end", required=True, type=dt.date.fromisoformat)
    rep.add_argument("--requested-by", required=True)
    rep.add_argument("--reason", required=True)
    rep.add_argument("--format", choices=("html", "csv", "json", "pdf"), default="html",
                     help="pdf: the HTML printed by headless Chromium")
    rep.add_argument("-o", "--output", type=Path)
    rep.add_argument("--encrypt", action="store_true",
                     help="write an AES-256 ZIP for leaving the school network (clause P6); the passphrase "
                          "comes from ICTWATCH_EXPORT_PASSPHRASE")
    rep.set_defaults(func=cmd_report)

    gr = sub.add_parser("grant", help="headteacher: let one person (the network manager, say) have one report")
    gr.add_argument("--config", required=True, type=Path)
    gr.add_argument("--by", required=True, help="the headteacher's username")
    gr.add_argument("--to", required=True, help="who may request the report")
    gr.add_argument("--subject", required=True, help="whose report")
    gr.add_argument("--reason", required=True)
    gr.set_defaults(func=cmd_grant)


def cmd_report(args: argparse.Namespace) -> int:
    """Decide whether the requester may have the report, record the request, and write the report."""
    from ictwatch import settings
    from reports import access, build, render
    from reports.audit import Entry
    from reports.seal import seal

    loaded = settings.load(args.config)
    passphrase = _export_passphrase() if args.encrypt else ""  # before anything is decided or recorded
    if args.format == "pdf":
        from reports.pdf import chromium

        if chromium() is None:
            raise ConfigError("--format", "format", "pdf", "PDF needs Chromium (Debian package `chromium`)")
    tz = loaded.policy.calendar.timezone
    lo, hi = build.local_bounds(args.start, args.end, tz)
    store = loaded.open_store()
    try:
        store.migrate()
        log = audit_log(loaded, store)
        who = args.requested_by
        decision = access.decide(loaded.directory, who, args.user, args.reason, dt.date.today(),
                                 loaded.policy.reports.line_manager_chain, log.open_grants(who, args.user))
        entry = Entry(who, role(loaded, who), "report", "granted" if decision.granted else "refused",
                      decision.grounds, args.reason, args.user, lo, hi, uses_grant=decision.grant_seq or 0,
                      report_format="zip" if args.encrypt else args.format)
        if not decision.granted:
            seq = log.append(entry)
            raise Refused(f"refused: {decision.grounds} (recorded as audit row #{seq})")
        report = build.build(store, loaded.directory, loaded.policy.school, tz, args.user, args.start, args.end,
                             args.requested_by, args.reason, dt.datetime.now(dt.UTC), decision.grounds,
                             store.audit_tail()[0] + 1, build.explainer(loaded))
        text = {"csv": render.to_csv, "json": render.to_json}.get(args.format, render.to_html)(report)
        if args.format == "csv":
            digest = hashlib.sha256(text.encode()).hexdigest()
        else:
            text, digest = seal(text)
        data = text.encode()
        if args.format == "pdf":
            from reports.pdf import to_pdf

            data = to_pdf(text)
            digest = hashlib.sha256(data).hexdigest()
        if args.encrypt:
            data = _encrypted(data, f"report-{args.user}-{args.start}-{args.end}.{args.format}", passphrase)
            digest = hashlib.sha256(data).hexdigest()
        seq = log.append(dataclasses.replace(entry, report_sha256=digest, policy_versions=report.policy_versions))
    finally:
        store.close()
    if args.output is None:
        sys.stdout.buffer.write(data)
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(data)
    print(f"report for {args.user}: {len(report.breaches)} breaches, {report.total_activities} activities")
    print(f"written to {args.output.resolve()}")
    print(f"sha256 {digest}; audit row #{seq}")
    return 0


def _export_passphrase() -> str:
    import os

    passphrase = os.environ.get("ICTWATCH_EXPORT_PASSPHRASE", "")
    if len(passphrase) < 12:
        raise ConfigError("ICTWATCH_EXPORT_PASSPHRASE", "passphrase", "(withheld)",
                          "set it to a passphrase of at least 12 characters to encrypt an export")
    return passphrase


def _encrypted(data: bytes, name: str, passphrase: str) -> bytes:
    """`data` as the one file of an AES-256 encrypted ZIP (WinZip AES, which 7-Zip opens)."""
    import io

    import pyzipper

    out = io.BytesIO()
    with pyzipper.AESZipFile(out, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as z:
        z.setpassword(passphrase.encode())
        z.setencryption(pyzipper.WZ_AES, nbits=256)
        z.writestr(name, data)
    return out.getvalue()


def cmd_grant(args: argparse.Namespace) -> int:
    """Record the headteacher's one-off grant of one person's report to someone else (refused otherwise)."""
    from ictwatch import settings
    from reports import access
    from reports.audit import Entry

    loaded = settings.load(args.config)
    allowed = access.may_grant(loaded.directory, args.by) and bool(args.reason.strip())
    store = loaded.open_store()
    try:
        store.migrate()
        seq = audit_log(loaded, store).append(Entry(
            args.by, role(loaded, args.by), "grant", "granted" if allowed else "refused",
            "headteacher" if allowed else "only the headteacher gives one-off grants, with a reason",
            args.reason, args.subject, grantee=args.to))
    finally:
        store.close()
    if not allowed:
        raise Refused(f"refused: only the headteacher may grant, with a reason (audit row #{seq})")
    print(f"grant #{seq}: {args.to} may request one report of {args.subject}")
    return 0
