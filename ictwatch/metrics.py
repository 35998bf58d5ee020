"""ictwatch's Prometheus metrics, each declared once here: what the pipeline takes in (packets, observations,
whether capture runs), and the configuration in force.

No label ever carries a person, a device or an address: labels hold input types, kinds and policy
versions, so a dashboard or an alert can be shared without sharing anyone's activity.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

if TYPE_CHECKING:
    import polars as pl

PACKETS = Counter("ictwatch_packets_total", "Packets read from captures (live or files).")
CAPTURE_RUNNING = Gauge("ictwatch_capture_running", "1 while live capture is running, else 0.")
OBSERVATIONS = Counter("ictwatch_observations_total", "Observations decoded, by input type and kind.",
                       ["source", "kind"])
POLICY_INFO = Gauge("ictwatch_policy_info", "The policy in force (value 1).", ["version"])
RELOAD_SUCCESS = Gauge("ictwatch_last_reload_success",
                       "1 if the last reload (SIGHUP) took, 0 if the old configuration stayed.")
RELOAD_TIME = Gauge("ictwatch_last_reload_timestamp_seconds", "When the configuration was last (re)loaded.")


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
