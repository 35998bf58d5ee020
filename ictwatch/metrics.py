"""ictwatch's Prometheus metrics, each declared once here: what the pipeline takes in (packets, observations,
followed logs, whether capture runs), the configuration in force, and the category lists' age.

No label ever carries a person, a device or an address: labels hold input types, kinds, policy versions and
followed logs' file names, so a dashboard or an alert can be shared without sharing anyone's activity.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

if TYPE_CHECKING:
    import polars as pl

PACKETS = Counter("ictwatch_packets_total", "Packets read from captures (live or files).")
CAPTURE_RUNNING = Gauge("ictwatch_capture_running", "1 while live capture is running, else 0.")
FOLLOW_LAG = Gauge("ictwatch_follow_lag_bytes", "Bytes written to a followed log that ictwatch has not read yet.",
                   ["log"])
FOLLOW_READ = Gauge("ictwatch_follow_last_read_timestamp_seconds", "When a followed log last gave new lines.",
                    ["log"])
OBSERVATIONS = Counter("ictwatch_observations_total", "Observations decoded, by input type and kind.",
                       ["source", "kind"])
POLICY_INFO = Gauge("ictwatch_policy_info", "The policy in force (value 1).", ["version"])
RELOAD_SUCCESS = Gauge("ictwatch_last_reload_success",
                       "1 if the last reload (SIGHUP) took, 0 if the old configuration stayed.")
RELOAD_TIME = Gauge("ictwatch_last_reload_timestamp_seconds", "When the configuration was last (re)loaded.")
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


def count_observations(batch: pl.DataFrame) -> None:
    """Count a batch the pipeline has taken from its inputs, by input type and kind. Here rather than in the
    collector: the pipeline is the one door every batch comes through (the batch builder, Squid's chunks,
    followed logs, the kernel's flows), and it decides what is taken (line-rate mode drops the capture's
    own flow records before they are batched)."""
    for source, kind, n in batch.group_by("source", "kind").len().iter_rows():
        OBSERVATIONS.labels(source or "unknown", kind or "unknown").inc(n)


def policy_in_force(version: str) -> None:
    """The configuration just loaded (at start, or by a reload that took) is in force, with policy `version`."""
    RELOAD_SUCCESS.set(1)
    RELOAD_TIME.set(time.time())
    POLICY_INFO.clear()
    POLICY_INFO.labels(version).set(1)
