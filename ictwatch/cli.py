"""The `ictwatch` command line: one module per command in `ictwatch.commands`, and the one place where
failures become exit statuses.

Exit status: 0 on success (a replay that skipped bad records included); 2 for a bad config or policy, an
input that cannot be read at all, or an option that cannot be used (a date that is not one, an empty
period, a report of a username nobody has), naming the file or option (and for config the field and
value); 3 for a refused request (recorded in the audit chain first).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from collector import tune_gc
from collector.sources import InputError
from ictwatch import logs
from ictwatch.commands import MODULES
from ictwatch.errors import EXIT_REFUSED, EXIT_USAGE, Refused, UsageError
from rules.config import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    logs.setup()
    args = _parser().parse_args(argv)
    tune_gc()
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `ictwatch decode ... | head`: the reader has all it wanted
        sys.stderr.close()
        return 0
    except (ConfigError, InputError, UsageError, Refused) as exc:
        prefix, status = next(said for kind, said in _FAILURES.items() if isinstance(exc, kind))
        print(f"ictwatch: {prefix}{exc}", file=sys.stderr)
        return status


_FAILURES: dict[type[Exception], tuple[str, int]] = {
    ConfigError: ("config error: ", EXIT_USAGE),
    InputError: ("cannot read input: ", EXIT_USAGE),
    UsageError: ("", EXIT_USAGE),
    Refused: ("", EXIT_REFUSED),
}
"""What a command's failure is called on stderr, and the exit status it ends with."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ictwatch", description="Network traffic and usage monitoring for a "
                                "school's Staff use of ICT policy.")
    sub = p.add_subparsers(required=True, metavar="COMMAND")
    for module in MODULES:
        module.register(sub)
    return p


if __name__ == "__main__":
    sys.exit(main())
