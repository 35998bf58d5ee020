"""Dates as people type them: the range accepted is the range of times the store keeps."""

from __future__ import annotations

import datetime as dt

import pytest

from collector.observation import EARLIEST_US, LATEST_US
from reports.periods import EARLIEST, LATEST, parse_date


def test_the_dates_accepted_are_those_of_the_records_bounds():
    """periods.py writes the dates out (so as not to import the decoder's module); they are the UTC dates of
    the first and last microsecond a record may carry."""
    bounds = [dt.datetime.fromtimestamp(us / 1e6, dt.UTC).date() for us in (EARLIEST_US, LATEST_US)]
    assert bounds == [EARLIEST, LATEST]


@pytest.mark.parametrize(("text", "said"), [
    ("1969-12-31", "1969-12-31 is out of range: dates run from 1970-01-01 to 2099-12-31"),
    ("2100-01-01", "2100-01-01 is out of range: dates run from 1970-01-01 to 2099-12-31"),
    ("20260616", "expected YYYY-MM-DD, got '20260616'"),
])
def test_a_date_outside_the_range_or_not_one_is_refused(text, said):
    with pytest.raises(ValueError) as caught:
        parse_date(text)
    assert str(caught.value) == said


def test_the_first_and_last_days_are_accepted():
    assert [parse_date("1970-01-01"), parse_date("2099-12-31")] == [EARLIEST, LATEST]
