"""A real Squid (Debian's) on loopback: a forward proxy with basic authentication in front of a local web
server, one site denied by an ACL. Its access log, replayed, must name the user, the host and the denial;
the login challenges (407) it logs as TCP_DENIED are not blocked attempts, and an installer fetched
through it keeps its file type.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest

from tests.conftest import SCHOOL_DAY, HtmlPage, free_port, run_cli, school_config, stored_activity


class Downloads(HtmlPage):
    """The lesson page, and an installer at `/download.php`, sent as Windows servers send executables."""

    def do_GET(self) -> None:  # noqa: N802 - the standard library's name
        if not self.path.startswith("/download.php"):
            super().do_GET()
            return
        body = b"MZ\x90\x00" * 256
        self.send_response(200)
        self.send_header("Content-Type", "application/x-msdownload")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

SQUID = shutil.which("squid") or "/usr/sbin/squid"
SCHOOL_LOGFORMAT = '%tl %>a:%>p %un %rm %ru %>Hs %<st %tr %Ss %mt "%{User-Agent}>h"'  # a school's own format
pytestmark = pytest.mark.skipif(not Path(SQUID).exists() or not Path("/usr/lib/squid/basic_ncsa_auth").exists(),
                                reason="Squid is not installed (./dev test installs it when run as root)")




def htpasswd_line(user: str, password: str) -> str:
    hashed = subprocess.run(["openssl", "passwd", "-apr1", password], capture_output=True, text=True,
                            check=True).stdout.strip()
    return f"{user}:{hashed}\n"


@pytest.fixture
def squid(tmp_path):
    web = http.server.HTTPServer(("127.0.0.1", 0), Downloads)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    port = free_port()
    # Squid drops to its own user: its files live in a directory that user can reach (pytest's are private)
    root = Path(tempfile.mkdtemp(prefix="ictwatch-squid-"))
    os.chmod(root, 0o777)
    (root / "passwd").write_text(htpasswd_line("jcarter", "correct horse"))
    conf = root / "squid.conf"
    conf.write_text(f"""
http_port 127.0.0.1:{port}
pid_filename {root}/squid.pid
access_log stdio:{root}/access.log squid
access_log stdio:{root}/combined.log combined
logformat school {SCHOOL_LOGFORMAT}
access_log stdio:{root}/school.log school
cache_log {root}/cache.log
cache deny all
coredump_dir {root}
shutdown_lifetime 0 seconds
auth_param basic program /usr/lib/squid/basic_ncsa_auth {root}/passwd
auth_param basic realm ictwatch test
acl staff proxy_auth REQUIRED
acl gambling dstdomain .casino.test
http_access deny !staff
http_access deny gambling
http_access allow staff
http_access deny all
hosts_file {root}/hosts
""")
    (root / "hosts").write_text("127.0.0.1 lessons.test www.casino.test\n")
    proc = subprocess.Popen([SQUID, "-N", "-f", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    cache_log = root / "cache.log"
    while time.time() < deadline:  # not a probe connection: Squid would log it as a request
        if cache_log.exists() and "Accepting HTTP Socket connections" in cache_log.read_text():
            break
        time.sleep(0.2)
    else:
        proc.kill()
        out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        pytest.fail(f"squid did not start: {out[-2000:]}")
    yield port, web.server_address[1], root
    proc.terminate()
    proc.wait(timeout=30)
    web.shutdown()
    shutil.rmtree(root, ignore_errors=True)


def fetch(proxy_port: int, url: str, auth: str | None) -> int:
    handler = urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{proxy_port}"})
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Proxy-Authorization", "Basic " + b64encode(auth.encode()).decode())
    try:
        return urllib.request.build_opener(handler).open(request, timeout=10).status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_activities_name_the_user_host_and_denial(squid, tmp_path):
    proxy_port, web_port, root = squid
    # As a browser does: each request first without credentials, answered 407, then again with them.
    for url in (f"http://lessons.test:{web_port}/plan.html", f"http://www.casino.test:{web_port}/bet",
                f"http://lessons.test:{web_port}/download.php?id=3"):
        assert fetch(proxy_port, url, None) == 407
        assert fetch(proxy_port, url, "jcarter:correct horse") == (403 if "casino" in url else 200)
    log = root / "access.log"
    deadline = time.time() + 10
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 6):
        time.sleep(0.2)
    store = tmp_path / "store"
    proc = run_cli("replay", "--config", SCHOOL_DAY / "ictwatch.yaml", log, store=store, check=True)
    assert "the proxy refused 1 request" in proc.stdout  # the ACL's denial; the three 407s are not refusals

    rows = stored_activity(store).to_dicts()
    seen = sorted((r["user"], r["host"], r["status"], r["denied"], r["proxy_action"][:8], r["file_ext"] or "")
                  for r in rows)
    assert seen == [
        ("", "lessons.test", 407, False, "TCP_DENI", "html"),  # no credentials yet: asked, nobody named
        ("", "lessons.test", 407, False, "TCP_DENI", "php"),  # the challenge is Squid's HTML: the name stays
        ("", "www.casino.test", 407, False, "TCP_DENI", ""),
        # TCP_MISS, or TCP_MISS_ABORTED as urllib hangs up
        ("jcarter", "lessons.test", 200, False, "TCP_MISS", "exe"),  # download.php sent an executable
        ("jcarter", "lessons.test", 200, False, "TCP_MISS", "html"),
        ("jcarter", "www.casino.test", 403, True, "TCP_DENI", ""),  # authenticated, then denied by the ACL
    ]
    assert {r["verdict"] for r in rows if r["status"] == 407} == {"allowed"}  # not "blocked"
    assert all(r["src_ip"] == "127.0.0.1" and r["kind"] == "proxy" for r in rows)
    # The same requests in Squid's combined format give the same activities (and the User-Agent).
    combined = tmp_path / "combined-store"
    run_cli("replay", "--config", SCHOOL_DAY / "ictwatch.yaml", root / "combined.log", store=combined, check=True)
    other = stored_activity(combined).to_dicts()
    without_types = sorted(row[:5] + ({"exe": "php"}.get(row[5], row[5]),) for row in seen)  # no %mt: names only
    assert sorted((r["user"], r["host"], r["status"], r["denied"], r["proxy_action"][:8], r["file_ext"] or "")
                  for r in other) == without_types
    assert {r["user_agent"] for r in other} == {f"Python-urllib/{sys.version_info.major}.{sys.version_info.minor}"}
    # ...and in the school's own logformat, read with that SPEC from the configuration.
    config = school_config(tmp_path / "school", f"collector:\n  squid_logformat: '{SCHOOL_LOGFORMAT}'\n")
    custom = tmp_path / "custom-store"
    run_cli("replay", "--config", config, root / "school.log", store=custom, check=True)
    mine = stored_activity(custom).to_dicts()
    assert sorted((r["user"], r["host"], r["status"], r["denied"], r["proxy_action"][:8], r["file_ext"] or "")
                  for r in mine) == seen  # %ru and %mt: the same file types
    assert {r["src_port"] for r in mine} != {None}  # the client port, which only this format logs
