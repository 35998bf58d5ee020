"""`ictwatch check-ipads`: clause I1, the daily check that every issued school iPad was seen; and the
daemon's own running of it each school day (`daily`), a minute after the policy's `ipads.expected_by`."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ictwatch.commands.common import date_option
from reports.words import for_terminal, plural

if TYPE_CHECKING:
    from ictwatch.settings import Loaded

GRACE = dt.timedelta(minutes=1)
"""How long after the expected-by time the daemon checks: what was seen just before it is stored by then."""
RETRY_S = 300.0
"""How soon the daemon tries a check again when the store could not take it."""
_log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `check-ipads`."""
    ip = sub.add_parser("check-ipads", help="record school iPads not seen by the policy's time (clause I1)")
    ip.add_argument("--config", required=True, type=Path)
    ip.add_argument("--date", required=True, type=date_option, metavar="YYYY-MM-DD")
    ip.set_defaults(func=cmd_check_ipads, via_daemon=True)


@dataclass(frozen=True)
class Checked:
    """One day's check: how many iPads were expected, the ids of those not seen, the expected-by time."""

    expected: int
    missing: list[str]
    by: str


def check(loaded: Loaded, day: dt.date) -> Checked | None:
    """Record each issued school iPad not seen by the policy's time on `day` as an absence, judged by the
    policy; None when there is no check that day (not a school day, or no `ipads` section)."""
    from collector.observation import to_table
    from rules.absence import absences, deadline, expected
    from rules.categories import CategoryIndex

    window = deadline(loaded.policy, day)
    if window is None:
        return None
    start, by = window
    ipads = expected(loaded.devices.devices, day)
    store = loaded.open_store()
    try:
        store.migrate()
        missing = absences(ipads, store.devices_seen(start, by), by, day)
        if missing:
            engine = loaded.engine(CategoryIndex.empty())  # an absence has no host: no lists to read
            engine.identity.add(store.leases())
            store.insert_activity(engine.evaluate(to_table(missing)))  # the same day again: stored once
    finally:
        store.close()
    local = loaded.policy.ipads.expected_by.strftime("%H:%M") if loaded.policy.ipads else ""
    return Checked(len(ipads), [obs.source_ref.rsplit(":", 1)[1] for obs in missing], local)


def cmd_check_ipads(args: argparse.Namespace) -> int:
    """Clause I1: record each issued school iPad not seen by the policy's time on a school day."""
    from ictwatch import settings

    done = check(settings.load(args.config), args.date)
    if done is None:
        print(f"{args.date}: no iPad check (not a school day, or the policy has no `ipads` section)")
        return 0
    for device in done.missing:
        # the register's asset tag, as an MDM exported it
        print(for_terminal(f"{device}: not seen on {args.date} by {done.by}; recorded as an absence"))
    print(f"{done.expected - len(done.missing)} of {plural(done.expected, 'school iPad')} seen by {done.by} "
          f"on {args.date}")
    return 0


def clock() -> Callable[[], dt.datetime]:
    """The daemon's clock for the daily check: now, or, when `ICTWATCH_TEST_CLOCK` gives an ISO time with
    its offset (for tests), that time at start-up running on at the real pace."""
    start = os.environ.get("ICTWATCH_TEST_CLOCK")
    if not start:
        return lambda: dt.datetime.now(dt.UTC)
    origin, at = dt.datetime.fromisoformat(start), time.monotonic()
    return lambda: origin + dt.timedelta(seconds=time.monotonic() - at)


def due(loaded: Loaded, now: dt.datetime, done: set[dt.date]) -> tuple[dt.date, dt.datetime] | None:
    """(day, when) of the next check not yet done: today's if it is a school day (its time may have passed),
    else the next school day's; None without any in a year (or without an `ipads` section)."""
    import zoneinfo

    from rules.absence import deadline

    today = now.astimezone(zoneinfo.ZoneInfo(loaded.policy.calendar.timezone)).date()
    for ahead in range(366):
        day = today + dt.timedelta(days=ahead)
        window = deadline(loaded.policy, day)
        if window is not None and day not in done:
            return day, window[1] + GRACE
    return None


def daily(current: Callable[[], Loaded], stop: threading.Event, now: Callable[[], dt.datetime]) -> None:
    """The daemon's thread: run the check each school day at its time with the configuration in force,
    until `stop`; one line on stderr for each (counts only: no device or person named)."""
    done: set[dt.date] = set()
    started = now()
    while not stop.is_set():
        loaded = current()
        next_check = due(loaded, now(), done)
        if next_check is None:
            stop.wait(3600)
            continue
        day, when = next_check
        if when < started:  # a morning the daemon did not watch: every iPad would look absent
            done.add(day)
            _log.warning("iPad check for %s not run: the daemon started after its time; if the capture watched "
                         "that morning, run `ictwatch check-ipads --date %s`", day, day)
            continue
        wait = (when - now()).total_seconds()
        if wait > 0:
            stop.wait(min(wait, 60))  # looked at again each minute: a reload may change the policy's time
            continue
        try:
            checked = check(loaded, day)
        except Exception as exc:
            _log.warning("iPad check for %s failed (%s); tried again in %d minutes", day, type(exc).__name__,
                         RETRY_S // 60)
            stop.wait(RETRY_S)
            continue
        done.add(day)
        if checked is not None:
            print(f"iPad check for {day}: {checked.expected - len(checked.missing)} of "
                  f"{plural(checked.expected, 'school iPad')} seen by {checked.by}; "
                  f"{plural(len(checked.missing), 'absence')} recorded", file=sys.stderr, flush=True)
