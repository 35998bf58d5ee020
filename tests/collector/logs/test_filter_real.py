"""Real web filters (Debian's e2guardian and squidGuard) write their logs; ictwatch reads them back.

e2guardian runs as a proxy on loopback in front of a local web server, with its proxy-basic plugin
naming the user and one site banned, once with each log format (1, 2 and 4) and once with format 1 and
`anonymizelogs` (which leaves the user and client host empty: two spaces in a row); squidGuard runs as Squid
would run it, a redirector fed requests on stdin. Both run in a time zone far from UTC (India, +05:30),
so the local times in their logs must be read in that zone to land on the right instant.
"""

from __future__ import annotations

import http.server
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest

from collector.config import CollectorSettings
from collector.sources import open_source
from tests.conftest import HtmlPage, free_port

ZONE = "Asia/Kolkata"
E2GUARDIAN = shutil.which("e2guardian") or "/usr/sbin/e2guardian"
SQUIDGUARD = shutil.which("squidGuard") or "/usr/bin/squidGuard"


def read(path: Path) -> list:
    out: list = []
    source = open_source(path, CollectorSettings(log_timezone=ZONE))
    source.run(out.append)
    assert source.skips.total == 0
    return out




def e2guardian_conf(root: Path, port: int, log_format: int, anonymise: bool) -> Path:
    """Debian's configuration, moved under `root`, with one banned site, the given log format and, if asked,
    anonymised logs."""
    shutil.copytree("/etc/e2guardian", root, dirs_exist_ok=True)
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in (".conf", ".story", "") and "lists" not in path.parts[-2:-1]:
            text = path.read_text(errors="replace")
            if "/etc/e2guardian" in text:
                path.write_text(text.replace("/etc/e2guardian", str(root)))
    conf = root / "e2guardian.conf"
    text = conf.read_text()
    for pattern, value in ((r"(?m)^logfileformat = .*$", f"logfileformat = {log_format}"),
                           (r"(?m)^#?loglocation = .*$", f"loglocation = '{root}/access.log'"),
                           (r"(?m)^#?pidfilename = .*$", f"pidfilename = '{root}/e2guardian.pid'"),
                           (r"(?m)^#authplugin = '.*proxy-basic.conf'$",
                            f"authplugin = '{root}/authplugins/proxy-basic.conf'"),
                           (r"(?m)^nodaemon = .*$", "nodaemon = on"),
                           (r"(?m)^loguseragent = .*$", "loguseragent = on"),
                           (r"(?m)^filterports = .*$", f"filterports = {port}"),
                           (r"(?m)^httpworkers = .*$", "httpworkers = 20"),
                           (r"(?m)^#anonymizelogs = .*$", f"anonymizelogs = {'on' if anonymise else 'off'}")):
        text, n = re.subn(pattern, value, text)
        assert n == 1, pattern  # Debian's file still has the setting this test changes
    conf.write_text(text)
    banned = root / "lists" / "bannedsitelist"
    banned.write_text(banned.read_text() + "\ncasino.test\n")
    os.chmod(root, 0o777)
    return conf


def fetch(proxy_port: int, url: str) -> int:
    request = urllib.request.Request(url, headers={
        "Proxy-Authorization": "Basic " + b64encode(b"jcarter:not-checked-here").decode(),
        "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) ictwatch-test"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{proxy_port}"}))
    try:
        return opener.open(request, timeout=10).status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.skipif(not Path(E2GUARDIAN).exists(), reason="e2guardian is not installed (./dev test installs it)")
@pytest.mark.parametrize(("log_format", "anonymise"), [(1, False), (2, False), (4, False), (1, True)],
                         ids=["format 1", "format 2", "format 4", "format 1 anonymised"])
def test_e2guardian_log_names_user_host_denial_and_category(log_format, anonymise):
    web = http.server.HTTPServer(("127.0.0.1", 0), HtmlPage)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    # e2guardian drops to its own user: its files live where that user can reach (pytest's are private)
    root = Path(tempfile.mkdtemp(prefix="ictwatch-e2g-"))
    port = free_port()
    conf = e2guardian_conf(root, port, log_format, anonymise)
    proc = subprocess.Popen([E2GUARDIAN, "-N", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "TZ": ZONE})
    try:
        deadline = time.time() + 30
        while time.time() < deadline and proc.poll() is None:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        else:
            output = proc.stdout.read(2000).decode(errors="replace") if proc.poll() is not None and proc.stdout else ""
            pytest.fail(f"e2guardian did not start: {output}")
        start = time.time()
        web_port = web.server_address[1]
        assert fetch(port, f"http://127.0.0.1:{web_port}/timetable.html") == 200
        fetch(port, f"http://www.casino.test:{web_port}/bet")  # banned, so never resolved: the block page
        log = root / "access.log"
        deadline = time.time() + 15
        while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 2):
            time.sleep(0.2)
        end = time.time()
        allowed, denied = read(log)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        web.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    assert {allowed.source, denied.source} == {"e2guardian"}
    for o in (allowed, denied):
        assert int(start) - 1 <= o.ts_us / 1e6 <= end + 1  # the local time, read in the right zone
        assert (o.proxy_user, o.src_ip, o.method) == (None, "0.0.0.0", "GET") if anonymise else (
            "jcarter", "127.0.0.1", "GET")
        assert o.user_agent == "Mozilla/5.0 (X11; Linux x86_64) ictwatch-test"
    assert (allowed.host, allowed.status, allowed.denied) == ("127.0.0.1", 200, False)
    assert (denied.host, denied.status, denied.denied, denied.filter_category) == ("www.casino.test", 403, True,
                                                                                   "Banned Sites")
    assert denied.filter_reason.startswith("*DENIED* ") and "casino.test" in denied.filter_reason


@pytest.mark.skipif(not Path(SQUIDGUARD).exists(), reason="squidGuard is not installed (./dev test installs it)")
def test_squidguard_request_log(tmp_path):
    (tmp_path / "db" / "gambling").mkdir(parents=True)
    (tmp_path / "db" / "gambling" / "domains").write_text("casino.test\n")
    (tmp_path / "log").mkdir()
    conf = tmp_path / "squidGuard.conf"
    conf.write_text(f"""dbhome {tmp_path}/db
logdir {tmp_path}/log
src staff {{
    ip 10.20.0.0/16
}}
dest gambling {{
    domainlist gambling/domains
    log requests.log
}}
acl {{
    staff {{
        pass !gambling all
        redirect http://blocked.valley.test/?url=%u
    }}
    default {{
        pass none
        redirect http://blocked.valley.test/
    }}
}}
""")
    requests = ("http://www.casino.test/bet 10.20.10.50/- rbaker GET\n"
                "http://lessons.test/plan 10.20.10.50/- rbaker GET\n")
    start = time.time()
    done = subprocess.run([SQUIDGUARD, "-c", str(conf)], input=requests, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "TZ": ZONE})
    end = time.time()
    assert done.stdout.splitlines()[0].startswith("OK rewrite-url=")  # squidGuard did redirect the first
    (o,) = read(tmp_path / "log" / "requests.log")  # a pass is not logged without `verbose`
    assert int(start) - 1 <= o.ts_us / 1e6 <= end + 1
    assert (o.source, o.src_ip, o.proxy_user, o.host, o.method) == (
        "squidguard", "10.20.10.50", "rbaker", "www.casino.test", "GET")
    assert (o.denied, o.filter_category, o.proxy_action) == (True, "gambling", "REDIRECT")
