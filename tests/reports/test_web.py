"""The report web page in real headless Chromium (Debian's, driven by Playwright with `executable_path`;
no browser download): log in, request, view, download; a line manager refused another team's report;
login rate limiting; forms without their CSRF token refused; traffic carrying script rendered inert; the
headteacher's audit log; the safeguarding lead recording an incident's outcome.

The server is the real `ictwatch serve` in a subprocess, over the school day replayed into chDB.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, SCHOOL_DAY, free_port, run_cli, school_config
from tests.reports.conftest import need_chromium

PASSWORD = "a long passphrase for tests"
HOSTILE_URL = 'http://x.example/"><img/src=x/onerror=window.pwned=1><script>window.pwned=2</script>'
HOSTILE = f"1781600000.000 10 10.20.10.21 TCP_MISS/200 10 GET {HOSTILE_URL} jcarter HIER_DIRECT/192.0.2.1 text/html\n"


def hostile_capture(path: Path) -> Path:
    """James Carter's laptop at 10:00 BST fetching a page whose Host, path and User-Agent carry markup."""
    from fixtures.make_school_day import Writer

    w = Writer(path, seed=1)
    w.at("10:00:00")
    request = (b'GET /"><svg/onload=window.pwned=7> HTTP/1.1\r\nHost: x"><img src=x onerror=window.pwned=6>.example'
               b"\r\nUser-Agent: <script>window.pwned=5</script>\r\n\r\n")
    w.tcp("00:1b:21:aa:00:01", "10.20.10.21", "192.0.2.80", 80,
          [(True, request), (False, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\nhello")])
    w.out.close()
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    need_chromium()
    tmp = tmp_path_factory.mktemp("web")
    port = free_port()
    config = school_config(tmp / "school", f"web:\n  listen: 127.0.0.1:{port}\n  accounts: accounts.json\n")
    hostile = tmp / "hostile.log"
    hostile.write_text(HOSTILE)
    capture = hostile_capture(tmp / "hostile.pcap")
    store = tmp / "store"
    run_cli("replay", "--config", config, SCHOOL_DAY / "school-day.pcap", SCHOOL_DAY / "squid-access.log", hostile,
            capture, store=store, check=True)
    for user in ("dpatel", "jcarter", "hmorgan", "afinch", "gwilliams", "tevans"):
        subprocess.run([sys.executable, "-m", "ictwatch.cli", "account", "--config", str(config), "--user", user],
                       input=PASSWORD + "\n", text=True, check=True, capture_output=True, cwd=ROOT)
    assert oct((config.parent / "accounts.json").stat().st_mode)[-3:] == "600"
    env = dict(os.environ, ICTWATCH_STORAGE_URL=f"chdb://{store}")
    server = subprocess.Popen([sys.executable, "-m", "ictwatch.cli", "serve", "--config", str(config)], cwd=ROOT,
                              env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    _, log = server.communicate(timeout=30)
    assert "jcarter" not in log and "sokafor" not in log  # no person in the server's log


def login(browser, site, user, password=PASSWORD):
    page = browser.new_context(accept_downloads=True).new_page()
    page.goto(f"{site}/login")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#login")
    return page


def request(page, subject, start="2026-06-16", end="2026-06-16", reason="review of a breach alert"):
    page.select_option("#subject", subject)
    page.fill("#start", start)
    page.fill("#end", end)
    page.fill("#reason", reason)
    page.click("#request")


def test_line_manager_requests_views_and_downloads(browser, site):
    page = login(browser, site, "dpatel")
    assert "Deepa Patel (senior leader)" in page.inner_text("header")
    cookie = next(c for c in page.context.cookies() if c["name"] == "__Host-ictwatch")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    request(page, "sokafor")
    assert "Sam Okafor (sokafor), 2026-06-16 to 2026-06-16" in page.inner_text("main")
    assert "sokafor" not in page.url  # no person in any URL
    with page.expect_popup() as popup:
        page.click("#open")
    report = popup.value
    report.wait_for_load_state()
    assert "Requested by" in report.inner_text("body") and "as line manager" in report.inner_text("body")
    assert "www.instagram.com" in report.inner_text("body")
    with page.expect_download() as download:
        page.click("#download-csv")
    text = Path(download.value.path()).read_text()
    assert text.splitlines()[0].startswith("time,kind,device")


def test_a_line_manager_is_refused_another_teams_report(browser, site):
    page = login(browser, site, "jcarter")
    request(page, "sokafor")
    assert "Refused: not the subject's line manager or the headteacher" in page.inner_text("#refusal")


def test_forms_without_their_token_are_refused(browser, site):
    page = login(browser, site, "dpatel")
    response = page.request.post(f"{site}/report", form={"subject": "sokafor", "start": "2026-06-16",
                                                         "end": "2026-06-16", "reason": "r"})
    assert response.status == 403 and "form token" in response.text()


def test_repeated_failed_logins_are_refused_even_with_the_right_password(browser, site):
    for _ in range(5):
        page = login(browser, site, "tevans", "not the password")
        assert "Wrong username or password" in page.inner_text("#message")
    page = login(browser, site, "tevans")
    assert "too many attempts" in page.inner_text("#message")


def test_hostile_traffic_renders_inert_in_chromium(browser, site):
    page = login(browser, site, "hmorgan")
    request(page, "jcarter")
    with page.expect_popup() as popup:
        page.click("#open")
    report = popup.value
    report.wait_for_load_state()
    assert report.evaluate("window.pwned") is None  # no onerror, onload or script ran
    assert report.locator("img").count() == 0 and report.locator("script").count() == 0
    assert report.locator("svg").count() == 2 and report.locator("svg[onload]").count() == 0  # heatmap, legend
    body = report.inner_text("body")
    assert HOSTILE_URL in body  # the proxy log's URL, shown as text under its visit
    assert 'x"><img src=x onerror=window.pwned=6>.example' in body  # the captured Host, the visit's site
    # the captured User-Agent is in the CSV and JSON (every activity), not in the HTML's visits


def test_the_headteacher_reads_the_audit_and_others_cannot(browser, site):
    page = login(browser, site, "dpatel")
    page.goto(f"{site}/audit")
    assert "only the headteacher reads the audit log" in page.inner_text("#refusal")
    head = login(browser, site, "hmorgan")
    head.goto(f"{site}/audit")
    assert "intact" in head.inner_text("#chain")
    rows = head.inner_text("#audit")
    assert "dpatel\treport\tgranted\tsokafor" in rows and "jcarter\treport\trefused\tsokafor" in rows
    assert "dpatel\taudit_view\trefused" in rows


def test_the_safeguarding_lead_records_an_outcome(browser, site):
    page = login(browser, site, "afinch")
    page.goto(f"{site}/incidents?from=2026-06-16&to=2026-06-16")
    table = page.inner_text("#incidents")
    assert "hot-videos.example" not in table  # an incident names rule and place, not the site
    row = page.locator("#incidents tr", has_text="tevans")
    assert row.count() == 1 and "blocked-content (P8)" in row.inner_text()
    row.locator("select").select_option("closed")
    row.locator("input[name=actions]").fill("spoke to Tom; the page came from a search result")
    row.locator("input[name=outcome]").fill("no further action")
    row.locator("button").click()
    again = page.locator("#incidents tr", has_text="tevans")
    assert "closed" in again.inner_text() or again.locator("select").input_value() == "closed"


def test_the_network_manager_sees_health_not_people(browser, site):
    page = login(browser, site, "gwilliams")
    page.goto(f"{site}/health")
    health = page.inner_text("#health")
    assert "ClickHouse reachable\tyes" in health and "Activity rows stored\t" in health
    assert "Latest activity\t2026-06-16" in health and "jcarter" not in health and "sokafor" not in health
    teacher = login(browser, site, "jcarter")
    teacher.goto(f"{site}/health")
    assert "the health view is for the network manager" in teacher.inner_text("#refusal")


def test_a_hostile_reason_is_inert_on_the_audit_page(browser, site):
    page = login(browser, site, "jcarter")
    request(page, "rbaker", reason='<img src=x onerror="window.pwned=3"><script>window.pwned=4</script>')
    head = login(browser, site, "hmorgan")
    head.goto(f"{site}/audit")
    assert head.evaluate("window.pwned") is None and head.locator("main img, main script").count() == 0
    assert '<script>window.pwned=4</script>' in head.inner_text("#audit")


def test_a_username_nobody_has_is_refused_with_a_clear_page(browser, site):
    """The form lists the directory; a username typed into a forged option is in neither the directory nor
    the store: 400, said plainly, and recorded."""
    page = login(browser, site, "hmorgan")
    page.evaluate("document.querySelector('#subject').add(new Option('Sam Okafor (sokafr)', 'sokafr'))")
    with page.expect_response(lambda r: r.url.endswith("/report")) as answer:
        request(page, "sokafr")
    assert answer.value.status == 400
    assert page.inner_text("h1") == "No such person"
    assert "Refused: no such person in the directory" in page.inner_text("#refusal")


def test_a_date_out_of_the_stores_range_is_refused_with_a_clear_page(browser, site):
    page = login(browser, site, "hmorgan")
    with page.expect_response(lambda r: r.url.endswith("/report")) as answer:
        request(page, "sokafor", start="9999-12-30", end="9999-12-31")
    assert answer.value.status == 400
    assert "9999-12-30 is out of range: dates run from 1970-01-01 to 2099-12-31" in page.inner_text("#refusal")
