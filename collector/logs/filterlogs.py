"""Web-filter logs: e2guardian (and DansGuardian before it) and squidGuard, one line at a time.

e2guardian writes one line per request in the format its `logfileformat` option names; the layouts
below follow its log writer (`log_listener` in e2guardian's FatController.cpp):
- format 1, "DansGuardian format": fields separated by single spaces, in the order
  when who from where what how size weight category group code mimetype clienthost groupname
  useragent params logid1 logid2 postdata. `when` is local time `YYYY.M.D H:MM:SS` (month, day and
  hour not zero-padded), followed by ` SECONDS.MILLIS` when `logtimestamp` is on. `what`, the
  category and the user agent may hold spaces, so the line is read around the fields that cannot:
  the method, size and weight after `what`; group number, HTTP code, MIME type, client host and group
  name after the category; the four last fields after the user agent.
- format 2, CSV: the same fields, each in double quotes, separated by commas.
An empty field is written as `-`. A refused request's `what` starts with `*DENIED` (`*DENIED* Banned
site: ...`; `*DENIED-POST*`, `*DENIED-PARAMS*`), an exception with `*EXCEPTION*`.

squidGuard's request log (its `sgLogRequest`) writes
`YYYY-MM-DD HH:MM:SS [pid] Request(sourceclass/destclass/rewrite) URL ip/fqdn ident method action`,
local time, where action is REDIRECT (refused, sent to the block page), DENY, REWRITE or PASS (only
with `verbose`).

Pure: a line in, a `proxy` Observation out, `ValueError` for a line not in the format. Local times are
read in the zone given (the gateway's).
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from zoneinfo import ZoneInfo

from collector.filetypes import file_ext
from collector.logs.refusal import refused
from collector.logs.squid import host_port, is_address
from collector.observation import Observation, seconds_to_us

_WHEN = r"(?P<date>\d{4}\.\d{1,2}\.\d{1,2}) (?P<clock>\d{1,2}:\d{2}:\d{2})(?: (?P<stamp>\d+\.\d{3}))?"
# Format 1 is `when who from where what how size weight cat group code mime clienthost groupname [rest]`,
# where `what` (the actions) and `cat` (the categories) are free text with spaces. One pattern with two lazy
# `.*?` read it, but backtracked over a line that does not fit: 0.9 s for 8 KB, 15 s for 32 KB. It is read
# in three steps, each a linear scan: the head, then the first `how size weight` after it (the end of
# `what`), then the first `group code mime clienthost groupname` after that (the end of `cat`).
_E2G_HEAD = re.compile(_WHEN + r" (?P<who>\S+) (?P<from>\S+) (?P<where>\S+) ")
_E2G_MIDDLE = re.compile(r" (?P<how>[A-Z]+) (?P<size>-?\d+) (?P<weight>-?\d+) ")
_E2G_TAIL = re.compile(r" (?P<group>\d+) (?P<code>\d{3}) (?P<mime>\S+) (?P<clienthost>\S+) (?P<groupname>\S+)(?= |$)")
_E2G_TRIES = 16
"""How many candidate ends of `what` are tried before a line is refused: a bound, so that a hostile line
costs a few scans of its length, never its length squared."""
_E2G_CSV_START = re.compile(r'^"\d{4}\.\d{1,2}\.\d{1,2} \d{1,2}:\d{2}:\d{2}(?: \d+\.\d{3})?","')
_E2G_CSV_FIELDS = ("when", "who", "from", "where", "what", "how", "size", "weight", "cat", "group", "code", "mime",
                   "clienthost", "groupname", "useragent")
_SQUIDGUARD = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2}) (?P<clock>\d{2}:\d{2}:\d{2}) \[\d+\] Request\((?P<src>[^/]*)/(?P<dest>[^/]*)/"
    r"(?P<rewrite>[^)]*)\) (?P<url>\S+) (?P<ip>[^/\s]+)/(?P<fqdn>\S+) (?P<ident>\S+) (?P<method>\S+) "
    r"(?P<action>[A-Z?-]+)$"
)
_SQUIDGUARD_NO_CLASS = ("none", "unknown", "in-addr")  # written when no named destination class matched


def _local(date: str, clock: str, tz: ZoneInfo) -> int:
    """Microseconds since the epoch of a local `Y.M.D` or `Y-M-D` date and `H:MM:SS` time in `tz`."""
    year, month, day = (int(p) for p in re.split(r"[.-]", date))
    hour, minute, second = (int(p) for p in clock.split(":"))
    try:
        when = dt.datetime(year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError:
        raise ValueError(f"bad time: {date} {clock}") from None
    return int(when.timestamp()) * 1_000_000


def _value(text: str | None) -> str | None:
    return None if text in (None, "", "-") else text


def _e2guardian(f: dict[str, str | None], source_ref: str, tz: ZoneInfo) -> Observation:
    """The observation for one e2guardian request, from its fields by name."""
    when = f["when"] or ""
    m = re.fullmatch(_WHEN, when)
    if m is None:
        raise ValueError(f"bad time: {when[:40]!r}")
    ts_us = seconds_to_us(float(m["stamp"])) if m["stamp"] else _local(m["date"], m["clock"], tz)
    client, method, url = f["from"] or "", f["how"] or "", f["where"] or ""
    if not is_address(client):
        raise ValueError(f"bad client address: {client[:40]!r}")
    code, size = f["code"] or "", f["size"] or ""
    if not code.isdigit() or not size.lstrip("-").isdigit():
        raise ValueError(f"bad code or size: {code[:10]!r} {size[:20]!r}")
    what = _value(f["what"])
    action = "DENIED" if what and what.startswith("*DENIED") else "EXCEPTION" if what and what.startswith(
        "*EXCEPTION*") else None
    host, port = host_port(url)
    status = int(code) or None
    content_type = (_value(f["mime"]) or "").lower() or None
    return Observation(
        ts_us, "proxy", "e2guardian", source_ref, client, None, None, port, "tcp", host=host, url=url,
        method=method, status=status, content_type=content_type, file_ext=file_ext(url, content_type),
        user_agent=_value(f["useragent"]), bytes_in=max(int(size), 0), proxy_user=_value(f["who"]),
        proxy_action=action, denied=refused(action, status), filter_category=_value(f["cat"]), filter_reason=what,
    )


def _native_fields(line: str) -> dict[str, str | None] | None:
    """The fields of an e2guardian format-1 line (`what` and `cat` the shortest that fit, as a lazy match
    would take them; `rest` what follows `groupname`), or None when the line is not one."""
    head = _E2G_HEAD.match(line)
    if head is None:
        return None
    at = head.end()
    for _ in range(_E2G_TRIES):
        middle = _E2G_MIDDLE.search(line, at)
        if middle is None:
            return None
        tail = _E2G_TAIL.search(line, middle.end())
        if tail is not None:
            fields: dict[str, str | None] = {**head.groupdict(), **middle.groupdict(), **tail.groupdict()}
            fields["what"], fields["cat"] = line[head.end():middle.start()], line[middle.end():tail.start()]
            fields["rest"] = line[tail.end() + 1:] if tail.end() < len(line) else None
            fields["when"] = line[: head.end("stamp") if head["stamp"] else head.end("clock")]
            return fields
        at = middle.start() + 1
    return None


def parse_e2guardian(line: str, source_ref: str, tz: ZoneInfo) -> Observation:
    """Parse one e2guardian format-1 (space-separated) line."""
    fields = _native_fields(line.rstrip("\r\n"))
    if fields is None:
        raise ValueError(f"not an e2guardian format 1 line: {line[:60]!r}")
    rest = (fields["rest"] or "").rsplit(" ", 4)  # useragent params logid1 logid2 postdata
    fields["useragent"] = rest[0] if len(rest) == 5 else None
    return _e2guardian(fields, source_ref, tz)


def parse_e2guardian_csv(line: str, source_ref: str, tz: ZoneInfo) -> Observation:
    """Parse one e2guardian format-2 (CSV) line."""
    try:
        row = next(csv.reader([line.rstrip("\r\n")]), [])
    except csv.Error as exc:  # a stray line break or quote inside the line
        raise ValueError(f"not an e2guardian CSV line: {exc}") from None
    if len(row) < len(_E2G_CSV_FIELDS):
        raise ValueError(f"e2guardian CSV line has {len(row)} fields, format 2 has 19")
    return _e2guardian(dict(zip(_E2G_CSV_FIELDS, row, strict=False)), source_ref, tz)


def parse_squidguard(line: str, source_ref: str, tz: ZoneInfo) -> Observation:
    """Parse one line of squidGuard's request log."""
    m = _SQUIDGUARD.match(line.rstrip("\r\n"))
    if m is None:
        raise ValueError(f"not a squidGuard request line: {line[:60]!r}")
    if not is_address(m["ip"]):
        raise ValueError(f"bad client address: {m['ip'][:40]!r}")
    host, port = host_port(m["url"])
    action, dest = m["action"], m["dest"]
    return Observation(
        _local(m["date"], m["clock"], tz), "proxy", "squidguard", source_ref, m["ip"], None, None, port, "tcp",
        host=host, url=m["url"], method=_value(m["method"]), file_ext=file_ext(m["url"], None),
        proxy_user=_value(m["ident"]), proxy_action=action, denied=refused(action, None),
        filter_category=None if dest in _SQUIDGUARD_NO_CLASS else dest,
        filter_reason=f"{action} (source group {m['src']})",
    )


def looks_like_e2guardian_csv(line: str) -> bool:
    """Whether `line` starts as an e2guardian format-2 line does: a quoted e2guardian time and a comma."""
    return _E2G_CSV_START.match(line) is not None


def looks_like_e2guardian(line: str) -> bool:
    """Whether `line` is laid out as an e2guardian format-1 line."""
    return _native_fields(line.rstrip("\r\n")) is not None


def looks_like_squidguard(line: str) -> bool:
    """Whether `line` is laid out as a line of squidGuard's request log."""
    return _SQUIDGUARD.match(line.rstrip("\r\n")) is not None
