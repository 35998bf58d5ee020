"""`ictwatch report` and `ictwatch grant`: one person's activity report, and the headteacher's one-off
grants of one (one subject, one period, expiring). Deciding, recording and writing are
reports/requests.py's; these parse and print."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Iterator
from pathlib import Path

from ictwatch import caller
from ictwatch.commands.common import check_period, date_option, desk
from ictwatch.errors import Refused, UsageError
from reports.words import plural


class _Formats:
    """The report formats (reports/formats.py) as `--format` choices, looked up only when the option is
    given or the help shown, so that other commands start without loading the renderers."""

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    @staticmethod
    def _names() -> tuple[str, ...]:
        from reports.formats import FORMATS

        return tuple(FORMATS)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `report` and `grant`."""
    rep = sub.add_parser("report", help="one person's activity report for a period, or one device's (--device)")
    rep.add_argument("--config", required=True, type=Path)
    whose = rep.add_mutually_exclusive_group(required=True)
    whose.add_argument("--user", help="whose report: their own use, and the devices in their care apart")
    whose.add_argument("--device", help="a device's register id: its activity that no login named (an iPad bank, "
                                         "the hall's AV PC); the headteacher and the safeguarding lead only")
    rep.add_argument("--from", dest="start", required=True, type=date_option, metavar="YYYY-MM-DD")
    rep.add_argument("--to", dest="end", required=True, type=date_option, metavar="YYYY-MM-DD")
    rep.add_argument("--requested-by", required=True)
    rep.add_argument("--reason", required=True)
    rep.add_argument("--format", choices=_Formats(), default="html", metavar="FORMAT",  # a metavar: argparse
                     help="%(choices)s; pdf: the HTML printed by headless Chromium")  # lists choices without one
    rep.add_argument("-o", "--output", type=Path, metavar="FILE",
                     help="where to write it; `-` for standard output. Without -o it goes to standard output "
                          "only when that is not a terminal (a pipe or a file): a report is confidential")
    rep.add_argument("--encrypt", action="store_true",
                     help="write an AES-256 ZIP for leaving the school network (clause P6); the passphrase "
                          "comes from ICTWATCH_EXPORT_PASSPHRASE")
    rep.set_defaults(func=cmd_report, via_daemon=True)

    gr = sub.add_parser("grant", help="headteacher: let one person (the network manager, say) have one report of "
                                      "one person for one period, within the policy's reports.grant_days")
    gr.add_argument("--config", required=True, type=Path)
    gr.add_argument("--by", required=True, help="the headteacher's username")
    gr.add_argument("--for", dest="grantee", required=True, help="who may request the report")
    gr.add_argument("--subject", required=True, help="whose report")
    gr.add_argument("--from", dest="start", required=True, type=date_option, metavar="YYYY-MM-DD")
    gr.add_argument("--to", dest="end", required=True, type=_grant_end, metavar="YYYY-MM-DD")
    gr.add_argument("--reason", required=True)
    gr.set_defaults(func=cmd_grant, via_daemon=True)


def _grant_end(text: str) -> dt.date:
    """`--to` of a grant: its last day. Before grants had periods `--to` named the grantee, so a username
    there gets a pointer to `--for`."""
    try:
        return date_option(text)
    except argparse.ArgumentTypeError as exc:
        if text[:1].isdigit():
            raise
        raise argparse.ArgumentTypeError(f"{exc}; who may request the report is given with --for") from None


def cmd_report(args: argparse.Namespace) -> int:
    """Request the report (decided and recorded in the audit chain), and write it."""
    from ictwatch import settings
    from reports.formats import FORMATS
    from reports.requests import Ask
    from rules.config import ConfigError

    check_period(args.start, args.end)
    to_stdout = args.output is None or str(args.output) == "-"
    if args.output is None and sys.stdout.isatty():  # before anything is decided or recorded
        raise UsageError("-o FILE: a report is confidential and is not printed into a terminal; write it to a "
                         "file (or give `-o -` to print it all the same)")
    loaded = settings.load(args.config)
    passphrase = _export_passphrase() if args.encrypt else ""  # before anything is decided or recorded
    missing = FORMATS[args.format].missing()
    if missing:
        raise ConfigError("--format", "format", args.format, missing)
    store = loaded.open_store()
    try:
        store.migrate()
        got = desk(loaded, store, explained=True).request(
            Ask(args.requested_by, args.device or args.user, args.start, args.end, args.reason, args.format, passphrase,
                of_device=args.device is not None))
    finally:
        store.close()
    if got.no_such_person:
        option = "--device" if args.device else "--user"
        raise UsageError(f"{option}: {got.grounds}: check the spelling (recorded as audit row #{got.seq})")
    if got.report is None:
        raise Refused(f"refused: {got.grounds} (recorded as audit row #{got.seq})")
    if to_stdout:
        sys.stdout.buffer.write(got.data)
        return 0
    try:
        written = caller.current().write_file(args.output, got.data)  # the caller's file, 0600
    except OSError as exc:
        raise UsageError(f"-o: {str(args.output)!r}: {exc.strerror or exc} (the report was granted as audit row "
                         f"#{got.seq}, and is not written)") from None
    report = got.report
    print(f"report for {args.device or args.user}: {plural(len(report.breaches), 'breach')}, "
          f"{plural(len(report.visits), 'visit')} ({plural(report.total_activities, 'activity', 'activities')})"
          + (f"; {plural(len(report.in_care), 'device')} in their care, "
             f"{plural(len(report.care_breaches), 'breach')}" if report.in_care else ""))
    print(f"written to {written}")
    print(f"sha256 {got.sha256}; audit row #{got.seq}")
    return 0


def _export_passphrase() -> str:
    from rules.config import ConfigError

    passphrase = caller.current().env("ICTWATCH_EXPORT_PASSPHRASE")
    if len(passphrase) < 12:
        raise ConfigError("ICTWATCH_EXPORT_PASSPHRASE", "passphrase", "(withheld)",
                          "set it to a passphrase of at least 12 characters to encrypt an export")
    return passphrase


def cmd_grant(args: argparse.Namespace) -> int:
    """Record the headteacher's one-off grant of one person's report for one period to someone else
    (refused otherwise)."""
    from ictwatch import settings

    check_period(args.start, args.end)
    loaded = settings.load(args.config)
    store = loaded.open_store()
    try:
        store.migrate()
        decision, seq = desk(loaded, store).grant(args.by, args.grantee, args.subject, args.reason, args.start,
                                                  args.end)
    finally:
        store.close()
    if not decision.granted:
        raise Refused(f"refused: {decision.grounds} (audit row #{seq})")
    print(f"grant #{seq}: {args.grantee} may request one report of {args.subject} for {args.start} to {args.end}, "
          f"within {plural(loaded.policy.reports.grant_days, 'day')}")
    return 0
