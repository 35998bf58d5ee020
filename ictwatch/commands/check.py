"""`ictwatch check`: validate everything and print the effective configuration and policy."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add `check`."""
    c = sub.add_parser("check", help="validate config, policy, directory, devices and network map")
    c.add_argument("--config", required=True, type=Path)
    c.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    """Validate everything and print the effective configuration and policy."""
    import collector
    from ictwatch import settings
    from rules.listupdate import installed
    from rules.policy import names_people, never_filled
    from rules.uksic import UK_SIC

    loaded = settings.load(args.config)
    print(f"config: {loaded.path}")
    print(f"storage: {loaded.storage_url} (database {loaded.settings.storage.database})")
    print(f"directory: {len(loaded.directory.people)} people; devices: {len(loaded.devices.devices)}; "
          f"locations: {len(loaded.network.locations)}")
    print("packet decoder: " + ("compiled (mypyc)" if collector.compiled() else
                                "pure Python, about 7x slower: install gcc and python3.11-dev, then run ./dev "
                                "demo again (deploy/README.md)"))
    stamp = installed(loaded.lists_path)
    print(f"category lists: {loaded.lists_path} ({len(loaded.categories):,} entries; "
          + (f"installed {stamp['installed']} from {stamp['source']})" if stamp else "not installed by "
             "`ictwatch categories update`)"))
    for name in loaded.categories.names:
        used = loaded.categories.sources.get(name, ())
        sic = " (UK SIC)" if name in UK_SIC else ""
        print(f"  {name}{sic}: " + (", ".join(used) if used else "no list: nothing is found in this category"))
    print(f"policy version {loaded.policy.version()}:")
    print(json.dumps(loaded.policy.model_dump(mode="json", by_alias=True, exclude_none=True), indent=1))
    policy_path = loaded.path.parent / loaded.settings.policy
    for warning in never_filled(loaded.policy, policy_path) + names_people(loaded.policy, loaded.directory,
                                                                             policy_path):
        print(f"ictwatch: warning: {warning}", file=sys.stderr)
    return 0
