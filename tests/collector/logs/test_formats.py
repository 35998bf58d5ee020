"""The registry of log formats: each entry recognises, reads and follows a sample of its own format, the
order of detection settles the formats that overlap, and the configuration, the error for an input of no
known format and docs/log-formats.md all list the registry's names."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from collector.config import CollectorSettings, FollowedLog
from collector.logs import formats
from collector.logs.formats import FORMATS, Format, Sample, detect
from collector.logs.squid import parse_line
from collector.logs.squid_logformat import RECOMMENDED
from collector.sources import InputError, open_source
from tests.collector.logs.test_filterlogs import (
    ALLOWED,
    DG28_DENIED,
    DG210_ALLOWED,
    DG210_CSV,
    E2G_NO_GROUP_NAME,
    SQUIDGUARD,
)
from tests.collector.logs.test_leasefiles import DHCPD
from tests.conftest import ROOT, SCHOOL_DAY

NATIVE = SCHOOL_DAY.joinpath("squid-access.log").read_text().splitlines()[0]
COMMON = '10.20.1.40 - rbaker [16/Jun/2026:09:05:01 +0100] "GET http://a.test/x HTTP/1.1" 200 512 TCP_MISS:HIER_DIRECT'
SPEC = '%ts.%03tu %>a %un %rm %ru %>Hs %<st %Ss "%{User-Agent}>h"'
CUSTOM = '1781600701.123 10.20.1.40 rbaker GET http://a.test/ 200 512 TCP_MISS "Mozilla/5.0 (X11)"'
E2G_CSV = ",".join(f'"{f}"' for f in (
    "2026.6.16 9:05:01", "rbaker", "10.20.10.50", "https://www.casino.test/", "*DENIED* Banned site: casino.test",
    "CONNECT", "0", "0", "Gambling", "2", "403", "-", "10.20.10.50", "staff", "Mozilla/5.0", "-", "-", "-", "-"))
# Squid's native fields and the request size (squid_logformat.RECOMMENDED, the line docs/log-formats.md
# gives): the native parser reads the first ten fields too, so detection must prefer the configured format,
# which also reads the last.
WITH_SIZES = f"{NATIVE} 52430112"
E2G_TAB = "\t".join(("2026.6.16 9:05:01", "rbaker", "10.20.10.50", "https://www.casino.test/",
                     "*DENIED* Banned site: casino.test", "CONNECT", "0", "0", "Gambling", "2", "403", "-",
                     "10.20.10.50", "staff", "Mozilla/5.0", "-", "-", "-", "-"))
EVE_TLS = ('{"timestamp": "2026-06-16T08:00:00.000000+0000", "event_type": "tls", "src_ip": "10.20.10.21", '
           '"src_port": 50000, "dest_ip": "203.0.113.9", "dest_port": 443, "proto": "TCP", "flow_id": 1, '
           '"tls": {"sni": "www.example.org", "version": "TLS 1.3"}}')

SAMPLES = {  # each: good records and exactly one bad one
    "suricata-eve": f"{EVE_TLS}\n{{not json\n",
    "dhcpd-leases": DHCPD,  # a held lease, a free one and one with a bad MAC
    "dnsmasq-leases": "1781600400 3c:22:fb:30:00:03 10.20.10.50 laptop *\n1781600400 zz 10.20.10.51 x *\n",
    "squid": f"{NATIVE}\ngarbage\n",
    "squid-common": f"{COMMON}\ngarbage\n",
    "squid-logformat": f"{CUSTOM}\ngarbage\n",
    "e2guardian-csv": f"{E2G_CSV}\ngarbage\n",
    "e2guardian-tab": f"{E2G_TAB}\ngarbage\n",
    "e2guardian": f"{ALLOWED}\ngarbage\n",
    "squidguard": f"{SQUIDGUARD}\ngarbage\n",
}
NAMES = [fmt.name for fmt in FORMATS]


def settings_for(name: str) -> CollectorSettings:
    return CollectorSettings(squid_logformat=SPEC if name == "squid-logformat" else None)


def entry(name: str) -> Format:
    (fmt,) = [fmt for fmt in FORMATS if fmt.name == name]
    return fmt


def detected(text: str, settings: CollectorSettings | None = None) -> str | None:
    fmt = detect(Sample.of(text.encode()), settings or CollectorSettings())
    return None if fmt is None else fmt.name


def without_ref(observations: list) -> list[dict]:
    return [{k: v for k, v in o.to_json_dict().items() if k != "source_ref"} for o in observations]


def test_every_format_has_a_sample_and_a_name_of_its_own():
    assert sorted(SAMPLES) == sorted(NAMES) and len(set(NAMES)) == len(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_each_format_is_recognised_from_its_start(name):
    assert detected(SAMPLES[name], settings_for(name)) == name


@pytest.mark.parametrize("name", NAMES)
def test_each_format_reads_a_file_and_counts_its_bad_record_under_its_reason(tmp_path, name):
    fmt = entry(name)
    path = tmp_path / "input.log"
    path.write_text(SAMPLES[name])
    source = open_source(path, settings_for(name))
    out: list = []
    source.run(out.append)
    assert out and source.skips.by_reason == {fmt.skip_reason: 1}
    assert source.path == path and source.packets == 0
    assert (source.run_batches is not None) == (fmt.batch is not None) == (name == "squid")


@pytest.mark.parametrize("name", formats.FOLLOWED)
def test_a_followed_log_gives_what_the_file_gives(tmp_path, name):
    """Line by line as `ictwatch run` reads it, each format gives the observations `replay` takes from the
    whole file (their references aside), and refuses the same bad record."""
    path = tmp_path / "input.log"
    path.write_text(SAMPLES[name])
    whole: list = []
    open_source(path, settings_for(name)).run(whole.append)
    parse = entry(name).follower(path, settings_for(name))
    followed, refused = [], 0
    for number, line in enumerate(SAMPLES[name].splitlines(), 1):
        try:
            followed += parse(line, f"input.log@0:{number}")
        except ValueError:
            refused += 1
    assert without_ref(followed) == without_ref(whole) and refused == 1


@pytest.mark.parametrize(("text", "spec", "expected"), [
    (NATIVE, None, "squid"),
    (NATIVE, "squid", "squid"),  # Squid's own definition reads it too: the built-in parser (and batches) win
    (COMMON, "common", "squid-common"),
    (WITH_SIZES, RECOMMENDED, "squid-logformat"),  # the school's own format reads more of each line
    (WITH_SIZES, None, "squid"),  # without it, only the native fields are read
    (CUSTOM, None, None),  # a custom format needs its SPEC
    (CUSTOM, "combined", None),
    (f"# dnsmasq.leases\n\n{SAMPLES['dnsmasq-leases']}", None, "dnsmasq-leases"),
    ("hello world\n", None, None),
    ("", None, None),
])
def test_the_order_of_detection_settles_the_overlaps(text, spec, expected):
    assert detected(text, CollectorSettings(squid_logformat=spec)) == expected


BANNER = "Jun 16 07:50:01 gateway squid[812]: Starting Squid Cache version 6.10 for x86_64-pc-linux-gnu..."
BINARY = bytes(b for b in range(256) if b != 10).decode("latin-1")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("before", [BANNER, BINARY, "x" * 5000, "\x00" * 70_000],
                         ids=["syslog banner", "binary", "5 KB line", "70 KB of NULs"])
def test_a_line_that_is_no_record_before_the_records_hides_nothing(name, before):
    """Issue 19, point 13: the format is judged by a sample of lines, so a first line that is none of its
    records (one too long to be a line at all, too) does not refuse the file."""
    assert detected(f"{before}\n{SAMPLES[name]}", settings_for(name)) == name


def test_the_format_that_reads_most_of_the_sample_wins():
    """A log is read as the format that reads most of its sample (a native line among common ones is read as
    native all the same, see below); a tie goes to the first format of the table."""
    assert detected(f"{NATIVE}\n{COMMON}\n{COMMON}\n") == "squid-common"
    assert detected(f"{COMMON}\n{NATIVE}\n") == "squid"


def test_the_config_accepts_every_followable_name_and_no_other():
    for fmt in FORMATS:
        if fmt.followable:
            assert FollowedLog(path=Path("x.log"), format=fmt.name).format == fmt.name
        else:
            with pytest.raises(ValidationError):
                FollowedLog(path=Path("x.log"), format=fmt.name)
    # the names configurations were written with before the registry still stand
    assert set(formats.FOLLOWED) >= {"squid", "squid-common", "e2guardian", "e2guardian-csv", "squidguard",
                                     "suricata-eve", "dhcpd-leases", "dnsmasq-leases"}
    assert "squid-logformat" in formats.FOLLOWED  # the only Squid format that can carry request sizes
    assert all(name in FollowedLog.model_fields["format"].description for name in formats.FOLLOWED)


def test_an_unknown_follow_format_is_refused_naming_those_there_are():
    with pytest.raises(ValidationError) as refused:
        FollowedLog(path=Path("x.log"), format="e2guardian_csv")
    (error,) = refused.value.errors()
    assert error["loc"] == ("format",) and error["msg"] == (
        "Value error, not a log format ictwatch can follow (those are suricata-eve, dhcpd-leases, "
        "dnsmasq-leases, squid-logformat, squid, squid-common, e2guardian-csv, e2guardian-tab, e2guardian, "
        "squidguard)")


def test_an_input_of_no_known_format_is_refused_naming_every_format(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello world\n")
    with pytest.raises(InputError) as refused:
        open_source(path)
    assert str(refused.value) == (
        f"{path}: not a pcap or pcapng capture, nor a log in a format of docs/log-formats.md ("
        + ", ".join(NAMES) + "); for a custom Squid logformat, set collector.squid_logformat")
    with pytest.raises(InputError) as refused:
        open_source(path, CollectorSettings(squid_logformat=SPEC))
    assert str(refused.value).endswith("squidguard)")


def test_an_input_that_starts_with_a_megabyte_without_a_line_says_so(tmp_path):
    """The sample is the first megabyte's lines: a log that a crash filled with NULs from its start is refused
    (exit status 2) with a message that says why, not one that names every format."""
    path = tmp_path / "access.log"
    path.write_bytes(bytes(2 << 20) + b"\n" + NATIVE.encode() + b"\n")
    with pytest.raises(InputError) as refused:
        open_source(path)
    assert str(refused.value) == (f"{path}: not a pcap or pcapng capture, and its first megabyte holds no line "
                                  "of a log (none of 64 KiB or less that is not blank)")


def test_a_log_in_the_school_format_keeps_its_request_sizes(tmp_path):
    """Issue 20, point 2: replayed with the format configured, a line of Squid's native fields followed by
    `%>st` is read by that format, so the request size (the upload) is kept, not dropped with the native
    reader's ten fields."""
    path = tmp_path / "access.log"
    path.write_text(f"{WITH_SIZES}\n")
    out: list = []
    open_source(path, CollectorSettings(squid_logformat=RECOMMENDED)).run(out.append)
    (native,) = [parse_line(NATIVE, "")]
    assert [(o.bytes_out, o.bytes_in) for o in out] == [(52_430_112, native.bytes_in)]


def test_a_format_has_a_line_parser_or_a_reader_of_its_own():
    squid = entry("squid")
    with pytest.raises(ValueError, match="either"):
        Format("both", "", "", squid.recognise, "bad", line=squid.line, source=entry("suricata-eve").source)
    with pytest.raises(ValueError, match="either"):
        Format("neither", "", "", squid.recognise, "bad")


def test_the_docs_are_the_registry():
    """docs/log-formats.md is generated: `python -m collector.logs.formats > docs/log-formats.md`."""
    assert (ROOT / "docs" / "log-formats.md").read_text() == formats.markdown()


# Issue 20, point 6: each line read by its own format. The Squid lines are the school day's; the squidGuard
# line was written by squidGuard 1.6.0 itself (test_filter_real.py); the filter lines' shapes are listed in
# test_filterlogs.py with where each comes from.
SQUID_LINES = SCHOOL_DAY.joinpath("squid-access.log").read_text().splitlines()[:3]
SQUIDGUARD_2 = SQUIDGUARD.replace("22:37:21", "22:38:02").replace("/bet ", "/poker ")
FILTER_LINES = [ALLOWED, DG28_DENIED, DG210_CSV, E2G_TAB, E2G_NO_GROUP_NAME, DG210_ALLOWED, SQUIDGUARD]
"""One of each shape: e2guardian format 1, DansGuardian 2.8 format 1, DansGuardian 2.10 CSV, e2guardian tabs,
e2guardian with an unnamed group, DansGuardian 2.10 with empty fields, squidGuard."""
FILTER_SOURCES = ["e2guardian"] * 6 + ["squidguard"]


def read_all(path: Path, settings: CollectorSettings | None = None, batches: bool = False) -> tuple[list, dict]:
    """(each observation's (source, line number), skips by reason) of the whole file as `replay` reads it."""
    source = open_source(path, settings or CollectorSettings(log_timezone="Europe/London"))
    if batches:
        import polars as pl

        frames: list = []
        assert source.run_batches is not None
        source.run_batches(frames.append)
        rows = pl.concat([pl.DataFrame(frame) for frame in frames]).select("source", "source_ref").rows()
    else:
        out: list = []
        source.run(out.append)
        rows = [(o.source, o.source_ref) for o in out]
    return sorted((name, int(ref.rpartition(":")[2])) for name, ref in rows), dict(source.skips.by_reason)


@pytest.mark.parametrize("batches", [False, True], ids=["line by line", "in batches"])
def test_a_file_mostly_of_squid_reads_its_squidguard_lines_too(tmp_path, batches):
    """Detected as Squid's native log (and replayed in batches), the squidGuard lines among its lines are read
    as squidGuard's, one dated where the store cannot keep it is counted as such, and a line of neither is
    counted as the file's format counts a bad line."""
    path = tmp_path / "mixed.log"
    path.write_text("\n".join([SQUID_LINES[0], SQUIDGUARD, SQUID_LINES[1], "garbage", SQUID_LINES[2], SQUIDGUARD_2,
                               SQUIDGUARD.replace("2026-11-28", "9999-11-28")]) + "\n")
    rows, skipped = read_all(path, batches=batches)
    assert rows == [("squid", 1), ("squid", 3), ("squid", 5), ("squidguard", 2), ("squidguard", 6)]
    assert skipped == {"bad_squid_line": 1, "time_out_of_range": 1}


def test_a_file_mostly_of_squidguard_reads_its_squid_lines_too(tmp_path):
    path = tmp_path / "mixed.log"
    path.write_text("\n".join([SQUIDGUARD, SQUID_LINES[0], SQUIDGUARD_2, "garbage", SQUIDGUARD]) + "\n")
    rows, skipped = read_all(path)
    assert rows == [("squid", 2), ("squidguard", 1), ("squidguard", 3), ("squidguard", 5)]
    assert skipped == {"bad_filter_line": 1}


def test_every_filter_shape_in_one_file_is_read_whole_and_followed(tmp_path):
    """A log gathered from DansGuardian, e2guardian (each of its layouts) and squidGuard: replayed or followed
    (under any of the names), each line gives what it gives alone."""
    path = tmp_path / "filters.log"
    path.write_text("\n".join([*FILTER_LINES, "garbage"]) + "\n")
    rows, skipped = read_all(path)
    assert rows == sorted(zip(FILTER_SOURCES, range(1, 8), strict=True)) and skipped == {"bad_filter_line": 1}
    settings = CollectorSettings(log_timezone="Europe/London")
    alone = [open_source_line(tmp_path, line) for line in FILTER_LINES]
    for name in ("e2guardian", "e2guardian-csv", "e2guardian-tab", "squidguard", "squid"):
        parse = entry(name).follower(path, settings)
        assert without_ref([o for line in FILTER_LINES for o in parse(line, "x")]) == without_ref(alone), name
        with pytest.raises(ValueError):
            parse("garbage", "x")


def open_source_line(tmp_path: Path, line: str) -> object:
    """The one observation a file of `line` alone gives."""
    path = tmp_path / "one.log"
    path.write_text(line + "\n")
    (obs,) = collect(path)
    return obs


def collect(path: Path, settings: CollectorSettings | None = None) -> list:
    out: list = []
    open_source(path, settings or CollectorSettings(log_timezone="Europe/London")).run(out.append)
    return out


def test_a_line_two_formats_read_is_read_once_by_the_files_own(tmp_path):
    """A line of Squid's native fields followed by the request size is read by the school's logformat
    (`RECOMMENDED`) and by the native parser, which reads the first ten fields: among squidGuard lines it is
    read once, by the first of the table that reads it (the school's logformat, which keeps the request
    size); in a native log, by the log's own format. DansGuardian's format 3 is Squid's native layout, and is
    read as Squid's."""
    dg_format_3 = ("1781604931.004      0 10.20.10.21 TCP_DENIED/403 0 GET http://www.casino.test/bet rbaker "
                   "DEFAULT_PARENT/127.0.0.1 -")  # DansGuardian 2.10 FatController.cpp, log_listener, case 3
    settings = CollectorSettings(log_timezone="Europe/London", squid_logformat=RECOMMENDED)
    path = tmp_path / "mixed.log"
    path.write_text("\n".join([SQUIDGUARD, WITH_SIZES, SQUIDGUARD_2, dg_format_3, SQUIDGUARD]) + "\n")
    out = collect(path, settings)
    assert [(o.source, o.source_ref, o.bytes_out) for o in out] == [
        ("squidguard", "mixed.log:1", None), ("squid", "mixed.log:2", 52_430_112), ("squidguard", "mixed.log:3", None),
        ("squid", "mixed.log:4", None), ("squidguard", "mixed.log:5", None)]
    assert (out[3].denied, out[3].host, out[3].proxy_user) == (True, "www.casino.test", "rbaker")
    path.write_text("\n".join([NATIVE, WITH_SIZES, NATIVE]) + "\n")
    assert [(o.source, o.bytes_out) for o in collect(path, settings)] == [("squid", None)] * 3


HOSTILE = [
    "2026.11.28 22:37:46" + " " * 40,  # a time, then nothing but empty fields
    "2026.11.28 22:37:46" + "\t" * 40,
    '"2026.11.28 22:37:46",' + '"",' * 40,
    "2026.11.28 22:37:46 - 10.0.0.1 http://x/" + " GET 1 1" * 8000,  # 64 KB: every `GET 1 1` could end `what`
    "2026.11.28 22:37:46 - 10.0.0.1 http://x/ " + "*DENIED* " * 7000 + "GET",
    "1781596202.120 " * 4300,
    '"' * 65000,
    "\t".join(["2026.11.28 22:37:46"] + ["x" * 3000] * 20),
    SQUIDGUARD.replace(" GET REDIRECT", " GET" + " REDIRECT" * 7000),
]
LONG_BUT_GOOD = [
    "2026.11.28 22:37:46 - 10.0.0.1 http://x.test/" + "y" * 60000 + "  GET 1",  # a 60 KB URL (DansGuardian 2.8)
    SQUIDGUARD.replace("/bet ", "/" + "b" * 60000 + " "),
    ALLOWED.replace("Mozilla/5.0 (X11; Linux) test", "Mozilla/5.0 " * 5000),
    SQUIDGUARD.replace("/gambling/-)", "/gambling/" + "/" * 60000 + ")"),  # a 60 KB rewrite class
]


@pytest.mark.parametrize("name", ["squid", "e2guardian", "squidguard"])
def test_hostile_lines_are_counted_or_read_quickly(tmp_path, name):
    """Empty fields, 64 KB fields and lines that nearly fit several layouts: in a log of any of the formats
    they are counted as its bad lines (or read, where they are good ones with a long field), each in well under
    a second whatever the formats that try it."""
    import time

    first = {"squid": SQUID_LINES[0], "e2guardian": ALLOWED, "squidguard": SQUIDGUARD}[name]
    path = tmp_path / "hostile.log"
    path.write_text("\n".join([first, first, *HOSTILE, *LONG_BUT_GOOD, first]) + "\n")
    start = time.perf_counter()
    source = open_source(path, CollectorSettings(log_timezone="Europe/London"))
    out: list = []
    source.run(out.append)
    assert time.perf_counter() - start < 2 * len(HOSTILE + LONG_BUT_GOOD)
    assert len(out) == 3 + len(LONG_BUT_GOOD)
    assert source.skips.by_reason == {entry(name).skip_reason: len(HOSTILE)}
    for line in HOSTILE:
        start = time.perf_counter()
        with pytest.raises(ValueError):
            formats.line_reader(entry(name), CollectorSettings(log_timezone="Europe/London"))(line, "x")
        assert time.perf_counter() - start < 0.5, line[:60]
