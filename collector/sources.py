"""Input sources: capture files and logs, told apart by content, each with `run(emit)`/`stop()`.

`open_source(path)` looks at the first bytes: a pcap or pcapng magic (optionally inside gzip) makes a
`CaptureSource` (or a `TsharkCaptureSource`); anything else is read as the log format of
`collector.logs.formats.FORMATS` that reads the most of a sample of its lines (each line by its own format,
that one first), and one that none of them reads a line of raises `InputError`, which the CLI reports with
exit status 2. Inside a readable input, bad records are counted in `skips` and skipped; the source carries
on. Every source, the live capture's too, is a `Source`.
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
import subprocess
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from collector.capture.messages import read_message
from collector.capture.tshark import TsharkCaptureSource, TsharkUnavailable
from collector.config import CollectorSettings
from collector.logs.formats import FORMATS, SAMPLE_BYTES, BatchReader, Format, LineReader, Sample, detect, line_reader
from collector.logs.lines import is_blank, lines, open_unzipped, read_upto
from collector.observation import Emit, Observation, to_frame
from collector.packet.flows import ConsumerFailed
from collector.packet.packets import PacketDecoder, Stop, decode_frames
from collector.packet.pcap import PCAP_MAGICS, PCAPNG_MAGIC, CaptureError, TruncatedCapture, pcap_chunks, read_packets
from collector.skips import SkipCounter
from collector.source import BatchSink, Progress, Source


class InputError(Exception):
    """An input that cannot be read at all: missing, unreadable, or of no format ictwatch knows."""


class _FileSource:
    """What file sources share: the open stream (gzip unwrapped), skip counts, progress, `stop()`."""

    run_batches: Callable[[BatchSink], int] | None = None

    def __init__(self, path: Path, gzip_buffer: int = 0) -> None:
        self.path = path
        self.skips = SkipCounter()
        self._stream, raw = open_unzipped(path, gzip_buffer)
        self.progress = Progress(raw, os.path.getsize(path))
        self._stop = Stop()  # one flag, read by the compiled frame loop and by the log readers

    def stop(self) -> None:
        """Stop at the next record."""
        self._stop.set = True


class CaptureSource(_FileSource):
    """A pcap/pcapng file (plain or gzip) decoded by `PacketDecoder` (or what `decoder` makes)."""

    def __init__(self, path: Path, decoder: Callable[[Emit, SkipCounter, str], PacketDecoder] = PacketDecoder) -> None:
        super().__init__(path, gzip_buffer=1 << 20)  # records are read a header at a time
        self.packets = 0
        self._make_decoder = decoder

    def run(self, emit: Emit) -> None:
        """Decode every frame. A cut-off last record (or a gzip cut short) is counted as `truncated_capture`; a
        broken record after good ones ends the input as `bad_capture_record` (what came before is kept); a capture
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
            except (EOFError, zlib.error, gzip.BadGzipFile):  # a gzipped capture cut short or corrupt
                self.skips.skip("truncated_capture", f"{name}#{decoder.packets + 1}")
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


class WorkerCaptureSource:
    """A capture file decoded by a capture worker that `collector.capture.messages.decode_ahead` started
    (while the command was still starting): its batches are read as they come, each of the rows
    `CaptureSource` would have put in a batch, with the same skips."""

    progress = None

    def __init__(self, path: Path, proc: subprocess.Popen[bytes]) -> None:
        self.path = path
        self.skips = SkipCounter()
        self.packets = 0
        self._proc = proc

    def run_batches(self, sink: BatchSink) -> int:
        """Each batch the worker sends, to `sink`; returns the rows. A capture broken before its first packet
        is an `InputError`, as with `CaptureSource`."""
        rows = 0
        for columns in self._batches():
            sink(to_frame(columns))
            rows += len(columns[0])
        return rows

    def run(self, emit: Emit) -> None:
        """Each observation the worker decoded, to `emit`."""
        for columns in self._batches():
            for row in zip(*columns, strict=True):
                emit(Observation(*row))

    def _batches(self) -> Iterator[list[list[Any]]]:
        assert self._proc.stdout is not None
        try:
            while (message := read_message(self._proc.stdout.fileno())) is not None:
                kind, columns, self.packets, skips, logs = message[:5]
                for level, name, text in logs:
                    logging.getLogger(name).log(level, "%s", text)
                self.skips.add(skips)
                if columns is not None:
                    yield columns
                if kind == "end":
                    self._proc.wait(10)  # it exits once it has said all
                    if message[6]:
                        raise InputError(message[6])
                    return
            raise InputError(f"{self.path}: the capture worker exited (status {self._proc.wait()}) before "
                             "the capture's end")
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the worker (if still running) and wait for it."""
        if self._proc.poll() is None:
            self._proc.terminate()
        self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


class LogLineSource(_FileSource):
    """A text log in a format of a record a line, read with `parse(line, ref)` (each line by its own format),
    or with the format's batch reader when it has one (`run_batches`), which hands the lines it refuses to the
    other formats. A line no format reads is counted as `skip_reason`."""

    packets = 0

    def __init__(self, path: Path, fmt: str, parse: LineReader, skip_reason: str,
                 batch: BatchReader | None = None) -> None:
        super().__init__(path)
        self.format = fmt
        self._parse = parse
        self._skip_reason = skip_reason
        if batch is not None:
            self.run_batches = functools.partial(self._read_chunks, batch)

    def run(self, emit: Emit) -> None:
        """Emit one observation per good line; count and skip the rest (a line over `lines.MAX_LINE` too)."""
        name = self.path.name
        with self._stream:
            for number, raw in lines(self._stream, lambda reason, n: self.skips.skip(reason, f"{name}:{n}")):
                if self._stop.set:
                    break
                if is_blank(raw):
                    continue
                try:
                    emit(self._parse(raw.decode("utf-8", "replace"), f"{name}:{number}"))
                except ValueError as exc:
                    self.skips.refused(exc, self._skip_reason, f"{name}:{number}")

    def _read_chunks(self, batch: BatchReader, sink: BatchSink) -> int:
        """Parse the whole log with `batch`, in chunks straight into observation frames; returns rows."""
        name = self.path.name
        try:
            return batch(self._stream, name, sink, lambda reason, n: self.skips.skip(reason, f"{name}:{n}"),
                         lambda: self._stop.set, self._parse.other)
        finally:
            self._stream.close()


def open_source(path: str | Path, settings: CollectorSettings | None = None,
                ahead: subprocess.Popen[bytes] | None = None) -> Source:
    """Choose the source for `path` from its content; `InputError` when it is none we know. Captures go
    to the native decoder, or to tshark when `settings.decoder` is `tshark`; a capture a worker is already
    decoding (`ahead`) is read from it; a log is read as the format of
    `FORMATS` that reads the most of a sample of its lines (a Squid log in none of Squid's built-in formats
    is tried with `settings.squid_logformat`; e2guardian and squidGuard times are read in `settings.log_timezone`)."""
    settings = settings or CollectorSettings()
    path = Path(path)
    if ahead is not None and settings.decoder == "tshark":
        ahead.terminate()
        ahead.wait()
        ahead = None
    try:
        stream, _raw = open_unzipped(path)
        with stream:
            head, broken = read_upto(stream, SAMPLE_BYTES + 1)  # a gzip cut short: what comes before the cut
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None
    if head[:4] == PCAPNG_MAGIC or head[:4] in PCAP_MAGICS:
        if settings.decoder == "tshark":
            try:
                return TsharkCaptureSource(path)
            except TsharkUnavailable as exc:
                raise InputError(f"{path}: {exc}") from None
        return CaptureSource(path) if ahead is None else WorkerCaptureSource(path, ahead)
    sample = Sample.of(head[:SAMPLE_BYTES], whole=len(head) <= SAMPLE_BYTES and not broken)
    if not sample.lines and head.strip():
        raise InputError(f"{path}: not a pcap or pcapng capture, and its first megabyte holds no line of a log "
                         "(none of 64 KiB or less that is not blank)")
    fmt = detect(sample, settings)
    if fmt is None:
        hint = "" if settings.squid_logformat else "; for a custom Squid logformat, set collector.squid_logformat"
        raise InputError(f"{path}: not a pcap or pcapng capture, nor a log in a format of docs/log-formats.md "
                         f"({', '.join(fmt.name for fmt in FORMATS)})" + hint)
    return _log_source(fmt, path, settings)


def _log_source(fmt: Format, path: Path, settings: CollectorSettings) -> Source:
    """The reader of a log in the format `fmt`."""
    if fmt.source is not None:
        return fmt.source(path)
    return LogLineSource(path, fmt.name, line_reader(fmt, settings), fmt.skip_reason, fmt.batch)
