"""HTTP/1.x request and response heads."""

from __future__ import annotations

import pytest

from collector.packet.http import is_request, parse_request, parse_response


def test_origin_form_request_builds_url_from_host():
    req = parse_request(b"GET /a?b=1 HTTP/1.1\r\nHost: Example.ORG:8080\r\nUser-Agent: curl/8\r\n\r\n")
    assert (req.method, req.host, req.url, req.user_agent) == ("GET", "example.org", "http://Example.ORG:8080/a?b=1",
                                                               "curl/8")


def test_absolute_form_proxy_request():
    req = parse_request(b"GET http://news.example/x HTTP/1.1\r\nUser-Agent: u\r\n\r\n")
    assert (req.host, req.url) == ("news.example", "http://news.example/x")


def test_request_head_split_over_segments_keeps_what_arrived():
    req = parse_request(b"GET / HTTP/1.1\r\nHost: a.example\r\nUser-Ag")
    assert req.host == "a.example" and req.user_agent is None


def test_response_status_and_type():
    resp = parse_response(b"HTTP/1.1 304 Not Modified\r\nContent-Type: Text/HTML; charset=utf-8\r\n\r\n")
    assert (resp.status, resp.content_type) == (304, "text/html")


@pytest.mark.parametrize("data", [b"GET /\r\n\r\n", b"GET /x FTP/1.0\r\n\r\n"])
def test_bad_request_lines(data):
    with pytest.raises(ValueError):
        parse_request(data)


def test_is_request():
    assert is_request(b"POST /x HTTP/1.1") and not is_request(b"\x16\x03\x01")



@pytest.mark.parametrize(("target", "content_type", "ext"), [
    ("/download.php?id=3", b"application/x-msdownload", "exe"),  # the response says what the file is
    ("/tools/Setup.exe", b"application/octet-stream", "exe"),
    ("/year5/worksheet.pdf", b"application/pdf", "pdf"),
    ("/news/education", b"text/html; charset=utf-8", None),
])
def test_a_download_takes_its_file_type_from_the_response(tmp_path, target, content_type, ext):
    """On the wire the request names the file and the response's head says what it is."""
    from collector.sources import open_source
    from fixtures.make_school_day import Writer

    path = tmp_path / "download.pcap"
    w = Writer(path)
    w.at("09:00:00")
    w.tcp("00:1b:21:aa:00:01", "10.20.10.21", "203.0.113.80", 80, [
        (True, f"GET {target} HTTP/1.1\r\nHost: dl.example.net\r\n\r\n".encode()),
        (False, b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type + b"\r\nContent-Length: 4\r\n\r\nMZ\x90\x00")])
    w.out.close()
    found: list = []
    open_source(path).run(found.append)
    (request,) = [o for o in found if o.kind == "http"]
    assert (request.url, request.file_ext) == (f"http://dl.example.net{target}", ext)
