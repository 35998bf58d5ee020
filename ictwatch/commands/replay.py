"""`ictwatch replay`: captures and logs through the policy into the store, with a summary."""

from __future__ import annotations

import argparse
from pathlib import Path

from ictwatch.commands.common import migrate_or_spool, say_spooled
from reports.words import plural


def register(sub: argparse._SubParsersAction) -> None:
    """Add `replay`."""
    r = sub.add_parser("replay", help="run captures and logs through the policy into the store")
    r.add_argument("--config", required=True, type=Path)
    r.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    r.set_defaults(func=cmd_replay, via_daemon=True)


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay inputs into the store and print a summary. Inside the daemon (ictwatch/control.py) the daemon
    reads the inputs itself, and a batch the store cannot take stops the replay rather than going to the
    spool, which is the daemon's writer's alone (a replay run again stores nothing twice). A big capture is
    handed to a capture worker first thing, to be decoded while this process imports and opens the rest."""
    from collector.capture.messages import decode_ahead
    from ictwatch import caller

    here = caller.current()
    inputs = [here.path(p) for p in args.inputs]
    ahead = {} if here.remote else decode_ahead(inputs)

    from ictwatch import settings
    from ictwatch.pipeline import replay
    from ictwatch.progress import ProgressBar

    loaded = settings.load(args.config)
    engine = loaded.engine()
    store, spool = loaded.open_store(), None if here.remote else loaded.open_spool()
    try:
        migrate_or_spool(store)
        with ProgressBar(caller.stderr()) as bar:
            summary = replay(inputs, engine, store, bar.follow, collector=loaded.settings.collector, spool=spool,
                             ahead=ahead)
    finally:
        store.close()
        if spool is not None:
            spool.close()
    v = summary.verdicts
    print(f"replayed {plural(len(summary.inputs), 'input')}: {plural(summary.packets, 'packet')}, "
          f"{plural(summary.observations, 'observation')}")
    print(f"judged {plural(v.total(), 'activity', 'activities')}: {plural(v['breach'], 'breach')}, "
          f"{v['waived']:,} waived, {v['blocked']:,} blocked without a breach, {v['allowed']:,} allowed "
          f"(policy {engine.version})")
    again = [f"{summary.replaced:,} of them judged anew, replacing the stored verdict"] if summary.replaced else []
    again += [f"{plural(summary.known, 'record')} stored already, left as they were"] \
        if summary.known else []
    print(f"stored {plural(summary.stored, 'activity', 'activities')}" + (f" ({'; '.join(again)})" if again else ""))
    print(f"the proxy refused {plural(summary.denied, 'request')}")
    if summary.skipped:
        parts = ", ".join(f"{k}={n}" for k, n in sorted(summary.skipped.items()))
        print(f"skipped {plural(summary.skipped.total(), 'bad record')}: {parts}")
    say_spooled(summary.spooled, loaded)
    return 0
