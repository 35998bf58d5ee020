"""`ictwatch serve`: the report web page (log in, request a report, view and download it; the audit log
for the headteacher; incidents for the safeguarding lead).

Python's threading HTTP server, behind TLS unless it listens on loopback only (`web.tls_cert`/`tls_key`).
A handful of staff use it, so the server is small; its safety is in what it sends and checks:

- local accounts with scrypt hashes (reports/accounts.py); login failures limited per username (5 in 15
  minutes) and per client address (50: a school may sit behind one), then refused until the window passes;
- a session is a random 256-bit token in a `__Host-` cookie (Secure, HttpOnly, SameSite=Strict), kept
  server-side, renewed at login, ended at logout or after `web.session_idle_minutes` idle;
- every form carries the session's CSRF token, checked on every POST;
- every page has a Content-Security-Policy that allows no script at all, and no caching, framing or
  referrers; traffic-derived text is escaped by jinja2 (autoescape) and could not run if it were not;
- no personal data in URLs (a report is `/reports/<random id>/...`, the person is in the form body) or in
  the server's log lines (method, route and status only).

Every request for a report, every download and every look at the audit goes to the audit chain. The
network manager's view is `/health`: the store, the spool, the lists' age; no one's activity.
"""

from __future__ import annotations

import datetime as dt
import hmac
import http.server
import logging
import re
import secrets
import threading
import time
import urllib.parse
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from reports import build, incidents, render
from reports.access import AUDIT_REFUSED
from reports.accounts import Accounts
from reports.audit import verify
from reports.formats import FORMATS
from reports.model import UserReport
from reports.periods import check_period, parse_date
from reports.requests import Ask, Desk
from reports.words import plural
from rules.config import Directory, Person
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
_MAX_BODY = 16 * 1024
_FAILURES, _ADDRESS_FAILURES, _WINDOW_S = 5, 50, 15 * 60  # per username, per client address; seconds
_DOWNLOADS = [(name, f.inline) for name, f in FORMATS.items() if f.on_web]
"""The formats the page offers, and whether each is shown in the browser rather than saved."""
_ROUTE = re.compile(rf"^/reports/([A-Za-z0-9_-]{{22}})/({'|'.join(name for name, _ in _DOWNLOADS)})$")


@dataclass
class Session:
    """One browser's session: who (None before login), its CSRF token, its reports, when last used."""

    user: str | None
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    seen: float = field(default_factory=time.monotonic)
    reports: dict[str, UserReport] = field(default_factory=dict)


class RateLimiter:
    """Failed logins per key in a sliding window: a few per username (guessing one person's password), more
    per client address (trying many usernames), since a whole school may reach the page from one address."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def blocked(self, *keys: str) -> bool:
        """Whether any key has reached the limit within the window."""
        now = time.monotonic()
        with self._lock:
            for key in keys:
                q = self._failures[key]
                while q and now - q[0] > _WINDOW_S:
                    q.popleft()
                if len(q) >= (_ADDRESS_FAILURES if key.startswith("addr:") else _FAILURES):
                    return True
        return False

    def failed(self, *keys: str) -> None:
        """Count a failure against each key."""
        with self._lock:
            for key in keys:
                self._failures[key].append(time.monotonic())


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
        self.sessions: dict[str, Session] = {}
        self.limiter = RateLimiter()
        self.now = desk.now

    def person(self, username: str | None) -> Person | None:
        """The directory entry of a logged-in user."""
        return self.directory.by_username().get(username or "")

    def session(self, token: str | None) -> Session | None:
        """The live session for a cookie token (idle ones are ended here)."""
        s = self.sessions.get(token or "")
        if s is None:
            return None
        if time.monotonic() - s.seen > self.idle_s:
            del self.sessions[token or ""]
            return None
        s.seen = time.monotonic()
        return s

    def new_session(self, user: str | None) -> tuple[str, Session]:
        """A fresh token and session (a login always gets a new token: no session fixation)."""
        token = secrets.token_urlsafe(32)
        self.sessions[token] = Session(user)
        return token, self.sessions[token]

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
        got = self.desk.request(Ask(session.user or "", form.get("subject", ""), start, end, form.get("reason", "")))
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
            rows, broken, problem = verify(self.store)
        chain = (f"The chain of {rows} rows is intact." if broken is None
                 else f"The chain is BROKEN at row #{broken}: {problem}.")
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
            first = parse_date(asked["from"]) if "from" in asked else last - dt.timedelta(days=29)
            check_period(first, last)
        except ValueError:
            first, last = now.date() - dt.timedelta(days=29), now.date()
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


class Handler(http.server.BaseHTTPRequestHandler):
    """One request: route, check the session and CSRF token, answer with the security headers."""

    app: WebApp
    server_version = "ictwatch"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Method, route and status only: no query, no report id, no person."""
        route = _ROUTE.sub("/reports/*/", self.path.split("?", 1)[0]) if self.path.startswith("/reports/") else (
            self.path.split("?", 1)[0])
        _log.info("%s %s %s", self.command, route, args[1] if len(args) > 1 else "")

    def _send(self, status: int, body: bytes = b"", kind: str = "text/html; charset=utf-8",
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in {**HEADERS, **(extra or {})}.items():
            self.send_header(k, v)
        if body:
            self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
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
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY or not self.headers.get("Content-Type", "").startswith(
                "application/x-www-form-urlencoded"):
            return None
        return {k: v[0] for k, v in urllib.parse.parse_qs(self.rfile.read(length).decode("utf-8", "replace")).items()}

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        """Pages."""
        app = self.app
        path, _, query = self.path.partition("?")
        session = app.session(self._token())
        if path == "/login":
            token, anon = app.new_session(None)
            self._send(200, app.page("login.html.j2", anon, title="Log in", message="").encode(),
                       extra={"Set-Cookie": _cookie(token)})
            return
        if session is None or session.user is None:
            self._redirect("/login")
            return
        if path == "/":
            today = app.now().date()
            people = sorted(app.directory.people, key=lambda p: p.name)
            page = app.page("home.html.j2", session, title="Request a report", people=people,
                            start=today - dt.timedelta(days=30), end=today)
            self._send(200, page.encode())
        elif path.startswith("/view/") and path[6:] in session.reports:
            report = session.reports[path[6:]]
            self._send(200, app.page("view.html.j2", session, title="Report", report=report, rid=path[6:],
                                     downloads=_DOWNLOADS).encode())
        elif (m := _ROUTE.match(path)) is not None:
            asked = urllib.parse.parse_qs(query).get("page", ["1"])[0]
            got = app.download(session, m.group(1), m.group(2), int(asked) if asked.isdigit() else 1)
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
        session = app.session(self._token())
        if form is None or session is None or not hmac.compare_digest(form.get("csrf", ""), session.csrf):
            self._send(403, b"refused: missing or stale form token; reload the page", "text/plain")
            return
        client = self.client_address[0]
        if self.path == "/login":
            self._login(session, form, client)
        elif session.user is None:
            self._redirect("/login")
        elif self.path == "/logout":
            app.sessions.pop(self._token() or "", None)
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
        if app.limiter.blocked(*keys) or not app.accounts.verify(username, form.get("password", "")) or (
                app.person(username) is None):
            app.limiter.failed(*keys)
            page = app.page("login.html.j2", anon, title="Log in",
                            message="Wrong username or password, or too many attempts: wait 15 minutes.")
            self._send(401, page.encode())
            return
        app.sessions.pop(self._token() or "", None)
        token, _ = app.new_session(username)
        self._redirect("/", _cookie(token))


def _cookie(token: str) -> str:
    return f"{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict"


def serve(app: WebApp, host: str, port: int, tls: tuple[str, str] | None) -> http.server.ThreadingHTTPServer:
    """A server for `app` on host:port (TLS with (cert, key) when given); call `serve_forever` on it."""
    handler = type("BoundHandler", (Handler,), {"app": app})
    server = http.server.ThreadingHTTPServer((host, port), handler)
    if tls is not None:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    return server
