"""e2guardian and squidGuard logs: lines as those programs write them, local times, denials, bad lines.

The first two e2guardian lines and the squidGuard line were written by the real programs (Debian's
e2guardian 5.3.5 and squidGuard 1.6.0, see test_filter_real.py); the expected values are read off them.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.config import CollectorSettings
from collector.logs.filterlogs import (
    _native_fields,
    looks_like_e2guardian_csv,
    parse_e2guardian,
    parse_e2guardian_csv,
    parse_squidguard,
)
from collector.sources import open_source

LONDON = ZoneInfo("Europe/London")
ALLOWED = ("2026.11.28 22:37:46 jcarter 127.0.0.1 http://lessons.test:18999 - GET 4753 -5 - 1 200 - 127.0.0.1 "
           "no_name_group Mozilla/5.0 (X11; Linux) test - - - -")
DENIED = ("2026.11.28 22:37:46 jcarter 127.0.0.1 http://www.casino.test:18999/bet *DENIED* Blocked site: casino.test "
          "GET 0 0 Banned Sites 1 403 - 127.0.0.1 no_name_group curl/7.88.1 - - - -")
SQUIDGUARD = ("2026-11-28 22:37:21 [19857] Request(staff/gambling/-) http://www.casino.test/bet 10.20.10.50/- rbaker "
              "GET REDIRECT")


def utc_us(*fields: int) -> int:
    return int(dt.datetime(*fields, tzinfo=dt.UTC).timestamp()) * 1_000_000


def test_e2guardian_allowed_line():
    o = parse_e2guardian(ALLOWED, "access.log:1", LONDON)
    assert (o.kind, o.source, o.ts_us) == ("proxy", "e2guardian", utc_us(2026, 11, 28, 22, 37, 46))  # GMT in November
    assert (o.src_ip, o.proxy_user, o.method, o.url, o.host, o.dst_port) == (
        "127.0.0.1", "jcarter", "GET", "http://lessons.test:18999", "lessons.test", 18999)
    assert (o.status, o.bytes_in, o.user_agent, o.denied, o.filter_category, o.filter_reason) == (
        200, 4753, "Mozilla/5.0 (X11; Linux) test", False, None, None)


def test_e2guardian_denied_line_keeps_category_and_reason():
    o = parse_e2guardian(DENIED, "access.log:2", LONDON)
    assert (o.denied, o.proxy_action, o.status, o.host) == (True, "DENIED", 403, "www.casino.test")
    assert (o.filter_category, o.filter_reason) == ("Banned Sites", "*DENIED* Blocked site: casino.test")
    assert o.user_agent == "curl/7.88.1"


def test_e2guardian_local_time_in_summer_and_epoch_stamp():
    summer = ALLOWED.replace("2026.11.28 22:37:46", "2026.6.16 9:05:01")  # not zero-padded, as e2guardian writes
    assert parse_e2guardian(summer, "a:1", LONDON).ts_us == utc_us(2026, 6, 16, 8, 5, 1)  # BST is UTC+1
    stamped = ALLOWED.replace("22:37:46", "22:37:46 1795905466.250")  # logtimestamp = on
    assert parse_e2guardian(stamped, "a:1", LONDON).ts_us == 1_795_905_466_250_000


def test_e2guardian_csv_line():
    fields = ["2026.6.16 9:05:01", "rbaker", "10.20.10.50", "https://www.casino.test/",
              "*DENIED* Banned site: casino.test", "CONNECT", "0", "0", "Gambling, betting", "2", "403", "-",
              "10.20.10.50", "staff",
              'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)', "-", "-", "-", "-"]
    line = ",".join(f'"{f}"' for f in fields)
    assert looks_like_e2guardian_csv(line)
    o = parse_e2guardian_csv(line, "access.log:1", LONDON)
    assert (o.ts_us, o.proxy_user, o.src_ip, o.host, o.method, o.dst_port) == (
        utc_us(2026, 6, 16, 8, 5, 1), "rbaker", "10.20.10.50", "www.casino.test", "CONNECT", 443)
    assert (o.denied, o.filter_category, o.user_agent) == (True, "Gambling, betting", fields[14])


def test_squidguard_line():
    o = parse_squidguard(SQUIDGUARD, "requests.log:1", LONDON)
    assert (o.source, o.ts_us, o.src_ip, o.proxy_user, o.host, o.method) == (
        "squidguard", utc_us(2026, 11, 28, 22, 37, 21), "10.20.10.50", "rbaker", "www.casino.test", "GET")
    assert (o.denied, o.proxy_action, o.filter_category, o.filter_reason) == (
        True, "REDIRECT", "gambling", "REDIRECT (source group staff)")
    passed = parse_squidguard(SQUIDGUARD.replace("staff/gambling", "staff/none").replace("REDIRECT", "PASS"), "r:2",
                              LONDON)
    assert (passed.denied, passed.filter_category) == (False, None)


@pytest.mark.parametrize("line", [ALLOWED, DENIED, SQUIDGUARD])
def test_detection_and_bad_lines_counted(tmp_path, line):
    path = tmp_path / "filter.log"
    path.write_text(line + "\n" + "garbage in the middle\n" + line.replace("127.0.0.1 ", "not-an-ip ", 1) + "\n"
                    + line + "\n")
    source = open_source(path, CollectorSettings(log_timezone="Europe/London"))
    out: list = []
    source.run(out.append)
    assert len(out) == 2 + (line == SQUIDGUARD)  # squidGuard's address is 10.20.10.50: the third line is good
    assert source.skips.by_reason == {"bad_filter_line": 2 - (line == SQUIDGUARD)}


def test_replayed_denial_is_stored_as_a_blocked_attempt_with_the_filters_category(tmp_path):
    from tests.conftest import run_cli, school_config, stored_activity

    log = tmp_path / "access.log"
    moved = [line.replace("2026.11.28 22:37:46", "2026.6.16 10:15:00").replace("127.0.0.1", "10.20.1.40")
             for line in (ALLOWED, DENIED)]
    log.write_text("\n".join(moved) + "\n")
    store = tmp_path / "store"
    run_cli("replay", "--config", school_config(tmp_path / "school"), log, store=store, check=True)
    rows = stored_activity(store).sort("denied").to_dicts()
    assert [(r["source"], r["user"], r["host"], r["denied"], r["verdict"], r["filter_category"]) for r in rows] == [
        ("e2guardian", "jcarter", "lessons.test", False, "allowed", ""),
        ("e2guardian", "jcarter", "www.casino.test", True, "blocked", "Banned Sites"),
    ]
    assert rows[1]["filter_reason"] == "*DENIED* Blocked site: casino.test"
    assert rows[0]["ts"].hour == 9  # 10:15 in London in June is 09:15 UTC


def test_filter_logs_give_the_file_type_of_their_urls():
    e2g = parse_e2guardian(ALLOWED.replace("http://lessons.test:18999", "http://lessons.test:18999/Setup.exe")
                           .replace(" 200 - ", " 200 application/x-msdownload "), "access.log:1", LONDON)
    assert (e2g.url, e2g.content_type, e2g.file_ext) == (
        "http://lessons.test:18999/Setup.exe", "application/x-msdownload", "exe")
    assert parse_e2guardian(ALLOWED, "access.log:1", LONDON).file_ext is None  # no path
    guard = parse_squidguard(SQUIDGUARD.replace("/bet ", "/poker-client.msi "), "sg.log:1", LONDON)
    assert (guard.file_ext, guard.denied) == ("msi", True)


FORMAT_1 = re.compile(
    r"(?P<date>\d{4}\.\d{1,2}\.\d{1,2}) (?P<clock>\d{1,2}:\d{2}:\d{2})(?: (?P<stamp>\d+\.\d{3}))? (?P<who>\S+) "
    r"(?P<from>\S+) (?P<where>\S+) (?P<what>.*?) (?P<how>[A-Z]+) (?P<size>-?\d+) (?P<weight>-?\d+) (?P<cat>.*?) "
    r"(?P<group>\d+) (?P<code>\d{3}) (?P<mime>\S+) (?P<clienthost>\S+) (?P<groupname>\S+)(?: (?P<rest>.*))?$")
"""Format 1 written as one pattern, as e2guardian's documentation lays it out: the reference the reader is
checked against (the reader itself scans in steps, since this pattern backtracks over a line that does
not fit, in time that grows with the square of its length)."""
WORDS = ["GET", "POST", "CONNECT", "0", "-5", "403", "200", "1", "12", "-", "a", "*DENIED*", "Banned", "Sites",
         "text/html", "10.0.0.1", "no_name_group", "", "x y"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=18))
def test_format_1_reads_as_its_one_pattern_says(words):
    line = "2026.11.28 22:37:46 jcarter 127.0.0.1 http://x/y " + " ".join(words)
    expected = FORMAT_1.match(line)
    got = _native_fields(line)
    assert (got is None) == (expected is None), line
    if expected is not None:
        assert {k: got[k] for k in expected.groupdict() if k not in ("date", "clock", "stamp")} == {
            k: v for k, v in expected.groupdict().items() if k not in ("date", "clock", "stamp")}, line


def test_a_long_line_that_nearly_fits_is_refused():
    """64 KiB (the longest line a reader passes on) of `GET 1 1 x`: every `GET 1 1` could end `what`, and
    no tail follows. The one pattern above takes about 12 s on it; the reader's scans do not backtrack."""
    line = "2026.11.28 22:37:46 jcarter 127.0.0.1 http://x/y " + "GET 1 1 x " * 6500
    assert _native_fields(line) is None
    with pytest.raises(ValueError, match="not an e2guardian format 1 line"):
        parse_e2guardian(line, "access.log:1", LONDON)
