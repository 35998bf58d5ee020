"""The metrics and health endpoint is bounded like the report page: idle or endless requests cannot hold
its threads, and a scrape still gets through while they try."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from ictwatch import status


@pytest.fixture
def endpoint() -> Iterator[tuple[str, int]]:
    server = status.serve("127.0.0.1:0")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[:2]
    finally:
        server.shutdown()
        server.server_close()


def scrape(address: tuple[str, int], path: str = "/metrics") -> tuple[int, str, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"http://{address[0]}:{address[1]}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode(), dict(answer.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


def test_idle_connections_are_let_go_and_scrapes_resume(endpoint, monkeypatch):
    """Three times the cap of silent connections from one machine (127.0.0.2; Linux routes all of 127/8 to
    lo): the ones past the cap are closed at once, the rest when their request time runs out (the stdlib
    server kept every one, each with a thread, for ever), and a scrape from another machine is served
    meanwhile (until their 408 and lingering close are over, they hold that machine's 6 places)."""
    monkeypatch.setattr(status.LIMITS, "request_timeout_s", 1.0)
    idle = [socket.create_connection(endpoint, source_address=("127.0.0.2", 0))
            for _ in range(status.LIMITS.max_connections * 3)]
    try:
        time.sleep(1.5)
        code, body, _ = scrape(endpoint)
        assert code == 200 and "# TYPE" in body
        closed = 0
        for s in idle:
            s.settimeout(0.5)
            with contextlib.suppress(OSError):
                closed += s.recv(1024) is not None  # b"" (closed) or a 408 answer: the server let it go
        assert closed == len(idle)
    finally:
        for s in idle:
            s.close()


def test_an_endless_header_is_refused_with_431(endpoint):
    with socket.create_connection(endpoint, timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
        with contextlib.suppress(OSError):
            for _ in range(200):
                s.sendall(b"X-Pad: " + b"a" * 1000 + b"\r\n")
        got = b""
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                got += chunk
    assert got.startswith(b"HTTP/1.0 431 ")
    assert b"Content-Security-Policy:" in got


def test_health_and_unknown_routes(endpoint):
    code, body, headers = scrape(endpoint, "/health")
    assert code in (200, 503) and '"parts"' in body
    assert headers["Content-Type"] == "application/json"
    assert scrape(endpoint, "/nothing")[0] == 404
