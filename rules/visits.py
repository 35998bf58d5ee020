"""The arithmetic of visits, shared by the reports (reports/visits.py joins a person's activities into visits)
and the rules that count time (rules/windows.py adds up the time of the visits a rule's activities make).

A visit is one device's activities to one site that follow each other with no gap longer than `VISIT_GAP`
between the end of the ones so far and the start of the next; a row carries its visit on for at most
`VISIT_GAP` past its start, however long it stayed open. A visit lasts from its first row's start to the
latest end of its rows. The expressions below work on rows sorted by device, site and time.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

VISIT_GAP = dt.timedelta(seconds=60)
"""The longest quiet spell inside one visit: a device's next activity to the same site more than this after
the end of the visit so far starts a new visit."""
_GAP_S = VISIT_GAP.total_seconds()

WHO = (pl.when(pl.col("device").fill_null("") != "").then("d:" + pl.col("device"))
       .otherwise("a:" + pl.col("src_ip").fill_null("")))
"""Whose visit a row is part of: the registered device, else the client address of an unregistered one."""

END = pl.col("ts") + pl.duration(
    microseconds=(pl.col("duration_s").fill_null(0).clip(0, _GAP_S) * 1e6).cast(pl.Int64))
"""Until when a row carries its visit on: its start plus its duration, at most `VISIT_GAP` (a connection left
open, a phone's push channel or a tunnel, is not someone at a screen)."""


def so_far(by: list[str]) -> pl.Expr:
    """The latest `end` of the earlier rows of the row's visit group (`by`: device and site), null for the
    first; the rows sorted by `by` and time."""
    return pl.col("end").cum_max().shift(1).over(by)


def starts_visit(by: list[str]) -> pl.Expr:
    """Whether the row starts a new visit: the first of its group, or after a gap longer than `VISIT_GAP`."""
    before = so_far(by)
    return before.is_null() | (pl.col("ts") > before + VISIT_GAP)


def time_added(by: list[str]) -> pl.Expr:
    """The seconds each row adds to the time of its group's visits: a row that starts a visit adds its own
    span, one that goes on with it whatever it takes the visit's end past the end so far (the quiet spell
    before it included: a visit lasts from its start to its end). The sum over a
    group is the sum of its visits' lengths. Needs `end` (`END`)."""
    before = so_far(by)
    span = pl.col("end") - pl.when(starts_visit(by)).then(pl.col("ts")).otherwise(before)
    return (span.dt.total_microseconds() / 1e6).clip(lower_bound=0)
