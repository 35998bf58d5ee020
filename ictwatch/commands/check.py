"""`ictwatch check`: validate everything and say so in a short summary ending in one OK line; `--show`
adds the effective configuration and policy (each category's lists, the policy as JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from reports.words import plural

if TYPE_CHECKING:
    from ictwatch import settings


def register(sub: argparse._SubParsersAction) -> None:
    """Add `check`."""
    c = sub.add_parser("check", help="validate config, policy, directory, devices and network map")
    c.add_argument("--config", required=True, type=Path)
    c.add_argument("--show", "--verbose", action="store_true",
                   help="print the effective policy too: each category's lists and the whole policy as JSON")
    c.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    """Validate everything; print a summary (with `--show`, the effective policy), warnings on stderr, and
    one OK line last."""
    import collector
    from collector.capture.live import choose_tool, describe
    from ictwatch import settings
    from rules.listupdate import installed
    from rules.policy import names_people, never_filled
    from rules.uksic import UK_SIC

    loaded = settings.load(args.config)
    print(f"config: {loaded.path}")
    print(f"storage: {loaded.storage_url} (database {loaded.settings.storage.database})")
    key, key_warning = _audit_key(loaded)
    print(key)
    uses = Counter(d.use.value for d in loaded.devices.devices)
    apart = ", ".join(f"{n} {words}" for n, words in ((uses["care"], "in someone's care"), (uses["shared"], "shared"))
                      if n)  # whose activity is no one's own use: said, as a register from before `use` reads so
    print(f"directory: {len(loaded.directory.people)} people; devices: {len(loaded.devices.devices)}"
          f"{f' ({apart})' if apart else ''}; locations: {len(loaded.network.locations)}")
    collecting = loaded.settings.collector
    print("capture: " + describe(choose_tool(collecting.capture_tool), collecting.interface,
                                 str(collecting.capture_pipe) if collecting.capture_pipe else None))
    print("packet decoder: " + ("compiled (mypyc)" if collector.compiled() else
                                "pure Python, about 7x slower: install gcc and python3.11-dev, then run ./dev "
                                "demo again (deploy/README.md)"))
    stamp = installed(loaded.lists_path)
    print(f"category lists: {loaded.lists_path} ({len(loaded.categories):,} entries; "
          + (f"installed {stamp['installed']} from {stamp['source']})" if stamp else "not installed by "
             "`ictwatch categories update`)"))
    unfed = [name for name in loaded.categories.names if not loaded.categories.sources.get(name)]
    if args.show:
        for name in loaded.categories.names:
            used = loaded.categories.sources.get(name, ())
            sic = " (UK SIC)" if name in UK_SIC else ""
            print(f"  {name}{sic}: " + (", ".join(used) if used else "no list: nothing is found in this category"))
    elif unfed:
        print(f"  no list, so nothing is found in: {', '.join(unfed)}")
    policy = loaded.policy
    print(f"policy version {policy.version()}: {policy.school}, {plural(len(policy.rules), 'rule')}, "
          f"{plural(len(policy.waivers), 'waiver')}" + (":" if args.show else ""))
    if args.show:
        print(json.dumps(policy.model_dump(mode="json", by_alias=True, exclude_none=True), indent=1))
    policy_path = loaded.path.parent / loaded.settings.policy
    warnings = (never_filled(policy, policy_path) + names_people(policy, loaded.directory, policy_path)
                + loaded.request_size_warnings() + key_warning)
    sys.stdout.flush()
    for warning in warnings:
        print(f"ictwatch: warning: {warning}", file=sys.stderr, flush=True)
    print(f"OK: {loaded.path} is valid" + (f", with {plural(len(warnings), 'warning')} above" if warnings else "")
          + ("" if args.show else "; --show prints the effective policy"))
    return 0


def _audit_key(loaded: settings.Loaded) -> tuple[str, list[str]]:
    """(the summary's line on the audit chain's key, a warning when the service could not use it or others
    than the service's user can read it)."""
    import stat

    from reports.audit import key_problem

    path = loaded.chain_files().key
    problem = key_problem(path)
    if problem == "missing":
        return f"audit key: {path}: not made yet (the service makes it when it starts; back it up then)", []
    if problem is not None:
        return f"audit key: {path}", [f"audit key {path}: {problem}"]
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"audit key: {path}", [f"audit key {path}: others than its owner may read it: chmod 600 it"]
    return f"audit key: {path} (readable by its owner only)", []
