"""HTTP/1.x request and response head parsing.

Pure: the bytes at the start of a request or response in, the fields the policy needs out; `ValueError`
for bytes that are not one. Header names are matched case-insensitively; values are kept as sent
(decoded as Latin-1, which never fails) and are hostile input to whatever displays them.

`Http`, at the end, is the flow handler that feeds these parsers a flow's request and response heads.
"""

from __future__ import annotations

import base64
import binascii
from collections import deque
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from collector.filetypes import file_ext, url_extension
from collector.observation import Observation
from collector.packet import p2p
from collector.packet.flows import Handler, Offer

if TYPE_CHECKING:
    from collector.packet.flows import Flow, FlowTable

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
    req = HttpRequest(method, target, host, url, headers.get("user-agent"), url_extension(url))
    auth = headers.get("authorization") or headers.get("proxy-authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        req.auth_scheme = scheme
        if scheme.lower() == "basic":
            req.basic_user = _basic_user(value)
    return req


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


# -- the handler: what the decoder reads of a flow with this protocol ------------------------------


class Http(Handler):
    """Every request head at the start of a client segment; the status of the response to each."""

    reassemble = False
    service = "http"
    want = 1  # the server's bytes only while a request waits for its response head

    def __init__(self) -> None:
        self.pending: deque[Observation] = deque()
        self.last_seq = -1

    def client(self, dec: FlowTable, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        if seq == self.last_seq or not is_request(data):  # a retransmitted request is not a second one
            return True
        self.last_seq = seq
        try:
            req = parse_request(data)
        except ValueError:
            dec.skip("bad_http_request", frame)
            return True
        flow.host = req.host or flow.host
        obs = dec.flow_observation("http", flow, frame, ts)
        obs.host, obs.url, obs.method, obs.user_agent = req.host or obs.host, req.url, req.method, req.user_agent
        obs.file_ext, obs.auth_mechanism = req.file_ext, req.auth_scheme
        if req.auth_scheme and req.auth_scheme.lower() == "basic":
            obs.auth_user, obs.cleartext_credentials = req.basic_user, True
        self.pending.append(obs)
        self.want = 3
        info_hash = p2p.tracker_announce(req.url)
        if info_hash is not None:
            flow.service = "http,bittorrent"
            announce = dec.flow_observation("p2p", flow, frame, ts)
            announce.service, announce.url, announce.info_hash = "bittorrent-tracker", req.url, info_hash
            dec.emit(announce)
        return True

    def server(self, dec: FlowTable, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        if self.pending and data.startswith(b"HTTP/"):
            obs = self.pending.popleft()
            try:
                resp = parse_response(data)
            except ValueError:
                dec.skip("bad_http_response", frame)
            else:
                obs.status, obs.content_type = resp.status, resp.content_type
                obs.file_ext = file_ext(obs.url, resp.content_type)  # what the server sent, when it says
            dec.emit(obs)
            if not self.pending:
                self.want = 1
        return True

    def finish(self, dec: FlowTable, flow: Flow) -> None:
        for obs in self.pending:
            dec.emit(obs)
        self.pending.clear()


class HttpOffer(Offer):
    """Offers this module's handler for HTTP."""

    def tcp(self, flow: Flow, outbound: bool, data: bytes) -> Handler | None:
        """An `Http` handler for a flow whose client opens with a request line."""
        return Http() if outbound and is_request(data) else None


OFFER: Final[Offer] = HttpOffer()
