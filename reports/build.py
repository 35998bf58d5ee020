"""Builds a `UserReport` from stored activity for one person and period."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable
from typing import TYPE_CHECKING

import polars as pl

from reports.model import ActivityRow, CountRow, PersonRef, UserReport
from reports.seal import PLACEHOLDER
from rules.config import Directory
from storage.store import Store

if TYPE_CHECKING:
    from rules.engine import Engine

def person(directory: Directory, username: str) -> PersonRef:
    """The directory's view of `username`; name, role and line manager None when it has no entry."""
    people = directory.by_username()
    p = people.get(username)
    if p is None:
        return PersonRef(username, None, None, None)
    manager = people.get(p.line_manager or "")
    return PersonRef(p.username, p.name, p.role.value, manager.name if manager else "")


def local_bounds(start: dt.date, end: dt.date, tz: str) -> tuple[dt.datetime, dt.datetime]:
    """UTC instants of local midnight at `start` and at the day after `end` (the period is whole days)."""
    zone = zoneinfo.ZoneInfo(tz)
    lo = dt.datetime.combine(start, dt.time(), zone).astimezone(dt.UTC)
    hi = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.UTC)
    return lo, hi


def build(
    store: Store, directory: Directory, school: str, tz: str, username: str, start: dt.date, end: dt.date,
    requested_by: str, reason: str, now: dt.datetime, grounds: str = "", audit_seq: int = 0,
    explainer: Callable[[pl.DataFrame], list[str]] | None = None,
) -> UserReport:
    """Read the period's activity for `username` and summarise it; `explainer` (stored rows → a text
    each) explains each breach and waived activity."""
    lo, hi = local_bounds(start, end, tz)
    df = store.activity(username, lo, hi).with_columns(
        local=pl.col("ts").dt.convert_time_zone(tz),
        total_bytes=pl.col("bytes_in").fill_null(0) + pl.col("bytes_out").fill_null(0),
    ).with_columns(minute=pl.col("local").dt.truncate("1m"))
    judged = df.with_row_index("_i").filter(pl.col("verdict").is_in(["breach", "waived"]))
    texts = dict(zip(judged.get_column("_i").to_list(),
                     explainer(judged.drop("_i", "local", "total_bytes", "minute")) if explainer and judged.height
                     else [], strict=False))
    rows = tuple(_row(r, texts.get(i, "")) for i, r in enumerate(df.iter_rows(named=True)))
    return UserReport(
        school=school, sha256=f"sha256:{PLACEHOLDER}", subject=person(directory, username), start=start, end=end,
        timezone=tz, requested_by=person(directory, requested_by), reason=reason, grounds=grounds,
        audit_seq=audit_seq, generated_at=now,
        policy_versions=tuple(sorted(set(df.get_column("policy_version").to_list()))),
        total_activities=df.height,
        bytes_out=int(df.get_column("bytes_out").fill_null(0).sum()),
        bytes_in=int(df.get_column("bytes_in").fill_null(0).sum()),
        by_category=_counts(df.with_columns(categories=pl.when(pl.col("categories").list.len() > 0)
                                            .then(pl.col("categories"))
                                            .otherwise(pl.lit(["uncategorised"], dtype=pl.List(pl.String))))
                            .explode("categories"), "categories"),
        by_day=_counts(df.with_columns(day=pl.col("local").dt.strftime("%Y-%m-%d (%a)")), "day", by_label=True),
        devices=_counts(df, "device"),
        locations=_counts(df, "location"),
        breaches=tuple(r for r in rows if r.verdict == "breach"),
        blocked=tuple(r for r in rows if r.denied),
        waived=tuple(r for r in rows if r.verdict == "waived"),
        activity=rows,
        heatmap=_heatmap(df),
        active_minutes=int(df.get_column("minute").n_unique()) if df.height else 0,
    )


def _heatmap(df: pl.DataFrame) -> tuple[tuple[int, ...], ...]:
    grid = [[0] * 24 for _ in range(7)]
    counts = df.group_by(pl.col("local").dt.weekday().alias("d"), pl.col("local").dt.hour().alias("h")).len()
    for day, hour, n in counts.iter_rows():
        grid[day - 1][hour] = int(n)
    return tuple(tuple(row) for row in grid)


def _counts(df: pl.DataFrame, column: str, by_label: bool = False) -> tuple[CountRow, ...]:
    grouped = df.group_by(column).agg(n=pl.len(), b=pl.col("total_bytes").sum(), m=pl.col("minute").n_unique())
    grouped = grouped.sort(column) if by_label else grouped.sort(["n", column], descending=[True, False])
    return tuple(CountRow(label or None, int(n), int(b), int(m)) for label, n, b, m in grouped.iter_rows())


def _row(r: dict, explanation: str = "") -> ActivityRow:
    return ActivityRow(
        time=r["local"], kind=r["kind"], device=r["device"] or None, device_type=r["device_type"] or None,
        location=r["location"] or None, host=r["host"] or None, server=r["dst_ip"] or None, url=r["url"] or r["sni"],
        categories=tuple(r["categories"]), verdict=r["verdict"], rule_ids=tuple(r["rule_ids"]),
        clauses=tuple(r["clauses"]), severity=r["severity"], reasons=tuple(r["reasons"]),
        source_ref=r["source_ref"], denied=r["denied"], identified_by=_identified_by(r),
        user_agent=r["user_agent"] or "", waiver_ids=tuple(r["waiver_ids"] or ()), explanation=explanation,
    )


_EVIDENCE = {"proxy_auth": "proxy login", "register_mac": "registered device (MAC)",
             "dhcp_lease": "DHCP lease of the address", "register_address": "reserved address"}


def _identified_by(r: dict) -> str:
    source = _EVIDENCE.get(r["identity_source"] or "", "not identified")
    if r.get("mac_randomised") and not r["identity_source"]:
        source = "not identified (private Wi-Fi MAC)"
    return f"{source}, {r['identity_confidence']} confidence" if r.get("identity_confidence") else source


def explainer(engine: Engine) -> Callable[[pl.DataFrame], list[str]]:
    """Explains a report's stored activities with `engine`'s policy, in sentences: the rules that matched
    and why, and only the subject's own waivers (the whole reading is `ictwatch explain`)."""
    from rules.explain import for_report

    return lambda rows: for_report(engine, rows)
