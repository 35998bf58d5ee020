"""The log formats ictwatch reads: one `Format` entry each in `FORMATS`, which every consumer reads.

`open_source` gives each entry a sample of the lines an input that is not a capture starts with, and reads
the input with the one that reads the most of them; `ictwatch run` follows a log with its entry's follower; the config
accepts the names of the entries that can be followed; docs/log-formats.md is `markdown()`. A log of one record a
line is read a line at a time by `line_reader`: each line by its own format, the log's first.
A new format is a module with its parser and an entry here.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol
from zoneinfo import ZoneInfo

from collector.logs.eve import BAD_EVE_RECORD, EveSource, looks_like_eve
from collector.logs.filterlogs import (
    looks_like_e2guardian,
    looks_like_e2guardian_csv,
    looks_like_e2guardian_tab,
    looks_like_squidguard,
    parse_e2guardian,
    parse_e2guardian_csv,
    parse_e2guardian_tab,
    parse_squidguard,
)
from collector.logs.leasefiles import (
    BAD_LEASE,
    LeaseFileSource,
    lease_follower,
    looks_like_dnsmasq,
    starts_dhcpd_record,
)
from collector.logs.lines import is_blank, lines
from collector.logs.squid import BAD_SQUID_LINE, parse_common_line, parse_line
from collector.logs.squid_logformat import RECOMMENDED, LogFormat
from collector.observation import Observation, TimeOutOfRange, fits
from collector.source import BatchSink, Source


class Options(Protocol):
    """What a format reads of the collector's settings (`collector.config.Options` has them)."""

    @property
    def log_timezone(self) -> str:
        """The zone a log's local times are read in."""

    @property
    def squid_logformat(self) -> str | None:
        """The SPEC of a Squid custom logformat, if the school has one."""

    @property
    def line_rate(self) -> bool:
        """Whether the capture is filtered, so that flows come from Suricata's log."""

LineParser = Callable[[str, str], Observation]
"""`parse(line, source_ref)`: one log line's observation, or `ValueError`."""
FollowParser = Callable[[str, str], list[Observation]]
"""One line of a followed log (and its reference) → the observations it gives (a lease record may take
several lines and give its observation on the last)."""
BatchReader = Callable[[BinaryIO, str, BatchSink, Callable[[str, int], None], Callable[[], bool], LineParser], int]
"""`read(stream, name, sink, skip, stopped, others)`: the whole log parsed a chunk at a time into observation
frames handed to `sink`, until `stopped()`; a line it refuses is given to `others` (the other formats), and
what they refuse goes to `skip` (its reason and number); returns the rows."""


SAMPLE_LINES = 100
"""Detection reads at most this many of an input's first non-blank lines..."""
SAMPLE_BYTES = 1 << 20
"""... from at most its first megabyte (gzip unwrapped)."""


@dataclass(frozen=True)
class Sample:
    """The start of an input as detection sees it: its first `SAMPLE_LINES` non-blank lines within its first
    `SAMPLE_BYTES`, as text (a line over `lines.MAX_LINE` is not among them). A log is judged by these, not by
    its first line alone: a syslog banner, a line of binary or a line cut by a crash before its records does
    not hide them."""

    lines: tuple[str, ...]

    @classmethod
    def of(cls, data: bytes, whole: bool = True) -> Sample:
        """The sample of an input that starts with `data` (gzip unwrapped); unless `data` is the `whole` input,
        its last line, which may be cut short, is left out."""
        numbered = lines(io.BytesIO(data if whole else data[: data.rfind(b"\n") + 1]), lambda reason, number: None)
        sample = (raw.decode("utf-8", "replace") for _number, raw in numbered if not is_blank(raw))
        return cls(tuple(itertools.islice(sample, SAMPLE_LINES)))

    def count(self, test: Callable[[str], bool]) -> int:
        """How many of the lines pass `test`."""
        return sum(1 for line in self.lines if test(line))


@dataclass(frozen=True)
class Format:
    """One log format: how its content is recognised, how it is read whole, followed and documented.

    A format of one record a line gives `line` (a `LogLineSource` reads the file, and follows it a line
    at a time unless `follow` says otherwise); one whose records span or pair lines gives `source`, a
    reader of its own, and `follow`."""

    name: str
    """Its name in `collector.follow`, in messages and in docs/log-formats.md."""
    summary: str
    """A few words saying what it is, for the config's description and the docs' table."""
    description: str
    """For the docs: what writes it, what it gives and how it is recognised."""
    recognise: Callable[[Sample, Options], int]
    """How many of the lines of an input's sample are this format's (a record's, or a record's first line).
    The input is read in the format that reads the most; a tie goes to the first in `FORMATS`."""
    skip_reason: str
    """The reason a record its parser refuses is counted under."""
    line: Callable[[Options], LineParser] | None = None
    """The parser of one line into one observation (given the settings: time zone, custom logformat)."""
    source: Callable[[Path], Source] | None = None
    """A reader of its own, instead of `line`."""
    follow: Callable[[Path, Options], FollowParser] | None = None
    """How `ictwatch run` reads the log as it is written; None: each line through `line`."""
    batch: BatchReader | None = None
    """A faster reader of a whole file a chunk at a time (replay); None: `line` reads it line by line."""
    followable: bool = True
    """Whether `collector.follow` may name it."""

    def __post_init__(self) -> None:
        if (self.line is None) == (self.source is None):
            raise ValueError(f"log format {self.name}: give it either a line parser or a source of its own")
        if self.line is None and (self.batch is not None or (self.followable and self.follow is None)):
            raise ValueError(f"log format {self.name}: a batch reader or a default follower needs a line parser")

    def follower(self, path: Path, settings: Options) -> FollowParser:
        """The parser of one line of the log at `path` as `ictwatch run` follows it: by `line_reader`, for a
        format of a record a line; a format's own follower has its numbers checked as `line_reader` does."""
        if self.follow is not None:
            parse = self.follow(path, settings)
            return lambda line, ref: [fits(obs) for obs in parse(line, ref)]
        one = line_reader(self, settings)
        return lambda line, ref: [one(line, ref)]


@dataclass(frozen=True)
class LineReader:
    """A parser of a log's lines that reads each by its own format: by the log's (`own`) when it can, else by
    the first of the others that can (`others`, in the order of `FORMATS`). A line none reads is refused
    with the log's format's error, so that it is counted as that format counts a bad line."""

    own: LineParser
    others: tuple[LineParser, ...]

    def __call__(self, line: str, source_ref: str) -> Observation:
        """The observation of one line; `ValueError` when no format reads it, or when a number it gives does not
        fit its column."""
        try:
            return fits(self.own(line, source_ref))
        except TimeOutOfRange:
            raise  # a line of the log's format, at a time the store cannot hold
        except ValueError as refused:
            try:
                return self.other(line, source_ref)
            except TimeOutOfRange:
                raise
            except ValueError:
                raise refused from None

    def other(self, line: str, source_ref: str) -> Observation:
        """The observation of a line the log's own format refused, by the first other format that reads it;
        `ValueError` when none does (`TimeOutOfRange` when the first that knows its layout refuses its time)."""
        for parse in self.others:
            try:
                return fits(parse(line, source_ref))
            except TimeOutOfRange:
                raise
            except ValueError:
                continue
        raise ValueError("in none of the log formats of a line")


def line_reader(fmt: Format, settings: Options) -> LineReader:
    """The reader of the lines of a log in `fmt`, a format of a record a line: each line by its own format (a
    custom Squid logformat among them when `collector.squid_logformat` gives one of the school's own)."""
    assert fmt.line is not None  # a format of a record a line
    others = tuple(other.line(settings) for other in FORMATS if other.line is not None and other is not fmt
                   and (other.line is not _custom_logformat or _custom_applies(settings)))
    return LineReader(fmt.line(settings), others)


def _reads(parse: LineParser, line: str) -> bool:
    try:
        parse(line, "")
    except ValueError:
        return False
    return True


def _parses(parse: LineParser) -> Callable[[Sample, Options], int]:
    """A recogniser: the lines `parse` reads."""
    return lambda sample, settings: sample.count(lambda line: _reads(parse, line))


def _same(parse: LineParser) -> Callable[[Options], LineParser]:
    """A line parser the settings do not change."""
    return lambda settings: parse


def _local_time(parse: Callable[[str, str, ZoneInfo], Observation]) -> Callable[[Options], LineParser]:
    """A line parser of a log in local time, read in `collector.log_timezone`."""
    def make(settings: Options) -> LineParser:
        zone = ZoneInfo(settings.log_timezone)
        return lambda line, ref: parse(line, ref, zone)

    return make


def _custom_logformat(settings: Options) -> LineParser:
    if settings.squid_logformat is None:
        raise ValueError("no collector.squid_logformat to read a Squid custom logformat with")
    return LogFormat(settings.squid_logformat).parse


def _custom_applies(settings: Options) -> bool:
    """Whether `collector.squid_logformat` gives a format of the school's own: a built-in one is read by its own
    reader (the native one in batches)."""
    return settings.squid_logformat is not None and not LogFormat(settings.squid_logformat).built_in


def _in_custom_logformat(sample: Sample, settings: Options) -> int:
    if not _custom_applies(settings):
        return 0
    parse = _custom_logformat(settings)
    return sample.count(lambda line: _reads(parse, line))


def _follow_eve(path: Path, settings: Options) -> FollowParser:
    """Each eve.json line's observations; with `line_rate`, only its flows (the capture gives the names)."""
    events = EveSource(path).parse_line
    if not settings.line_rate:
        return events
    return lambda line, ref: [obs for obs in events(line, ref) if obs.kind == "flow"]


_LOCAL = "Its times are local, read in `collector.log_timezone`."


def _squid_chunks(stream: BinaryIO, name: str, sink: BatchSink, skip: Callable[[str, int], None],
                  stopped: Callable[[], bool], others: LineParser) -> int:
    """collector/logs/squid_batch.py's `run_chunks`, imported when a log is read: it brings polars and
    pyarrow.compute (0.1–0.2 s), which the configuration, validated against this table, does not need."""
    from collector.logs import squid_batch

    return squid_batch.run_chunks(stream, name, sink, skip, stopped, others)


FORMATS: tuple[Format, ...] = (
    Format(
        "suricata-eve", "Suricata's eve.json",
        "Suricata's EVE JSON, for a gateway where Suricata reads the packets: its dns, tls, quic, http, smtp, "
        "dhcp and flow events become the observations the native decoder makes of the same traffic. "
        "Recognised by lines that are JSON objects with `event_type` and `timestamp`. Followed with "
        "`collector.line_rate`, only its flows are taken (the capture gives the names).",
        lambda sample, settings: sample.count(looks_like_eve), BAD_EVE_RECORD,
        source=EveSource, follow=_follow_eve),
    Format(
        "dhcpd-leases", "ISC dhcpd's lease file",
        "ISC dhcpd's `dhcpd.leases`, for identity: a `dhcp` ACK for each lease held (free, released and "
        "abandoned ones are not evidence). Recognised by lines that start a record (`lease ADDR {`) or its "
        "header (`authoring-byte-order`, `server-duid`). Followed, a record is taken when its closing "
        "brace is written, and a lease taken before is not taken again when dhcpd rewrites its file.",
        lambda sample, settings: sample.count(starts_dhcpd_record), BAD_LEASE,
        source=lambda path: LeaseFileSource(path, "dhcpd"), follow=lambda path, settings: lease_follower("dhcpd")),
    Format(
        "dnsmasq-leases", "dnsmasq's lease file",
        "dnsmasq's `dnsmasq.leases`, for identity: `EXPIRY MAC ADDRESS NAME CLIENT-ID` a line, a `dhcp` ACK "
        "each, starting an hour (dnsmasq's default lease) before its expiry. Recognised by lines that start with "
        "a number and a MAC address. Followed, a lease taken before is not taken again when dnsmasq rewrites "
        "its file.",
        lambda sample, settings: sample.count(looks_like_dnsmasq), BAD_LEASE,
        source=lambda path: LeaseFileSource(path, "dnsmasq"),
        follow=lambda path, settings: lease_follower("dnsmasq")),
    Format(
        "squid-logformat", "a Squid log in a custom logformat",
        "A Squid access log written with a `logformat` of the school's own, read with the SPEC given as "
        "`collector.squid_logformat` (or `ictwatch decode --squid-logformat`). Recognised, when that is "
        "set, by lines the SPEC reads; it comes before `squid` and `squid-common`, so that a line of Squid's "
        "native fields with more after them (the request size) is read whole, unless the SPEC is one of "
        "Squid's built-in formats, which those read. The only Squid format that can carry request sizes: "
        "see [Uploads through Squid](#uploads-through-squid) below.",
        _in_custom_logformat, "bad_squid_line", line=_custom_logformat),
    Format(
        "squid", "Squid's native access log",
        "Squid's native access log (`logformat squid`). Recognised by lines in that format. Replayed a "
        "chunk at a time in polars (`collector/logs/squid_batch.py`), with the same fields as the line parser.",
        _parses(parse_line), BAD_SQUID_LINE, line=_same(parse_line), batch=_squid_chunks),
    Format(
        "squid-common", "Squid's common or combined log",
        "Squid's `common` and `combined` formats (the web server layout, with Squid's action and hierarchy "
        "after it; combined adds the referer and the User-Agent). Recognised by lines in either.",
        _parses(parse_common_line), "bad_squid_line", line=_same(parse_common_line)),
    Format(
        "e2guardian-csv", "e2guardian's log, format 2 (CSV)",
        "e2guardian's (or DansGuardian's) `logfileformat 2`: format 1's fields, each quoted, separated by "
        "commas; a line has at least the seven of DansGuardian 2.8 (up to the size), the fields after the user "
        "agent are not read. Recognised by lines that start with a quoted e2guardian time and a comma. " + _LOCAL,
        lambda sample, settings: sample.count(looks_like_e2guardian_csv), "bad_filter_line",
        line=_local_time(parse_e2guardian_csv)),
    Format(
        "e2guardian-tab", "e2guardian's log, format 4 (tabs)",
        "e2guardian's (or DansGuardian's) `logfileformat 4`: format 1's fields separated by tabs. Recognised "
        "by lines that start with an e2guardian time and a tab. " + _LOCAL,
        lambda sample, settings: sample.count(looks_like_e2guardian_tab), "bad_filter_line",
        line=_local_time(parse_e2guardian_tab)),
    Format(
        "e2guardian", "e2guardian's log, format 1",
        "e2guardian's (or DansGuardian's) `logfileformat 1`, fields separated by spaces: a denial is a "
        "blocked attempt with the filter's category and reason. The layouts read: e2guardian's and DansGuardian "
        "2.12's (`when who from where what how size weight category group code mime clienthost groupname "
        "useragent params logid1 logid2 postdata`), DansGuardian 2.10's (up to the user agent), 2.9's (up to "
        "the group name) and 2.8's (up to the size: no category, code or user agent). A field may be empty "
        "(two spaces in a row: DansGuardian and e2guardian 3 leave an allowed request's reason and category, an "
        "unresolved client host and an unnamed filter group empty, `anonymizelogs` the user and client host). "
        "A DansGuardian 2.10 user agent of five words or more reads as e2guardian's user agent and four "
        "fields, its last four words lost. Recognised by lines in one of those layouts. `logfileformat 3` is "
        "Squid's native layout, read as `squid`; e2guardian's formats 5 to 8 (Protex) are not read. " + _LOCAL,
        lambda sample, settings: sample.count(looks_like_e2guardian), "bad_filter_line",
        line=_local_time(parse_e2guardian)),
    Format(
        "squidguard", "squidGuard's request log",
        "squidGuard's request log (`Request(source/destination/rewrite) URL ip/fqdn ident method action`): "
        "a REDIRECT or DENY is a blocked attempt in the destination class. Recognised by lines in "
        "that layout. " + _LOCAL,
        lambda sample, settings: sample.count(looks_like_squidguard), "bad_filter_line",
        line=_local_time(parse_squidguard)),
)
"""Every log format, in the order that settles a tie in detection."""

FOLLOWED: tuple[str, ...] = tuple(fmt.name for fmt in FORMATS if fmt.followable)
"""The names `collector.follow` accepts."""


def detect(sample: Sample, settings: Options) -> Format | None:
    """The format that reads the most lines of an input's `sample` (the first in `FORMATS` of those that read
    as many); None when none reads any."""
    best, most = None, 0
    for fmt in FORMATS:
        read = fmt.recognise(sample, settings)
        if read > most:
            best, most = fmt, read
    return best


def followed(name: str) -> Format:
    """The format `collector.follow` calls `name`; `ValueError` naming those it can call one."""
    for fmt in FORMATS:
        if fmt.name == name and fmt.followable:
            return fmt
    raise ValueError(f"not a log format ictwatch can follow (those are {', '.join(FOLLOWED)})")


def markdown() -> str:
    """docs/log-formats.md: the table of formats in detection order, then each one's description."""
    lines = [
        "# Log formats",
        "",
        "<!-- Generated from collector/logs/formats.py by `python -m collector.logs.formats > docs/log-formats.md`;",
        "     tests/collector/logs/test_formats.py fails when this file and the code differ. -->",
        "",
        "An input that is not a pcap or pcapng capture is judged by a sample of its lines: its first",
        f"{SAMPLE_LINES} non-blank lines within its first megabyte (a line over 64 KiB is none of them). It is read",
        "in the format that reads the most of them, the first in this table of those that read as many; a",
        "file none of them reads a line of is refused.",
        "",
        "In a log of a record a line (all but Suricata's and the lease files), each line is then read by its",
        "own format: by the log's format when it reads it, else by the first in this table of the others that",
        "does. A file that mixes squidGuard's and Squid's lines, or DansGuardian's and e2guardian's layouts,",
        "gives every line as what it is, and a line two formats would read is read once, by the log's format if",
        "it is one of them. A line of the log's format reads at the cost of that format alone; a line it",
        "refuses costs a try of each of the others. Lines that no format reads (a syslog banner, a line of",
        "binary) are skipped and counted under the log's format's reason like any bad record.",
        "`collector.follow` in the configuration names a log `ictwatch run` follows as it is written, by one",
        "of the names marked followed; a followed log's lines are read the same way, the named format first.",
        "",
        "| name | what it is | followed | replayed in batches | bad record counted as |",
        "|---|---|---|---|---|",
    ]
    for fmt in FORMATS:
        lines.append(f"| `{fmt.name}` | {fmt.summary} | {'yes' if fmt.followable else 'no'} | "
                     f"{'yes' if fmt.batch else 'no'} | `{fmt.skip_reason}` |")
    for fmt in FORMATS:
        lines += ["", f"## `{fmt.name}`", "", fmt.description]
    lines += ["", "## Uploads through Squid", "", *_UPLOADS]
    return "\n".join(lines) + "\n"


_UPLOADS = [
    "Squid's native access log (and common and combined) logs the size of each reply, `%<st`, but not of",
    "the request: through the proxy, a download is seen and an upload is not. A 50 MB file sent to a",
    "file-sharing site gives a line like any other visit, so `bytes_out_min` never holds for a `proxy`",
    "record and the policy's upload rules see only what the capture shows as flows. To see uploads, give",
    "squid.conf a second access log in this format (the native fields, then `%>st`), and keep the native",
    "log for the tools that read it (SARG, say). Write both `access_log` lines: Squid writes its default",
    "native log only when squid.conf names no access log at all. `deploy/squid/ictwatch.conf` holds these",
    "lines, a drop-in for Debian's `/etc/squid/conf.d/`:",
    "",
    "```",
    f"logformat ictwatch {RECOMMENDED}",
    "access_log daemon:/var/log/squid/access.log squid",
    "access_log daemon:/var/log/squid/ictwatch.log ictwatch",
    "```",
    "",
    "then, in ictwatch's configuration:",
    "",
    "```yaml",
    "collector:",
    f"  squid_logformat: '{RECOMMENDED}'",
    "  follow:",
    "    - {path: /var/log/squid/ictwatch.log, format: squid-logformat}",
    "```",
    "",
    "Squid's meanings (squid.conf's `logformat` documentation): `%>st` is the total size of the request",
    "received from the client (request line, headers and body; for a CONNECT, the request and every byte",
    "the client sent through the tunnel, so an upload over HTTPS counts too) and becomes `bytes_out`;",
    "`%<st` is the total size of the reply sent to the client (after adaptation; for a CONNECT, all that",
    "came back through the tunnel) and becomes `bytes_in`. `%st` is the traffic both ways together, `%>sh`",
    "and `%<sh` the headers alone: ictwatch reads `%>st` and `%<st`. Against Debian's Squid 5.7 both equal",
    "the bytes the client's own socket counted, for a POST, a download and a CONNECT tunnel",
    "(tests/collector/logs/test_squid_real.py). Debian's logrotate rule for `/var/log/squid/*.log` rotates",
    "the new log with the others, and ictwatch follows it across rotations like any log.",
    "",
    "`ictwatch check` and the daemon's start-up warn, once for each, about a followed `squid` or",
    "`squid-common` log and about a `collector.squid_logformat` without `%>st`: their records carry no",
    "request size.",
]
"""docs/log-formats.md's section on the logformat that carries request sizes."""


if __name__ == "__main__":
    print(markdown(), end="")
