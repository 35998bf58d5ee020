"""Squid access-log parsing, native format (`logformat squid`).

A native line is: time (seconds.millis) elapsed(ms) client action/status bytes method URL user
hierarchy/peer content-type. Pure: one line in, one Observation out, `ValueError` naming the field for a
line that is not in this format. The caller (the source) adds file and line number.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from collector.observation import Observation

_IP = re.compile(r"^[0-9a-fA-F:.]+$")


def parse_line(line: str, source_ref: str) -> Observation:
    """Parse one native-format line into a `proxy` Observation."""
    f = line.split()
    if len(f) < 10:
        raise ValueError(f"squid line has {len(f)} fields, native format has 10")
    ts_text, elapsed, client, action_status, size, method, url, user, hierarchy, ctype = f[:10]
    try:
        ts_us = round(float(ts_text) * 1_000_000)
    except ValueError:
        raise ValueError(f"bad time: {ts_text[:32]!r}") from None
    action, sep, status = action_status.partition("/")
    if not sep or not status.isdigit():
        raise ValueError(f"bad action/status: {action_status[:40]!r}")
    if not size.isdigit() or not elapsed.lstrip("-").isdigit():
        raise ValueError(f"bad size or elapsed: {size[:20]!r} {elapsed[:20]!r}")
    if not _IP.match(client):
        raise ValueError(f"bad client address: {client[:40]!r}")
    host, port = _host_port(method, url)
    peer = hierarchy.partition("/")[2]
    return Observation(
        ts_us, "proxy", "squid", source_ref, client, None, peer if _IP.match(peer) else None, port, "tcp",
        host=host, url=url, method=method, status=int(status) or None,
        content_type=None if ctype == "-" else ctype.lower(), bytes_in=int(size),
        duration_s=max(int(elapsed), 0) / 1000, proxy_user=None if user == "-" else user,
        proxy_action=action, denied="DENIED" in action,
    )


def _host_port(method: str, url: str) -> tuple[str | None, int | None]:
    if url.startswith("error:"):  # Squid's pseudo-URL for a transaction that never became a request
        return None, None
    if method == "CONNECT" or "://" not in url:
        host, _, port = url.rpartition(":")
        if not host:
            return url.lower() or None, None
        return host.strip("[]").lower(), int(port) if port.isdigit() else None
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    default = {"http": 80, "https": 443, "ftp": 21}.get(parts.scheme)
    return (parts.hostname or None), port or default


def looks_like_squid(line: str) -> bool:
    """True when a line parses as native Squid format (used to detect the input type)."""
    try:
        parse_line(line, "")
    except ValueError:
        return False
    return True
