"""`ictwatch account`: set a web account's password."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ictwatch.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    """Add `account`."""
    ac = sub.add_parser("account", help="set a web account's password (read from standard input)")
    ac.add_argument("--config", required=True, type=Path)
    ac.add_argument("--user", required=True, help="a username from the staff directory")
    ac.set_defaults(func=cmd_account)


def cmd_account(args: argparse.Namespace) -> int:
    """Set a web account's password: the user must be on the staff; the password comes from stdin."""
    import getpass

    from ictwatch import settings
    from reports.accounts import Accounts
    from rules.config import ConfigError

    loaded = settings.load(args.config)
    if args.user not in loaded.directory.by_username():
        raise ConfigError(args.config, "--user", args.user, "not in the staff directory")
    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    try:
        Accounts(loaded.path.parent / loaded.settings.web.accounts).set(args.user, password)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"password set for {args.user}")
    return 0

