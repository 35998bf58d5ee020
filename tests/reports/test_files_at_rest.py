"""A report as a file, once the command has written it: readable by its owner only whatever the umask, an
encrypted export that names nobody to someone without the passphrase, and an HTML report that runs no
script even if some were smuggled into it (its own Content-Security-Policy, for when it is opened from
disk, where no web server sends one). Real `ictwatch` subprocesses on the school day, real Chromium."""

from __future__ import annotations

import os
import stat
import zipfile

import pytest

from reports.web import HEADERS
from tests.conftest import SCHOOL_DAY, run_cli
from tests.reports.conftest import need_chromium

CONFIG = SCHOOL_DAY / "ictwatch.yaml"
ASK = ["--user", "sokafor", "--from", "2026-06-16", "--to", "2026-06-16", "--requested-by", "dpatel", "--reason",
       "review"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = tmp_path_factory.mktemp("rest") / "store"
    run_cli("replay", "--config", CONFIG, SCHOOL_DAY / "school-day.pcap", store=store, check=True)
    return store


@pytest.fixture
def umask_022():
    """The umask a network manager's shell usually has: files 0644 unless made otherwise."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("extra", [[], ["--format", "csv"], ["--encrypt"]], ids=["html", "csv", "encrypted"])
def test_a_report_is_written_readable_by_its_owner_only(store, tmp_path, umask_022, extra):
    """New, and over an older report left readable by everyone: 0600 each time. The older file is
    replaced by a new one, not rewritten in place, so whoever held it open reads the old one still."""
    out = tmp_path / "r.out"
    env = {"ICTWATCH_EXPORT_PASSPHRASE": "correct horse battery staple"}
    run_cli("report", "--config", CONFIG, *ASK, *extra, "-o", out, store=store, check=True, env=env)
    assert mode(out) == 0o600
    out.write_bytes(b"an older report")
    out.chmod(0o644)
    with out.open("rb") as held:
        run_cli("report", "--config", CONFIG, *ASK, *extra, "-o", out, store=store, check=True, env=env)
        assert mode(out) == 0o600
        assert held.read() == b"an older report"


def test_a_report_to_a_device_is_written_into_it(store):
    """`-o /dev/stdout` (or a pipe) is written through, not replaced by a file."""
    proc = run_cli("report", "--config", CONFIG, *ASK, "-o", "/dev/stdout", store=store, check=True)
    assert proc.stdout.startswith("<!doctype html>")


def test_the_encrypted_export_names_nobody_without_the_passphrase(store, tmp_path):
    """A ZIP's file names are not encrypted (WinZip AES hides the contents only): anyone holding the file
    reads them. So the one file inside is `report.html`, not the person's username and the period."""
    out = tmp_path / "export.zip"
    run_cli("report", "--config", CONFIG, *ASK, "--encrypt", "-o", out, store=store, check=True,
            env={"ICTWATCH_EXPORT_PASSPHRASE": "correct horse battery staple"})
    with zipfile.ZipFile(out) as z:  # no passphrase given
        assert z.namelist() == ["report.html"]
    assert b"sokafor" not in out.read_bytes()


def csp_directives(policy: str) -> dict[str, str]:
    return {d.split()[0]: " ".join(d.split()[1:]) for d in policy.split(";") if d.strip()}


def test_the_html_report_carries_the_web_page_policy(store, tmp_path):
    """The page's own policy is the web page's header, less what a `<meta>` cannot carry (frame-ancestors,
    which browsers ignore there) and with no form anywhere (the report has none)."""
    out = tmp_path / "r.html"
    run_cli("report", "--config", CONFIG, *ASK, "-o", out, store=store, check=True)
    html = out.read_text()
    head = html[: html.index("<style>")]  # before anything it must govern
    meta = '<meta http-equiv="Content-Security-Policy" content="'
    assert meta in head
    policy = csp_directives(head.split(meta, 1)[1].split('"', 1)[0])
    web = csp_directives(HEADERS["Content-Security-Policy"])
    assert policy == {k: v for k, v in web.items() if k != "frame-ancestors"} | {"form-action": "'none'"}


def test_script_smuggled_into_the_html_report_does_not_run_in_chromium(store, tmp_path, browser):
    """As if a value had escaped the template's escaping: an inline script, an inline event handler and a
    script from a file beside the report. Opened from disk in Chromium, none runs, and Chromium reports
    each refusal as the page's Content-Security-Policy."""
    need_chromium()
    out = tmp_path / "r.html"
    run_cli("report", "--config", CONFIG, *ASK, "-o", out, store=store, check=True)
    (tmp_path / "x.js").write_text("document.body.dataset.ran = 'file';")
    smuggled = ('<script>document.body.dataset.ran = "inline";</script>'
                '<img src="data:," onload="document.body.dataset.ran = \'handler\'">'
                '<script src="x.js"></script>')
    out.write_text(out.read_text().replace("<body>", "<body>" + smuggled, 1))
    page = browser.new_page()
    said: list[str] = []
    page.on("console", lambda message: said.append(message.text))
    page.goto(out.as_uri())
    page.wait_for_load_state("load")
    assert page.evaluate("document.body.dataset.ran") is None
    refusals = [m for m in said if "Content Security Policy" in m]
    assert len(refusals) >= 3, said
    page.close()
