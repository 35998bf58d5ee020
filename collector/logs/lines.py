"""Reading a log a bounded line at a time, so that memory never follows what a file holds: a run of NUL
bytes an unclean shutdown left (a gigabyte without a newline), a binary file, a line that never ends.

A line ends at a newline (`\\n` only: `file:N` is the line `sed -n Np` shows), or at the end of the input.
One longer than `MAX_LINE` bytes is never held whole: it is read past a chunk at a time, and its number is
reported so that its reader skips and counts it as `line_too_long`. No log ictwatch reads writes lines
anywhere near that long (a Squid line with a 4 KB URL and a long User-Agent is under 5 KB); a reader holds
at most a chunk and one line. A blank line holds nothing but ASCII white space. A gzipped log cut short or
corrupt (a rotation interrupted by a full disk) is read as far as it goes, and the cut is reported as
`truncated_input`.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

MAX_LINE = 64 << 10
"""The longest line read, in bytes (64 KiB, newline not counted)."""
LINE_TOO_LONG = "line_too_long"
"""The skip reason of a line over `MAX_LINE`."""
TRUNCATED_INPUT = "truncated_input"
"""The skip reason of the rest of a gzipped input that ends before its end-of-stream marker, or is corrupt."""
Skip = Callable[[str, int], None]
"""Told (reason, line number) of each line not read: `LINE_TOO_LONG`, or `TRUNCATED_INPUT` where a gzip's
data stops."""
CHUNK = 1 << 20


def open_unzipped(path: Path, gzip_buffer: int = 0) -> tuple[BinaryIO, BinaryIO]:
    """(stream to read, with `peek` and `read1`; the file under it, whose position is the progress): gzip is
    unwrapped. A gzip stream gets a read buffer of `gzip_buffer` bytes if asked (a capture is read a few
    bytes at a time); a log's reader reads large pieces itself, and a buffer that fills a megabyte at a time
    would lose what it had read of one where the compressed data stops short."""
    raw = open(path, "rb")  # noqa: SIM115 - the caller owns and closes it
    if raw.read(2) == b"\x1f\x8b":
        raw.close()
        unzipped = gzip.GzipFile(path, "rb")  # which closes the file it opened when it is closed
        stream = io.BufferedReader(unzipped, gzip_buffer) if gzip_buffer else unzipped  # type: ignore[arg-type]
        return stream, unzipped.fileobj  # type: ignore[return-value]
    raw.seek(0)
    return io.BufferedReader(raw, 1 << 20), raw  # type: ignore[arg-type,return-value]


def is_blank(line: bytes) -> bool:
    """Whether a line holds nothing but ASCII white space (neither a record nor a bad one)."""
    return not line.strip()


def read_upto(stream: BinaryIO, size: int) -> tuple[bytes, bool]:
    """(up to `size` bytes, fewer only at the end; whether a gzip stream is cut short or corrupt there). Read
    a piece at a time, so that what a gzip stream gives before its cut is not lost with it."""
    read = getattr(stream, "read1", stream.read)
    parts: list[bytes] = []
    got = 0
    try:
        while got < size:
            part = read(size - got)
            if not part:
                break
            parts.append(part)
            got += len(part)
    except (EOFError, gzip.BadGzipFile, zlib.error):
        return b"".join(parts), True
    return b"".join(parts), False


def blocks(stream: BinaryIO, skip: Skip, size: int = CHUNK) -> Iterator[tuple[int, bytes]]:
    """(number of the first line, block) for successive pieces of `stream`, lines numbered from 1: whole lines,
    each ending in a newline (one is added to a last line that has none). A line over `MAX_LINE` is read past
    without being kept: its number goes to `skip` and an empty line stands in its place, so the lines
    after it keep their numbers. Holds at most `size` + `MAX_LINE` bytes of the stream at once."""
    number = 1  # the number of the next line to begin
    rest = b""  # the start of a line whose end is still to come: at most MAX_LINE bytes
    skipping = False  # inside an over-long line whose end is still to come
    broken = False  # a gzip stream cut short or corrupt
    while not broken:
        data, broken = read_upto(stream, size)
        if not data:
            break
        first, pieces, pos = number, [], 0
        if skipping:
            end = data.find(b"\n")
            if end < 0:
                continue
            skip(LINE_TOO_LONG, number)
            number, skipping, pos = number + 1, False, end + 1
            pieces.append(b"\n")
        elif rest:
            data, rest = rest + data, b""
        start = pos  # where the lines still to be put in the block begin; `pos` starts a line
        while len(data) - pos > MAX_LINE:
            # the last newline within MAX_LINE + 1 bytes: every line from `pos` up to it is short enough
            nl = data.rfind(b"\n", pos, pos + MAX_LINE + 1)
            if nl >= 0:
                pos = nl + 1
                continue
            kept = data[start:pos]
            pieces.append(kept)
            number += kept.count(b"\n")
            end = data.find(b"\n", pos + MAX_LINE + 1)
            if end < 0:
                skipping = True
                start = pos = len(data)
                break
            skip(LINE_TOO_LONG, number)
            pieces.append(b"\n")
            number += 1
            start = pos = end + 1
        if not skipping:
            end = data.rfind(b"\n", pos) + 1 or pos
            kept, rest = data[start:end], data[end:]
            pieces.append(kept)
            number += kept.count(b"\n")
        block = b"".join(pieces)
        if block:
            yield first, block
    if broken:  # the lines before the cut are read; the line it cut short is lost with the rest
        skip(TRUNCATED_INPUT, number)
    elif skipping:
        skip(LINE_TOO_LONG, number)
    elif rest:
        yield number, rest + b"\n"


def lines(stream: BinaryIO, skip: Skip) -> Iterator[tuple[int, bytes]]:
    """(number, line without its newline) for each line of `stream` up to `MAX_LINE` bytes, as `blocks` reads
    them; an over-long line's number goes to `skip` instead."""
    for first, block in blocks(stream, skip):
        yield from enumerate(block.split(b"\n")[:-1], first)
