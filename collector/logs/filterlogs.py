"""Web-filter logs: e2guardian (and DansGuardian before it) and squidGuard, one line at a time.

e2guardian writes one line per request in the format its `logfileformat` option names; the layouts
below follow its log writer (`log_listener` in FatController.cpp, DansGuardian's and e2guardian's):
- format 1, "DansGuardian format": fields separated by single spaces, in the order
  when who from where what how size weight category group code mimetype clienthost groupname
  useragent params logid1 logid2 postdata (e2guardian, and DansGuardian from 2.12). DansGuardian 2.10
  ends after `useragent`; 2.9 after `groupname`; 2.8 and before after `size`. `when` is local time
  `YYYY.M.D H:MM:SS` (DansGuardian does not zero-pad month, day and hour; e2guardian 5 does), followed
  by ` SECONDS.MILLIS` when `logtimestamp` is on. `what`, the category and the user agent may hold
  spaces, so the line is read around the fields that cannot: the method, size and weight after
  `what`; group number, HTTP code, MIME type, client host and group name after the category; the
  four last fields after the user agent (a DansGuardian 2.10 user agent of five words or more cannot
  be told from e2guardian's user agent and four fields: its last four words are taken for them). A line
  of 2.8 is read from its end: the method and size are its last two fields.
- format 2, CSV: the same fields, each in double quotes, separated by commas; format 4: the same, separated
  by tabs. Both read the fields a line has, at least the seven of 2.8.
- format 3 is Squid's native layout (`collector.logs.squid` reads it).
A field the writer has no value for is empty: two spaces in a row in format 1 (an allowed request's `what`
and category in DansGuardian and e2guardian 3, an unresolved client host, a filter group without a
`groupname`, the user and client host `anonymizelogs` blanks). e2guardian 4 and 5 write most of them as
`-`. A refused request's `what` starts with `*DENIED` (`*DENIED* Banned site: ...`; `*DENIED-POST*`,
`*DENIED-PARAMS*`), an exception with `*EXCEPTION*`.

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
# Only the user, the MIME type, the client host and the group name of these may be empty.
_E2G_HEAD = re.compile(_WHEN + r" (?P<who>\S*) (?P<from>\S+) (?P<where>\S+) ")
_E2G_MIDDLE = re.compile(r" (?P<how>[A-Z]+) (?P<size>-?\d+) (?P<weight>-?\d+) ")
_E2G_TAIL = re.compile(r" (?P<group>\d+) (?P<code>\d{3}) (?P<mime>\S*) (?P<clienthost>\S*) (?P<groupname>\S*)(?= |$)")
_E2G_HOW = re.compile(r"[A-Z]+")
_E2G_SIZE = re.compile(r"-?\d+")
_E2G_TRIES = 16
"""How many candidate ends of `what` are tried before a line is refused: a bound, so that a hostile line
costs a few scans of its length, never its length squared."""
_E2G_TIME = r"\d{4}\.\d{1,2}\.\d{1,2} \d{1,2}:\d{2}:\d{2}(?: \d+\.\d{3})?"
_E2G_CSV_START = re.compile(r'^"' + _E2G_TIME + r'","')
_E2G_TAB_START = re.compile(r"^" + _E2G_TIME + r"\t")
_E2G_FIELDS = ("when", "who", "from", "where", "what", "how", "size", "weight", "cat", "group", "code", "mime",
               "clienthost", "groupname", "useragent")
"""Formats 2 and 4 by position (the fields after the user agent are not read)."""
_E2G_FEWEST = 7
"""DansGuardian 2.8's fields, up to the size: the fewest a line of formats 2 and 4 has."""
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
    """The observation for one e2guardian request, from its fields by name (those after the size may be
    missing: DansGuardian 2.8 wrote none of them)."""
    when = f["when"] or ""
    m = re.fullmatch(_WHEN, when)
    if m is None:
        raise ValueError(f"bad time: {when[:40]!r}")
    ts_us = seconds_to_us(float(m["stamp"])) if m["stamp"] else _local(m["date"], m["clock"], tz)
    client, method, url = f["from"] or "", f["how"] or "", f["where"] or ""
    if not is_address(client):
        raise ValueError(f"bad client address: {client[:40]!r}")
    code, size = f.get("code"), f["size"] or ""
    if (code is not None and not code.isdigit()) or not size.lstrip("-").isdigit():
        raise ValueError(f"bad code or size: {(code or '')[:10]!r} {size[:20]!r}")
    what = _value(f["what"])
    action = "DENIED" if what and what.startswith("*DENIED") else "EXCEPTION" if what and what.startswith(
        "*EXCEPTION*") else None
    host, port = host_port(url)
    status = int(code) or None if code else None
    content_type = (_value(f.get("mime")) or "").lower() or None
    return Observation(
        ts_us, "proxy", "e2guardian", source_ref, client, None, None, port, "tcp", host=host, url=url,
        method=method, status=status, content_type=content_type, file_ext=file_ext(url, content_type),
        user_agent=_value(f.get("useragent")), bytes_in=max(int(size), 0), proxy_user=_value(f["who"]),
        proxy_action=action, denied=refused(action, status), filter_category=_value(f.get("cat")), filter_reason=what,
    )


def _native_fields(line: str) -> dict[str, str | None] | None:
    """The fields of an e2guardian format-1 line (`what` and `cat` the shortest that fit, as a lazy match
    would take them; `rest` what follows `groupname`), or None when the line is not one."""
    head = _E2G_HEAD.match(line)
    if head is None:
        return None
    fields = _full_fields(line, head) or _short_fields(line, head)
    if fields is not None:
        fields["when"] = line[: head.end("stamp") if head["stamp"] else head.end("clock")]
    return fields


def _short_fields(line: str, head: re.Match[str]) -> dict[str, str | None] | None:
    """The fields of a DansGuardian 2.8 format-1 line, which ends with the method and size (`what`, which may
    hold spaces or be empty, before them), or None."""
    what_how_size = line[head.end():].rsplit(" ", 2)
    if len(what_how_size) != 3 or not _E2G_HOW.fullmatch(what_how_size[1]) or not _E2G_SIZE.fullmatch(
            what_how_size[2]):
        return None
    return {**head.groupdict(), **dict(zip(("what", "how", "size"), what_how_size, strict=True))}


def _full_fields(line: str, head: re.Match[str]) -> dict[str, str | None] | None:
    """The fields of a format-1 line of DansGuardian 2.9 or later, or None."""
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
            return fields
        at = middle.start() + 1
    return None


def parse_e2guardian(line: str, source_ref: str, tz: ZoneInfo) -> Observation:
    """Parse one e2guardian format-1 (space-separated) line."""
    fields = _native_fields(line.rstrip("\r\n"))
    if fields is None:
        raise ValueError(f"not an e2guardian format 1 line: {line[:60]!r}")
    rest = fields.get("rest")
    if rest is not None:  # useragent params logid1 logid2 postdata; DansGuardian 2.10: the user agent alone
        after = rest.rsplit(" ", 4)
        fields["useragent"] = after[0] if len(after) == 5 else rest
    return _e2guardian(fields, source_ref, tz)


def parse_e2guardian_csv(line: str, source_ref: str, tz: ZoneInfo) -> Observation:
    """Parse one e2guardian format-2 (CSV) line."""
    try:
        row = next(csv.reader([line.rstrip("\r\n")]), [])
    except csv.Error as exc:  # a stray line break or quote inside the line
        raise ValueError(f"not an e2guardian CSV line: {exc}") from None
    return _by_position(row, "CSV", source_ref, tz)


def parse_e2guardian_tab(line: str, source_ref: str, tz: ZoneInfo) -> Observation:
    """Parse one e2guardian format-4 (tab-separated) line."""
    return _by_position(line.rstrip("\r\n").split("\t"), "tab-separated", source_ref, tz)


def _by_position(row: list[str], layout: str, source_ref: str, tz: ZoneInfo) -> Observation:
    """The observation of a line of format 2 or 4, from its fields in order."""
    if len(row) < _E2G_FEWEST:
        raise ValueError(f"e2guardian {layout} line has {len(row)} fields, at least {_E2G_FEWEST} expected")
    return _e2guardian(dict(zip(_E2G_FIELDS, row, strict=False)), source_ref, tz)


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


def looks_like_e2guardian_tab(line: str) -> bool:
    """Whether `line` starts as an e2guardian format-4 line does: an e2guardian time and a tab."""
    return _E2G_TAB_START.match(line) is not None


def looks_like_e2guardian(line: str) -> bool:
    """Whether `line` is laid out as an e2guardian format-1 line."""
    return _native_fields(line.rstrip("\r\n")) is not None


def looks_like_squidguard(line: str) -> bool:
    """Whether `line` is laid out as a line of squidGuard's request log."""
    return _SQUIDGUARD.match(line.rstrip("\r\n")) is not None
