"""Counting and sampled logging of input that could not be decoded.

Bad input never stops a source: the record is skipped, counted under a short `reason` (a bounded set of
words such as `truncated_ip`), and logged at a sampled rate so a flood of garbage cannot flood the log.
Messages name the reason and the record's place in its input (`file#N`, `file:N`), never its content,
which may carry personal data.
"""

from __future__ import annotations

import logging
from collections import Counter

from collector.metrics import SKIPPED
from collector.observation import TIME_OUT_OF_RANGE, TimeOutOfRange

log = logging.getLogger("ictwatch.collector")


class SkipCounter:
    """Counts skipped records by reason; logs the first of each reason and then one in `every`."""

    def __init__(self, every: int = 1000) -> None:
        self.by_reason: Counter[str] = Counter()
        self._every = every

    def skip(self, reason: str, ref: str) -> None:
        """Record that the record at `ref` was skipped for `reason`."""
        SKIPPED.labels(reason).inc()
        self.by_reason[reason] += 1
        n = self.by_reason[reason]
        if n == 1 or n % self._every == 0:
            log.warning("skipped %s (%s, %d so far)", ref, reason, n)

    def add(self, counts: dict[str, int]) -> None:
        """Counts of another process's counter (the capture worker's, which logged its own samples)."""
        for reason, n in counts.items():
            SKIPPED.labels(reason).inc(n)
            self.by_reason[reason] += n

    def refused(self, error: ValueError, reason: str, ref: str) -> None:
        """Record that a parser refused the record at `ref` with `error`: counted under `reason` (the format's
        own), or as `time_out_of_range` when that is why."""
        self.skip(TIME_OUT_OF_RANGE if isinstance(error, TimeOutOfRange) else reason, ref)

    @property
    def total(self) -> int:
        """All records skipped, whatever the reason."""
        return sum(self.by_reason.values())

    def summary(self) -> str:
        """`N skipped: reason=n, ...`, or an empty string when nothing was skipped."""
        if not self.by_reason:
            return ""
        parts = ", ".join(f"{r}={n}" for r, n in sorted(self.by_reason.items()))
        return f"{self.total} skipped: {parts}"
