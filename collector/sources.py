"""Input sources: capture files and logs, told apart by content, each with `run(emit)`/`stop()`.

`open_source(path)` looks at the first bytes: a pcap or pcapng magic (optionally inside gzip) makes a
`CaptureSource`; text whose first non-blank line is a Suricata EVE record makes an `EveSource`, a DHCP
lease file a `LeaseFileSource`, a Squid line (native, common/combined, or the configured custom
`logformat`) a `SquidLogSource`, and an e2guardian or squidGuard line a `LogLineSource`.
Anything else raises `InputError`, which the CLI reports with exit status 2. Inside a readable input,
bad records are counted in `skips` and skipped; the source carries on.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO
from zoneinfo import ZoneInfo

import polars as pl

from collector.capture.tshark import TsharkCaptureSource, TsharkUnavailable
from collector.config import CollectorSettings
from collector.logs import squid_batch
from collector.logs.eve import EveSource, looks_like_eve
from collector.logs.filterlogs import detect_filter_format, parse_e2guardian, parse_e2guardian_csv, parse_squidguard
from collector.logs.leasefiles import LeaseFileSource, lease_follower, looks_like_lease_file
from collector.logs.squid import detect_format, parse_common_line, parse_line
from collector.logs.squid_logformat import LogFormat
from collector.observation import Observation
from collector.packet.flows import ConsumerFailed
from collector.packet.packets import PacketDecoder, Stop, decode_frames
from collector.packet.pcap import PCAP_MAGICS, PCAPNG_MAGIC, CaptureError, TruncatedCapture, pcap_chunks, read_packets
from collector.skips import SkipCounter

Emit = Callable[[Observation], None]
LineParser = Callable[[str, str], Observation]
"""`parse(line, source_ref)`: one log line's observation, or `ValueError`."""


class InputError(Exception):
    """An input that cannot be read at all: missing, unreadable, or of no format ictwatch knows."""


class _Progress:
    """Bytes consumed so far, read by the CLI's progress bar."""

    def __init__(self, raw: BinaryIO, total: int) -> None:
        self._raw = raw
        self.total = total

    @property
    def done(self) -> int:
        return self._raw.tell()


def _open_binary(path: Path) -> tuple[BinaryIO, BinaryIO]:
    """(stream to decode, underlying file for progress); gzip is unwrapped."""
    raw = open(path, "rb")  # noqa: SIM115 - the source owns and closes it
    if raw.read(2) == b"\x1f\x8b":
        raw.seek(0)
        return io.BufferedReader(gzip.GzipFile(fileobj=raw), 1 << 20), raw  # type: ignore[arg-type]
    raw.seek(0)
    return io.BufferedReader(raw, 1 << 20), raw  # type: ignore[arg-type]


class _FileSource:
    """What file sources share: the open stream (gzip unwrapped), skip counts, progress, `stop()`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.skips = SkipCounter()
        self._stream, raw = _open_binary(path)
        self.progress = _Progress(raw, os.path.getsize(path))
        self._stop = Stop()  # one flag, read by the compiled frame loop and by the log readers

    def stop(self) -> None:
        """Stop at the next record."""
        self._stop.set = True


class CaptureSource(_FileSource):
    """A pcap/pcapng file (plain or gzip) decoded by `PacketDecoder` (or what `decoder` makes)."""

    def __init__(self, path: Path, decoder: Callable[[Emit, SkipCounter, str], PacketDecoder] = PacketDecoder) -> None:
        super().__init__(path)
        self.packets = 0
        self._make_decoder = decoder

    def run(self, emit: Emit) -> None:
        """Decode every frame. A cut-off last record is counted as `truncated_capture`; a broken record
        after good ones ends the input as `bad_capture_record` (what came before is kept); a capture
        broken before its first packet is an `InputError`. A frame the decoder fails on in a way it did
        not foresee is counted as `decoder_error` and the capture goes on."""
        decoder = self._make_decoder(emit, self.skips, self.path.name)
        name = self.path.name
        consumer_ok = True
        try:
            try:
                chunks = pcap_chunks(self._stream)
                if chunks is not None:  # a classic pcap: the decoder walks its records in place
                    decoder.decode_pcap(chunks, self.skips, name, self._stop)
                else:
                    decode_frames(decoder, read_packets(self._stream), self.skips, name, self._stop)
            except ConsumerFailed:
                consumer_ok = False
                raise
            except TruncatedCapture as cut:
                self.skips.skip("truncated_capture", f"{name}#{cut.frame}")
            except CaptureError as exc:
                if decoder.packets == 0:
                    raise InputError(f"{self.path}: {exc}") from None
                self.skips.skip("bad_capture_record", f"{name}#{decoder.packets + 1}")
            finally:
                self.packets = decoder.packets
                self._stream.close()
                if consumer_ok:  # a consumer that failed is not handed the flows still open
                    decoder.finish()
        except ConsumerFailed as failed:  # the consumer's own exception, as if it had been called directly
            raise failed.cause from None


class LogLineSource(_FileSource):
    """A text log read line by line with `parse(line, ref)`: a Squid log in a line-by-line format, an
    e2guardian or a squidGuard log. A line `parse` refuses is counted as `skip_reason` and skipped."""

    def __init__(self, path: Path, fmt: str, parse: LineParser, skip_reason: str) -> None:
        super().__init__(path)
        self.format = fmt
        self._parse = parse
        self._skip_reason = skip_reason

    @property
    def batched(self) -> bool:
        """Whether `run_batches` can read this log (only the Squid native format can)."""
        return False

    def run(self, emit: Emit) -> None:
        """Emit one `proxy` observation per good line; count and skip the rest."""
        name = self.path.name
        # Lines end at \n only, so `access.log:N` is the line `sed -n Np` shows even if a line holds a \r.
        with io.TextIOWrapper(self._stream, encoding="utf-8", errors="replace", newline="\n") as text:
            for number, line in enumerate(text, 1):
                if self._stop.set:
                    break
                if not line.strip():
                    continue
                try:
                    emit(self._parse(line, f"{name}:{number}"))
                except ValueError:
                    self.skips.skip(self._skip_reason, f"{name}:{number}")


class SquidLogSource(LogLineSource):
    """A Squid access log: native (also a chunk at a time, `run_batches`), common/combined, or a custom
    `logformat` (then `parse` is that format's)."""

    def __init__(self, path: Path, fmt: str = "native", parse: LineParser | None = None) -> None:
        super().__init__(path, fmt, parse or (parse_line if fmt == "native" else parse_common_line), "bad_squid_line")

    @property
    def batched(self) -> bool:
        """Whether `run_batches` can read this log (the native format; the others go line by line)."""
        return self.format == "native"

    def run_batches(self, sink: Callable[[pl.DataFrame], None]) -> int:
        """Parse the whole log in vectorised chunks straight into observation frames; returns rows."""
        name = self.path.name
        try:
            return squid_batch.run_chunks(self._stream, name, sink,
                                          lambda n: self.skips.skip("bad_squid_line", f"{name}:{n}"),
                                          lambda: self._stop.set)
        finally:
            self._stream.close()


def line_parser(fmt: str, settings: CollectorSettings) -> tuple[LineParser, str]:
    """(parser, skip reason) of a log format: `squid`, `squid-common`, `e2guardian`, `e2guardian_csv` (or
    `e2guardian-csv`) or `squidguard`; web-filter times are read in `settings.log_timezone`."""
    if fmt == "squid":
        return parse_line, "bad_squid_line"
    if fmt == "squid-common":
        return parse_common_line, "bad_squid_line"
    zone = ZoneInfo(settings.log_timezone)
    parse = {"e2guardian": parse_e2guardian, "e2guardian_csv": parse_e2guardian_csv,
             "e2guardian-csv": parse_e2guardian_csv, "squidguard": parse_squidguard}[fmt]
    return (lambda line, ref: parse(line, ref, zone)), "bad_filter_line"


FollowParser = Callable[[str, str], list[Observation]]
"""One line of a followed log (and its reference) → the observations it gives (a lease record may take
several lines and give its observation on the last)."""


def follow_parser(fmt: str, path: Path, settings: CollectorSettings) -> tuple[FollowParser, str]:
    """(parser of one line into its observations, skip reason) for a log `ictwatch run` follows. With
    `settings.line_rate`, a Suricata log gives only its flows: the capture gives the names."""
    if fmt in ("dhcpd-leases", "dnsmasq-leases"):
        return lease_follower(fmt.split("-")[0]), "bad_lease_record"
    if fmt == "suricata-eve":
        events = EveSource(path).parse_line
        if not settings.line_rate:
            return events, "bad_eve_record"

        def flows_only(line: str, ref: str) -> list[Observation]:
            return [obs for obs in events(line, ref) if obs.kind == "flow"]

        return flows_only, "bad_eve_record"
    one, reason = line_parser(fmt, settings)

    def as_list(line: str, ref: str) -> list[Observation]:
        return [one(line, ref)]

    return as_list, reason


Source = CaptureSource | LogLineSource | TsharkCaptureSource | EveSource | LeaseFileSource
"""What `open_source` returns: each has `run(emit)`, `stop()`, `skips` and `path`."""


def open_source(path: str | Path, settings: CollectorSettings | None = None) -> Source:
    """Choose the source for `path` from its content; `InputError` when it is none we know. Captures go
    to the native decoder, or to tshark when `settings.decoder` is `tshark`; a Squid log that is in none
    of Squid's built-in formats is tried with `settings.squid_logformat`; e2guardian and squidGuard times
    are read in `settings.log_timezone`."""
    settings = settings or CollectorSettings()
    path = Path(path)
    try:
        stream, _raw = _open_binary(path)
        with stream:
            head = stream.peek(4096)[:4096]
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None
    if head[:4] == PCAPNG_MAGIC or head[:4] in PCAP_MAGICS:
        if settings.decoder == "tshark":
            try:
                return TsharkCaptureSource(path)
            except TsharkUnavailable as exc:
                raise InputError(f"{path}: {exc}") from None
        return CaptureSource(path)
    text = head.decode("utf-8", "replace")
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if looks_like_eve(first):
        return EveSource(path)
    lease_kind = looks_like_lease_file(text)
    if lease_kind is not None:
        return LeaseFileSource(path, lease_kind)
    squid_format = detect_format(first)
    if squid_format is not None:
        return SquidLogSource(path, squid_format)
    if settings.squid_logformat is not None:
        custom = LogFormat(settings.squid_logformat)
        try:
            custom.parse(first, "")
            return SquidLogSource(path, "logformat", custom.parse)
        except ValueError:
            pass
    filter_format = detect_filter_format(first)
    if filter_format is not None:
        parse, reason = line_parser(filter_format, settings)
        return LogLineSource(path, filter_format, parse, reason)
    raise InputError(f"{path}: not a pcap, pcapng, Suricata EVE, DHCP lease file, Squid, e2guardian or squidGuard "
                     "log" + ("" if settings.squid_logformat else " (for a Squid custom logformat, set "
                              "collector.squid_logformat)"))
