"""The policy file: school calendar, category lists, the personal-use reading, and rules as data.

A rule names the policy clauses it enforces, a severity, a message in the school's own words, and a
condition over fixed fields of an activity. Conditions are plain data (the keys of rules/fields.py,
combined with `all`/`any`/`not`); there is no way to put code in a policy.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, create_model, field_validator, model_validator

from collector.observation import KINDS
from rules.calendar import Calendar, PersonalUse
from rules.config import Directory, Strict, yaml_line
from rules.fields import FIELDS, ConditionField
from rules.uksic import UK_SIC
from rules.waivers import Waiver

CLAUSE_IDS = {f"P{i}" for i in range(1, 20)} | {"I1", "I2", "I3", "I4", "A1"}


class Severity(StrEnum):
    """How urgently a breach needs a human, in the grades UK school monitoring uses."""

    advisory = "advisory"
    caution = "caution"
    danger = "danger"


SEVERITY_RANK = {Severity.advisory: 1, Severity.caution: 2, Severity.danger: 3}

SEVERITY_MEANING = {
    Severity.danger: "serious: the safeguarding lead is alerted at once and it is recorded as an incident",
    Severity.caution: "a breach of the policy for the line manager to look into and raise with the person",
    Severity.advisory: "worth knowing, often innocent: to act on only if it keeps happening",
}
"""What each severity asks of the school, as reports' legends and docs/policy.md say it."""


class Categories(Strict):
    """Content category lists in UT1 format, and how their directories map onto our category names."""

    lists: str = Field(description="Folder (UT1 `blacklists/` layout), relative to the policy file.")
    map: dict[str, tuple[str, ...]] = Field(default_factory=dict,
                                            description="Our category name → UT1 directory names.")
    uk_sic: bool = Field(True, description=(
        "Each UK Safer Internet Centre category that `map` leaves out is fed by the UT1 lists rules/uksic.py "
        "gives for it, those present in the set."))

    def defaults(self) -> dict[str, tuple[str, ...]]:
        """The UK Safer Internet Centre categories taken from the built-in table (those `map` leaves out)."""
        return {k: v for k, v in UK_SIC.items() if k not in self.map} if self.uk_sic else {}

    def names(self) -> set[str]:
        """Every category name a rule may use."""
        return set(self.map) | set(self.defaults())


_LEAF_FIELDS: dict[str, Any] = {f.key: (f.annotation | None, Field(None, description=f.description)) for f in FIELDS}
_Leaves: Any = create_model("_Leaves", __base__=Strict, __module__=__name__, **_LEAF_FIELDS)
"""The leaf keys of a condition, one per entry of FIELDS (Any: a type checker cannot list them)."""


class Condition(_Leaves):
    """A test over one activity. Several keys in one condition must all hold. The keys and what they match
    are rules/fields.py's FIELDS; `all`, `any` and `not` combine conditions."""

    all: tuple[Condition, ...] | None = Field(None, description="Every one of these conditions holds.")
    any: tuple[Condition, ...] | None = Field(None, description="At least one of these conditions holds.")
    not_: Condition | None = Field(None, alias="not", description="This condition does not hold.")

    def leaf(self, key: str) -> Any:
        """The value of the leaf `key` (a key of FIELDS), None when the condition does not set it."""
        return getattr(self, key)

    def leaves(self) -> Iterator[tuple[ConditionField, Any]]:
        """(field, value) for each key this condition itself sets, in FIELDS order (`all`, `any` and `not`
        aside)."""
        for field in FIELDS:
            value = self.leaf(field.key)
            if value is not None:
                yield field, value

    @model_validator(mode="after")
    def _not_empty(self) -> Condition:
        if not self.model_fields_set:
            raise ValueError("empty condition")
        empty = [key for key in sorted(self.model_fields_set) if getattr(self, key) == ()]
        if empty:  # a list of nothing matches nothing (or, under `all`, everything): always a slip
            raise ValueError(f"`{empty[0].rstrip('_')}` is an empty list; give at least one value or leave it out")
        return self


_BYTES = {"b": 1, "bytes": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
_SECONDS = {"s": 1, "second": 1, "seconds": 1, "min": 60, "minute": 60, "minutes": 60, "h": 3600, "hour": 3600,
            "hours": 3600}
Amount = Literal["bytes_down", "bytes_up", "bytes", "time"]
AMOUNT_COLUMNS: dict[str, tuple[str, ...]] = {"bytes_down": ("bytes_in",), "bytes_up": ("bytes_out",),
                                               "bytes": ("bytes_in", "bytes_out"), "time": ()}
"""The activity columns each byte amount adds up (the client's view: down is what it received)."""


def _quantity(text: str, units: dict[str, int]) -> float | None:
    """`50 MB`, `15 minutes`: the number times its unit (None when the text is not a number and one of `units`)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*", text)
    if not found or found.group(2).lower() not in units:
        return None
    return float(found.group(1)) * units[found.group(2).lower()]


class Total(Strict):
    """What turns a rule from a test of one activity into a test of an amount added up over a window: the
    rule breaks when the amount of the activities its `when` matches, per person (and site), within one
    window, goes over `over`. The breach is recorded on the activity whose addition takes it over, once
    per window (rules/windows.py)."""

    amount: Amount = Field(description=(
        "What is added up: `bytes_down` (what the client received), `bytes_up` (what it sent), `bytes` (both), "
        "or `time` (the length of the visits the matching activities make, as the reports count them)."))
    over: str = Field(description="The threshold, with its unit: `50 MB`, `2 GB`, `500 MiB`; `15 minutes`, `1 hour`.")
    per: tuple[Literal["person", "site"], ...] = Field(("person",), min_length=1, description=(
        "Whose amount: `person` (the device, or its address, when nobody is identified), and `site` to count "
        "each site apart."))
    window: str = Field("day", description=(
        "How long a window is, by the calendar's clock: `hour`, `day` (midnight to midnight), `school_day` "
        "(a day the calendar calls a school day; other days count nothing), or a length that divides a day "
        "(`30 minutes`, `2 hours`, aligned to midnight)."))

    @field_validator("over")
    @classmethod
    def _known_unit(cls, over: str, info: ValidationInfo) -> str:
        amount = info.data.get("amount")
        if _quantity(over, _BYTES) is None and _quantity(over, _SECONDS) is None:
            raise ValueError("give a number and a unit, bytes (B, kB, MB, GB, MiB, GiB) or time (seconds, minutes, "
                             "hours)")
        if amount is not None and _quantity(over, _SECONDS if amount == "time" else _BYTES) is None:
            raise ValueError(f"amount {amount} needs {'a time (15 minutes)' if amount == 'time' else 'a size (50 MB)'}")
        return over

    @field_validator("per")
    @classmethod
    def _once_each(cls, per: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(per)) != len(per):
            raise ValueError("a name given twice")
        return per

    @field_validator("window")
    @classmethod
    def _known_window(cls, window: str) -> str:
        if window in ("hour", "day", "school_day"):
            return window
        seconds = _quantity(window, _SECONDS)
        if seconds is None or seconds < 60 or seconds != int(seconds) or 86400 % int(seconds):
            raise ValueError("hour, day, school_day, or a whole number of minutes that divides a day (30 minutes, "
                             "2 hours)")
        return window

    def limit(self) -> float:
        """The threshold in bytes or seconds."""
        found = _quantity(self.over, _SECONDS if self.amount == "time" else _BYTES)
        assert found is not None  # validated
        return found

    def length(self) -> dt.timedelta:
        """How long one window is."""
        if self.window == "hour":
            return dt.timedelta(hours=1)
        if self.window in ("day", "school_day"):
            return dt.timedelta(days=1)
        found = _quantity(self.window, _SECONDS)
        assert found is not None  # validated
        return dt.timedelta(seconds=found)

    def said(self) -> str:
        """The test in words: "more than 50 MB sent per person in a day"."""
        what = {"bytes_down": "received", "bytes_up": "sent", "bytes": "sent and received", "time": "spent"}
        window = {"hour": "an hour", "day": "a day", "school_day": "a school day"}.get(self.window, self.window)
        per = " and ".join(self.per)
        return f"more than {self.over} {what[self.amount]} per {per} in {window}"


class Rule(Strict):
    """One rule: which clauses it enforces, how serious a breach is, and when it matches."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    clauses: tuple[str, ...] = Field(min_length=1)
    severity: Severity
    message: str = Field(min_length=1, description="What the breach means, in the school's own words.")
    when: Condition
    total: Total | None = Field(None, description=(
        "Judge the amount the matching activities add up to over a window, not each activity alone."))

    @field_validator("clauses")
    @classmethod
    def _known_clauses(cls, clauses: tuple[str, ...]) -> tuple[str, ...]:
        for c in clauses:
            if c not in CLAUSE_IDS:
                raise ValueError(f"unknown clause id {c!r}")
        return clauses


class IpadCheck(Strict):
    """Clause I1: school iPads are expected on the network every school day by a set time."""

    expected_by: dt.time = Field(description="Local time by which each issued school iPad should have been seen.")


class RetentionPolicy(Strict):
    """How long the network record is kept (GDPR storage limitation), in days; 0 keeps it for ever."""

    activity_days: int = Field(400, ge=0, description="Every activity row (a school year and the time to act on it).")
    url_days: int = Field(90, ge=0, description=(
        "Full URLs and User-Agents are blanked after this many days (minimisation); hosts stay."))
    leases_days: int = Field(400, ge=0, description="DHCP lease history (identity as it was).")
    audit_days: int = Field(2190, ge=0, description="Report audit trail and incident records.")

    @model_validator(mode="after")
    def _urls_not_longer(self) -> RetentionPolicy:
        if self.activity_days and (self.url_days == 0 or self.url_days > self.activity_days):
            raise ValueError("url_days must be at most activity_days (URLs go first)")
        return self


class ReportAccess(Strict):
    """Who may have a person's report besides the headteacher and the person (reports/access.py)."""

    line_manager_chain: bool = Field(False, description=(
        "A line manager may also have the reports of the people who report to their reports."))
    grant_days: int = Field(7, ge=1, le=365, description=(
        "Days a one-off grant from the headteacher can be used, counted from when it was given."))


class Policy(Strict):
    """The whole policy file."""

    school: str
    calendar: Calendar
    personal_use: PersonalUse = PersonalUse()
    categories: Categories
    rules: tuple[Rule, ...]
    waivers: tuple[Waiver, ...] = ()
    ipads: IpadCheck | None = Field(None, description="The daily iPad check (`ictwatch check-ipads`).")
    retention: RetentionPolicy = RetentionPolicy()
    reports: ReportAccess = ReportAccess()

    def problems(self) -> list[tuple[str, object, str]]:
        """Cross-references a field validator cannot see: (field, value, problem) for each."""
        found: list[tuple[str, object, str]] = []
        seen: set[str] = set()
        if len(self.rules) > 64:  # the engine keeps an activity's broken rules as the bits of one word
            found.append(("rules", len(self.rules), "at most 64 rules"))
        for i, rule in enumerate(self.rules):
            if rule.id in seen:
                found.append((f"rules[{i}].id", rule.id, "rule id used twice"))
            seen.add(rule.id)
            for name in sorted(_categories_in(rule.when)):
                if name not in self.categories.names():
                    found.append((f"rules[{i}].when", name, "category not in categories.map (nor a UK SIC one)"))
        waivers: set[str] = set()
        for i, waiver in enumerate(self.waivers):
            if waiver.id in waivers:
                found.append((f"waivers[{i}].id", waiver.id, "waiver id used twice"))
            waivers.add(waiver.id)
            for rule_id in waiver.rules:
                if rule_id not in seen:
                    found.append((f"waivers[{i}].rules", rule_id, "no rule has this id"))
            found += [(f"waivers[{i}].{field}", value, problem)
                      for field, value, problem in waiver.problems(self.calendar, self.categories.names())]
        return found

    def version(self) -> str:
        """A short hash of the effective policy: stored with every verdict it made."""
        canonical = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _categories_in(cond: Condition) -> set[str]:
    found = set(cond.leaf("category") or ())
    for child in (*(cond.all or ()), *(cond.any or ()), *([cond.not_] if cond.not_ else [])):
        found |= _categories_in(child)
    return found


def never_filled(policy: Policy, path: Path) -> list[str]:
    """A warning for each condition key that none of the kinds its rule names there ever fills, so that
    the condition holding it never holds; each names the policy file's line, as config errors do."""
    out = []
    for i, rule in enumerate(policy.rules):
        for where, field, kinds in _unfillable(rule.when, f"rules[{i}].when", frozenset(KINDS)):
            line = yaml_line(path, where)
            named = [k for k in KINDS if k in kinds]
            out.append(f"{f'{path}:{line}' if line else path}: rule {rule.id}: field {field.key} is never filled "
                       f"for kind{'s' if len(named) > 1 else ''} {', '.join(named)}, so this condition never holds")
        if rule.total is not None and rule.total.amount != "time":
            named = [k for k in KINDS if k in named_kinds(rule.when)]
            if not set(named) & set(_BYTE_KINDS):
                line = yaml_line(path, f"rules[{i}].total.amount")
                out.append(f"{f'{path}:{line}' if line else path}: rule {rule.id}: amount {rule.total.amount} is "
                           f"counted only from kinds {', '.join(_BYTE_KINDS)}, and the rule names {', '.join(named)}, "
                           "so its total stays 0")
    return out


_BYTE_KINDS = next(f.kinds for f in FIELDS if f.column == "bytes_out")
"""The kinds that carry byte counts (flows, and the proxy's sizes)."""


def named_kinds(cond: Condition) -> frozenset[str]:
    """The kinds `cond` can hold for, as far as its `kind` keys (its own and those of its `all` and
    `any` members) say; the other keys are not looked at."""
    named = cond.leaf("kind")
    kinds = frozenset(named) if named is not None else frozenset(KINDS)
    for child in cond.all or ():
        kinds &= named_kinds(child)
    if cond.any is not None:
        kinds &= frozenset().union(*(named_kinds(c) for c in cond.any))
    return kinds


def _unfillable(cond: Condition, where: str, scope: frozenset[str]
                ) -> Iterator[tuple[str, ConditionField, frozenset[str]]]:
    """(field path, field, kinds) for each key under `cond` that none of the kinds in force there fills.
    The kinds in force are those named around it; a `not` starts afresh (what it negates need not hold)."""
    scope &= named_kinds(cond)
    for field, value in cond.leaves():
        if scope and not scope & field.can_hold(value):
            yield f"{where}.{field.key}", field, scope
    for name in ("all", "any"):
        for j, child in enumerate(getattr(cond, name) or ()):
            yield from _unfillable(child, f"{where}.{name}[{j}]", scope)
    if cond.not_ is not None:
        yield from _unfillable(cond.not_, f"{where}.not", frozenset(KINDS))


def names_people(policy: Policy, directory: Directory, path: Path) -> list[str]:
    """A warning for each rule message that names a member of staff (by username or full name) and each waiver
    reason that names anyone but the one person it is given to (a waiver for several people, or a group,
    shows its reason in each of their reports): a report shows the messages of its subject's breaches and
    the reasons of their own waivers, and must name nobody else. The warning points to
    the person by their place in the directory, not by name."""
    def named(text: str, people: set[str]) -> list[str]:
        return [f"people[{i}]" for i, p in enumerate(directory.people) if p.username not in people
                and any(re.search(rf"\b{re.escape(w)}\b", text, re.I) for w in (p.username, p.name))]

    out = []
    for field, text, allowed in ([(f"rules[{i}].message", r.message, set()) for i, r in enumerate(policy.rules)]
                                 + [(f"waivers[{i}].reason", w.reason, set(w.users) if len(w.users) == 1 and
                                     not w.groups else set()) for i, w in enumerate(policy.waivers)]):
        for who in named(text, allowed):
            line = yaml_line(path, field)
            out.append(f"{f'{path}:{line}' if line else path}: {field} names {who} of the staff directory; reports "
                       "show it to people who may not see that person's data")
    return out
