"""`ictwatch explain`: why the activities from one frame or log line got their verdicts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add `explain`."""
    x = sub.add_parser("explain", help="why the activities from one frame or log line got their verdicts")
    x.add_argument("--config", required=True, type=Path)
    x.add_argument("activity", metavar="SOURCE_REF",
                   help="where it was seen, as stored: file.pcap#FRAME or file.log:LINE")
    x.add_argument("--kind", help="only the activity of this kind (a frame can give a DNS query and its flow)")
    x.set_defaults(func=cmd_explain, via_daemon=True)


def cmd_explain(args: argparse.Namespace) -> int:
    """Explain the verdict of each activity recorded from one frame or log line."""
    from ictwatch import settings
    from reports.words import for_terminal
    from rules.categories import CategoryIndex
    from rules.explain import explain_lines

    loaded = settings.load(args.config)
    store = loaded.open_store()
    try:
        store.migrate()
        rows = store.activity_at(args.activity, args.kind)
        if rows.height == 0:
            print(f"ictwatch: no activity was recorded from {args.activity}", file=sys.stderr)
            return 1
        engine = loaded.engine(CategoryIndex.empty())  # a stored row carries its categories: no lists are read
        engine.windows.history = store.activity  # a window's records
        names = {p.username: p.name for p in loaded.directory.people}
        print("\n\n".join("\n".join(map(for_terminal, explain_lines(engine, rows[i : i + 1], names)))
                          for i in range(rows.height)))
    finally:
        store.close()
    return 0
