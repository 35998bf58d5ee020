"""The school's calendar as the policy gives it: terms, closures, restricted hours, breaks, and how
clause P18's personal use is read. Apart from rules/policy.py so that the condition fields' sentences
(rules/fields.py) can read a calendar without importing the policy that is built from them."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Literal

from pydantic import Field, field_validator, model_validator

from rules.config import LocationKind, Strict


class Period(Strict):
    """A span of whole days, inclusive."""

    name: str = ""
    start: dt.date
    end: dt.date

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.end < self.start:
            raise ValueError(f"period {self.name!r} ends ({self.end}) before it starts ({self.start})")
        return self


class TimeRange(Strict):
    """A span of local clock time within a day, start inclusive, end exclusive."""

    name: str = ""
    start: dt.time
    end: dt.time

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.end <= self.start:
            raise ValueError(f"time range {self.name!r} ends ({self.end}) before it starts ({self.start})")
        return self


class Calendar(Strict):
    """When the school is open and when the policy's hours rule applies."""

    timezone: str = Field("Europe/London", description="IANA zone; all clock times below are local.")
    terms: tuple[Period, ...] = Field(description="Term dates; a school day is a weekday inside a term.")
    closures: tuple[Period, ...] = Field((), description="Half terms, INSET days, bank holidays.")
    restricted_hours: TimeRange = TimeRange(name="restricted", start=dt.time(8, 30), end=dt.time(15, 30))
    breaks: tuple[TimeRange, ...] = Field((), description="Staff breaks and lunch on a school day.")

    def is_school_day(self, day: dt.date) -> bool:
        """A weekday inside a term and outside every closure."""
        return (day.weekday() < 5 and any(t.start <= day <= t.end for t in self.terms)
                and not any(c.start <= day <= c.end for c in self.closures))

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, tz: str) -> str:
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {tz!r}") from None
        return tz


class PersonalUse(Strict):
    """How clause P18 (no personal use 08:30–15:30 except staff room/offices at breaks) is read."""

    allowed_locations: tuple[LocationKind, ...] = (LocationKind.staff_room, LocationKind.office)
    reading: Literal["breaks_only", "any_time"] = Field(
        "breaks_only",
        description="breaks_only: allowed places only during breaks and lunch (the policy's wording); "
        "any_time: allowed places at any time (a looser reading some schools choose).",
    )
