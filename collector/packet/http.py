"""HTTP/1.x request and response head parsing.

Pure: the bytes at the start of a request or response in, the fields the policy needs out; `ValueError`
for bytes that are not one. Header names are matched case-insensitively; values are kept as sent
(decoded as Latin-1, which never fails) and are hostile input to whatever displays them.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import urlsplit

METHODS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT ", b"TRACE ")


class HttpRequest:
    """Request line and the headers that say where, what and with which software. Plain classes here, as
    the other parsers' results, so that the compiled build (mypyc) makes their constructors native."""

    __slots__ = ("method", "target", "host", "url", "user_agent", "auth_scheme", "basic_user", "file_ext")

    def __init__(self, method: str, target: str, host: str | None, url: str, user_agent: str | None,
                 file_ext: str | None) -> None:
        self.method, self.target, self.host, self.url, self.user_agent = method, target, host, url, user_agent
        self.auth_scheme: str | None = None
        """Authorization scheme (`Basic`, `Digest`, `Bearer`, ...)."""
        self.basic_user: str | None = None
        """The user name of Basic credentials, which travel readable (clause P2); never the password."""
        self.file_ext = file_ext


class HttpResponse:
    """Status line and Content-Type."""

    __slots__ = ("status", "content_type")

    def __init__(self, status: int, content_type: str | None) -> None:
        self.status, self.content_type = status, content_type


def is_request(payload: bytes) -> bool:
    """True when the payload starts with a known HTTP method and a space."""
    return payload.startswith(METHODS)


def _head(payload: bytes) -> tuple[str, dict[str, str]]:
    end = payload.find(b"\r\n\r\n")
    text = (payload if end < 0 else payload[:end]).decode("latin-1")
    first, _, rest = text.partition("\r\n")
    headers: dict[str, str] = {}
    for line in rest.split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers.setdefault(name.strip().lower(), value.strip())
    return first, headers


def parse_request(payload: bytes) -> HttpRequest:
    """Parse a request head; the URL is absolute (`http://host/path`), built from Host when needed."""
    first, headers = _head(payload)
    parts = first.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError(f"bad http request line: {first[:40]!r}")
    method, target, _version = parts
    host = headers.get("host")
    if target.startswith(("http://", "https://")):
        url = target
        host = host or urlsplit(target).netloc
    elif method == "CONNECT":
        url = target
        host = host or target
    else:
        url = f"http://{host or ''}{target}"
    if host:
        host = _strip_port(host.lower())
    req = HttpRequest(method, target, host, url, headers.get("user-agent"), _extension(target))
    auth = headers.get("authorization") or headers.get("proxy-authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        req.auth_scheme = scheme
        if scheme.lower() == "basic":
            req.basic_user = _basic_user(value)
    return req


def _extension(target: str) -> str | None:
    """`exe` for `/files/setup.EXE?x=1`; None when the last path segment has no extension."""
    path = urlsplit(target).path if "://" in target else target.split("?", 1)[0].split("#", 1)[0]
    name = path.rsplit("/", 1)[-1]
    ext = name.rpartition(".")[2].lower() if "." in name else ""
    return ext if 0 < len(ext) <= 8 and ext.isalnum() else None


def _basic_user(value: str) -> str | None:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None
    return decoded.partition(":")[0] or None


def parse_response(payload: bytes) -> HttpResponse:
    """Parse a response head: status code and Content-Type (parameters dropped)."""
    first, headers = _head(payload)
    parts = first.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"bad http status line: {first[:40]!r}")
    ctype = headers.get("content-type")
    return HttpResponse(int(parts[1]), ctype.split(";")[0].strip().lower() if ctype else None)


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() else host
