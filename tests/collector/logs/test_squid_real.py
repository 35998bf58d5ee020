"""A real Squid (Debian's) on loopback: a forward proxy with basic authentication in front of a local web
server, one site denied by an ACL. Its access log, replayed, must name the user, the host and the denial;
the login challenges (407) it logs as TCP_DENIED are not blocked attempts, and an installer fetched
through it keeps its file type. In the logformat docs/log-formats.md gives, each request's size is read
too: an upload (a POST, and bytes sent through a CONNECT tunnel) counts as the bytes the client sent.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import socketserver
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

from collector.logs.squid_logformat import RECOMMENDED
from tests.conftest import ROOT, SCHOOL_DAY, HtmlPage, free_port, run_cli, school_config, stored_activity

DROP_IN = ROOT / "deploy" / "squid" / "ictwatch.conf"
LOGFORMAT = next(line for line in DROP_IN.read_text().splitlines() if line.startswith("logformat "))
"""The logformat line of the squid.conf drop-in deploy/ ships, which the Squid here logs with too."""
FILM = 21_000_000
"""Bytes of the film `/film.mp4` sends, and of the upload: over the shipped policy's 20 MB upload bar."""


class Downloads(HtmlPage):
    """The lesson page, an installer at `/download.php`, sent as Windows servers send executables, a film at
    `/film.mp4`, and uploads taken by POST."""

    def do_GET(self) -> None:  # noqa: N802 - the standard library's name
        if self.path == "/film.mp4":
            self.answer(200, "video/mp4", bytes(FILM))
        elif self.path.startswith("/download.php"):
            self.answer(200, "application/x-msdownload", b"MZ\x90\x00" * 256)
        else:
            super().do_GET()

    def do_POST(self) -> None:  # noqa: N802 - the standard library's name
        """An upload: the body read whole, a short answer."""
        self.rfile.read(int(self.headers["Content-Length"]))
        self.answer(201, "text/plain", b"stored\n")

    def answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Sink(socketserver.BaseRequestHandler):
    """A server behind a CONNECT tunnel: reads `UP` bytes, answers `DOWN`, hangs up."""

    UP, DOWN = 3_000_000, 1_000_000

    def handle(self) -> None:
        left = self.UP
        while left:
            got = self.request.recv(min(left, 1 << 16))
            if not got:
                return
            left -= len(got)
        self.request.sendall(bytes(self.DOWN))

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
    sink = socketserver.TCPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
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
{LOGFORMAT}
access_log stdio:{root}/ictwatch.log ictwatch
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
    (root / "hosts").write_text("127.0.0.1 lessons.test www.casino.test www.wetransfer.com\n")
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
    yield port, web.server_address[1], root, sink.server_address[1]
    proc.terminate()
    proc.wait(timeout=30)
    web.shutdown()
    sink.shutdown()
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
    proxy_port, web_port, root, _ = squid
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


AUTH = "Proxy-Authorization: Basic " + b64encode(b"jcarter:correct horse").decode() + "\r\n"


def exchange(proxy_port: int, head: str, body: bytes = b"", tunnelled: bytes = b"") -> tuple[int, int]:
    """Send `head` and `body` to the proxy; for a CONNECT, once the tunnel is up, `tunnelled` through it. Read
    until the proxy hangs up. Returns (bytes sent, bytes received), as counted on the client's socket."""
    sent = received = 0
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=30) as conn:
        conn.sendall(head.encode() + body)
        sent += len(head) + len(body)
        if tunnelled:
            answer = b""
            while not answer.endswith(b"\r\n\r\n"):  # Squid's "200 Connection established", nothing after
                answer += conn.recv(1)
            assert answer.startswith(b"HTTP/1.1 200 ")
            received += len(answer)
            conn.sendall(tunnelled)
            sent += len(tunnelled)
        while chunk := conn.recv(1 << 16):
            received += len(chunk)
    return sent, received


def test_request_and_reply_sizes_in_the_recommended_logformat(squid, tmp_path):
    """Issue 20, point 2: Squid's `%>st` is the bytes the client sent (request line, headers and body; for a
    CONNECT, its request and all it sent through the tunnel) and `%<st` the bytes Squid sent back: each
    equals what the client's own socket counted. Replayed with the shipped policy, the 21 MB POST to a file
    sharing site breaks its upload rule as a flow of that size would; a 21 MB download and a 3 MB upload
    through a tunnel to the same site do not."""
    assert f"logformat ictwatch {RECOMMENDED}" == LOGFORMAT  # the drop-in logs what docs/log-formats.md reads
    proxy_port, web_port, root, sink_port = squid
    site = f"www.wetransfer.com:{web_port}"
    upload = bytes(FILM)
    post = exchange(proxy_port, f"POST http://{site}/upload HTTP/1.1\r\nHost: {site}\r\n{AUTH}Content-Length: "
                    f"{len(upload)}\r\nConnection: close\r\n\r\n", upload)
    film = exchange(proxy_port, f"GET http://{site}/film.mp4 HTTP/1.1\r\nHost: {site}\r\n{AUTH}"
                    "Connection: close\r\n\r\n")
    tunnel = f"www.wetransfer.com:{sink_port}"
    connect = exchange(proxy_port, f"CONNECT {tunnel} HTTP/1.1\r\nHost: {tunnel}\r\n{AUTH}\r\n",
                       tunnelled=bytes(Sink.UP))
    log = root / "ictwatch.log"
    deadline = time.time() + 10
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.2)

    config = school_config(tmp_path / "school", f"collector:\n  squid_logformat: '{RECOMMENDED}'\n")
    store = tmp_path / "store"
    run_cli("replay", "--config", config, log, store=store, check=True)
    rows = {r["method"]: r for r in stored_activity(store).to_dicts()}
    assert {m: (r["bytes_out"], r["bytes_in"]) for m, r in rows.items()} == {
        "POST": post, "GET": film, "CONNECT": connect}
    # the bodies and what the tunnel carried, each with no more than a kilobyte of request line and headers
    assert 0 < post[0] - FILM < 1024 and 0 < film[1] - FILM < 1024
    assert 0 < connect[0] - Sink.UP < 1024 and 0 < connect[1] - Sink.DOWN < 1024
    assert {m: r["rule_ids"] for m, r in rows.items()} == {
        "POST": ["unapproved-file-sharing-upload"], "GET": [], "CONNECT": []}
    assert {(r["host"], r["user"]) for r in rows.values()} == {("www.wetransfer.com", "jcarter")}
