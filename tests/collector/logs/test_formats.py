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
from tests.collector.logs.test_filterlogs import ALLOWED, SQUIDGUARD
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
    """One native line among common ones is a bad line of a common log, not the other way round; a tie goes to
    the first format of the table."""
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
        "dnsmasq-leases, squid-logformat, squid, squid-common, e2guardian-csv, e2guardian, squidguard)")


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
