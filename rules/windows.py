"""Rules over a window: an amount (bytes down or up, or time) that the activities a rule's condition matches
add up to, per person (and site), within one window of the calendar's clock, tested against a threshold.

The engine judges a batch at a time; a window spans many. `Windows` keeps, for each window rule, the
activities counted so far in the windows still open (their record ids, times, amounts), so a batch's
matching activities are added to what came before. What a process has not seen itself (it was started,
or the window began before it did) is read back from the store the first time a window is touched
(`history`), and judged again with the same compiled conditions: a restart neither forgets nor alerts
again. A record already counted (the same `record_id`: a re-import, a record read twice) adds nothing and
keeps the verdict it had.

The breach is recorded on one activity per window: the one whose addition takes the total over the
threshold, in time order. Records may arrive out of order (a proxy log read after the capture): when the
records new in a batch take a window over, the breach is on the first of them, in time order, at which
the running total of the window (everything counted, in time order) is over, or on the last of them when
it was an earlier record's total that went over (the late ones filled in before it); a window over
already gives no second breach. The amounts of time are the reports' visit arithmetic (rules/visits.py):
each activity adds what it takes the time of its device's visits to its site past what came before.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from rules.policy import AMOUNT_COLUMNS, Policy, Rule, Total
from rules.visits import END, WHO, time_added

_log = logging.getLogger(__name__)

History = Callable[[str | None, dt.datetime, dt.datetime], pl.DataFrame | None]
"""The stored activity of a user (everyone's for None) with `start <= ts < end` (UTC), every column; None
when the store cannot say now."""

Prepare = Callable[[pl.DataFrame], pl.DataFrame]
"""Stored rows → the same rows with `_local`, the calendar windows and each rule's `_rule_I` condition."""

KEEP = dt.timedelta(hours=1)
"""How long after a window's end (by the newest activity counted) its activities stay in memory, for records
that arrive a little late; a record later than that has its window read back from the store."""

_COUNTED: dict[str, pl.DataType | type[pl.DataType]] = {
    "_w": pl.Int32, "_key": pl.String, "_bucket": pl.Datetime("us"), "_g": pl.UInt64, "_v": pl.UInt64,
    "ts": pl.Datetime("us", "UTC"), "end": pl.Datetime("us", "UTC"), "_bytes": pl.Int64, "record_id": pl.UInt64,
    "_breach": pl.Boolean}
"""What is kept of each counted activity: its rule (`_w`), whose amount it is and its window's local start,
the two as one number (`_g`, a hash: sorting and joining on it is quicker than on text), its visit group
(`_v`: the window's, its device and its site), its time and end, its bytes, its record id, and whether it
carried the breach."""


@dataclass(frozen=True, slots=True)
class WindowRule:
    """A rule of the policy with a `total`, and its place among the rules."""

    index: int
    rule: Rule
    total: Total


def window_rules(policy: Policy) -> list[WindowRule]:
    """The policy's rules with a `total`."""
    return [WindowRule(i, r, r.total) for i, r in enumerate(policy.rules) if r.total is not None]


def _site() -> pl.Expr:
    name = pl.col("host").fill_null("").str.strip_chars_end(".").str.to_lowercase()
    return pl.when(name != "").then(name).otherwise(pl.col("dst_ip").fill_null(""))


def _person() -> pl.Expr:
    return pl.when(pl.col("user").fill_null("") != "").then("u:" + pl.col("user")).otherwise(WHO)


def counts(wr: WindowRule) -> pl.Expr:
    """Where a row counts toward `wr`: its condition (`_rule_I`) holds, and for `school_day` on a school day."""
    keep = pl.col(f"_rule_{wr.index}")
    return keep & pl.col("school_day") if wr.total.window == "school_day" else keep


def candidates(df: pl.DataFrame, wr: WindowRule) -> pl.DataFrame:
    """The rows of `df` (with `_local`, `school_day` and `_rule_I`, I the rule's index) that count toward
    `wr`: its condition holds (and, for `school_day`, on a school day), with the columns of `_COUNTED`
    but `_breach`, and `site`. `_r` is the row's place in `df`."""
    total = wr.total
    length = total.length()
    bucket = pl.col("_local").dt.truncate(f"{int(length.total_seconds())}s")
    key_parts = [_person() if p == "person" else _site() for p in total.per]
    columns = AMOUNT_COLUMNS[total.amount]
    amount = pl.sum_horizontal([pl.col(c).fill_null(0).cast(pl.Int64) for c in columns]) if columns else pl.lit(0)
    record = (pl.col("record_id") if "record_id" in df.columns
              else pl.concat_str(["source_ref", "kind", pl.col("ts").cast(pl.String)]).hash())
    group = pl.struct(pl.lit(wr.rule.id).alias("rule"), "_key", "_bucket").hash()  # the id: the same after a reload
    return df.lazy().with_row_index("_r").filter(counts(wr)).select(  # lazy: only the columns named are read
        "_r", "source_ref", "kind", "host", _w=pl.lit(wr.index, pl.Int32),
        _key=pl.concat_str(key_parts, separator="\x1f"),
        _bucket=bucket.cast(pl.Datetime("us")), who=WHO, site=_site(), ts="ts", end=END,
        _bytes=amount.cast(pl.Int64), record_id=record.cast(pl.UInt64),
    ).with_columns(_g=group).with_columns(_v=pl.struct("_g", "who", "site").hash()).collect()


def amounts(rows: pl.DataFrame, limits: dict[int, float], timed: set[int]) -> pl.DataFrame:
    """`rows` (counted activities of whole windows) in time order within each window, with `_amount` (what
    each adds: its bytes, or for a rule in `timed` the seconds it adds to its visits) and `_running` (the
    window's total up to and including it)."""
    is_timed = pl.col("_w").is_in(sorted(timed))
    rows = pl.concat([
        rows.filter(is_timed).sort("_v", "ts", "record_id").with_columns(_amount=time_added(["_v"])),
        rows.filter(~is_timed).with_columns(_amount=pl.col("_bytes").cast(pl.Float64)),
    ]).sort("_g", "ts", "record_id")
    # sorted by window: the running total is the overall one less what came before the window's first row
    upto = pl.col("_amount").cum_sum()
    starts = pl.col("_g").shift(1).is_null() | (pl.col("_g") != pl.col("_g").shift(1))
    return rows.with_columns(_running=upto - pl.when(starts).then(upto - pl.col("_amount")).forward_fill(),
                             _limit=pl.col("_w").replace_strict(limits, return_dtype=pl.Float64))


class Windows:
    """The running totals of a policy's window rules, across the batches an engine judges."""

    def __init__(self, policy: Policy, prepare: Prepare) -> None:
        """`prepare` makes stored rows ready for `candidates` (the engine's calendar and conditions)."""
        self.rules = window_rules(policy)
        self._zone = zoneinfo.ZoneInfo(policy.calendar.timezone)
        self._prepare = prepare
        self._limits = {wr.index: wr.total.limit() for wr in self.rules}
        self._timed = {wr.index for wr in self.rules if wr.total.amount == "time"}
        self._waivers = {wr.index: [w.id for w in policy.waivers if wr.rule.id in w.rules] for wr in self.rules}
        self._length = {wr.index: wr.total.length() for wr in self.rules}
        self._counted = pl.DataFrame(schema=_COUNTED)
        self._loaded: set[tuple[int, dt.datetime]] = set()
        self.history: History | None = None
        """Where windows a process has not seen are read back from (the pipeline gives the store's)."""

    def records(self, index: int, row: pl.DataFrame) -> pl.DataFrame | None:
        """The records counted in the window of `row` (one stored activity) by rule `index` (a window rule),
        in time order, each with `_amount` and `_running` (see `amounts`): what add up to its total, as
        the store has them now. None when the row does not count toward the rule or the store cannot say."""
        wr = next(w for w in self.rules if w.index == index)
        mine = candidates(self._prepare(row), wr)
        if not mine.height or self.history is None:
            return None
        bucket, key = mine.get_column("_bucket")[0], mine.get_column("_key")[0]
        margin = dt.timedelta(hours=2)
        user = row.get_column("user")[0] or None if "person" in wr.total.per else None  # one person's rows will do
        stored = self.history(user, bucket.replace(tzinfo=self._zone).astimezone(dt.UTC) - margin,
                              (bucket + self._length[index]).replace(tzinfo=self._zone).astimezone(dt.UTC) + margin)
        if stored is None or not stored.height:
            return None
        found = candidates(self._prepare(stored), wr).filter((pl.col("_bucket") == bucket) & (pl.col("_key") == key))
        return amounts(found.unique("record_id", keep="first"), self._limits, self._timed)

    def take_over(self, old: Windows) -> None:
        """Go on from `old` (the engine before a reload): what it counted for each rule that is the same in
        both policies (id, condition and total), and its history."""
        self.history = old.history
        same = {o.index: n.index for o in old.rules for n in self.rules if o.rule == n.rule}
        self._counted = old._counted.filter(pl.col("_w").is_in(list(same))).with_columns(
            pl.col("_w").replace_strict(same, return_dtype=pl.Int32))
        self._loaded = {(same[w], b) for w, b in old._loaded if w in same}

    def judge(self, df: pl.DataFrame) -> pl.DataFrame:
        """`df` (a batch with `_local`, the calendar windows and every rule's `_rule_I` condition) with each
        window rule's `_rule_I` true only where that rule is broken: on the activity that takes its window
        over the threshold (or that did so when it was first judged)."""
        if not self.rules:
            return df
        # most batches have nothing a window rule counts: one look says which rules have, and only those
        # rows are gathered (each step costs about the same whatever the batch's size)
        hits = df.select([counts(wr).any().alias(str(wr.index)) for wr in self.rules]).row(0)
        touched = [wr for wr, hit in zip(self.rules, hits, strict=True) if hit]
        breach: dict[int, pl.Series] = {}
        if touched:
            found = pl.concat([candidates(df, wr) for wr in touched])
            found = found.filter(pl.struct("_w", "record_id").is_first_distinct())  # a record twice in a batch
            self._load(found)
            breach = self._add(found)
        if not breach:
            return df.with_columns([pl.lit(False).alias(f"_rule_{wr.index}") for wr in self.rules])
        empty = pl.Series([], dtype=pl.UInt32)
        return df.with_row_index("_r").with_columns(
            [pl.col("_r").is_in(breach.get(wr.index, empty).implode()).alias(f"_rule_{wr.index}")
             for wr in self.rules]).drop("_r")

    def _add(self, found: pl.DataFrame) -> dict[int, pl.Series]:
        """Count the new records of `found`; the rows (`_r`) that break each rule."""
        counted = self._counted
        known = found.join(counted.select("_w", "record_id", "_breach"), on=["_w", "record_id"], how="inner")
        new = found.join(counted, on=["_w", "record_id"], how="anti")
        marked = [known.filter("_breach").select("_w", "_r")]
        if new.height:
            old = counted.join(new.select("_g").unique(), on="_g", how="semi")
            timed = old.filter(pl.col("_w").is_in(sorted(self._timed)))
            before = pl.concat([  # each window's total before this batch
                amounts(timed, self._limits, self._timed).group_by("_g").agg(_before=pl.col("_amount").sum()),
                old.filter(~pl.col("_w").is_in(sorted(self._timed))).group_by("_g").agg(
                    _before=pl.col("_bytes").sum().cast(pl.Float64))])
            both = pl.concat([old.drop("_breach").with_columns(_r=pl.lit(None, pl.UInt32)), new], how="diagonal")
            judged = amounts(both, self._limits, self._timed).join(before, on="_g", how="left")
            fresh = pl.col("_r").is_not_null()
            over = judged.group_by("_g").agg(  # the windows this batch takes over, and the row that does
                _w=pl.col("_w").first(), _total=pl.col("_amount").sum(),
                _before=pl.col("_before").first().fill_null(0.0), _limit=pl.col("_limit").first(),
                _first=pl.col("_r").filter(fresh & (pl.col("_running") > pl.col("_limit"))).first(),
                _last=pl.col("_r").filter(fresh).last(),
            ).filter((pl.col("_before") <= pl.col("_limit")) & (pl.col("_total") > pl.col("_limit"))).select(
                "_w", _r=pl.coalesce("_first", "_last"))
            marked.append(over)
            flagged = new.join(over.with_columns(_breach=pl.lit(True)), on=["_w", "_r"], how="left")
            self._counted = pl.concat([counted, flagged.select(_COUNTED.keys()).with_columns(
                pl.col("_breach").fill_null(False))])
            self._forget(new)
        rows = pl.concat(marked)
        return {w: part.get_column("_r") for (w,), part in rows.partition_by("_w", as_dict=True).items()}

    def _forget(self, new: pl.DataFrame) -> None:
        """Drop the windows that ended more than `KEEP` before the newest window counted."""
        newest = new.get_column("_bucket").max()
        assert isinstance(newest, dt.datetime)
        ends = pl.col("_bucket") + pl.col("_w").replace_strict(self._length, return_dtype=pl.Duration("us"))
        self._counted = self._counted.filter(ends + KEEP >= newest)
        self._loaded = {(w, b) for w, b in self._loaded if b + self._length[w] + KEEP >= newest}

    def _load(self, found: pl.DataFrame) -> None:
        """Read back from the store the windows of `found` this process has not counted yet."""
        touched = {(w, b) for w, b in found.select("_w", "_bucket").unique().iter_rows()}
        missing = touched - self._loaded
        if not missing:
            return
        if self.history is None:
            self._loaded |= missing
            return
        margin = dt.timedelta(hours=2)  # local → UTC, either side of a clock change
        lo = min(b for _, b in missing).replace(tzinfo=self._zone).astimezone(dt.UTC) - margin
        hi = max(b + self._length[w] for w, b in missing).replace(tzinfo=self._zone).astimezone(dt.UTC) + margin
        stored = self.history(None, lo, hi)
        if stored is None:  # the store is out of reach: count from what this process sees, try again next time
            return
        self._loaded |= missing
        if not stored.height:
            return
        prepared = self._prepare(stored)
        wanted = pl.DataFrame(list(missing), schema={"_w": pl.Int32, "_bucket": pl.Datetime("us")}, orient="row")
        rows = []
        for wr in self.rules:  # the record the store has as breaking the rule (or waived from it) took it over
            said = pl.col("rule_ids").list.contains(wr.rule.id).fill_null(False)
            if self._waivers[wr.index]:
                said = said | pl.col("waiver_ids").list.eval(pl.element().is_in(self._waivers[wr.index])).list.any()
            part = candidates(prepared, wr)
            rows.append(part.with_columns(_breach=prepared.select(said).to_series().gather(part.get_column("_r"))))
        back = (pl.concat(rows).join(wanted, on=["_w", "_bucket"], how="semi")
                .unique(["_w", "record_id"], keep="first").join(self._counted, on=["_w", "record_id"], how="anti"))
        self._counted = pl.concat([self._counted, back.select(_COUNTED.keys())])


def amount_said(total: Total, value: float) -> str:
    """An amount as a reader takes it: `51,034,440 bytes (51.0 MB)`, `17,422 bytes (17.4 kB)`, `15 min 35 s`."""
    if total.amount == "time":
        whole = int(value)
        return f"{whole // 60} min {whole % 60} s" if whole >= 60 else f"{value:.1f} s"
    unit, size = ("kB", 1e3) if value < 1e6 else ("MB", 1e6)
    return f"{int(value):,} bytes ({value / size:.1f} {unit})"
