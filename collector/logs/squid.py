"""Squid access-log parsing: native format (`logformat squid`) and common/combined (`common`, `combined`).

A native line is: time (seconds.millis) elapsed(ms) client action/status bytes method URL user
hierarchy/peer content-type. A common line is the httpd layout: client ident user [time] "method URL
protocol" status bytes action:hierarchy; combined adds "referer" "user-agent" before action:hierarchy.
Pure: one line in, one Observation out, `ValueError` naming the field for a line that is not in its
format. The caller (the source) adds file and line number.
"""

from __future__ import annotations

import datetime
import re
from urllib.parse import urlsplit

from collector.filetypes import file_ext
from collector.logs.refusal import refused
from collector.observation import Observation, seconds_to_us

BAD_SQUID_LINE = "bad_squid_line"
"""The skip reason of a line that is not in Squid's native format (this line parser's and the vectorised
one's, collector/logs/squid_batch.py)."""

_IP = re.compile(r"^[0-9a-fA-F:.]+$")
_TS = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)$")


def is_address(text: str) -> bool:
    """Whether `text` looks like an IPv4 or IPv6 address (digits, hex, dots and colons only)."""
    return _IP.match(text) is not None


def parse_line(line: str, source_ref: str) -> Observation:
    """Parse one native-format line into a `proxy` Observation."""
    f = line.split()
    if len(f) < 10:
        raise ValueError(f"squid line has {len(f)} fields, native format has 10")
    ts_text, elapsed, client, action_status, size, method, url, user, hierarchy, ctype = f[:10]
    if not _TS.match(ts_text):  # seconds.millis: not `inf`, `nan` or `1e9`, which float() would take
        raise ValueError(f"bad time: {ts_text[:32]!r}")
    ts_us = seconds_to_us(float(ts_text))
    action, sep, status = action_status.partition("/")
    if not sep or not status.isdigit():
        raise ValueError(f"bad action/status: {action_status[:40]!r}")
    if not size.isdigit() or not elapsed.lstrip("-").isdigit():
        raise ValueError(f"bad size or elapsed: {size[:20]!r} {elapsed[:20]!r}")
    if not _IP.match(client):
        raise ValueError(f"bad client address: {client[:40]!r}")
    host, port = host_port(url)
    peer = hierarchy.partition("/")[2]
    code = int(status) or None
    content_type = None if ctype == "-" else ctype.lower()
    return Observation(
        ts_us, "proxy", "squid", source_ref, client, None, peer if _IP.match(peer) else None, port, "tcp",
        host=host, url=url, method=method, status=code, content_type=content_type,
        file_ext=file_ext(url, content_type), bytes_in=int(size),
        duration_s=max(int(elapsed), 0) / 1000, proxy_user=None if user == "-" else user,
        proxy_action=action, denied=refused(action, code),
    )


def host_port(url: str) -> tuple[str | None, int | None]:
    """Host and port a proxy request was for: from a CONNECT's `host:port`, or from the URL (its scheme's
    default port when it names none)."""
    if url.startswith("error:"):  # Squid's pseudo-URL for a transaction that never became a request
        return None, None
    if "://" not in url:  # authority form (a CONNECT's host:port) or a bare host
        host, _, digits = url.rpartition(":")
        if not host:
            return url.lower() or None, None
        return host.strip("[]").lower(), int(digits) if digits.isdigit() else None
    parts = urlsplit(url)
    port: int | None
    try:
        port = parts.port
    except ValueError:
        port = None
    default = {"http": 80, "https": 443, "ftp": 21}.get(parts.scheme)
    return (parts.hostname or None), port or default


_COMMON = re.compile(
    r'^(?P<client>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<method>\S+) (?P<url>\S+)(?: [^"]*)?" '
    r'(?P<status>\d{3}) (?P<size>\d+|-)(?: "(?P<referer>[^"]*)" "(?P<agent>[^"]*)")?'
    r'(?: (?P<action>[A-Z_]+):(?P<hierarchy>\S+))?'
)


def parse_common_line(line: str, source_ref: str) -> Observation:
    """Parse one common or combined (httpd-style) Squid line into a `proxy` Observation."""
    m = _COMMON.match(line.strip())
    if m is None:
        raise ValueError(f"not a common/combined line: {line[:60]!r}")
    try:
        when = datetime.datetime.strptime(m["time"], "%d/%b/%Y:%H:%M:%S %z")
    except ValueError:
        raise ValueError(f"bad time: {m['time'][:40]!r}") from None
    if not _IP.match(m["client"]):
        raise ValueError(f"bad client address: {m['client'][:40]!r}")
    host, port = host_port(m["url"])
    action = m["action"] or None
    status = int(m["status"]) or None
    return Observation(
        int(when.timestamp() * 1_000_000), "proxy", "squid", source_ref, m["client"], None, None, port, "tcp",
        host=host, url=m["url"], method=m["method"], status=status, file_ext=file_ext(m["url"], None),
        user_agent=m["agent"] if m["agent"] not in (None, "-", "") else None,
        bytes_in=int(m["size"]) if m["size"] != "-" else None, proxy_user=None if m["user"] == "-" else m["user"],
        proxy_action=action, denied=refused(action, status),
    )
