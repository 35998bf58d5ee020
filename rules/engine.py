"""The policy engine: observation batches in, activity batches out, each row with its verdict.

Each rule's condition compiles once, when the policy loads, into a polars expression over the batch's
columns; evaluating the policy is evaluating those expressions. A leaf whose data is missing (no host, no
device) is false, so `not` over it is true: an SMTP flow to an unknown server is not "approved".
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from rules.calendar import Calendar, TimeRange
from rules.categories import CategoryIndex
from rules.identity import Identity
from rules.policy import SEVERITY_RANK, Condition, Policy, named_kinds
from rules.waivers import covers
from rules.windows import Windows


def _in_range(clock: pl.Expr, r: TimeRange) -> pl.Expr:
    return (clock >= pl.lit(r.start)) & (clock < pl.lit(r.end))


def with_local_time(df: pl.DataFrame, timezone: str) -> pl.DataFrame:
    """Add `_local`, the wall-clock time of `ts` in `timezone` (naive).

    Converting every timestamp through the zone database cost more than all the rules together. Zone
    offsets change only at quarter-hour boundaries (every transition in the tz database since 1970 falls
    on one), so each quarter hour that occurs in the batch is converted once and its offset added to
    the rows in it."""
    quarter = pl.col("ts").dt.truncate("15m")
    offsets = df.select(_q=quarter.unique().drop_nulls()).with_columns(
        _offset=pl.col("_q").dt.convert_time_zone(timezone).dt.replace_time_zone(None)
        - pl.col("_q").dt.replace_time_zone(None))
    return df.with_columns(_local=pl.col("ts").dt.replace_time_zone(None) + quarter.replace_strict(
        offsets.get_column("_q"), offsets.get_column("_offset"), default=None))


def _clock_windows(cal: Calendar) -> list[pl.Expr]:
    """`school_day`, `restricted_hours` and `break`, which depend on the local time `_local` alone."""
    local = pl.col("_local")
    date, clock = local.dt.date(), local.dt.time()
    in_term = pl.any_horizontal([date.is_between(pl.lit(t.start), pl.lit(t.end)) for t in cal.terms])
    closed = pl.any_horizontal([pl.lit(False)] + [date.is_between(pl.lit(c.start), pl.lit(c.end))
                                                  for c in cal.closures])
    school_day = (local.dt.weekday() <= 5) & in_term & ~closed
    restricted = school_day & _in_range(clock, cal.restricted_hours)
    in_break = school_day & pl.any_horizontal([pl.lit(False)] + [_in_range(clock, b) for b in cal.breaks])
    return [school_day.alias("school_day"), restricted.alias("restricted_hours"), in_break.alias("break")]


BY_SECOND_ROWS = 8192
"""From how many rows a batch's calendar windows are worked out per distinct second (see `with_windows`)."""


def with_windows(df: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """Add `_local` (see `with_local_time`) and the boolean columns `school_day`, `restricted_hours`,
    `break` and `personal_use_allowed`.

    The first three depend on the clock alone, so in a batch of `BY_SECOND_ROWS` or more, when every
    boundary of the calendar is a whole second, they are worked out once per distinct second of the batch
    (a few thousand, against tens of thousands of rows) and joined on: a time and its whole second fall
    on the same side of such a boundary. A smaller batch works them out row by row: the join's steps cost
    more than the rows they would save."""
    cal = policy.calendar
    df = with_local_time(df, cal.timezone)
    clock = _clock_windows(cal)
    bounds = [cal.restricted_hours, *cal.breaks]
    if df.height >= BY_SECOND_ROWS and all(t.microsecond == 0 for r in bounds for t in (r.start, r.end)):
        df = df.with_columns(_second=pl.col("_local").dt.truncate("1s"))
        seconds = df.select(_local=pl.col("_second").unique()).with_columns(clock).rename({"_local": "_second"})
        df = df.join(seconds, on="_second", how="left", maintain_order="left").drop("_second")
    else:
        df = df.with_columns(clock)
    allowed_place = pl.col("location_kind").is_in([k.value for k in policy.personal_use.allowed_locations])
    allowed_time = pl.col("break") if policy.personal_use.reading == "breaks_only" else pl.lit(True)
    allowed = ~pl.col("restricted_hours") | (allowed_place.fill_null(False) & allowed_time)
    return df.with_columns(personal_use_allowed=allowed)


LOGIN_CHALLENGE = ((pl.col("kind") == "proxy") & (
    (pl.col("status") == 407)
    | (pl.col("status").is_in([401, 511]) & pl.col("proxy_action").str.contains("DENIED", literal=True))
)).fill_null(False)
"""The proxy asking who is there (Squid's `TCP_DENIED/407`, a 401 or 511 it answered itself): the browser
sends the same request again with the login, so the challenge is no one's visit and no rule judges it. It
is still stored, as evidence of the login exchange."""


def rule_matches(cond: Condition) -> pl.Expr:
    """Where a rule whose condition is `cond` is broken, waivers aside: the condition holds and the row is
    not a proxy's login challenge."""
    return compile_condition(cond) & ~LOGIN_CHALLENGE


def compile_condition(cond: Condition) -> pl.Expr:
    """A boolean expression that is true exactly where `cond` holds (never null)."""
    parts = [field.holds(value) for field, value in cond.leaves()]
    if cond.all is not None:
        parts.append(pl.all_horizontal([compile_condition(c) for c in cond.all]))
    if cond.any is not None:
        parts.append(pl.any_horizontal([compile_condition(c) for c in cond.any]))
    if cond.not_ is not None:
        parts.append(~compile_condition(cond.not_))
    return pl.all_horizontal(parts)


def waiver_columns(policy: Policy, groups: dict[str, frozenset[str]]) -> list[pl.Expr]:
    """A boolean column `_waiver_J` per waiver: waiver J covers the activity (its person or device, its
    time, and whatever place, site or category it is narrowed to: rules/waivers.py)."""
    zone = policy.calendar.timezone
    return [covers(w, zone, groups).alias(f"_waiver_{j}") for j, w in enumerate(policy.waivers)]


class Engine:
    """Applies one loaded policy to observation batches."""

    def __init__(self, policy: Policy, categories: CategoryIndex, identity: Identity,
                 groups: dict[str, frozenset[str]] | None = None) -> None:
        """`groups`: each directory group's members, for waivers given to a group."""
        self.policy = policy
        self.version = policy.version()
        self._categories = categories
        self._identity = identity
        self._conditions = [compile_condition(r.when) for r in policy.rules]
        self._kinds = [named_kinds(r.when) for r in policy.rules]
        self._matches: dict[frozenset[str], list[pl.Expr]] = {}
        self.groups = groups or {}
        """Directory group → usernames, for waivers given to a group."""
        self._waivers = waiver_columns(policy, self.groups)
        self.windows = Windows(policy, self.read_back)
        """The running totals of the rules over a window (their `total`), across batches."""
        self.new_leases: pl.DataFrame | None = None
        """Leases the last `evaluate` learnt from DHCP, for the store."""

    @property
    def identity(self) -> Identity:
        """The identity resolver (its lease history can be loaded from storage)."""
        return self._identity

    def evaluate(self, batch: pa.Table | pl.DataFrame) -> pl.DataFrame:
        """Subject, categories, windows and verdict for every observation in `batch` (an Arrow batch of the
        observation schema, or a polars frame with its columns and types)."""
        df = batch if isinstance(batch, pl.DataFrame) else pl.from_arrow(batch)
        assert isinstance(df, pl.DataFrame)
        self.new_leases = self._identity.learn(df)  # leases first: a lease and its use may share a batch
        df = self._identity.annotate(df)
        df = self._categories.annotate(df)
        df = with_windows(df, self.policy)
        df = self.windows.judge(self._with_matches(df)).with_columns(self._waivers).drop("_local")
        return self._verdicts(df)

    def read_back(self, stored: pl.DataFrame) -> pl.DataFrame:
        """Stored activity with the calendar windows and each rule's condition (`_rule_I`) as this policy
        reads them now: what the window rules count."""
        return self._with_matches(with_windows(stored, self.policy))

    def _with_matches(self, df: pl.DataFrame) -> pl.DataFrame:
        """`df` with each rule's `_rule_I`, where its condition holds and the row is not a login challenge
        (`rule_matches`). Each polars expression costs about the same whatever the batch's size, so a small
        batch pays for what it cannot use: a rule whose `kind` keys name none of the kinds in the batch is
        false throughout without being evaluated, and the login challenge, which only a proxy row can be,
        is worked out once for all the rules, and only when the batch has proxy rows."""
        kinds = frozenset(df.get_column("kind").drop_nulls().unique().to_list())
        proxy = "proxy" in kinds
        matches = self._matches.get(kinds)
        if matches is None:
            if len(self._matches) >= 256:  # the mixes of kinds seen are few; a bound all the same
                self._matches.clear()
            matches = self._matches[kinds] = [
                ((c & ~pl.col("_challenge")) if proxy else c).alias(f"_rule_{i}") if self._kinds[i] & kinds
                else pl.lit(False).alias(f"_rule_{i}") for i, c in enumerate(self._conditions)]
        if proxy:
            return df.with_columns(_challenge=LOGIN_CHALLENGE).with_columns(matches).drop("_challenge")
        return df.with_columns(matches)

    def _verdicts(self, df: pl.DataFrame) -> pl.DataFrame:
        rules = self.policy.rules
        empty = pl.lit([], dtype=pl.List(pl.String))
        names = {v: k.value for k, v in SEVERITY_RANK.items()}
        waivers = self.policy.waivers
        applied = [  # waiver J applied: it covers the activity and a rule it names matched
            (w.id, pl.col(f"_waiver_{j}") & pl.any_horizontal(
                [pl.lit(False)] + [pl.col(f"_rule_{i}") for i, r in enumerate(rules) if r.id in w.rules]))
            for j, w in enumerate(waivers)]
        lifted = {i: pl.any_horizontal([pl.col(f"_waiver_{j}") for j, w in enumerate(waivers) if r.id in w.rules])
                  for i, r in enumerate(rules) if any(r.id in w.rules for w in waivers)}
        # The rules an activity broke, as one word (bit i: rule i); the lists and the severity are made once
        # per distinct word in the batch (a handful) and joined on, not built row by row. A waived rule is
        # not broken; the waiver is recorded instead.
        broke = {i: pl.col(f"_rule_{i}") & ~lifted[i] if i in lifted else pl.col(f"_rule_{i}")
                 for i in range(len(rules))}
        word = pl.sum_horizontal([pl.lit(0, pl.UInt64)] + [b.cast(pl.UInt64) * (1 << i) for i, b in broke.items()])
        df = df.with_columns(
            waiver_ids=pl.concat_list([empty] + [
                pl.when(hit).then(pl.lit([wid], dtype=pl.List(pl.String))).otherwise(empty) for wid, hit in applied]),
            _rules=word,
        )
        words = df.get_column("_rules").unique().to_list()
        broken = [[r for i, r in enumerate(rules) if w >> i & 1] for w in words]
        lists = pl.DataFrame({
            "_rules": words,
            "rule_ids": [[r.id for r in b] for b in broken],
            "clauses": [list(dict.fromkeys(c for r in b for c in r.clauses)) for b in broken],
            "reasons": [[r.message for r in b] for b in broken],
            "severity": [names[max(SEVERITY_RANK[r.severity] for r in b)] if b else None for b in broken],
            "rule_clauses": [[list(r.clauses) for r in b] for b in broken],
            "rule_severities": [[r.severity.value for r in b] for b in broken],
        }, schema={"_rules": pl.UInt64, "rule_ids": pl.List(pl.String), "clauses": pl.List(pl.String),
                   "reasons": pl.List(pl.String), "severity": pl.String,
                   "rule_clauses": pl.List(pl.List(pl.String)), "rule_severities": pl.List(pl.String)})
        out = df.join(lists, on="_rules", how="left", maintain_order="left")
        verdict = (
            pl.when(pl.col("rule_ids").list.len() > 0).then(pl.lit("breach"))
            .when(pl.col("waiver_ids").list.len() > 0).then(pl.lit("waived"))
            .when(pl.col("denied")).then(pl.lit("blocked")).otherwise(pl.lit("allowed"))
        )
        helpers = [c for c in out.columns if c.startswith(("_rule_", "_waiver_", "_rules"))]
        return out.with_columns(policy_version=pl.lit(self.version), school=pl.lit(self.policy.school),
                                verdict=verdict).drop(helpers)
