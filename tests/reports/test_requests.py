"""One one-off grant asked for from `ictwatch report` and from the web page at the same moment: exactly one
request gets the report, the other is refused because the grant is spent, and the audit chain holds both
in order and verifies.

What is real here, and what is not. The embedded store (chDB) cannot be opened by two processes at once
(a second process fails with "Error initializing EmbeddedServer"), so with the default `chdb://` store
the command and `ictwatch serve` never run side by side; with a ClickHouse server they do, each its own
client. So both front ends run in this process, each as it runs in production: the real command line
(`ictwatch.cli.main`) in one thread, and the real web server as `ictwatch serve` builds it answering a real
HTTP POST in another. Each has its own connection to the one chDB engine and its own `AuditLog`, which
opens the lock file for itself: `flock` conflicts between open files within a process as it does between
processes. Only logging set-up and the collector's garbage-collector tuning are skipped (process-wide,
and nothing to do with requests).

The one instrument: building a report (`reports.build.build`) is wrapped to keep the first request in it
until the second request reaches it too, or `patience` seconds pass. That holds open the widest window a
request leaves between reading the open grants and recording the grant as spent; a correct request never
lets the second one in, and goes on after `patience`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import shutil
import threading
import urllib.parse

import pytest

from ictwatch import cli, logs, settings
from ictwatch.commands.web import web_server
from reports import build
from reports.accounts import Accounts
from reports.audit import AuditLog
from storage.store import Store
from tests.conftest import SCHOOL_DAY, free_port, run_cli, school_config

PASSWORD = "a long passphrase for tests"
ASK = {"subject": "jcarter", "start": "2026-06-16", "end": "2026-06-16", "reason": "malware on his laptop"}
SPENT = "network manager: technical views only, without a one-off grant"


class Browser:
    """An HTTP client that keeps its session cookie and the last page's form token, as a browser does."""

    def __init__(self, port: int) -> None:
        self.port, self.cookie, self.csrf = port, "", ""

    def send(self, method: str, path: str, form: dict[str, str] | None = None) -> tuple[int, str, str]:
        """(status, Location header, page)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        headers = {"Cookie": f"__Host-ictwatch={self.cookie}"} if self.cookie else {}
        body = None
        if form is not None:
            body = urllib.parse.urlencode({**form, "csrf": self.csrf})
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body, headers)
            response = conn.getresponse()
            page = response.read().decode()
        finally:
            conn.close()
        cookie = re.match(r"__Host-ictwatch=([^;]+)", response.getheader("Set-Cookie") or "")
        if cookie:
            self.cookie = cookie.group(1)
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        if token:
            self.csrf = token.group(1)
        return response.status, response.getheader("Location") or "", page

    def log_in(self, user: str) -> None:
        self.send("GET", "/login")
        assert self.send("POST", "/login", {"username": user, "password": PASSWORD})[0] == 303
        assert self.send("GET", "/")[0] == 200


@pytest.fixture(scope="module")
def granted_store(tmp_path_factory):
    """The school day replayed, then the headteacher's one-off grant (audit row #1) to the network manager
    for James Carter's report."""
    tmp = tmp_path_factory.mktemp("granted")
    store = tmp / "store"
    run_cli("replay", "--config", SCHOOL_DAY / "ictwatch.yaml", SCHOOL_DAY / "school-day.pcap", store=store,
            check=True)
    run_cli("grant", "--config", SCHOOL_DAY / "ictwatch.yaml", "--by", "hmorgan", "--for", "gwilliams", "--subject",
            "jcarter", "--from", "2026-06-16", "--to", "2026-06-16", "--reason", "malware investigation", store=store,
            check=True)
    return store


@pytest.mark.parametrize(("first", "patience"), [("cli", 5.0), ("web", 20.0)])
def test_one_grant_asked_for_twice_at_once_is_spent_once(granted_store, tmp_path, monkeypatch, first, patience):
    """`patience`: how long the first request is held in building for the second, which needs longer to get
    there when it is the command (it loads the configuration and the policy engine first)."""
    shutil.copytree(granted_store.parent, tmp_path / "granted", symlinks=True)  # with the chain's key and head;
    store = tmp_path / "granted" / "store"  # and the store links its databases to their folders
    port = free_port()
    config = school_config(tmp_path / "school", f"web:\n  listen: 127.0.0.1:{port}\n  accounts: accounts.json\n")
    Accounts(config.parent / "accounts.json").set("gwilliams", PASSWORD)
    monkeypatch.setenv("ICTWATCH_STORAGE_URL", f"chdb://{store}")
    monkeypatch.setattr(logs, "setup", lambda: None)
    monkeypatch.setattr(cli, "tune_gc", lambda: None)

    real_build, building, both = build.build, threading.Event(), threading.Barrier(2, timeout=patience)

    def build_once_both_are_in(*args, **kwargs):
        building.set()
        with contextlib.suppress(threading.BrokenBarrierError):
            both.wait()
        return real_build(*args, **kwargs)

    monkeypatch.setattr(build, "build", build_once_both_are_in)
    out = tmp_path / "report.json"
    results: dict[str, object] = {}

    def from_the_command() -> None:
        results["cli"] = cli.main(["report", "--config", str(config), "--user", ASK["subject"], "--from",
                                   ASK["start"], "--to", ASK["end"], "--requested-by", "gwilliams", "--reason",
                                   ASK["reason"], "--format", "json", "-o", str(out)])

    browser = Browser(port)

    def from_the_page() -> None:
        results["web"] = browser.send("POST", "/report", ASK)

    server, app = web_server(settings.load(config))
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        browser.log_in("gwilliams")
        threads = {"cli": threading.Thread(target=from_the_command), "web": threading.Thread(target=from_the_page)}
        threads[first].start()
        assert building.wait(120), "the first request was not granted"
        threads["web" if first == "cli" else "cli"].start()
        for t in threads.values():
            t.join(300)
        status, location, page = results["web"]
        view = browser.send("GET", location)[2] if status == 303 else ""
    finally:
        server.shutdown()
        server.server_close()
        app.close()

    cli_won, web_won = results["cli"] == 0, status == 303
    assert [cli_won, web_won].count(True) == 1, f"command exit {results['cli']}, web page {status}"
    if cli_won:
        assert status == 403 and f"Refused: {SPENT}. This request has been recorded (audit row #3)" in page
        report = json.loads(out.read_text())
        assert (report["audit_seq"], report["grounds"]) == (2, "one-off grant #1 from the headteacher")
    else:
        assert results["cli"] == 3 and not out.exists()
        assert "Audit row #2." in view
    db = Store(f"chdb://{store}")
    try:
        rows = db.audit().select("seq", "action", "decision", "uses_grant", "grounds").rows()
        checked = AuditLog(db, settings.load(config).chain_files()).verify()
    finally:
        db.close()
    assert rows == [(1, "grant", "granted", 0, "headteacher"),
                    (2, "report", "granted", 1, "one-off grant #1 from the headteacher"),
                    (3, "report", "refused", 0, SPENT)]
    assert checked[:3] == (3, None, "")

