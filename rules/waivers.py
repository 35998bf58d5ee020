"""Waivers, the policy's "specific permission": the model, what the engine evaluates, and the words.

A waiver lifts the rules it names for some people (users, every member of a directory group) or for
whoever uses some devices, either for one period (`start`, `end`) or every week (`weekly`: days of the
week, a local time range, optionally school days only, between optional first and last dates). It may be
narrowed to devices, places (by network-map name or kind), sites (domains, as a rule's `host` matches) and
categories. Each thing a waiver tests is a part (`parts`); it covers an activity when every part it sets
holds. The engine evaluates the whole (`covers`); `ictwatch explain` evaluates each part, to say which
one failed (`missed`). Who granted it and why are given with every waiver.

The weekly time is read on the school's wall clock (the `_local` column `rules.engine.with_local_time`
adds), so 13:00 is 13:00 in summer time and in winter time; in the hour the clocks go back, which happens
twice, both are covered. A period (`start`, `end`) is two instants, its local times read in the zone.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import polars as pl
from pydantic import (
    BeforeValidator,
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from rules.calendar import Calendar
from rules.config import LocationKind, Strict
from rules.fields import FIELDS, Seen

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def _quoted_clock(value: Any) -> Any:
    """A clock time must come as text: YAML reads `13:00` unquoted as the number 780 (base 60)."""
    if isinstance(value, int | float):
        raise ValueError("give the time in quotes, as \"13:00\" (YAML reads 13:00 without quotes as a number)")
    return value


def _local_clock(value: dt.time) -> dt.time:
    if value.tzinfo is not None:
        raise ValueError("give a local time without a zone (the calendar's applies)")
    return value


Clock = Annotated[dt.time, BeforeValidator(_quoted_clock)]
"""A local time of day, written in quotes ("13:00")."""


def _once(values: tuple, info: ValidationInfo) -> tuple:
    """The same list without a repeated entry, or an error naming the repeat."""
    seen: set = set()
    for v in values:
        if v in seen:
            raise ValueError(f"{getattr(v, 'value', v)} is given twice in {info.field_name}")
        seen.add(v)
    return values


class Weekly(Strict):
    """The same hours on the same days every week, on the school's clock."""

    days: tuple[Weekday, ...] = Field(min_length=1, description="Days of the week: monday … sunday.")
    start: Clock = Field(description="From this local time on each of those days, inclusive (\"13:00\").")
    end: Clock = Field(description="Until this local time, exclusive, the same day (\"15:30\").")
    school_days_only: bool = Field(False, description=(
        "Only on the calendar's school days (term time: a weekday in a term, outside every closure such as "
        "a half term or an INSET day)."))
    first: dt.date | None = Field(None, description="The first day it runs (inclusive); none: from any day.")
    last: dt.date | None = Field(None, description="The last day it runs (inclusive); none: with no end.")

    _days_once = field_validator("days")(_once)

    @field_validator("start", "end")
    @classmethod
    def _local(cls, value: dt.time) -> dt.time:
        return _local_clock(value)

    @field_validator("end")
    @classmethod
    def _after_start(cls, end: dt.time, info: ValidationInfo) -> dt.time:
        start = info.data.get("start")
        if start is not None and end <= start:
            raise ValueError(f"ends ({end:%H:%M}) before it starts ({start:%H:%M}); a time range that crosses "
                             "midnight is two waivers")
        return end

    @field_validator("school_days_only")
    @classmethod
    def _weekdays(cls, only: bool, info: ValidationInfo) -> bool:
        days = info.data.get("days") or ()
        if only and days and all(WEEKDAYS.index(d) >= 5 for d in days):
            raise ValueError(f"a school day is never a {' or '.join(days)}")
        return only

    @field_validator("last")
    @classmethod
    def _after_first(cls, last: dt.date | None, info: ValidationInfo) -> dt.date | None:
        first = info.data.get("first")
        if last is not None and first is not None and last < first:
            raise ValueError(f"the last day ({last}) is before its first day ({first})")
        return last

    def first_day(self, calendar: Calendar) -> dt.date | None:
        """The first day it covers, or None when there is none (its days never fall between its first and
        last, or, on school days only, never on one)."""
        if self.school_days_only:
            if not calendar.terms:
                return None
            lo = max(self.first or dt.date.min, min(t.start for t in calendar.terms))
            hi = min(self.last or dt.date.max, max(t.end for t in calendar.terms))
        else:
            lo = self.first or (self.last - dt.timedelta(days=6) if self.last else dt.date(2000, 1, 3))
            hi = min(self.last or dt.date.max, lo + dt.timedelta(days=6))
        day = lo
        while day <= hi:
            if WEEKDAYS[day.weekday()] in self.days and (not self.school_days_only or calendar.is_school_day(day)):
                return day
            day += dt.timedelta(days=1)
        return None


_ADDED = ("devices", "weekly", "places", "place_kinds", "hosts", "categories")
"""The keys recurring and narrowed waivers added to the first form (users or groups, rules, a period)."""

_DOMAIN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")


class Waiver(Strict):
    """Specific permission, as the policy allows ("unless specific permission is given"): named rules do
    not apply to some people, or on some devices, for a period or every week, perhaps only in some places,
    on some sites or in some categories. An activity a waiver covers is recorded as waived, with the
    waiver's id, instead of as a breach of those rules."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    users: tuple[str, ...] = Field((), description="Usernames the permission is for.")
    groups: tuple[str, ...] = Field((), description="Directory groups the permission is for (every member).")
    devices: tuple[str, ...] = Field((), description=(
        "Device register ids: only activity on these devices. With no users or groups, whoever uses them."))
    rules: tuple[str, ...] = Field(min_length=1, description="Ids of the rules that do not apply.")
    start: dt.datetime | None = Field(None, description="From (local time in the calendar's zone), inclusive.")
    end: dt.datetime | None = Field(None, description="Until (local time), exclusive.")
    weekly: Weekly | None = Field(None, description="Instead of start and end: the same hours every week.")
    places: tuple[str, ...] = Field((), description="Only in these places (names on the network map).")
    place_kinds: tuple[LocationKind, ...] = Field((), description="Only in places of these kinds (instead of places).")
    hosts: tuple[str, ...] = Field((), description=(
        "Only on these sites: domains, each taking the names under it (`youtube.com` takes `www.youtube.com`)."))
    categories: tuple[str, ...] = Field((), description="Only on sites in any of these categories.")
    granted_by: str = Field(description="Username of who gave the permission.")
    reason: str = Field(min_length=1)

    _lists_once = field_validator("devices", "places", "place_kinds", "hosts", "categories")(_once)

    @field_validator("end")
    @classmethod
    def _after_start(cls, end: dt.datetime | None, info: ValidationInfo) -> dt.datetime | None:
        start = info.data.get("start")
        zoned = end is not None and end.tzinfo is not None or start is not None and start.tzinfo is not None
        if end is not None and start is not None and not zoned and end <= start:  # a zone: `_sensible` says
            raise ValueError(f"waiver {info.data.get('id')!r} ends ({end}) before it starts ({start})")
        return end

    @field_validator("weekly")
    @classmethod
    def _one_time(cls, weekly: Weekly | None, info: ValidationInfo) -> Weekly | None:
        if weekly is not None and (info.data.get("start") is not None or info.data.get("end") is not None):
            raise ValueError("give either start and end (one period) or weekly, not both")
        return weekly

    @field_validator("place_kinds")
    @classmethod
    def _not_both_places(cls, kinds: tuple[LocationKind, ...], info: ValidationInfo) -> tuple[LocationKind, ...]:
        if kinds and info.data.get("places"):
            raise ValueError("give places or place_kinds, not both (a named place has its kind already)")
        return kinds

    @field_validator("hosts")
    @classmethod
    def _domains(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        for host in hosts:
            if not _DOMAIN.match(host):
                raise ValueError(f"{host!r} is not a domain: give it as youtube.com (lower case, no scheme, port "
                                 "or path)")
        return hosts

    @model_serializer(mode="wrap")
    def _as_before(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Without the keys this form added, where they are unset: a policy of the first form keeps its
        version (`Policy.version`), so what it judged before is not said to be under another policy."""
        out: dict[str, Any] = handler(self)
        for key in _ADDED:
            if getattr(self, key) == type(self).model_fields[key].default:
                out.pop(key, None)
        return out

    @model_validator(mode="after")
    def _sensible(self) -> Waiver:
        if not self.users and not self.groups and not self.devices:
            raise ValueError(f"waiver {self.id!r} names no users, no groups and no devices")
        if self.weekly is None and (self.start is None or self.end is None):
            raise ValueError(f"waiver {self.id!r}: give start and end (one period) or weekly (every week)")
        if any(t is not None and t.tzinfo is not None for t in (self.start, self.end)):
            raise ValueError(f"waiver {self.id!r}: give local times without a zone (the calendar's applies)")
        return self

    def problems(self, calendar: Calendar, categories: set[str]) -> list[tuple[str, object, str]]:
        """What the policy's calendar and category names show wrong with it: (field below the waiver,
        value, problem) for each."""
        found: list[tuple[str, object, str]] = [
            ("categories", c, "category not in categories.map (nor a UK SIC one)")
            for c in self.categories if c not in categories]
        if self.weekly is not None and self.weekly.first_day(calendar) is None:
            w = self.weekly
            between = f" between {w.first or 'any day'} and {w.last or 'any day'}" if w.first or w.last else ""
            found.append(("weekly", _days(w.days), f"covers no day: no {' or '.join(w.days)}{between} is "
                          + ("a school day of the calendar" if w.school_days_only else "in its dates")))
        return found


def _days(days: tuple[str, ...]) -> str:
    """`Thursdays`, `Mondays and Wednesdays`, in the week's order."""
    names = [f"{d.capitalize()}s" for d in WEEKDAYS if d in days]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


PART_NAMES = ("person", "device", "place", "time", "site", "category")
"""The parts a waiver can set, in the order `explain` says them."""

_FIELD = {f.key: f for f in FIELDS}


_DAY_US = 86_400_000_000


def _into_day(clock: dt.time) -> int:
    """Microseconds from midnight to `clock`."""
    return ((clock.hour * 60 + clock.minute) * 60 + clock.second) * 1_000_000 + clock.microsecond


def _time(w: Waiver, zone: str) -> pl.Expr:
    if w.weekly is None:
        assert w.start is not None and w.end is not None
        tz = zoneinfo.ZoneInfo(zone)
        start, end = (t.replace(tzinfo=tz).astimezone(dt.UTC) for t in (w.start, w.end))
        return (pl.col("ts") >= start) & (pl.col("ts") < end)
    weekly, local = w.weekly, pl.col("_local")
    # microseconds into the local week from Monday 00:00 (1 January 1970 was a Thursday): one sum and one
    # remainder, three times quicker than taking each row's weekday and time of day
    into_week = (local.dt.cast_time_unit("us").cast(pl.Int64) + 3 * _DAY_US) % (7 * _DAY_US)
    opens, closes = _into_day(weekly.start), _into_day(weekly.end)
    held = pl.any_horizontal([(into_week >= WEEKDAYS.index(d) * _DAY_US + opens)
                              & (into_week < WEEKDAYS.index(d) * _DAY_US + closes) for d in weekly.days])
    if weekly.first is not None:  # against local midnights: ten times quicker than each row's date
        held &= local >= pl.lit(dt.datetime.combine(weekly.first, dt.time()))
    if weekly.last is not None:
        held &= local < pl.lit(dt.datetime.combine(weekly.last + dt.timedelta(days=1), dt.time()))
    return held & pl.col("school_day") if weekly.school_days_only else held


def parts(w: Waiver, zone: str, groups: Mapping[str, frozenset[str]]) -> dict[str, pl.Expr]:
    """Each part `w` sets (of PART_NAMES) → where it holds (never null), over activities that
    `rules.engine.with_windows` has read (their `_local` time and `school_day`). `zone`: the calendar's."""
    out: dict[str, pl.Expr] = {}
    if w.users or w.groups:
        people = set(w.users).union(*(groups.get(g, frozenset()) for g in w.groups))
        out["person"] = pl.col("user").is_in(sorted(people))
    if w.devices:
        out["device"] = pl.col("device").is_in(list(w.devices))
    if w.places:
        out["place"] = pl.col("location").is_in(list(w.places))
    if w.place_kinds:
        out["place"] = _FIELD["location_kind"].holds(w.place_kinds)
    out["time"] = _time(w, zone)
    if w.hosts:
        out["site"] = _FIELD["host"].holds(w.hosts)
    if w.categories:
        out["category"] = _FIELD["category"].holds(w.categories)
    return {name: held.fill_null(False) for name, held in out.items()}


def covers(w: Waiver, zone: str, groups: Mapping[str, frozenset[str]]) -> pl.Expr:
    """Where `w` covers the activity: every part it sets holds (see `parts`)."""
    return pl.all_horizontal(list(parts(w, zone, groups).values()))


def _either(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _kind(kind: LocationKind) -> str:
    return str(kind.value).replace("_", " ")


def scope(w: Waiver) -> str:
    """Whom, where and when `w` covers, for the network manager (`ictwatch explain`): "jcarter, 2026-10-28
    13:00 to 2026-10-28 15:30 local", "anyone on IPAD-BANK-5C, Thursdays 13:00–15:00 local on school days
    from 2026-09-02 to 2027-07-21, on youtube.com or under it"."""
    who = ", ".join(sorted(set(w.users) | {f"group {g}" for g in w.groups})) or "anyone"
    said = who + (f" on {_either(list(w.devices))}" if w.devices else "")
    if w.places or w.place_kinds:
        said += " in " + _either(list(w.places) or [f"a {_kind(k)}" for k in w.place_kinds])
    if w.weekly is None:
        assert w.start is not None and w.end is not None
        said += f", {w.start:%Y-%m-%d %H:%M} to {w.end:%Y-%m-%d %H:%M} local"
    else:
        weekly = w.weekly
        said += f", {_days(weekly.days)} {weekly.start:%H:%M}–{weekly.end:%H:%M} local"
        said += " on school days" if weekly.school_days_only else ""
        said += f" from {weekly.first}" if weekly.first else ""
        said += f" until {weekly.last}" if weekly.last else ""
    if w.hosts:
        said += f", on {_either(list(w.hosts))} or under {'it' if len(w.hosts) == 1 else 'one'}"
    if w.categories:
        said += f", on sites in {_either([repr(c) for c in w.categories])}"
    return said


def _date(day: dt.date) -> str:
    return f"{day:%A %-d %B %Y}"


def runs(w: Waiver) -> str:
    """When and on what `w` runs, for a report (a headteacher reads it, so no field names): "Wednesday 28
    October 2026, 13:00 to 15:30", "on Thursdays, 13:00 to 15:00, on school days only, from …; only on the
    device IPAD-BANK-5C and on youtube.com and the sites under it"."""
    if w.weekly is None:
        assert w.start is not None and w.end is not None
        start, end = w.start, w.end
        until = f"{end:%H:%M}" if end.date() == start.date() else f"{end:%A %-d %B %Y %H:%M}"
        said = f"{start:%A %-d %B %Y}, {start:%H:%M} to {until}"
    else:
        weekly = w.weekly
        said = f"on {_days(weekly.days)}, {weekly.start:%H:%M} to {weekly.end:%H:%M}"
        said += ", on school days only" if weekly.school_days_only else ""
        said += f", from {_date(weekly.first)}" if weekly.first else ""
        said += f", until {_date(weekly.last)}" if weekly.last else ""
    only = []
    if w.devices:
        only.append(f"on the device{'s' if len(w.devices) > 1 else ''} {_either(list(w.devices))}")
    if w.places or w.place_kinds:
        only.append("in " + _either(list(w.places) or [f"a {_kind(k)}" for k in w.place_kinds]))
    if w.hosts:
        only.append(f"on {_either(list(w.hosts))} and the sites under {'it' if len(w.hosts) == 1 else 'them'}")
    if w.categories:
        only.append("on sites in the school's list " + _either([f"'{c.replace('_', ' ')}'" for c in w.categories]))
    return said + ("; only " + " and ".join(only) if only else "")


def missed(w: Waiver, held: Mapping[str, bool], seen: Seen) -> list[str]:
    """Why `w` did not cover the activity `seen`, given which of its parts held (`parts`' names → bool):
    what the activity showed for each part that failed."""
    row, out = seen.row, []
    for name in PART_NAMES:
        if held.get(name, True):
            continue
        if name == "person":
            out.append(f"the person is {row.get('user')}" if row.get("user") else "who it was is not known")
        elif name == "device":
            out.append(f"the device is {row['device']}" if row.get("device") else "the device is not in the register")
        elif name == "place":
            kind = row.get("location_kind")
            out.append(f"the place is {row['location']}" + (f" (a {_kind(LocationKind(kind))})" if kind else "")
                       if row.get("location") else "the place is not known")
        elif name == "time":
            out.append(_off_time(w, seen))
        elif name == "site":
            out.append(_FIELD["host"].finding(w.hosts, False, seen))
        else:
            out.append(_FIELD["category"].finding(w.categories, False, seen))
    return out


def _off_time(w: Waiver, seen: Seen) -> str:
    """What about the activity's local time puts it outside `w`."""
    local = seen.local()
    if w.weekly is None:
        return f"{_date(local)}, {local:%H:%M}, is outside that time"
    weekly, day = w.weekly, local.date()
    if WEEKDAYS[day.weekday()] not in weekly.days:
        return f"{_date(day)} is not a {' or '.join(d.capitalize() for d in WEEKDAYS if d in weekly.days)}"
    if weekly.first is not None and day < weekly.first:
        return f"{_date(day)} is before its first day"
    if weekly.last is not None and day > weekly.last:
        return f"{_date(day)} is after its last day"
    if not weekly.start <= local.time().replace(tzinfo=None) < weekly.end:
        return f"{local:%H:%M} is outside {weekly.start:%H:%M}–{weekly.end:%H:%M}"
    return _FIELD["window"].finding(("school_day",), False, seen)
