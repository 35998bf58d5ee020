"""Squid access logs written with a custom `logformat`: the definition, compiled into a line parser.

A school's squid.conf may log with its own `logformat NAME SPEC` (to add the User-Agent, the TLS server
name or the client port, say). Given the same SPEC, `LogFormat` reads those lines. The SPEC is read as
Squid reads it (squid.conf's `logformat` documentation): literal text, and codes of the form
`%[modifiers][width][{argument}]code[{argument}]`, where the modifiers are a quoting character
(`"`, `[`, `'`, `#`, `/`), `-` (left-align) and a leading `0` on the width (zero-pad); a code may be
spelt with Squid's `http::` prefix (`%http::>st`).

Each code becomes a capture group that runs up to the literal text that follows it in the SPEC (a code
followed by a space cannot hold one; one followed by `"` holds anything up to the quote; the last code
takes the rest of the line), with leading spaces allowed where a width pads the value. The times `%tl`
and `%tg` (`16/Jun/2026:09:05:01 +0100`, a space inside) are read by their shape. Codes the
Observation has no field for are matched and ignored. Built-in names `squid`, `common` and `combined`
stand for Squid's own definitions of those formats.
"""

from __future__ import annotations

import datetime as dt
import re

from collector.filetypes import file_ext
from collector.logs.refusal import refused
from collector.logs.squid import host_port, is_address
from collector.observation import Observation

BUILT_IN = {
    "squid": "%ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt",
    "common": '%>a %[ui %[un [%tl] "%rm %ru HTTP/%rv" %>Hs %<st %Ss:%Sh',
    "combined": '%>a %[ui %[un [%tl] "%rm %ru HTTP/%rv" %>Hs %<st "%{Referer}>h" "%{User-Agent}>h" %Ss:%Sh',
}
"""Squid's predefined formats (squid.conf `logformat` documentation)."""
RECOMMENDED = BUILT_IN["squid"] + " %>st"
"""The SPEC docs/log-formats.md asks a school to log with: Squid's native fields (the reply size `%<st`
among them), then the request size `%>st`, without which no upload through the proxy can be seen."""

# Longest first, so that `>Hs` is not read as `>h` followed by text.
_CODES = sorted([
    ">a", ">A", ">p", "<a", "<A", "<p", "la", "lp", ">la", ">lp", "<la", "<lp", "ts", "tu", "tl", "tg", "tr", "tt",
    "tS", "dt", "<pt", "<tt", "Ss", "Sh", ">Hs", "<Hs", "<st", ">st", "st", "<bs", ">bs", "rm", "ru", "rp", "rv",
    ">rm", ">ru", ">rv", "<rm", "<ru", "<rv", "un", "ul", "ui", "us", "ue", "mt", ">h", "<h", ">ha", "ea", "et",
    "sn", "rG", "err_code", "err_detail", "note", "ssl::>sni", "ssl::>cert_subject", "%",
], key=len, reverse=True)
_CODE = re.compile(
    r"%(?P<quote>[\"\['#/]?)(?P<left>-?)(?P<zero>0?)(?P<width>\d*)(?:\.\d+)?(?:\{(?P<arg1>[^}]*)\})?"
    r"(?:http::)?(?P<code>" + "|".join(re.escape(c) for c in _CODES) + r")(?:\{(?P<arg2>[^}]*)\})?"
)
_USER_CODES = ("un", "ul", "ue", "us", "ui")  # first one present names the user, in this order
_SQUID_TIME = "%d/%b/%Y:%H:%M:%S %z"


class LogFormatError(ValueError):
    """A SPEC this parser cannot use (it names no client address or no time)."""


class LogFormat:
    """A compiled `logformat` SPEC: `parse(line, source_ref)` gives a `proxy` Observation."""

    def __init__(self, spec: str) -> None:
        self.spec = BUILT_IN.get(spec, spec)
        self.built_in = self.spec in BUILT_IN.values()
        """Whether the SPEC is one of Squid's predefined formats (which have readers of their own)."""
        pattern, self._groups = _compile(self.spec)
        self._regex = re.compile(pattern)
        codes = set(self._groups.values())
        self.request_sizes = ">st" in codes
        """Whether lines carry the request size (`%>st`): what an upload through the proxy is seen by."""
        if ">a" not in codes:
            raise LogFormatError(f"logformat {spec!r} has no %>a (client address): lines could not be attributed")
        if not codes & {"ts", "tl", "tg"}:
            raise LogFormatError(f"logformat {spec!r} has no %ts, %tl or %tg: lines would have no time")

    def parse(self, line: str, source_ref: str) -> Observation:
        """Parse one line written with this format."""
        m = self._regex.match(line.rstrip("\r\n"))
        if m is None:
            raise ValueError(f"line does not follow the logformat: {line[:60]!r}")
        v: dict[str, str] = {}
        for group, code in self._groups.items():
            text = m[group].strip()
            if text.startswith('"') and text.endswith('"') and len(text) >= 2:
                text = text[1:-1]
            if text not in ("", "-"):
                v.setdefault(code, text)
        client = v.get(">a", "")
        if not is_address(client):
            raise ValueError(f"bad client address: {client[:40]!r}")
        method, url = v.get("rm", ""), v.get("ru") or v.get("rp", "")
        host, port = host_port(url)
        action = v.get("Ss")
        status = _number(v.get(">Hs") or v.get("<Hs"), "status")
        elapsed = _number(v.get("tr"), "response time")
        server = v.get("<a", "")
        content_type = v["mt"].lower() if "mt" in v else None
        return Observation(
            _time(v), "proxy", "squid", source_ref, client, _number(v.get(">p"), "client port"),
            server if is_address(server) else None, port, "tcp", host=host or v.get("ssl::>sni") or v.get("host"),
            url=url or None, method=method or None, status=status or None, user_agent=v.get("user-agent"),
            content_type=content_type, file_ext=file_ext(url, content_type),
            bytes_in=_number(v.get("<st"), "reply size"),
            bytes_out=_number(v.get(">st"), "request size"),
            duration_s=max(elapsed, 0) / 1000 if elapsed is not None else None,
            proxy_user=next((v[c] for c in _USER_CODES if c in v), None), proxy_action=action,
            denied=refused(action, status or None), sni=v.get("ssl::>sni"),
        )


def _compile(spec: str) -> tuple[str, dict[str, str]]:
    """The line regex for a SPEC and, per capture group, the code it holds (request headers by name)."""
    parts: list[str | re.Match[str]] = []
    pos = 0
    for m in _CODE.finditer(spec):
        if m.start() > pos:
            parts.append(spec[pos : m.start()])
        parts.append(m)
        pos = m.end()
    if pos < len(spec):
        parts.append(spec[pos:])
    pattern, groups = "^", {}
    for i, part in enumerate(parts):
        if isinstance(part, str):
            pattern += " +".join(re.escape(chunk) for chunk in part.split(" ")) if part.strip() else " +"
            continue
        if part["code"] == "%":  # `%%` is a literal percent sign
            pattern += "%"
            continue
        following = parts[i + 1] if i + 1 < len(parts) else None
        if part["code"] in ("tl", "tg") and not part["arg1"] and not part["arg2"]:
            value = r"\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}"  # holds a space: read by its shape
        elif isinstance(following, str) and following and following[0] != " ":
            value = f"[^{re.escape(following[0])}]*"  # up to the literal that follows
        elif following is None:
            value = ".*"
        else:
            value = r"\S*" if part["quote"] != '"' else r'"(?:[^"\\]|\\.)*"'
        group = f"f{i}"
        groups[group] = _field_name(part)
        pattern += (" *" if part["width"] and not part["left"] else "") + f"(?P<{group}>{value})"
    return pattern + "$", groups


def _field_name(m: re.Match[str]) -> str:
    """The code a group holds; a request header (`%{Name}>h`) is named by its lower-cased header name."""
    code = m["code"]
    arg = m["arg1"] or m["arg2"]
    return arg.lower() if code == ">h" and arg else code


def _number(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"bad {what}: {text[:20]!r}") from None


def _time(v: dict[str, str]) -> int:
    """Microseconds since the epoch from `%ts` (with `%tu` milliseconds), `%tl` or `%tg`."""
    try:
        if "ts" in v:
            return int(v["ts"]) * 1_000_000 + int(v.get("tu", "0")) * 1000
        text = v.get("tl") or v.get("tg", "")
        return int(dt.datetime.strptime(text, _SQUID_TIME).timestamp() * 1_000_000)
    except ValueError:
        raise ValueError(f"bad time: {(v.get('ts') or v.get('tl') or v.get('tg') or '')[:40]!r}") from None

