"""The `ictwatch` command line: one module per command in `ictwatch.commands`, and the one place where
failures become exit statuses.

Exit status: 0 on success (a replay that skipped bad records included); 2 for a bad config or policy, an
input that cannot be read at all, or an option that cannot be used (a date that is not one, an empty
period, a report of a username nobody has), naming the file or option (and for config the field and
value); 3 for a refused request (recorded in the audit chain first); 1 when the store cannot be opened or
reached (one line naming it).

A command marked `via_daemon` (it needs the store) runs inside `ictwatch run` when a daemon answers on
the configured socket (ictwatch/control.py); `in_daemon` is the daemon's end of that.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from collector import tune_gc
from collector.sources import InputError
from ictwatch import logs
from ictwatch.commands import MODULES
from ictwatch.control import DaemonUnusable
from ictwatch.errors import EXIT_REFUSED, EXIT_USAGE, Refused, UsageError
from rules.config import ConfigError
from storage.errors import StoreUnavailable


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    logs.setup()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    tune_gc()
    return _guarded(lambda: _here_or_in_daemon(args, argv))


def in_daemon(argv: list[str], config: Path) -> int:
    """Run a caller's command inside the daemon, whose configuration is `config` (the caller's `--config` is
    not used): the same parser, the same command function, the same exit statuses; only commands marked
    `via_daemon`."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse has said what is wrong (or printed the help)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not getattr(args, "via_daemon", False):
        print(f"ictwatch: `{argv[0]}` does not run inside the daemon", file=sys.stderr)
        return EXIT_USAGE
    args.config = config
    return _guarded(lambda: int(args.func(args) or 0))


def _here_or_in_daemon(args: argparse.Namespace, argv: list[str]) -> int:
    if getattr(args, "via_daemon", False):
        from ictwatch import control, settings

        status = control.forward(settings.load(args.config).socket_path, argv)
        if status is not None:
            return status
    return int(args.func(args) or 0)


def _guarded(command: Callable[[], int]) -> int:
    """Run `command`, turning the failures a user can act on into one line and an exit status."""
    try:
        return command()
    except BrokenPipeError:  # `ictwatch decode ... | head`: the reader has all it wanted
        sys.stderr.close()
        return 0
    except (ConfigError, InputError, UsageError, Refused, StoreUnavailable, DaemonUnusable) as exc:
        prefix, status = next(said for kind, said in _FAILURES.items() if isinstance(exc, kind))
        print(f"ictwatch: {prefix}{exc}", file=sys.stderr)
        return status


_FAILURES: dict[type[Exception], tuple[str, int]] = {
    ConfigError: ("config error: ", EXIT_USAGE),
    InputError: ("cannot read input: ", EXIT_USAGE),
    UsageError: ("", EXIT_USAGE),
    Refused: ("", EXIT_REFUSED),
    StoreUnavailable: ("", 1),
    DaemonUnusable: ("", 1),
}
"""What a command's failure is called on stderr, and the exit status it ends with."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ictwatch", description="Network traffic and usage monitoring for a "
                                "school's Staff use of ICT policy.")
    p.set_defaults(in_daemon=in_daemon)  # how `ictwatch run` runs its callers' commands (no import cycle)
    sub = p.add_subparsers(required=True, metavar="COMMAND")
    for module in MODULES:
        module.register(sub)
    return p


if __name__ == "__main__":
    sys.exit(main())
