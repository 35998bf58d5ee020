"""Why an activity got its verdict, in words: each rule, each condition and the value that decided it,
the identity evidence, and each waiver that applied or why it did not.

The explanation is computed, not remembered: the stored activity goes back through the same compiled
expressions the engine used (the calendar windows are worked out again from its time), every node of
every rule's condition evaluated as its own column. When the policy has changed since the verdict was
given, the explanation says so: it describes the current policy's reading.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator

import polars as pl

from rules.engine import Engine, compile_condition, waiver_columns, with_windows
from rules.fields import shown
from rules.policy import Condition


def _checks(cond: Condition, path: str) -> Iterator[tuple[str, pl.Expr]]:
    """(path, expression) for the node itself, each key it sets on its own, then its children."""
    yield path, compile_condition(cond)
    for field, value in cond.leaves():
        yield f"{path}.{field.key}", field.holds(value)
    for name in ("all", "any"):
        for i, child in enumerate(getattr(cond, name) or ()):
            yield from _checks(child, f"{path}.{name}{i}")
    if cond.not_ is not None:
        yield from _checks(cond.not_, f"{path}.not")


def explain(engine: Engine, activity: pl.DataFrame, names: dict[str, str] | None = None) -> str:
    """The explanation of one stored activity (a one-row frame from the `activity` table), every rule gone
    through."""
    return explain_many(engine, activity, names)[0]


def explain_many(engine: Engine, activities: pl.DataFrame, names: dict[str, str] | None = None,
                 only_matched: bool = False) -> list[str]:
    """`explain` for every row of `activities`, with every condition evaluated once over all of them."""
    policy = engine.policy
    df = with_windows(activities, policy)
    df = df.with_columns(waiver_columns(policy, engine.groups))
    checks = {path: check for i, rule in enumerate(policy.rules) for path, check in _checks(rule.when, f"r{i}")}
    values = df.select(**checks) if checks else pl.DataFrame({"_": [None] * df.height})
    windows = df.select("school_day", "restricted_hours", "break", "personal_use_allowed")
    covered = df.select([f"_waiver_{j}" for j in range(len(policy.waivers))])
    return [_explain_row(engine, activities.row(k, named=True), values.row(k, named=True) if checks else {},
                         windows.row(k, named=True), covered.row(k) if policy.waivers else (), names, only_matched)
            for k in range(df.height)]


def _explain_row(engine: Engine, row: dict, values: dict[str, bool], windows: dict[str, bool], covered: tuple,
                 names: dict[str, str] | None, only_matched: bool) -> str:
    policy = engine.policy
    zone = zoneinfo.ZoneInfo(policy.calendar.timezone)
    local = row["ts"].astimezone(zone)
    who = row["user"] or "unknown person"
    if row["user"] and names and row["user"] in names:
        who = f"{names[row['user']]} ({row['user']})"
    lines = [
        f"Activity {row['source_ref']} ({row['kind']}) at {local:%Y-%m-%d %H:%M:%S %Z}",
        f"  who: {who}; role {shown(row['role'])}; identity evidence: {shown(row['identity_source'])} "
        f"(confidence {shown(row['identity_confidence'])})",
        f"  device: {row['device'] or 'unregistered'} ({shown(row['device_type'])}, {shown(row['device_owner'])}"
        f"{', private Wi-Fi address' if row['mac_randomised'] else ''}); place: {row['location'] or 'unknown'} "
        f"({shown(row['location_kind'])})",
        f"  host: {shown(row['host'])}; categories: {shown(row['categories'])}; port {shown(row['dst_port'])}"
        f"{'; refused by the proxy' if row['denied'] else ''}",
        f"  time: school day {'yes' if windows['school_day'] else 'no'}, restricted hours "
        f"{'yes' if windows['restricted_hours'] else 'no'}, break {'yes' if windows['break'] else 'no'}; "
        f"personal use allowed here and now: {'yes' if windows['personal_use_allowed'] else 'no'}",
        f"  verdict: {row['verdict']}" + (f" ({row['severity']})" if row["severity"] else "")
        + f", given by policy {row['policy_version']}",
    ]
    if row["policy_version"] != engine.version:
        lines.append(f"  note: the policy has changed since (now {engine.version}); what follows is the current "
                     "policy's reading")
    waived_rules = {r for w in policy.waivers if w.id in (row["waiver_ids"] or []) for r in w.rules}
    for i, rule in enumerate(policy.rules):
        matched = values[f"r{i}"]
        if only_matched and not matched:
            continue
        state = "waived" if matched and rule.id in waived_rules else "matched" if matched else "did not match"
        lines.append(f"Rule {rule.id} ({', '.join(rule.clauses)}, {rule.severity.value}): {state}")
        if matched:
            lines.append(f"  \"{rule.message}\"")
        lines += _condition_lines(rule.when, f"r{i}", values, row | windows, "    ")
    lines += _waiver_lines(engine, covered, row)
    return "\n".join(lines)


def _condition_lines(cond: Condition, path: str, values: dict[str, bool], row: dict, indent: str) -> list[str]:
    out = []
    for field, wanted in cond.leaves():
        ok = values[f"{path}.{field.key}"]
        column = field.column
        seen = "" if column is None else f" ({column.replace('_', ' ')}: {shown(row.get(column))})"
        out.append(f"{indent}{'yes' if ok else 'no '} {field.says(wanted)}{seen}")
    for name in ("all", "any"):
        children = getattr(cond, name) or ()
        if children:
            out.append(f"{indent}{'yes' if values[path] else 'no '} {name} of:")
            for i, child in enumerate(children):
                out += _condition_lines(child, f"{path}.{name}{i}", values, row, indent + "  ")
    if cond.not_ is not None:
        inner = values[f"{path}.not"]
        out.append(f"{indent}{'yes' if not inner else 'no '} not:")
        out += _condition_lines(cond.not_, f"{path}.not", values, row, indent + "  ")
    return out


def _waiver_lines(engine: Engine, covered: tuple, row: dict) -> list[str]:
    waivers = engine.policy.waivers
    if not waivers:
        return ["Waivers: the policy has none"]
    out = ["Waivers:"]
    for j, w in enumerate(waivers):
        if w.id in (row["waiver_ids"] or []):
            why = f"applied (granted by {w.granted_by}: {w.reason})"
        elif not covered[j]:
            who = set(w.users) | {f"group {g}" for g in w.groups}
            why = (f"does not cover this activity: it is for {', '.join(sorted(who))}, "
                   f"{w.start:%Y-%m-%d %H:%M} to {w.end:%Y-%m-%d %H:%M} local")
        else:
            why = f"covers the person and time, but lifts only {', '.join(w.rules)}, which did not match"
        out.append(f"  {w.id}: {why}")
    return out
