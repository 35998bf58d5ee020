"""Dates and periods as people type them, read the same way by every front end (the `ictwatch` commands
and the web page).

A date is the school's local date, written YYYY-MM-DD, and must lie in the range of times the store keeps
(1970-01-01 to 2099-12-31: what its retention can count; collector/observation.py sets it and says why): a record
outside it is never stored, and a date outside ClickHouse's DateTime64 (1900 to 2299) could not even be
turned into the UTC instants a query needs. A period is whole days from `first` to `last`, both included,
so one that ends before it starts holds no day at all and is refused rather than answered with nothing.
"""

from __future__ import annotations

import datetime as dt
import re

EARLIEST, LATEST = dt.date(1970, 1, 1), dt.date(2099, 12, 31)
"""The first and last dates accepted: the range of times the store keeps, the dates of its records' own bounds
(collector/observation.py's EARLIEST_US and LATEST_US; a test holds them together). Written out rather than
imported, since every date option is read with them and the decoder's module brings pyarrow: a command the
daemon runs would load it only to forward its arguments."""


def parse_date(text: str) -> dt.date:
    """The date `text` names; `ValueError` saying what was expected when it is not one, or out of range."""
    try:  # fromisoformat alone would also take 20260616 and 2026-W25-2
        day = dt.date.fromisoformat(text) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) else None
    except ValueError:
        day = None
    if day is None:
        raise ValueError(f"expected YYYY-MM-DD, got {text!r}")
    if not EARLIEST <= day <= LATEST:
        raise ValueError(f"{text} is out of range: dates run from {EARLIEST} to {LATEST}")
    return day


def check_period(first: dt.date | None, last: dt.date | None) -> None:
    """`ValueError` when the period from `first` to `last` (either open when None) holds no day."""
    if first is not None and last is not None and last < first:
        raise ValueError(f"the period is empty: it starts on {first} and ends before that, on {last}")
