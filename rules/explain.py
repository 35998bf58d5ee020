"""Why an activity got its verdict, in words, read two ways.

`explain` is the whole reading for the network manager (`ictwatch explain`): the activity, each rule of the
policy and each condition of it with what the activity showed, the identity evidence, and every waiver of
the policy, which applied or why it did not (a policy tool: the waivers are the policy file's, which the
network manager keeps).

`for_report` is what a person's report says about one of their breaches, for a headteacher: what happened
(a request the school's filter refused was tried, not made), then each rule that matched, by its clause and
message, and why it matched in sentences; of the waivers, only the person's own (given to them or to one
of their groups), never whom they were given by: a report names nobody but its subject, the requester and
the line manager.

The explanation is computed, not remembered: the stored activity goes back through the same compiled
expressions the engine used (the calendar windows are worked out again from its time), every node of
every rule's condition evaluated as its own column. When the policy has changed since the verdict was
given, the explanation says so: it describes the current policy's reading.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl

from collector.endpoints import endpoint
from collector.packet.p2p import DHT_QUERIES
from rules.engine import LOGIN_CHALLENGE, Engine, compile_condition, rule_matches, with_windows
from rules.fields import FIELDS, Seen, shown
from rules.policy import Condition, Rule
from rules.waivers import Waiver, missed, parts, runs, scope
from rules.windows import amount_said


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


@dataclass(frozen=True, slots=True)
class _Reading:
    """One activity as the current policy reads it."""

    seen: Seen
    """The stored row, with the calendar windows."""
    values: dict[str, bool]
    """Each node of each rule's condition (`_checks`' paths): whether it holds."""
    waivers: tuple[dict[str, bool], ...]
    """For each waiver of the policy: each part it sets (rules/waivers.py) → whether it holds."""
    activity: pl.DataFrame
    """The stored row itself (one row), for the window rules' read-back of the records that add up."""


def _readings(engine: Engine, activities: pl.DataFrame) -> list[_Reading]:
    """Every row of `activities` read, each condition evaluated once over all of them."""
    policy = engine.policy
    df = with_windows(activities, policy)
    checks = {path: check for i, rule in enumerate(policy.rules) for path, check in _checks(rule.when, f"r{i}")}
    checks |= {f"r{i}": rule_matches(rule.when) for i, rule in enumerate(policy.rules)}  # what the engine judged
    checks["challenge"] = LOGIN_CHALLENGE
    values = df.select(**checks) if checks else None
    windows = df.select("school_day", "restricted_hours", "break", "personal_use_allowed")
    held = [df.select(**parts(w, policy.calendar.timezone, engine.groups)) for w in policy.waivers]
    return [_Reading(Seen(activities.row(k, named=True) | windows.row(k, named=True), policy),
                     values.row(k, named=True) if values is not None else {},
                     tuple(h.row(k, named=True) for h in held), activities[k : k + 1])
            for k in range(df.height)]


def _matched(engine: Engine, i: int, rule: Rule, reading: _Reading) -> bool:
    """Whether rule `i` matched the activity: its condition held and, for a rule over a window, the engine
    found this the record that took the window's total over (as the stored verdict says: which record did
    depends on what had been counted when it came)."""
    held = bool(reading.values[f"r{i}"])
    if rule.total is None or not held:
        return held
    row = reading.seen.row
    lifting = {w.id for w in engine.policy.waivers if rule.id in w.rules}
    return rule.id in (row["rule_ids"] or []) or bool(lifting & set(row["waiver_ids"] or []))


def _window_lines(engine: Engine, i: int, rule: Rule, reading: _Reading, matched: bool) -> list[str]:
    """The window's total and the records that add up to it, in time order, each with its amount and the
    running total; the record that took it over is marked."""
    total = rule.total
    assert total is not None
    records = engine.windows.records(i, reading.activity)
    if records is None:
        return [f"Total: {total.said()}; the records of this window cannot be read back now."]
    zone = engine.policy.calendar.timezone
    limit = total.limit()
    me = reading.seen.row["record_id"]
    over_at = records.filter(pl.col("_running") > limit).get_column("record_id").head(1).to_list()
    whole = float(records.get_column("_amount").sum())
    start = records.get_column("_bucket")[0]
    window = f"{start:%Y-%m-%d}" if total.length().days else f"{start:%Y-%m-%d %H:%M} + {total.window}"
    out = [f"Total: {total.said()}; the window {window} (local) comes to {amount_said(total, whole)}"
           + (", over" if whole > limit else ", not over") + f", from these {len(records)} records:"]
    for r in records.iter_rows(named=True):
        mark = ""
        if r["record_id"] == me:
            mark = "  <- this record" + (", whose arrival took the total over" if matched else "")
        elif over_at and r["record_id"] == over_at[0]:
            mark = "  <- the total went over here, in time order"
        out.append(f"  {r['ts'].astimezone(zoneinfo.ZoneInfo(zone)):%Y-%m-%d %H:%M:%S} {r['kind']} "
                   f"{r['host'] or r['site']} ({r['source_ref']}): {amount_said(total, r['_amount'])}, "
                   f"running total {amount_said(total, r['_running'])}{mark}")
    return out


def explain(engine: Engine, activity: pl.DataFrame, names: dict[str, str] | None = None) -> str:
    """The whole reading of one stored activity (a one-row frame from the `activity` table): every rule gone
    through, every waiver."""
    return explain_many(engine, activity, names)[0]


def explain_lines(engine: Engine, activity: pl.DataFrame, names: dict[str, str] | None = None) -> list[str]:
    """`explain` line by line. A value off the network may hold a newline of its own: a front end that
    escapes each line (`ictwatch explain`) shows it as one line still."""
    return _whole(engine, _readings(engine, activity)[0], names)


def explain_many(engine: Engine, activities: pl.DataFrame, names: dict[str, str] | None = None) -> list[str]:
    """`explain` for every row of `activities`, with every condition evaluated once over all of them."""
    return ["\n".join(_whole(engine, r, names)) for r in _readings(engine, activities)]


def for_report(engine: Engine, activities: pl.DataFrame) -> list[str]:
    """What a report says about each of its subject's rows in `activities`: the rules that matched and why,
    and the subject's own waivers among them."""
    return [_for_report(engine, r) for r in _readings(engine, activities)]


def _target(row: dict) -> str:
    """What the activity went to, as a sentence names it: the server's name, else its address."""
    return row["host"] or (endpoint(row["dst_ip"]) if row["dst_ip"] else "a server whose name was not seen")


_P2P_SAID = {"response": "a DHT response", "error": "a DHT error", "query": "a DHT query of a kind BEP 5 does not name",
             "connect": "a UDP tracker connect", "announce": "a UDP tracker announce"}


def _bittorrent(row: dict) -> str:
    """What a `p2p` activity was and the torrent it sought, in words; '' for any other kind."""
    if row["kind"] != "p2p":
        return ""
    method = row["method"] or ""
    said = f"a DHT {method} query" if method in DHT_QUERIES else _P2P_SAID.get(method, "BitTorrent traffic")
    sought = f"the torrent sought has the info-hash {row['info_hash']}" if row["info_hash"] else "no torrent named"
    return f"BitTorrent: {said}; {sought}"


def _refused(seen: Seen) -> str:
    return f"Tried to open {_target(dict(seen.row))} at {seen.clock()}; the school's filter refused it."


def _sentence(clause: str) -> str:
    return clause[:1].upper() + clause[1:] + ("" if clause.endswith(".") else ".")


def _whole(engine: Engine, reading: _Reading, names: dict[str, str] | None) -> list[str]:
    policy = engine.policy
    row, seen = dict(reading.seen.row), reading.seen
    local = seen.local()
    who = row["user"] or "unknown person"
    if row["user"] and names and row["user"] in names:
        who = f"{names[row['user']]} ({row['user']})"
    elif not row["user"] and row.get("responsible"):  # a device in someone's care: pupils', not theirs
        carer = row["responsible"]
        who = (f"no one identified: the device is in the care of {(names or {}).get(carer, carer)} ({carer}), "
               "not their own use")
    server = endpoint(row["dst_ip"], row["dst_port"]) if row["dst_ip"] else "not seen"
    client = endpoint(row["src_ip"], row["src_port"]) if row["src_ip"] else "not seen"
    lines = [
        f"Activity {row['source_ref']} ({row['kind']}) at {local:%Y-%m-%d %H:%M:%S %Z}",
        f"  who: {who}; role {shown(row['role'])}; identity evidence: {shown(row['identity_source'])} "
        f"(confidence {shown(row['identity_confidence'])})",
        f"  device: {row['device'] or 'unregistered'} ({shown(row['device_type'])}, {shown(row['device_owner'])}"
        f"{', private Wi-Fi address' if row['mac_randomised'] else ''}); place: {row['location'] or 'unknown'} "
        f"({shown(row['location_kind'])})",
        f"  host: {shown(row['host'])}; client {client}, server {server}; categories: {shown(row['categories'])}",
    ]
    if row["denied"]:
        lines.append(f"  {_refused(seen)}")
    if _bittorrent(row):
        lines.append(f"  {_bittorrent(row)}")
    if reading.values.get("challenge"):
        lines.append("  The proxy asked for a login here; the browser sends the same request again with it, so no "
                     "rule judges this line.")
    lines += [
        f"  time: {_windows_said(seen)}",
        f"  {_sentence(_FIELD['personal_use_allowed'].finding(None, True, seen))}",
        f"  verdict: {row['verdict']}" + (f" ({row['severity']})" if row["severity"] else "")
        + f", given by policy {row['policy_version']}",
    ]
    if row["policy_version"] != engine.version:
        lines.append(f"  note: the policy has changed since (now {engine.version}); what follows is the current "
                     "policy's reading")
    waived_rules = {r for w in policy.waivers if w.id in (row["waiver_ids"] or []) for r in w.rules}
    for i, rule in enumerate(policy.rules):
        matched = _matched(engine, i, rule, reading)
        state = "waived" if matched and rule.id in waived_rules else "matched" if matched else "did not match"
        lines.append(f"Rule {rule.id} ({', '.join(rule.clauses)}, {rule.severity.value}): {state}")
        if matched:
            lines.append(f"  \"{rule.message}\"")
        lines += _condition_lines(rule.when, f"r{i}", reading, "    ")
        if rule.total is not None and reading.values[f"r{i}"]:
            lines += ["    " + line for line in _window_lines(engine, i, rule, reading, matched)]
    lines += _waiver_lines(engine, reading)
    return lines


_FIELD = {f.key: f for f in FIELDS}


def _windows_said(seen: Seen) -> str:
    """The calendar's reading of the activity's time: school day, restricted hours, break."""
    return "; ".join(_FIELD["window"].finding((w,), bool(seen.row[w]), seen)
                     for w in ("school_day", "restricted_hours", "break"))


_MARK = {True: "yes", False: "no "}


def _condition_lines(cond: Condition, path: str, reading: _Reading, indent: str) -> list[str]:
    """Each key of `cond` with what the activity showed, then its `all`, `any` and `not`, nested."""
    out = []
    for field, wanted in cond.leaves():
        held = reading.values[f"{path}.{field.key}"]
        out.append(f"{indent}{_MARK[held]} {field.finding(wanted, held, reading.seen)}")
    for name, words in (("all", "all of these hold:"), ("any", "at least one of these holds:")):
        children = getattr(cond, name) or ()
        if children:
            out.append(f"{indent}{_MARK[reading.values[path]]} {words}")
            for i, child in enumerate(children):
                out += _condition_lines(child, f"{path}.{name}{i}", reading, indent + "  ")
    if cond.not_ is not None:
        out.append(f"{indent}{_MARK[not reading.values[f'{path}.not']]} this does not hold:")
        out += _condition_lines(cond.not_, f"{path}.not", reading, indent + "  ")
    return out


def _why(cond: Condition, path: str, reading: _Reading, want: bool = True) -> list[str]:
    """The findings that make `cond` come out `want` (true: every part held, of an `any` the members that
    held; false: the parts that failed, of an `any` every member): the reasons, and only those."""
    out = []
    for field, wanted in cond.leaves():
        held = reading.values[f"{path}.{field.key}"]
        if held == want:
            out.append(field.finding(wanted, held, reading.seen))
    for i, child in enumerate(cond.all or ()):
        child_path = f"{path}.all{i}"
        if reading.values[child_path] == want:
            out += _why(child, child_path, reading, want)
    for i, child in enumerate(cond.any or ()):
        child_path = f"{path}.any{i}"
        if reading.values[child_path] == want:
            out += _why(child, child_path, reading, want)
    if cond.not_ is not None and reading.values[f"{path}.not"] != want:
        out += _why(cond.not_, f"{path}.not", reading, not want)
    return out


def _own(waiver: Waiver, row: dict) -> bool:
    """The waiver is the activity's person's: given to them by name or to one of their groups, or, given
    to nobody by name, to the device they used."""
    if not waiver.users and not waiver.groups:
        return row["device"] in waiver.devices
    return bool(row["user"]) and (row["user"] in waiver.users or bool(set(waiver.groups) & set(row["groups"] or ())))


def _for_report(engine: Engine, reading: _Reading) -> str:
    policy = engine.policy
    row, seen = dict(reading.seen.row), reading.seen
    lines = []
    if row["denied"]:
        lines.append(_refused(seen))
    if _bittorrent(row):
        lines.append(_sentence(_bittorrent(row)))
    if row["policy_version"] != engine.version:
        lines.append("The policy has changed since this was judged: what follows is the current policy's reading.")
    applied = set(row["waiver_ids"] or ())
    waived_rules = {r for w in policy.waivers if w.id in applied for r in w.rules}
    matched = []
    for i, rule in enumerate(policy.rules):
        if not _matched(engine, i, rule, reading):
            continue
        matched.append(rule.id)
        lifted = " (lifted by a waiver)" if rule.id in waived_rules else ""
        lines.append(f"{', '.join(rule.clauses)} ({rule.severity.value}), rule {rule.id}{lifted}: "
                     f"{_sentence(rule.message)}")
        lines.append("Why: " + " ".join(_sentence(s) for s in _why(rule.when, f"r{i}", reading)))
        if rule.total is not None:
            lines += _window_lines(engine, i, rule, reading, True)
    for w, held in zip(policy.waivers, reading.waivers, strict=True):
        if not _own(w, row):
            continue  # another person's permission is not this report's to tell
        if w.id in applied:
            lines.append(f"Waiver {w.id} applied: {_sentence(w.reason)} It runs {runs(w)}.")
        elif set(w.rules) & set(matched):  # the subject's, for a rule that matched: why it did not cover this
            lines.append(f"Waiver {w.id} did not apply: it runs {runs(w)}."
                         + "".join(f" {_sentence(m)}" for m in missed(w, held, seen)))
    return "\n".join(lines)


def _waiver_lines(engine: Engine, reading: _Reading) -> list[str]:
    waivers = engine.policy.waivers
    if not waivers:
        return ["Waivers: the policy has none"]
    row = reading.seen.row
    out = ["Waivers:"]
    for w, held in zip(waivers, reading.waivers, strict=True):
        if w.id in (row["waiver_ids"] or []):
            why = f"applied (granted by {w.granted_by}: {w.reason}); it covers {scope(w)}"
        elif not all(held.values()):
            why = f"does not cover this activity: it is for {scope(w)}; " + "; ".join(missed(w, held, reading.seen))
        else:
            why = (f"covers this activity ({scope(w)}), but lifts only {', '.join(w.rules)}, which did not match "
                   f"(granted by {w.granted_by}: {w.reason})")
        out.append(f"  {w.id}: {why}")
    return out
