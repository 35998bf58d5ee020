"""Squid native-format lines, checked against Filebeat's squid module on the same real logs."""

from __future__ import annotations

import datetime as dt

import pytest

from collector.logs.squid import parse_common_line, parse_line
from collector.sources import LogLineSource, open_source
from tests.conftest import SQUID_PEER, need


def test_first_line_matches_filebeats_expected_parse():
    """Filebeat: action TCP_MISS, CONNECT, 200, 19763 bytes, client 10.105.21.199, server 209.73.177.115,
    domain login.yahoo.com, user badeyek, 5006 ms, time 2006-09-08T04:21:52Z."""
    line = (need(SQUID_PEER) / "filebeat_access1.log").read_text().splitlines()[0]
    o = parse_line(line, "access1.log:1")
    assert (o.proxy_action, o.method, o.status, o.bytes_in) == ("TCP_MISS", "CONNECT", 200, 19763)
    assert (o.src_ip, o.dst_ip, o.host, o.dst_port, o.proxy_user) == (
        "10.105.21.199", "209.73.177.115", "login.yahoo.com", 443, "badeyek")
    assert o.duration_s == 5.006
    assert o.ts.replace(microsecond=0) == dt.datetime(2006, 9, 8, 4, 21, 52, tzinfo=dt.UTC)


@pytest.mark.parametrize("name", ["filebeat_access1.log", "filebeat_access2.log"])
def test_real_logs_parse_without_a_skip(name):
    source = open_source(need(SQUID_PEER) / name)
    assert isinstance(source, LogLineSource) and source.format == "squid"
    out: list = []
    source.run(out.append)
    assert (len(out), source.skips.total) == (100, 0)
    denied = [o for o in out if o.denied]
    assert all(o.proxy_action == "TCP_DENIED" for o in denied)


def test_denied_anonymous_and_parent_hierarchy():
    o = parse_line("1035368729.430 0 210.8.79.228 TCP_DENIED/403 1400 GET http://bad.example:8080/x - "
                   "FIRST_PARENT_MISS/proxy2.example text/html", "a:1")
    assert (o.denied, o.proxy_user, o.dst_ip, o.host, o.dst_port, o.status) == (
        True, None, None, "bad.example", 8080, 403)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not a squid line at all", "fields"),
        ("abc 1 10.0.0.1 TCP_MISS/200 1 GET http://a/ - DIRECT/1.2.3.4 -", "bad time"),
        ("1.0 1 10.0.0.1 TCP_MISS/xx 1 GET http://a/ - DIRECT/1.2.3.4 -", "bad action/status"),
        ("1.0 1 <script> TCP_MISS/200 1 GET http://a/ - DIRECT/1.2.3.4 -", "bad client"),
    ],
)
def test_bad_lines_name_the_field(line, message):
    with pytest.raises(ValueError, match=message):
        parse_line(line, "a:1")


def test_garbage_line_in_a_log_is_counted_and_skipped(tmp_path):
    good = "1157689312.049 5006 10.105.21.199 TCP_MISS/200 19763 CONNECT login.yahoo.com:443 u DIRECT/1.2.3.4 -\n"
    path = tmp_path / "access.log"
    path.write_text(good + "\x00\x01garbage\n" + good)
    source = open_source(path)
    out: list = []
    source.run(out.append)
    assert [o.source_ref for o in out] == ["access.log:1", "access.log:3"]
    assert source.skips.by_reason == {"bad_squid_line": 1}


def test_transaction_that_never_became_a_request_names_no_host():
    o = parse_line("1795901392.2 0 127.0.0.1 NONE_NONE/000 0 NONE error:transaction-end-before-headers - HIER_NONE/- -",
                   "a:1")
    assert (o.host, o.dst_port, o.status, o.method) == (None, None, None, "NONE")


@pytest.mark.parametrize(
    ("line", "user", "agent"),
    [
        ('10.20.10.21 - jcarter [16/Jun/2026:09:15:00 +0100] "GET http://www.bbc.co.uk/news HTTP/1.1" 200 5120 '
         "TCP_MISS:HIER_DIRECT", "jcarter", None),
        ('10.20.10.21 - - [16/Jun/2026:09:15:00 +0100] "CONNECT www.bet365.com:443 HTTP/1.1" 403 3900 '
         '"-" "Mozilla/5.0 (X11)" TCP_DENIED:HIER_NONE', None, "Mozilla/5.0 (X11)"),
    ],
)
def test_common_and_combined_lines(line, user, agent):
    from collector.config import CollectorSettings
    from collector.logs.formats import Sample, detect
    from collector.logs.squid import parse_common_line

    assert detect(Sample.of(line.encode()), CollectorSettings()).name == "squid-common"
    o = parse_common_line(line, "c:1")
    assert o.ts == dt.datetime(2026, 6, 16, 8, 15, tzinfo=dt.UTC)  # 09:15 BST
    assert (o.proxy_user, o.user_agent, o.src_ip) == (user, agent, "10.20.10.21")
    assert o.denied == ("DENIED" in line) and o.host in ("www.bbc.co.uk", "www.bet365.com")



# Lines Debian's Squid 5.7 wrote (addresses and host names changed): which are blocked attempts.
@pytest.mark.parametrize(("result", "url", "user", "refused"), [
    ("TCP_DENIED/407", "http://lessons.test/a.html", "-", False),  # the challenge every session starts with
    ("TCP_DENIED/407", "http://lessons.test/a.html", "jcarter", False),  # a wrong password: asked again
    ("TCP_DENIED/403", "http://www.casino.test/a", "jcarter", True),  # http_access deny
    ("TCP_DENIED/403", "www.casino.test:443", "jcarter", True),  # the same for a CONNECT
    ("TCP_DENIED/302", "http://www.redir.test/a", "jcarter", True),  # deny_info with a block page's URL
    ("TCP_DENIED/000", "http://www.reset.test/a", "jcarter", True),  # deny_info TCP_RESET
    ("TCP_DENIED_REPLY/403", "http://lessons.test/Setup.exe", "jcarter", True),  # http_reply_access deny
    ("TCP_MISS/502", "http://nonexistent.invalid/", "jcarter", False),  # the server could not be reached
    ("TCP_MISS/403", "http://lessons.test/private", "jcarter", False),  # the server's own refusal
    ("NONE_NONE/400", "error:invalid-request", "-", False),  # a malformed request
    ("NONE_NONE/000", "error:transaction-end-before-headers", "-", False),
    ("TCP_DENIED/400", "NONE://", "-", False),  # older Squids' malformed request
    ("TCP_MISS_ABORTED/000", "http://lessons.test/a.html", "jcarter", False),
])
def test_only_a_refusal_by_the_filtering_is_a_blocked_attempt(result, url, user, refused):
    line = f"1796659041.455 0 127.0.0.1 {result} 3510 GET {url} {user} HIER_NONE/- text/html"
    assert parse_line(line, "a:1").denied is refused
    common = f'127.0.0.1 - {user} [07/Dec/2026:15:57:21 +0000] "GET {url} HTTP/1.1" {result[-3:]} 3510 ' \
             f'{result.split("/")[0]}:HIER_NONE'
    assert parse_common_line(common, "c:1").denied is refused


def test_a_proxied_installer_keeps_its_file_type():
    native = ("1781602200.000 812 10.20.10.21 TCP_MISS/200 1843200 GET http://dl.example.net/tools/Setup.exe jcarter "
              "HIER_DIRECT/203.0.113.80 application/x-msdownload")
    assert parse_line(native, "a:1").file_ext == "exe"
    served = native.replace("tools/Setup.exe", "download.php?id=3")
    assert parse_line(served, "a:2").file_ext == "exe"  # the content type says what the server sent
    assert parse_line(served.replace("application/x-msdownload", "text/html"), "a:3").file_ext == "php"
    assert parse_line(native.replace("GET http://dl.example.net/tools/Setup.exe", "CONNECT dl.example.net:443")
                      .replace("application/x-msdownload", "-"), "a:4").file_ext is None
    common = ('10.20.10.21 - jcarter [16/Jun/2026:10:30:00 +0100] "GET http://dl.example.net/tools/Setup.MSI HTTP/1.1" '
              "200 1843200 TCP_MISS:HIER_DIRECT")
    assert parse_common_line(common, "c:1").file_ext == "msi"  # no content type in this format: the name
