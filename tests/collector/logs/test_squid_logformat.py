"""Custom Squid `logformat`s: a SPEC compiled into a parser, checked against the fixed-format parsers on
real logs, on hand-written lines, and refused at start-up when it cannot attribute a line."""

from __future__ import annotations

import pytest

from collector.logs.squid import parse_common_line, parse_line
from collector.logs.squid_logformat import RECOMMENDED, LogFormat, LogFormatError
from tests.conftest import SQUID_PEER, need, run_cli, school_config


@pytest.mark.parametrize("name", ["filebeat_access1.log", "filebeat_access2.log"])
def test_squid_spec_reads_real_logs_as_the_native_parser_does(name):
    """Squid's own definition of its native format, compiled, agrees field for field with the native parser
    (itself checked against Filebeat's expectations) on 100 real lines each."""
    spec = LogFormat("squid")
    for number, line in enumerate((need(SQUID_PEER) / name).read_text().splitlines(), 1):
        ours, native = spec.parse(line, f"a:{number}"), parse_line(line, f"a:{number}")
        assert ours == native, line


def test_combined_spec_matches_the_common_parser():
    line = ('10.20.10.50 - jcarter [16/Jun/2026:09:05:01 +0100] "GET http://www.bbc.co.uk/news HTTP/1.1" 200 5120 '
            '"-" "Mozilla/5.0 (Windows NT 10.0; Win64; x64)" TCP_MISS:HIER_DIRECT')
    assert LogFormat("combined").parse(line, "a:1") == parse_common_line(line, "a:1")


def test_a_school_format_with_port_agent_sni_and_local_time():
    spec = LogFormat('%tl %>a:%>p %un %rm %ru %>Hs %<st %>st %tr %Ss "%{User-Agent}>h" %ssl::>sni')
    line = ('16/Jun/2026:09:05:01 +0100 10.20.10.50:51234 rbaker CONNECT www.tiktok.com:443 200 8123 517 1520 '
            'TCP_TUNNEL "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)" www.tiktok.com')
    o = spec.parse(line, "access.log:7")
    assert (o.ts_us, o.src_ip, o.src_port, o.proxy_user) == (1_781_597_101_000_000, "10.20.10.50", 51234, "rbaker")
    assert (o.method, o.host, o.dst_port, o.status, o.bytes_in, o.bytes_out) == (
        "CONNECT", "www.tiktok.com", 443, 200, 8123, 517)
    assert (o.duration_s, o.proxy_action, o.denied, o.sni) == (1.52, "TCP_TUNNEL", False, "www.tiktok.com")
    assert o.user_agent == "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"
    with pytest.raises(ValueError, match="client address"):
        spec.parse(line.replace("10.20.10.50:", "somewhere:"), "access.log:8")


def test_sizes_spelt_with_the_http_prefix():
    """squid.conf's documentation spells the size codes `[http::]>st` and `[http::]<st`: either way they are
    the request and reply sizes."""
    spec = LogFormat("%ts %>a %rm %ru %http::>st %http::<st")
    o = spec.parse("1781597101 10.20.1.40 POST http://www.dropbox.com/upload 52431870 61874", "a:1")
    assert (o.bytes_out, o.bytes_in, spec.request_sizes) == (52_431_870, 61_874, True)


def test_a_literal_percent_sign():
    spec = LogFormat("%ts %>a 100%% %rm %ru")
    o = spec.parse("1781597101 10.20.1.40 100% GET http://a.test/x", "a:1")
    assert (o.ts_us, o.src_ip, o.method, o.host) == (1_781_597_101_000_000, "10.20.1.40", "GET", "a.test")
    with pytest.raises(ValueError):
        spec.parse("1781597101 10.20.1.40 100 GET http://a.test/x", "a:2")


def test_padding_widths_and_missing_values():
    spec = LogFormat("%ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %un %Sh/%<a %mt")
    o = spec.parse("1781597101.007      0 10.20.1.40 TCP_DENIED/403 3900 GET http://casino.test/ - HIER_NONE/- "
                   "text/html", "a:1")
    assert (o.ts_us, o.duration_s, o.status, o.proxy_user, o.dst_ip, o.denied) == (
        1_781_597_101_007_000, 0.0, 403, None, None, True)


@pytest.mark.parametrize(("spec", "missing"), [("%ts %rm %ru", "%>a"), ("%>a %rm %ru %>Hs", "%ts")])
def test_a_spec_that_cannot_attribute_a_line_is_refused(spec, missing):
    with pytest.raises(LogFormatError, match=missing):
        LogFormat(spec)


def test_config_with_a_bad_logformat_stops_start_up(tmp_path):
    config = school_config(tmp_path / "school", "collector:\n  squid_logformat: '%ts %rm %ru'\n")
    proc = run_cli("check", "--config", config)
    assert proc.returncode == 2
    assert "collector.squid_logformat" in proc.stderr and "%>a" in proc.stderr


def line_of(config, text: str) -> int:
    return next(n for n, line in enumerate(config.read_text().splitlines(), 1) if text in line)


def test_check_warns_once_for_each_proxy_log_without_request_sizes(tmp_path):
    """Issue 20, point 2: a followed Squid log in a format with no request size (`%>st`) hides every upload
    through the proxy; `ictwatch check` says so, once for each such log, naming the configuration's line."""
    config = school_config(tmp_path / "native", "collector:\n  squid_logformat: '%ts %>a %rm %ru %<st'\n  follow:\n"
                           "    - {path: /var/log/squid/access.log, format: squid}\n"
                           "    - {path: /var/log/squid/common.log, format: squid-common}\n"
                           "    - {path: /var/log/squid/school.log, format: squid-logformat}\n"
                           "    - {path: /var/log/e2guardian/access.log, format: e2guardian}\n")
    proc = run_cli("check", "--config", config, check=True)
    warned = [line for line in proc.stderr.splitlines() if "request size" in line]
    assert warned == [
        f"ictwatch: warning: {config}:{line_of(config, 'squid_logformat')}: collector.squid_logformat has no %>st, "
        "so the proxy log carries no request sizes and no upload through the proxy is seen (bytes_out_min never "
        "holds for it): add %>st, as the logformat in docs/log-formats.md does",
        *(f"ictwatch: warning: {config}:{line_of(config, name)}: collector.follow[{i}]: Squid's {what} format "
          "logs no request sizes, so no upload through the proxy is seen (bytes_out_min never holds for it): log "
          "with the logformat in docs/log-formats.md and follow that log as squid-logformat"
          for i, name, what in ((0, "access.log", "native"), (1, "common.log", "common or combined")))]
    assert "OK: " in proc.stdout and "3 warnings above" in proc.stdout


def test_check_is_quiet_when_the_proxy_log_carries_request_sizes(tmp_path):
    config = school_config(tmp_path / "sizes", f"collector:\n  squid_logformat: '{RECOMMENDED}'\n  follow:\n"
                           "    - {path: /var/log/squid/ictwatch.log, format: squid-logformat}\n")
    proc = run_cli("check", "--config", config, check=True)
    assert "request size" not in proc.stderr and "warning" not in proc.stdout


def test_following_a_custom_logformat_needs_its_spec(tmp_path):
    config = school_config(tmp_path / "nospec", "collector:\n  follow:\n"
                           "    - {path: /var/log/squid/ictwatch.log, format: squid-logformat}\n")
    proc = run_cli("check", "--config", config)
    assert proc.returncode == 2 and proc.stderr == (
        f"ictwatch: config error: {config}:{line_of(config, 'ictwatch.log')}: collector.follow[0].format: "
        "'squid-logformat': needs collector.squid_logformat, the SPEC of the logformat line in squid.conf\n")


def test_file_type_and_refusal_from_a_school_format():
    """The extension comes from %ru and %mt when the format logs them; a 407 is no refusal, a 403 is."""
    spec = LogFormat("%ts %>a %un %rm %ru %>Hs %Ss %mt")
    fetch = spec.parse("1781602200 10.20.10.21 jcarter GET http://dl.example.net/download.php?id=3 200 TCP_MISS "
                       "application/x-msdownload", "a:1")
    assert (fetch.file_ext, fetch.denied) == ("exe", False)
    challenge = spec.parse("1781602200 10.20.10.21 - GET http://dl.example.net/Setup.exe 407 TCP_DENIED text/html",
                           "a:2")
    assert (challenge.file_ext, challenge.denied) == ("exe", False)  # the file asked for, not yet refused
    refusal = spec.parse("1781602200 10.20.10.21 jcarter GET http://dl.example.net/Setup.exe 403 TCP_DENIED "
                         "text/html", "a:3")
    assert (refusal.file_ext, refusal.denied) == ("exe", True)
    no_type = LogFormat("%ts %>a %rm %ru").parse("1781602200 10.20.10.21 GET http://dl.example.net/app.APK", "a:4")
    assert no_type.file_ext == "apk"
