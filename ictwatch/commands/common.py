"""What several commands share: reading dates and periods, opening the store, saying what waits in the
spool, the report use cases."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from reports.words import plural

if TYPE_CHECKING:
    from ictwatch.settings import Loaded
    from reports.requests import Desk
    from storage.store import Store


def date_option(text: str) -> dt.date:
    """The `type` of every date option: YYYY-MM-DD within the store's range (reports/periods.py), else
    argparse's usage error (exit 2) saying what was expected."""
    from reports.periods import parse_date

    try:
        return parse_date(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def check_period(first: dt.date | None, last: dt.date | None) -> None:
    """A `UsageError` (exit 2) when `--from` and `--to` make a period with no day in it."""
    from ictwatch.errors import UsageError
    from reports.periods import check_period as empty

    try:
        empty(first, last)
    except ValueError as exc:
        raise UsageError(f"--from {first} --to {last}: {exc}") from None


def migrate_or_spool(store: Store) -> None:
    """Make sure the schema is there; when ClickHouse cannot be reached, say so and go on (the writer
    keeps batches in the spool until it can)."""
    from storage.store import retryable

    try:
        store.migrate()
    except Exception as exc:
        if not retryable(exc):
            raise
        store.reset()
        print(f"ictwatch: ClickHouse cannot be reached ({type(exc).__name__}); batches go to the spool",
              file=sys.stderr)


def say_spooled(batches: int, loaded: Loaded) -> None:
    """Tell the operator how many batches wait in the spool, and how to write them."""
    if batches:
        print(f"{plural(batches, 'batch')} wait in the spool at {loaded.spool_path}; they are written when ClickHouse "
              f"is back (`ictwatch spool flush --config {loaded.path}`)")


def report_skips(path: Path | None, summary: str) -> None:
    """One line on stderr for the bad records skipped in one input (a file, or the capture), if any."""
    if summary:
        print(f"ictwatch: {path.name if path else 'capture'}: {summary}", file=sys.stderr)


def desk(loaded: Loaded, store: Store, explained: bool = False) -> Desk:
    """The report use cases over `store`, its audit chain in the files the settings name;
    `explained`: each breach in a report explained (by the policy, from what the stored rows carry: the
    category lists are not read)."""
    from reports import build
    from reports.audit import AuditLog
    from reports.requests import Desk
    from rules.categories import CategoryIndex

    explainer = build.explainer(loaded.engine(CategoryIndex.empty()), store) if explained else None
    return Desk(store, AuditLog(store, loaded.chain_files()), loaded.directory,
                loaded.policy, explainer, services=loaded.network.service_names(), devices=loaded.devices.devices)
