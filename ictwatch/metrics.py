"""ictwatch's Prometheus metrics, each declared once here.

No label ever carries a person, a device or an address: labels hold rule ids, kinds, reasons and other
words from a closed set, so a dashboard or an alert can be shared without sharing anyone's activity.
"""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import Gauge

from rules.listupdate import installed_at

CATEGORY_LISTS_AGE = Gauge(
    "ictwatch_category_lists_age_seconds",
    "Seconds since the category lists in use were installed (`ictwatch categories update`), or since "
    "their newest file changed when they were put in place by hand.",
)


def watch_lists(lists: Path) -> None:
    """Make the list-age gauge report the lists at `lists` (read once now; the age grows at each scrape)."""
    at = installed_at(lists)
    CATEGORY_LISTS_AGE.set_function(lambda: float("nan") if at is None else time.time() - at)
