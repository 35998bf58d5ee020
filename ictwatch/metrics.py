"""ictwatch's Prometheus metrics, each declared once here.

No label ever carries a person, a device or an address: labels hold rule ids, kinds, reasons and other
words from a closed set, so a dashboard or an alert can be shared without sharing anyone's activity.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from prometheus_client import Gauge

CATEGORY_LISTS_AGE = Gauge(
    "ictwatch_category_lists_age_seconds",
    "Seconds since the category lists in use were installed (`ictwatch categories update`), or since "
    "their newest file changed when they were put in place by hand.",
)


def lists_installed_at(lists: Path) -> float | None:
    """When the category lists at `lists` were installed (a Unix time): the time `categories update`
    recorded, else the newest change to a `domains` file; None when there are none."""
    from rules.listupdate import installed

    stamp = installed(lists)
    if stamp is not None:
        return dt.datetime.fromisoformat(stamp["installed"]).timestamp()
    times = [p.stat().st_mtime for p in lists.glob("*/domains")]
    return max(times) if times else None


def watch_lists(lists: Path) -> None:
    """Make the list-age gauge report the lists at `lists` (read once now; the age grows at each scrape)."""
    at = lists_installed_at(lists)
    CATEGORY_LISTS_AGE.set_function(lambda: float("nan") if at is None else time.time() - at)
