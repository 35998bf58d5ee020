"""Builds a `UserReport` from stored activity for one person and period."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import polars as pl

from reports import visits
from reports.model import (
    ActivityRow,
    CareDevice,
    CountRow,
    DeviceRef,
    HeatCell,
    Heatmap,
    HeatRow,
    PersonRef,
    UserReport,
    Visit,
)
from reports.seal import PLACEHOLDER
from rules.config import Device, Directory
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
    explainer: Callable[[pl.DataFrame], list[str]] | None = None, services: Mapping[str, str] | None = None,
    devices: Sequence[Device] = (), device: str | None = None,
) -> UserReport:
    """Read the period's activity for `username`, join it into visits and summarise them; `explainer`
    (stored rows → a text each) explains each breach and waived activity; `services` (address → name, the
    network map's `service_names()`) are the school's own network services, counted apart. The devices in
    `username`'s care (`devices`, the register) are reported apart, and a device of someone else's is not
    named (`shown_devices`). With `device`, the report is of that device's activity that no login named
    instead, `username` being ignored."""
    lo, hi = local_bounds(start, end, tz)
    register = {d.id: d for d in devices}
    if device is not None:
        own, care = store.activity("", lo, hi, device=device), None
    else:
        own, care = shown_devices(store.activity(username, lo, hi), username, register), store.activity(
            None, lo, hi, responsible=username)
    df, rows = _rows(own, tz, services or {}, explainer)
    seen = visits.summarise(df, tz)
    online = visits.minutes(seen).with_columns(day=pl.col("minute").dt.date(), hour=pl.col("minute").dt.hour())
    seen = seen.join(online.group_by("visit").agg(minutes=pl.col("minute").n_unique()), on="visit", how="left")
    ways: dict[str | None, dict[str, None]] = {}
    for row in rows:
        if row.visit is not None:
            ways.setdefault(row.device, {})[row.identified_by] = None
    in_care, care_breaches = _in_care(care, tz, services or {}, explainer) if care is not None else ((), ())
    return UserReport(
        school=school, sha256=f"sha256:{PLACEHOLDER}",
        subject=person(directory, username) if device is None else PersonRef(device, None, None, None),
        start=start, end=end,
        timezone=tz, requested_by=person(directory, requested_by), reason=reason, grounds=grounds,
        audit_seq=audit_seq, generated_at=now,
        policy_versions=tuple(sorted(set(df.get_column("policy_version").to_list()))),
        total_activities=df.height,
        bytes_out=int(df.get_column("bytes_out").fill_null(0).sum()),
        bytes_in=int(df.get_column("bytes_in").fill_null(0).sum()),
        by_category=_counts(seen.with_columns(category=pl.when(pl.col("categories").list.len() > 0)
                                              .then(pl.col("categories"))
                                              .otherwise(pl.lit(["uncategorised"], dtype=pl.List(pl.String))))
                            .explode("category"), online, "category"),
        by_day=_counts(seen.with_columns(day=pl.col("start").dt.date()), online, "day", by_label=True),
        devices=tuple(dataclasses.replace(c, identified_by="; ".join(ways.get(c.label, {})))
                      for c in _counts(seen, online, "device")),
        locations=_counts(seen, online, "location"),
        breaches=tuple(r for r in rows if r.verdict == "breach"),
        blocked=tuple(r for r in rows if r.denied),
        waived=tuple(r for r in rows if r.verdict == "waived"),
        activity=rows,
        visits=tuple(_visit(v) for v in seen.iter_rows(named=True)),
        services=tuple(CountRow(name, 0, int(n), int(b)) for name, n, b in df.filter(pl.col("service").is_not_null())
                       .group_by("service").agg(pl.len(), (pl.col("bytes_in").fill_null(0)
                                                           + pl.col("bytes_out").fill_null(0)).sum())
                       .sort("len", "service", descending=[True, False]).iter_rows()),
        heatmap=_heatmap(online, start, end),
        minutes_online=int(online.get_column("minute").n_unique()),
        in_care=in_care, care_breaches=care_breaches,
        device=None if device is None else _device_ref(directory, register, device),
    )


def _rows(stored: pl.DataFrame, tz: str, services: Mapping[str, str],
          explainer: Callable[[pl.DataFrame], list[str]] | None) -> tuple[pl.DataFrame, tuple[ActivityRow, ...]]:
    """Stored rows with their visits and local time, and each as a report lists it (a breach or waived one
    explained)."""
    df = visits.assign(stored, services).with_columns(local=pl.col("ts").dt.convert_time_zone(tz))
    judged = df.with_row_index("_i").filter(pl.col("verdict").is_in(["breach", "waived"]))
    texts = dict(zip(judged.get_column("_i").to_list(),
                     explainer(judged.drop(_DERIVED)) if explainer and judged.height else [], strict=False))
    return df, tuple(_row(r, texts.get(i, "")) for i, r in enumerate(df.select(_ROW_COLUMNS).iter_rows(named=True)))


def _in_care(stored: pl.DataFrame, tz: str, services: Mapping[str, str],
             explainer: Callable[[pl.DataFrame], list[str]] | None) -> tuple[tuple[CareDevice, ...],
                                                                              tuple[ActivityRow, ...]]:
    """Each device in the subject's care that was active (`stored`: their rows), summarised, and their breaches."""
    df, rows = _rows(stored, tz, services, explainer)
    seen = visits.summarise(df, tz)
    online = visits.minutes(seen).join(seen.select("visit", "device"), on="visit")
    out = []
    for name in sorted(set(df.get_column("device").to_list())):
        mine, its_visits = df.filter(pl.col("device") == name), seen.filter(pl.col("device") == name)
        places = its_visits.group_by("location").len().filter(pl.col("location") != "").sort(
            "len", "location", descending=[True, False]).get_column("location").to_list()
        out.append(CareDevice(
            device=name, device_type=mine.get_column("device_type")[0] or None, places=tuple(places),
            visits=its_visits.height, activities=int(its_visits.get_column("activities").sum()),
            bytes=int(its_visits.get_column("bytes").sum()),
            minutes=online.filter(pl.col("device") == name).get_column("minute").n_unique(),
            breaches=sum(1 for r in rows if r.device == name and r.verdict == "breach")))
    return tuple(out), tuple(r for r in rows if r.verdict == "breach")


def _device_ref(directory: Directory, register: Mapping[str, Device], device: str) -> DeviceRef:
    known = register.get(device)
    if known is None:
        return DeviceRef(device, None, None, None)
    return DeviceRef(device, known.type.value, known.use.value,
                     person(directory, known.responsible) if known.responsible else None)


OTHERS_DEVICE = "another person's device"
"""How a person's report names a device registered to someone else (they logged in on it): its id may name
its owner, who is not the report's to tell."""


def shown_devices(rows: pl.DataFrame, username: str, register: Mapping[str, Device]) -> pl.DataFrame:
    """`rows` of `username`'s report with each device that is someone else's (registered to another owner, of
    their own use or in their care) named only as `OTHERS_DEVICE` and a number; the person's own devices, the
    shared ones and the unregistered keep their id."""
    others = sorted({d for d in rows.get_column("device").unique().to_list()
                     if d in register and register[d].owner not in (None, username)})
    if not others:
        return rows
    hidden = {d: f"{OTHERS_DEVICE} {i}" for i, d in enumerate(others, 1)}
    return rows.with_columns(device=pl.col("device").replace(hidden))


_DERIVED = ("_i", "local", "who", "name", "site", "service", "end", "visit")
"""Columns `build` adds to the stored rows (taken off again before the explainer reads them)."""


def _visit(v: dict) -> Visit:
    return Visit(
        number=v["visit"], site=v["site"], start=v["start"], end=v["end"], device=v["device"] or None,
        device_type=v["device_type"] or None, location=v["location"] or None, activities=v["activities"],
        bytes=int(v["bytes"]), minutes=v["minutes"], kinds=tuple(v["kinds"]), categories=tuple(v["categories"]),
        verdict=v["verdict"], rule_ids=tuple(v["rule_ids"]), clauses=tuple(v["clauses"]), severity=v["severity"],
        evidence=tuple(v["evidence"]), urls=tuple(v["urls"]))


HOURS_UP_TO_DAYS = 14
"""A period of up to this many days is drawn as days by hours; a longer one as a calendar of days."""


def _heatmap(online: pl.DataFrame, start: dt.date, end: dt.date) -> Heatmap:
    """Time online by hour (one day), by day and hour (up to `HOURS_UP_TO_DAYS`), or by day on a calendar."""
    distinct = pl.col("minute").n_unique()
    per_hour = {(d, h): int(n) for d, h, n in online.group_by("day", "hour").agg(distinct).iter_rows()}
    per_day = {d: int(n) for d, n in online.group_by("day").agg(distinct).iter_rows()}
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    if len(days) <= HOURS_UP_TO_DAYS:
        rows = tuple(HeatRow(f"{d:%a %d %b}", tuple(
            HeatCell(f"{d:%Y-%m-%d} {h:02d}:00–{h + 1:02d}:00", per_hour.get((d, h), 0)) for h in range(24)))
            for d in days)
        return Heatmap("hours" if len(days) == 1 else "days", tuple(f"{h:02d}" for h in range(24)), rows,
                       max(per_hour.values(), default=0))
    monday = start - dt.timedelta(days=start.weekday())
    weeks = []
    while monday <= end:
        week = [monday + dt.timedelta(days=i) for i in range(7)]
        weeks.append(HeatRow(f"w/c {monday:%d %b %Y}", tuple(
            HeatCell(f"{d:%a %Y-%m-%d}", per_day.get(d, 0) if start <= d <= end else None) for d in week)))
        monday += dt.timedelta(days=7)
    return Heatmap("calendar", ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"), tuple(weeks),
                   max(per_day.values(), default=0))


def _counts(seen: pl.DataFrame, online: pl.DataFrame, column: str, by_label: bool = False) -> tuple[CountRow, ...]:
    """Visits, their activities, data and time online, by `column` of the visits (`seen`); time online by the
    minutes' own `column` where they have one (a day)."""
    by_minute = online if column in online.columns else online.join(seen.select("visit", column), on="visit")
    grouped = seen.group_by(column).agg(v=pl.len(), n=pl.col("activities").sum(), b=pl.col("bytes").sum()).join(
        by_minute.group_by(column).agg(m=pl.col("minute").n_unique()), on=column, how="left", nulls_equal=True)
    grouped = grouped.sort(column) if by_label else grouped.sort(["v", column], descending=[True, False])
    return tuple(CountRow(_label(label), int(v), int(n), int(b), int(m or 0))
                 for label, v, n, b, m in grouped.iter_rows())


def _label(value: object) -> str | None:
    if isinstance(value, dt.date):
        return f"{value:%Y-%m-%d (%a)}"
    return str(value) if value else None


_ROW_COLUMNS = ("local", "kind", "device", "device_type", "location", "host", "dst_ip", "url", "sni", "categories",
                "verdict", "rule_ids", "clauses", "severity", "reasons", "source_ref", "denied", "identity_source",
                "identity_confidence", "mac_randomised", "user_agent", "waiver_ids", "visit", "method", "info_hash")
"""The columns `_row` reads: only these are turned into Python values, a third of the stored row."""


def _row(r: dict, explanation: str = "") -> ActivityRow:
    return ActivityRow(
        time=r["local"], kind=r["kind"], device=r["device"] or None, device_type=r["device_type"] or None,
        location=r["location"] or None, host=r["host"] or None, server=r["dst_ip"] or None, url=r["url"] or r["sni"],
        categories=tuple(r["categories"]), verdict=r["verdict"], rule_ids=tuple(r["rule_ids"]),
        clauses=tuple(r["clauses"]), severity=r["severity"], reasons=tuple(r["reasons"]),
        source_ref=r["source_ref"], denied=r["denied"], identified_by=_identified_by(r),
        user_agent=r["user_agent"] or "", waiver_ids=tuple(r["waiver_ids"] or ()), explanation=explanation,
        visit=r["visit"], method=r["method"] or "", info_hash=r["info_hash"] or "",
    )


_EVIDENCE = {"proxy_auth": "proxy login", "register_mac": "registered device (MAC)",
             "dhcp_lease": "DHCP lease of the address", "register_address": "reserved address"}


def _identified_by(r: dict) -> str:
    source = _EVIDENCE.get(r["identity_source"] or "", "not identified")
    if r.get("mac_randomised") and not r["identity_source"]:
        source = "not identified (private Wi-Fi MAC)"
    return f"{source}, {r['identity_confidence']} confidence" if r.get("identity_confidence") else source


def explainer(engine: Engine, store: Store) -> Callable[[pl.DataFrame], list[str]]:
    """Explains a report's stored activities with `engine`'s policy, in sentences: the rules that matched
    and why (for a rule over a window, the subject's records in `store` that add up to its total), and
    only the subject's own waivers (the whole reading is `ictwatch explain`)."""
    from rules.explain import for_report

    engine.windows.history = store.activity
    return lambda rows: for_report(engine, rows)
