"""`ictwatch categories update`: install a new set of category lists."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add `categories update`."""
    cat = sub.add_parser("categories", help="category lists")
    cat_sub = cat.add_subparsers(required=True, metavar="ACTION")
    cu = cat_sub.add_parser("update", help="install a new UT1 set (tar.gz, folder or http(s) URL) atomically")
    cu.add_argument("--config", required=True, type=Path)
    cu.add_argument("--from", dest="source", required=True, metavar="SOURCE")
    cu.set_defaults(func=cmd_categories_update)


def cmd_categories_update(args: argparse.Namespace) -> int:
    """Install a new UT1 set as the policy's category lists, atomically; refused sets change nothing."""
    from ictwatch import settings
    from rules.listupdate import update

    loaded = settings.load(args.config)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    target, entries = update(loaded.lists_path, loaded.policy.categories, args.source, now)
    print(f"installed {entries:,} entries from {args.source} in {target}; {loaded.lists_path} now points there")
    return 0
