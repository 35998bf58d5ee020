"""`ictwatch serve`: the report web page (log in, request a report, view and download it; the audit log
for the headteacher; incidents for the safeguarding lead).

Python's threading HTTP server, behind TLS unless it listens on loopback only (`web.tls_cert`/`tls_key`).
A handful of staff use it, so the server is small; its safety is in what it sends and checks:

- every request is bounded before the page sees it: the request line (8 KiB, else 414), line and headers
  together (32 KiB, else 431), the body (a number of bytes, else 400; 16 KiB, else 413; no chunked bodies,
  411); the TLS handshake and the whole request must arrive within `web.request_timeout_s` (else 408 and
  the connection is closed, however slowly it trickles in); at most `web.max_connections` are served at
  once, each in its own thread, and at most a quarter of them (6 or more) from one client address, so
  that one client holding idle connections cannot keep the page from others; a connection beyond either
  cap is closed at once, and refusals are a warning in the log at most once a minute for each cap, with
  their count and no address; one password is checked at a time (scrypt takes 32 MB); every answer, the
  server's own errors too, is HTTP/1.0 and closes the connection;

- local accounts with scrypt hashes (reports/accounts.py); login failures limited per username (5 in 15
  minutes) and per client address (50: a school may sit behind one), then refused until the window passes;
- a session is a random 256-bit token in a `__Host-` cookie (Secure, HttpOnly, SameSite=Strict), kept
  server-side, renewed at login, ended at logout or after `web.session_idle_minutes` idle; sessions are
  capped (500 before login, 500 signed in: past that the least recently used goes), and the limiter
  forgets a username or address once its window has passed;
- every form carries the session's CSRF token, checked on every POST;
- every answer (the server's own 400s, 408s and 501s too) has a Content-Security-Policy that allows no
  script at all, and no caching, framing or referrers; traffic-derived text is escaped by jinja2
  (autoescape) and could not run if it were not;
- no personal data in URLs (a report is `/reports/<random id>/...`, the person is in the form body) or in
  the server's log lines (method, route and status only; a route the page does not have is `-`).

Why the standard library's server and not waitress (issue 19, point 4). Waitress parses and bounds requests
well, but does not speak TLS, and the page must (the deploy guide listens on 0.0.0.0:8443 with a
certificate). Wrapping waitress's listening socket in `ssl` makes its single accept loop do each handshake:
measured with waitress 3.0.2, one client that opens TCP and sends nothing stops every other client (a
second client's handshake timed out after 3 s). The alternatives that terminate TLS themselves (uvicorn,
hypercorn) would bring an asyncio loop, an ASGI-to-WSGI adapter and four to six packages into the capture
daemon's process, and still leave the body limit to us; a TLS proxy in front (stunnel, nginx) would be a
second service for the school to run. So the page keeps `http.server`, whose parser (request line, headers)
CPython maintains, and adds here what it lacks: the bounds above, handshakes in the connection's own
thread under a deadline, and security headers on its own errors. The property test in
tests/reports/test_web_hostile.py sends it random requests over TLS and checks each answer and its memory.

Every request for a report, every download and every look at the audit goes to the audit chain. The
network manager's view is `/health`: the store, the spool, the lists' age; no one's activity.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hmac
import http.server
import io
import logging
import math
import re
import secrets
import socket
import ssl
import sys
import threading
import time
import traceback
import urllib.parse
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from reports import build, incidents, render
from reports.access import AUDIT_REFUSED, DEVICE_REPORT_ROLES, may_log_in
from reports.accounts import Accounts
from reports.formats import FORMATS
from reports.model import UserReport
from reports.periods import EARLIEST, check_period, parse_date
from reports.requests import Ask, Desk
from reports.words import plural
from rules.config import DeviceUse, Directory, Person
from rules.listupdate import lists_installed_at
from storage.spool import Spool

_log = logging.getLogger(__name__)
COOKIE = "__Host-ictwatch"
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_LINE_MAX, _HEAD_MAX, _MAX_BODY = 8 * 1024, 32 * 1024, 16 * 1024  # request line; line and headers; body
_SEND_S = 60.0  # to send one answer (a report download is the largest)
_LINGER_S, _LINGER_BYTES = 2.0, 256 * 1024  # what a client still sends after its answer, dropped before closing
_SESSIONS = 500  # before login, and again signed in
_SWEEP_S = 60.0  # how often expired sessions and limiter entries are looked for
_PAGE = re.compile(r"[1-9][0-9]{0,5}")
_FAILURES, _ADDRESS_FAILURES, _WINDOW_S = 5, 50, 15 * 60  # per username, per client address; seconds
_DOWNLOADS = [(name, f.inline) for name, f in FORMATS.items() if f.on_web]
"""The formats the page offers, and whether each is shown in the browser rather than saved."""
_ROUTE = re.compile(rf"^/reports/([A-Za-z0-9_-]{{22}})/({'|'.join(name for name, _ in _DOWNLOADS)})$")
_ROUTES = frozenset({"/", "/login", "/logout", "/report", "/audit", "/incidents", "/health"})
_CHECKING = threading.BoundedSemaphore(1)
"""One password checked at a time: scrypt takes 32 MB, and anyone may ask for a check."""
_BROWSER_CONNECTIONS = 6
"""The most connections a browser opens to one site at once."""
_REFUSALS_EVERY_S = 60.0
"""At most one log line a minute for each kind of refused connection."""


@dataclass
class Limits:
    """How much of the server one client may hold: the time for a request (TLS handshake, then line,
    headers and body) to arrive in full, and the connections served at once, in all and from one address.

    The cap per address is a quarter of `max_connections`, but never under 6 (nor over `max_connections`):
    a browser opens at most 6 connections to one site at once (Chromium and Firefox both), so one person's
    page load is never refused, and with the default 64 one address may hold 16, so that staff who reach
    the page through one proxy or NAT address still share it, while an address that holds its cap (idle
    connections reopened as the timeout closes them) leaves the other 48 to everyone else."""

    request_timeout_s: float = 20.0
    max_connections: int = 64

    @property
    def per_address(self) -> int:
        """Connections served at once from one client address."""
        return min(self.max_connections, max(_BROWSER_CONNECTIONS, self.max_connections // 4))


@dataclass
class Session:
    """One browser's session: who (None before login), its CSRF token, its reports, when last used."""

    user: str | None
    seen: float
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    reports: dict[str, UserReport] = field(default_factory=dict)


class Sessions:
    """The live sessions by token, those before login apart from those signed in, each kind capped (the
    least recently used goes first); a session idle longer than `idle_s` is over, and is removed even if
    its browser never comes back."""

    def __init__(self, idle_s: float, cap: int = _SESSIONS, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_s, self.cap, self.clock = idle_s, cap, clock
        self._kinds: dict[bool, OrderedDict[str, Session]] = {False: OrderedDict(), True: OrderedDict()}
        self._lock = threading.Lock()
        self._swept = clock()

    def __len__(self) -> int:
        with self._lock:
            return sum(map(len, self._kinds.values()))

    def get(self, token: str | None) -> Session | None:
        """The live session for a cookie token, marked as used now."""
        now = self.clock()
        with self._lock:
            for kind in self._kinds.values():
                s = kind.get(token or "")
                if s is None:
                    continue
                if now - s.seen > self.idle_s:
                    del kind[token or ""]
                    return None
                s.seen = now
                kind.move_to_end(token or "")
                return s
        return None

    def new(self, user: str | None) -> tuple[str, Session]:
        """A fresh token and session (a login always gets a new token: no session fixation)."""
        token, now = secrets.token_urlsafe(32), self.clock()
        with self._lock:
            if now - self._swept > _SWEEP_S:
                self._swept = now
                for kind in self._kinds.values():
                    for old in [t for t, s in kind.items() if now - s.seen > self.idle_s]:
                        del kind[old]
            kind = self._kinds[user is not None]
            while len(kind) >= self.cap:
                kind.popitem(last=False)
            kind[token] = Session(user, now)
            return token, kind[token]

    def end(self, token: str | None) -> None:
        """End a session (logout, or login replacing the anonymous one)."""
        with self._lock:
            for kind in self._kinds.values():
                kind.pop(token or "", None)


class RateLimiter:
    """Failed logins per key in a sliding window: a few per username (guessing one person's password), more
    per client address (trying many usernames), since a whole school may reach the page from one address.
    A key is forgotten once its last failure is out of the window."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self.clock = clock
        self._swept = clock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._failures)

    def blocked(self, *keys: str) -> bool:
        """Whether any key has reached the limit within the window."""
        now = self.clock()
        with self._lock:
            return any(q.maxlen is not None and len(q) == q.maxlen and now - q[0] <= _WINDOW_S
                       for q in map(self._failures.get, keys) if q is not None)

    def failed(self, *keys: str) -> None:
        """Count a failure against each key (only the last `limit` failures matter: the window slides)."""
        now = self.clock()
        with self._lock:
            if now - self._swept > _SWEEP_S:
                self._swept = now
                for key in [k for k, q in self._failures.items() if now - q[-1] > _WINDOW_S]:
                    del self._failures[key]
            for key in keys:
                limit = _ADDRESS_FAILURES if key.startswith("addr:") else _FAILURES
                self._failures.setdefault(key, deque(maxlen=limit)).append(now)


class WebApp:
    """The page's state: the report use cases (their store, one connection, used under `db_lock`, the
    use cases' own store lock), the accounts, the sessions; and for the health view, the spool and the
    category lists."""

    def __init__(self, desk: Desk, accounts: Accounts, session_idle_minutes: int, open_spool: Callable[[], Spool],
                 lists: Path, list_entries: int) -> None:
        self.desk = desk
        self.directory: Directory = desk.directory
        self.policy = desk.policy
        self.store = desk.store
        self.accounts = accounts
        self.idle_s = session_idle_minutes * 60
        self.open_spool = open_spool
        self.lists, self.list_entries = lists, list_entries
        self.db_lock = desk.store_lock
        self.sessions = Sessions(self.idle_s)
        self.limiter = RateLimiter()
        self.now = desk.now

    def person(self, username: str | None) -> Person | None:
        """The directory entry of a logged-in user."""
        return self.directory.by_username().get(username or "")

    def page(self, template: str, session: Session | None, **context: Any) -> str:
        """Render one of the web templates, with the header's user and CSRF token."""
        me = self.person(session.user) if session else None
        me_ctx = {"name": me.name, "role": me.role.value, "username": me.username} if me else None
        return render.page(f"web/{template}", school=self.policy.school, me=me_ctx,
                           csrf=session.csrf if session else "", **context)

    def request_report(self, session: Session, form: dict[str, str]) -> tuple[int, str, str | None]:
        """(status, page, report id) for a report request: decided, recorded, built if granted."""
        try:
            start, end = parse_date(form.get("start", "")), parse_date(form.get("end", ""))
            check_period(start, end)
        except ValueError as exc:
            return 400, self.page("refused.html.j2", session, title="Not a period", grounds=str(exc), seq="none"), None
        if (end - start).days > 366:
            return 400, self.page("refused.html.j2", session, title="Not a period",
                                  grounds="the period must be at most a year", seq="none"), None
        device = "device" in form  # the device report's form names a device, the person's a subject
        got = self.desk.request(Ask(session.user or "", form.get("device" if device else "subject", ""), start, end,
                                    form.get("reason", ""), of_device=device))
        if got.report is None:
            status, title = (400, "No such person") if got.no_such_person else (403, "Report refused")
            return status, self.page("refused.html.j2", session, title=title, grounds=got.grounds, seq=got.seq), None
        rid = secrets.token_urlsafe(16)
        session.reports[rid] = got.report
        return 303, "", rid

    def download(self, session: Session, rid: str, fmt: str, page: int = 1) -> tuple[str, bytes] | None:
        """(content type, body) of a report of this session (HTML: one page of its activity log), sealed;
        recorded as a download."""
        report = session.reports.get(rid)
        if report is None:
            return None
        body = self.desk.download(session.user or "", report, fmt, page, page_link=f"/reports/{rid}/{fmt}?page=")
        return FORMATS[fmt].content_type, body

    def audit_page(self, session: Session) -> tuple[int, str]:
        """The audit log for the headteacher; anyone else is refused. Both are recorded."""
        seq, table = self.desk.read_audit(session.user or "")
        if table is None:
            return 403, self.page("refused.html.j2", session, title="Audit log", seq=seq, grounds=AUDIT_REFUSED)
        with self.db_lock:
            chain = self.desk.audit.verify().summary()
        return 200, self.page("audit.html.j2", session, title="Audit log", chain=chain, rows=table.to_dicts())

    def incidents_page(self, session: Session, form: dict[str, str] | None, query: str = "") -> tuple[int, str]:
        """Danger breaches as incidents, for the safeguarding lead (and the headteacher); a POST records one.
        The period is the last 30 days, or `?from=DATE&to=DATE`."""
        person = self.person(session.user)
        if person is None or person.role.value not in ("safeguarding_lead", "headteacher"):
            return 403, self.page("refused.html.j2", session, title="Incidents", seq="none",
                                  grounds="incidents are for the safeguarding lead")
        now = self.now()
        asked = {k: v[0] for k, v in urllib.parse.parse_qs(query).items()}
        try:
            last = parse_date(asked["to"]) if "to" in asked else now.date()
            first = parse_date(asked["from"]) if "from" in asked else max(last - dt.timedelta(days=29), EARLIEST)
            check_period(first, last)
        except ValueError as exc:
            return 400, self.page("refused.html.j2", session, title="Not a period", grounds=str(exc), seq="none")
        lo, hi = build.local_bounds(first, last, self.policy.calendar.timezone)
        days = (last - first).days + 1
        with self.db_lock:
            found = incidents.incidents(self.store, lo, hi)
            if form is not None:
                chosen = next((i for i in found if i["incident_id"] == form.get("incident_id")), None)
                status = form.get("status", "")
                if chosen is None or status not in ("open", "under_review", "closed"):
                    return 400, self.page("refused.html.j2", session, title="Incidents", seq="none",
                                          grounds="no such incident or status")
                incidents.record(self.store, chosen, status, form.get("actions", "")[:2000],
                                 form.get("outcome", "")[:2000], session.user or "", now)
                found = incidents.incidents(self.store, lo, hi)
        return 200, self.page("incidents.html.j2", session, title="Incidents", incidents=found, days=days,
                              first=first, last=last)

    def health_page(self, session: Session) -> tuple[int, str]:
        """The technical view for the network manager (and the headteacher): counts and ages, no people."""
        person = self.person(session.user)
        if person is None or person.role.value not in ("network_manager", "headteacher"):
            return 403, self.page("refused.html.j2", session, title="System health", seq="none",
                                  grounds="the health view is for the network manager")
        with self.db_lock:
            try:
                stored, latest = self.store.count(), self.store.latest()
                reachable = "yes"
            except Exception as exc:  # noqa: BLE001 - the page reports the store's state, whatever it is
                stored, latest, reachable = 0, None, f"no ({type(exc).__name__})"
        spool = self.open_spool()
        try:
            waiting = spool.status()
        finally:
            spool.close()
        installed = lists_installed_at(self.lists)
        age = "unknown" if installed is None else f"{(time.time() - installed) / 86400:.1f} days"
        items = [
            ("ClickHouse reachable", reachable), ("Activity rows stored", f"{stored:,}"),
            ("Latest activity", latest.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if latest else "none"),
            ("Spool", f"{plural(cast(int, waiting['records']), 'batch')}, {waiting['bytes']:,} of "
                      f"{waiting['max_bytes']:,} bytes; "
                      f"{waiting['torn_kept']} torn and {waiting['rejected']} rejected set aside"),
            ("Category lists", f"{self.list_entries:,} entries, {age} old"),
            ("Policy version", self.policy.version()),
        ]
        return 200, self.page("health.html.j2", session, title="System health", items=items)

    def close(self) -> None:
        """Release the store."""
        self.store.close()


class _TooLong(Exception):
    """The request's line, or its line and headers, went past their bound."""


class _Input(io.RawIOBase):
    """The connection as the handler reads it: no read waits past the request's deadline, and while the
    head (request line and headers) is read, no more than its budget of bytes is taken."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline = math.inf
        self.head_left: int | None = None

    def readable(self) -> bool:
        """It is."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Up to len(buffer) bytes, within the deadline and the head's budget."""
        view = memoryview(buffer)
        if self.head_left is not None:
            if self.head_left <= 0:
                raise _TooLong
            view = view[:self.head_left]
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self.sock.settimeout(left)
        got = self.sock.recv_into(view)
        if self.head_left is not None:
            self.head_left -= got
        return got


class Handler(http.server.BaseHTTPRequestHandler):
    """One request: bounded, routed, its session and CSRF token checked, answered with the security
    headers (the server's own errors too) over HTTP/1.0, then the connection closed."""

    app: WebApp
    limits: Limits
    server_version = "ictwatch"
    sys_version = ""
    default_request_version = "HTTP/1.0"  # a request line without a version is answered with headers too
    _input: _Input
    _answered: bool

    def setup(self) -> None:
        """The connection's input read through `_Input`, bounded in bytes and time."""
        super().setup()
        self._input = _Input(self.connection)
        self.rfile = io.BufferedReader(self._input)
        self.command, self.path, self.requestline, self.request_version = "", "", "", self.default_request_version

    def finish(self) -> None:
        """After the answer, a lingering close: end the output, then drop what the client still sends (a
        body refused unread, say) for a moment, so that closing does not reset the connection before the
        client has read the answer."""
        super().finish()
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
            until, left = time.monotonic() + _LINGER_S, _LINGER_BYTES
            while left > 0 and (wait := until - time.monotonic()) > 0:
                self.connection.settimeout(wait)
                got = len(self.connection.recv(min(left, 65536)))
                if not got:
                    break
                left -= got

    def handle_one_request(self) -> None:
        """Read one request within its bounds and answer it; a request past them gets 408, 413, 414, 431."""
        self.close_connection, self._answered = True, False
        self._input.deadline = time.monotonic() + self.limits.request_timeout_s
        self._input.head_left = _HEAD_MAX
        try:
            try:
                self.raw_requestline = self.rfile.readline(_LINE_MAX + 1)
            except _TooLong:
                self.raw_requestline = b"x" * (_LINE_MAX + 1)
            if len(self.raw_requestline) > _LINE_MAX:
                self.send_error(414, f"the request line is over {_LINE_MAX} bytes")
                return
            if not self.raw_requestline:
                return
            try:
                if not self.parse_request():
                    return  # parse_request has answered
            except _TooLong:
                self.send_error(431, f"the request line and headers are over {_HEAD_MAX} bytes")
                return
            self._input.head_left = None
            self.close_connection = True  # HTTP/1.0: one request a connection
            if self.headers.defects:
                self.send_error(400, "a header line is not `name: value`")
            elif not hasattr(self, f"do_{self.command}"):
                self.send_error(501, "the page answers GET and POST")
            elif self._framed():
                getattr(self, f"do_{self.command}")()
        except TimeoutError:
            _log.info("%s %s timed out", self._method(), self._route())
            if not self._answered:
                with contextlib.suppress(OSError):
                    self.send_error(408, f"the request did not arrive within {self.limits.request_timeout_s:g} s")
        except Exception as exc:
            if isinstance(exc, OSError) or self._answered:
                raise  # the connection failed, or the answer had begun: nothing more can be sent
            where = traceback.extract_tb(exc.__traceback__)[-1]  # a place in the code, never the data
            _log.error("%s %s failed: %s at %s:%s", self._method(), self._route(), type(exc).__name__,
                       Path(where.filename).name, where.lineno)
            self.send_error(500, "the page failed; the server's log says where")

    def _framed(self) -> bool:
        """Whether the body's framing is one the page reads (a length in bytes, within `_MAX_BODY`); if not,
        the refusal is sent."""
        lengths = self.headers.get_all("Content-Length") or []
        if "Transfer-Encoding" in self.headers:
            self.send_error(411, "a body needs a Content-Length (no chunked bodies)")
        elif len(lengths) > 1 or (lengths and not re.fullmatch(r"[0-9]{1,12}", lengths[0].strip())):
            self.send_error(400, "Content-Length is not a number of bytes")
        elif lengths and int(lengths[0]) > _MAX_BODY:
            self.send_error(413, f"a form is at most {_MAX_BODY} bytes")
        else:
            return True
        return False

    def _method(self) -> str:
        return self.command if self.command in ("GET", "POST", "HEAD") else "-"

    def _route(self) -> str:
        """The route asked for, without query, report id or anything a client made up."""
        path = self.path.split("?", 1)[0]
        if path in _ROUTES:
            return path
        if (m := _ROUTE.match(path)) is not None:
            return f"/reports/*/{m.group(2)}"
        return "/view/*" if path.startswith("/view/") else "-"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Method, route and status only: no query, no report id, no person."""
        _log.info("%s %s %s", self._method(), self._route(), int(code))

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Nothing: the status that follows is logged, and an error's message may carry the client's text."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard reason phrase in the status line (never the client's text); the detail in the page."""
        super().send_error(code, None, message or explain)

    def send_response(self, code: int, message: str | None = None) -> None:
        """The status line with the security headers (every final answer, the server's own errors too)."""
        super().send_response(code, message)
        self._answered = True
        for k, v in HEADERS.items():
            self.send_header(k, v)

    def end_headers(self) -> None:
        """Send what is buffered, within `_SEND_S`."""
        self.connection.settimeout(_SEND_S)
        super().end_headers()

    def _send(self, status: int, body: bytes = b"", kind: str = "text/html; charset=utf-8",
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if body:
            self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, where: str, cookie: str | None = None) -> None:
        extra = {"Location": where}
        if cookie is not None:
            extra["Set-Cookie"] = cookie
        self._send(303, extra=extra)

    def _token(self) -> str | None:
        for part in self.headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                return value
        return None

    def _form(self) -> dict[str, str] | None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            return None
        return {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items()}

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        """Pages."""
        app = self.app
        path, _, query = self.path.partition("?")
        session = app.sessions.get(self._token())
        if path == "/login":
            token, anon = app.sessions.new(None)
            self._send(200, app.page("login.html.j2", anon, title="Log in", message="").encode(),
                       extra={"Set-Cookie": _cookie(token)})
            return
        if session is None or session.user is None:
            self._redirect("/login")
            return
        if path == "/":
            today = app.now().date()
            people = sorted(app.directory.people, key=lambda p: p.name)
            me = app.person(session.user)
            devices = sorted(d.id for d in app.desk.devices if d.use != DeviceUse.own) if (
                me is not None and me.role in DEVICE_REPORT_ROLES) else []  # ids for those who may ask only
            page = app.page("home.html.j2", session, title="Request a report", people=people, devices=devices,
                            start=today - dt.timedelta(days=30), end=today)
            self._send(200, page.encode())
        elif path.startswith("/view/") and path[6:] in session.reports:
            report = session.reports[path[6:]]
            self._send(200, app.page("view.html.j2", session, title="Report", report=report, rid=path[6:],
                                     downloads=_DOWNLOADS).encode())
        elif (m := _ROUTE.match(path)) is not None:
            asked = urllib.parse.parse_qs(query).get("page", ["1"])[0]
            if not _PAGE.fullmatch(asked):
                self._send(400, b"not a page number", "text/plain")
                return
            got = app.download(session, m.group(1), m.group(2), int(asked))
            if got is None:
                self._send(404, b"not found", "text/plain")
                return
            kind, body = got
            attach = not FORMATS[m.group(2)].inline or "download=1" in query
            name = f"ictwatch-report-{m.group(1)[:8]}.{m.group(2)}"
            self._send(200, body, kind, {"Content-Disposition": f'attachment; filename="{name}"'} if attach else None)
        elif path == "/audit":
            status, page = app.audit_page(session)
            self._send(status, page.encode())
        elif path == "/incidents":
            status, page = app.incidents_page(session, None, query)
            self._send(status, page.encode())
        elif path == "/health":
            status, page = app.health_page(session)
            self._send(status, page.encode())
        else:
            self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:  # noqa: N802 - the base class's name
        """Forms: each needs its session's CSRF token."""
        app = self.app
        form = self._form()
        session = app.sessions.get(self._token())
        if form is None or session is None or not hmac.compare_digest(form.get("csrf", ""), session.csrf):
            self._send(403, b"refused: missing or stale form token; reload the page", "text/plain")
            return
        client = self.client_address[0]
        if self.path == "/login":
            self._login(session, form, client)
        elif session.user is None:
            self._redirect("/login")
        elif self.path == "/logout":
            app.sessions.end(self._token())
            self._redirect("/login", f"{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
        elif self.path == "/report":
            status, page, rid = app.request_report(session, form)
            if rid is not None:
                self._redirect(f"/view/{rid}")
            else:
                self._send(status, page.encode())
        elif self.path.split("?", 1)[0] == "/incidents":
            status, page = app.incidents_page(session, form, self.path.partition("?")[2])
            self._send(status, page.encode())
        else:
            self._send(404, b"not found", "text/plain")

    def _login(self, anon: Session, form: dict[str, str], client: str) -> None:
        app = self.app
        username = form.get("username", "").strip().lower()[:64]
        keys = (f"user:{username}", f"addr:{client}")
        if app.limiter.blocked(*keys) or not self._check(username, form.get("password", "")) or (
                not may_log_in(app.directory, username, app.desk.today())):
            app.limiter.failed(*keys)
            page = app.page("login.html.j2", anon, title="Log in",
                            message="Wrong username or password, or too many attempts: wait 15 minutes.")
            self._send(401, page.encode())
            return
        app.sessions.end(self._token())
        token, _ = app.sessions.new(username)
        self._redirect("/", _cookie(token))

    def _check(self, username: str, password: str) -> bool:
        with _CHECKING:
            return self.app.accounts.verify(username, password)


def _cookie(token: str) -> str:
    return f"{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict"


def _host(client_address: Any) -> str:
    """The client's address without its port (the whole of it for a Unix socket's peer)."""
    return client_address[0] if isinstance(client_address, tuple) else str(client_address)


class _Refusals:
    """Connections refused for one reason, logged as a warning sampled in time: the first of a quiet spell
    at once, then at most one line every `every_s` with the number refused since the last line (never an
    address: the count says a client is trying, the address would be personal data in the log)."""

    def __init__(self, why: str, every_s: float = _REFUSALS_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.why, self.every_s, self.clock = why, every_s, clock
        self._unlogged = 0
        self._last: float | None = None
        self._lock = threading.Lock()

    def refused(self) -> None:
        """Count one refusal; log it now unless a line was logged within `every_s`."""
        with self._lock:
            self._unlogged += 1
        self.flush()

    def flush(self) -> None:
        """Log the refusals not yet logged, if `every_s` has passed since the last line."""
        with self._lock:
            now = self.clock()
            if not self._unlogged or (self._last is not None and now - self._last < self.every_s):
                return
            count, self._unlogged, self._last = self._unlogged, 0, now
        _log.warning("connections refused (%s): %d since the last such line", self.why, count)


class Server(http.server.ThreadingHTTPServer):
    """The listening socket: each connection in its own thread (TLS handshake included, under the
    request deadline), at most `limits.max_connections` at once and `limits.per_address` from one client
    address; one beyond either is closed unanswered, and counted in a sampled warning (`_Refusals`)."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    """Connections the kernel holds until they are accepted (the base class's 5 dropped a burst's
    connection attempts, which then waited a second or more to retry)."""

    def __init__(self, address: tuple[str, int], handler: type[Handler], tls: ssl.SSLContext | None,
                 limits: Limits) -> None:
        super().__init__(address, handler)
        self.tls, self.limits = tls, limits
        self._open: Counter[str] = Counter()
        self._open_lock = threading.Lock()
        self._over_total = _Refusals(f"{limits.max_connections} already open")
        self._over_address = _Refusals(f"{limits.per_address} already open from one address")

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread for the connection, if its address and the server both have one free."""
        host = _host(client_address)
        with self._open_lock:
            over = (self._over_total if self._open.total() >= self.limits.max_connections
                    else self._over_address if self._open[host] >= self.limits.per_address else None)
            if over is None:
                self._open[host] += 1
        if over is not None:
            over.refused()
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release(host)
            self.shutdown_request(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve the connection, then free its place."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(_host(client_address))

    def _release(self, host: str) -> None:
        with self._open_lock:
            self._open[host] -= 1
            if not self._open[host]:
                del self._open[host]

    def service_actions(self) -> None:
        """Between connections (twice a second): log refusals held back, once their minute has passed."""
        super().service_actions()
        self._over_total.flush()
        self._over_address.flush()

    def finish_request(self, request: Any, client_address: Any) -> None:
        """The TLS handshake (within the request deadline), then the request."""
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(self.limits.request_timeout_s)
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except OSError as exc:
            _log.info("TLS handshake failed: %s", type(exc).__name__)
            return
        with wrapped:
            super().finish_request(wrapped, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line, with no address: a connection the client cut is routine; anything else is a fault."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            _log.info("connection ended early: %s", type(exc).__name__)
        else:
            _log.error("fault while answering a request: %s", type(exc).__name__)


def serve(app: WebApp, host: str, port: int, tls: tuple[str, str] | None,
          limits: Limits | None = None) -> Server:
    """A server for `app` on host:port (TLS with (cert, key) when given); call `serve_forever` on it."""
    limits = limits or Limits()
    handler = type("BoundHandler", (Handler,), {"app": app, "limits": limits})
    context = None
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(*tls)
    return Server((host, port), handler, context, limits)
