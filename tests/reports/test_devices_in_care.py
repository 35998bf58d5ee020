"""Devices in someone's care in reports (issue 20, point 5), over the school day replayed into chDB and its
daily iPad check: James Carter's class iPads (IPAD-BANK-5C, on the network at 09:15) and Sam Okafor's
(IPAD-BANK-6A, not seen by 09:30: an I1 breach) report in their own section of the teacher's report, out
of the teacher's own figures; a device report is the headteacher's and the safeguarding lead's only, each
request in the audit chain; and a report never names another person's device. The commands and the web
page are the real ones (`ictwatch report`, `ictwatch serve` in Chromium).
"""

from __future__ import annotations

import html as html_text
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, SCHOOL_DAY, free_port, run_cli, school_config, stored_activity
from tests.reports.conftest import need_chromium

PASSWORD = "a long passphrase for tests"
DAY = ("--from", "2026-06-16", "--to", "2026-06-16")
# Ruth Baker logs in to the proxy on James Carter's laptop at 10:00 BST: her own use, on another's device
ON_ANOTHERS = ("1781600400.000 10 10.20.10.21 TCP_TUNNEL/200 900 CONNECT www.bbc.co.uk:443 rbaker "
               "HIER_DIRECT/1.2.3.4 -\n")


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(config, store, a folder for outputs): the school day, Ruth Baker's login on LT-JCARTER, the iPad check."""
    tmp = tmp_path_factory.mktemp("care")
    port = free_port()
    config = school_config(tmp / "school", f"web:\n  listen: 127.0.0.1:{port}\n  accounts: accounts.json\n")
    extra = tmp / "extra.log"
    extra.write_text(ON_ANOTHERS)
    store = tmp / "store"
    run_cli("replay", "--config", config, SCHOOL_DAY / "school-day.pcap", SCHOOL_DAY / "squid-access.log", extra,
            store=store, check=True)
    run_cli("check-ipads", "--config", config, "--date", "2026-06-16", store=store, check=True)
    return config, store, tmp


def _report(day, who: tuple[str, str], by: str, fmt: str = "json", **kw) -> subprocess.CompletedProcess:
    config, store, tmp = day
    out = tmp / f"{who[1]}-{by}.{fmt}"
    return run_cli("report", "--config", config, f"--{who[0]}", who[1], *DAY, "--requested-by", by, "--reason",
                   "iPad use review", "--format", fmt, "-o", out, store=store, **kw)


def _json(day, who: tuple[str, str], by: str) -> dict:
    _report(day, who, by, check=True)
    return json.loads((day[2] / f"{who[1]}-{by}.json").read_text())


def test_the_ipads_in_a_teachers_care_are_their_own_section_not_their_use(day):
    """James Carter's class iPads fetched www.bbc.co.uk at 09:15:20: the DNS lookup, the HTTP request and its
    connection make one visit of a minute (the lookup's own flow to the school's resolver is the network's
    upkeep, in no visit); none of it is in his own figures."""
    report = _json(day, ("user", "jcarter"), "dpatel")
    assert [(d["device"], d["device_type"], d["places"], d["visits"], d["activities"], d["minutes"], d["breaches"])
            for d in report["in_care"]] == [("IPAD-BANK-5C", "school_ipad", ["Classroom block"], 1, 3, 1, 0)]
    assert report["care_breaches"] == []
    own = {d["label"] for d in report["devices"]} | {a["device"] for a in report["activity"]}
    assert "IPAD-BANK-5C" not in own and "LT-JCARTER" in own
    assert "www.bbc.co.uk" not in {v["site"] for v in report["visits"] if v["device"] == "IPAD-BANK-5C"}


def test_the_daily_checks_absence_is_a_breach_of_the_ipads_in_care_not_of_the_teacher(day):
    report = _json(day, ("user", "sokafor"), "dpatel")
    assert [(b["device"], b["kind"], b["rule_ids"], b["clauses"], b["time"][:19]) for b in report["care_breaches"]] == [
        ("IPAD-BANK-6A", "absence", ["ipad-not-seen"], ["I1"], "2026-06-16T09:30:00")]
    assert "explanation" in report["care_breaches"][0] and "not been on the network" in report["care_breaches"][0][
        "explanation"]
    assert [d["device"] for d in report["in_care"]] == ["IPAD-BANK-6A"]
    assert all(b["device"] != "IPAD-BANK-6A" for b in report["breaches"])
    assert "ipad-not-seen" not in {r for b in report["breaches"] for r in b["rule_ids"]}
    html = _report(day, ("user", "sokafor"), "hmorgan", "html", check=True)
    assert html.returncode == 0
    page = html_text.unescape((day[2] / "sokafor-hmorgan.html").read_text())
    section = page.split('<section id="in-care">')[1].split("</section>")[0]
    assert "Devices in Sam Okafor's care" in section and "not Sam Okafor's own use" in section
    assert "IPAD-BANK-6A" in section and "ipad-not-seen" in section
    assert "IPAD-BANK-6A" not in page.split('<section id="in-care">')[0].split('<section id="request">')[1]


def test_a_persons_report_does_not_name_a_device_of_someone_else(day):
    """Ruth Baker's login on James Carter's laptop is her own use, in her report: the laptop is not named
    (its id names him), and it is in no one's care."""
    report = _json(day, ("user", "rbaker"), "jcarter")
    rows = [a for a in report["activity"] if a["time"].startswith("2026-06-16T10:00")]
    assert [(a["device"], a["device_type"], a["host"]) for a in rows] == [
        ("another person's device 1", "school_laptop", "www.bbc.co.uk")]
    assert "LT-JCARTER" not in json.dumps(report) and "jcarter" not in json.dumps(report["activity"])
    assert report["in_care"] == []


@pytest.mark.parametrize(("by", "granted"), [("hmorgan", True), ("afinch", True), ("dpatel", False),
                                             ("jcarter", False), ("gwilliams", False), ("sokafor", False)])
def test_a_device_report_is_the_headteachers_and_the_safeguarding_leads_only(day, by, granted):
    """Nobody else may have one, not even the teacher whose care the iPads are in (their line manager has
    their report, with the iPads in it); each request is recorded as a `device_report` of the device."""
    got = _report(day, ("device", "IPAD-BANK-6A"), by)
    assert got.returncode == (0 if granted else 3) and "Traceback" not in got.stderr
    if not granted:
        assert "device reports are for the headteacher and the safeguarding lead" in got.stderr
        return
    report = json.loads((day[2] / f"IPAD-BANK-6A-{by}.json").read_text())
    assert report["device"] == {"id": "IPAD-BANK-6A", "device_type": "school_ipad", "use": "care", "responsible": {
        "username": "sokafor", "name": "Sam Okafor", "role": "teacher", "line_manager": "Deepa Patel"}}
    assert [(b["device"], b["rule_ids"]) for b in report["breaches"]] == [("IPAD-BANK-6A", ["ipad-not-seen"])]
    assert report["in_care"] == []


def test_device_reports_are_in_the_audit_chain(day):
    config, store, _ = day
    _report(day, ("device", "IPAD-BANK-5C"), "afinch", check=True)
    _report(day, ("device", "IPAD-BANK-5C"), "tevans")
    shown = run_cli("audit", "show", "--config", config, "--requested-by", "hmorgan", store=store, check=True).stdout
    lines = [ln for ln in shown.splitlines() if "device_report" in ln and "IPAD-BANK-5C" in ln]
    assert any("afinch" in ln and "granted" in ln for ln in lines)
    assert any("tevans" in ln and "refused" in ln for ln in lines)
    assert run_cli("audit", "verify", "--config", config, store=store).returncode == 0


def test_a_device_nobody_has_is_a_usage_error(day):
    got = _report(day, ("device", "IPAD-BANK-9Z"), "hmorgan")
    assert got.returncode == 2 and "--device: no such device in the register" in got.stderr


def test_the_device_report_holds_no_ones_own_use(day):
    """The device report of James Carter's laptop (his own device) holds nothing: what was done on it is his,
    or Ruth Baker's after her login, in their reports."""
    report = _json(day, ("device", "LT-JCARTER"), "hmorgan")
    assert report["activity"] == [] and report["device"]["use"] == "own"
    assert len(stored_activity(day[1]).filter(device="LT-JCARTER")) > 0


def test_the_breaches_listing_names_the_device_and_whose_care_it_is_in(day):
    config, store, _ = day
    table = run_cli("breaches", "--config", config, *DAY, store=store, check=True).stdout
    (line,) = [ln for ln in table.splitlines() if "ipad-not-seen" in ln]
    assert "in the care of Sam Okafor (sokafor)" in line and "IPAD-BANK-6A" in line
    (row,) = [json.loads(ln) for ln in run_cli("breaches", "--config", config, "--json", *DAY, store=store,
                                               check=True).stdout.splitlines() if "ipad-not-seen" in ln]
    assert (row["user"], row["responsible"], row["responsible_name"], row["device"]) == (
        None, "sokafor", "Sam Okafor", "IPAD-BANK-6A")
    one = run_cli("breaches", "--config", config, "--device", "IPAD-BANK-6A", *DAY, store=store, check=True).stdout
    assert "ipad-not-seen" in one and one.rstrip().endswith("1 breach")
    own = run_cli("breaches", "--config", config, "--user", "sokafor", *DAY, store=store, check=True).stdout
    assert "IPAD-BANK-6A" not in own  # his own use only


def test_an_incident_on_a_device_in_care_names_the_device_and_the_person_responsible(store):
    """IPAD-BANK-3B, reported lost on 1 June and in Linh Nguyen's care, back on the network on 16 June at 10:20:
    a danger breach (I4) of the device, whose incident names it and her, and no user."""
    import datetime as dt

    from collector.observation import Observation, to_table
    from ictwatch import settings
    from reports import incidents, render

    engine = settings.load(SCHOOL_DAY / "ictwatch.yaml").engine()
    seen = Observation(1781601600_000_000, "tls", "pcap", "lost.pcap#1", "10.20.30.60", 50000, "151.101.0.81", 443,
                       "tcp", "f0:99:bf:10:00:0a", host="www.bbc.co.uk", sni="www.bbc.co.uk")
    store.insert_activity(engine.evaluate(to_table([seen])))
    day = dt.datetime(2026, 6, 16, tzinfo=dt.UTC)
    (found,) = incidents.incidents(store, day, day + dt.timedelta(days=1))
    assert (found["rule_id"], found["user"], found["device"], found["responsible"]) == (
        "lost-device-seen", "", "IPAD-BANK-3B", "lnguyen")
    page = render.page("web/incidents.html.j2", school="V", me=None, csrf="", title="Incidents", incidents=[found],
                       days=1, first=dt.date(2026, 6, 16), last=dt.date(2026, 6, 16))
    assert "<td>IPAD-BANK-3B, in the care of lnguyen</td>" in page


@pytest.fixture(scope="module")
def site(day):
    """`ictwatch serve` over the day's store, which it then holds (one process opens an embedded store): the
    tests that use it come last."""
    need_chromium()
    config, store, _ = day
    for user in ("hmorgan", "afinch", "dpatel"):
        subprocess.run([sys.executable, "-m", "ictwatch.cli", "account", "--config", str(config), "--user", user],
                       input=PASSWORD + "\n", text=True, check=True, capture_output=True, cwd=ROOT)
    port = int(config.read_text().split("listen: 127.0.0.1:")[1].split()[0])
    env = dict(os.environ, ICTWATCH_STORAGE_URL=f"chdb://{store}")
    server = subprocess.Popen([sys.executable, "-m", "ictwatch.cli", "serve", "--config", str(config)], cwd=ROOT,
                              env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and server.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    assert server.poll() is None, server.communicate()[1]
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    _, log = server.communicate(timeout=30)
    assert "IPAD-BANK" not in log and "sokafor" not in log


def _login(browser, site, user):
    page = browser.new_context().new_page()
    page.goto(f"{site}/login")
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("#login")
    return page


def test_the_safeguarding_lead_asks_for_a_device_report_on_the_page(browser, site, day):
    page = _login(browser, site, "afinch")
    page.select_option("#device", "IPAD-BANK-6A")
    page.fill("#device-start", "2026-06-16")
    page.fill("#device-end", "2026-06-16")
    page.fill("#device-reason", "iPads not in lessons")
    page.click("#request-device")
    assert "Device IPAD-BANK-6A, 2026-06-16 to 2026-06-16" in page.inner_text("main")
    with page.expect_popup() as popup:
        page.click("#open")
    report = popup.value
    report.wait_for_load_state()
    text = report.inner_text("body")
    assert "device activity report" in text and "in the care of Sam Okafor (sokafor): pupils use it" in text
    assert "ipad-not-seen" in text


def test_the_device_form_is_not_offered_and_refused_to_a_line_manager(browser, site):
    page = _login(browser, site, "dpatel")
    assert page.locator("#device").count() == 0  # the register's ids are not listed for those who may not ask
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    response = page.request.post(f"{site}/report", form={"csrf": csrf, "device": "IPAD-BANK-6A", "start": "2026-06-16",
                                                         "end": "2026-06-16", "reason": "curious"})
    assert response.status == 403 and "device reports are for the headteacher" in response.text()
