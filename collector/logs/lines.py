"""Reading a log a bounded line at a time, so that memory never follows what a file holds: a run of NUL
bytes an unclean shutdown left (a gigabyte without a newline), a binary file, a line that never ends.

A line ends at a newline (`\\n` only: `file:N` is the line `sed -n Np` shows), or at the end of the input.
One longer than `MAX_LINE` bytes is never held whole: it is read past a chunk at a time, and its number is
reported so that its reader skips and counts it as `line_too_long`. No log ictwatch reads writes lines
anywhere near that long (a Squid line with a 4 KB URL and a long User-Agent is under 5 KB); a reader holds
at most a chunk and one line. A blank line holds nothing but ASCII white space.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

MAX_LINE = 64 << 10
"""The longest line read, in bytes (64 KiB, newline not counted)."""
LINE_TOO_LONG = "line_too_long"
"""The skip reason of a line over `MAX_LINE`."""
CHUNK = 1 << 20


def open_unzipped(path: Path) -> tuple[io.BufferedReader, BinaryIO]:
    """(stream to read, the file under it, whose position is the progress): gzip is unwrapped."""
    raw = open(path, "rb")  # noqa: SIM115 - the caller owns and closes it
    if raw.read(2) == b"\x1f\x8b":
        raw.seek(0)
        return io.BufferedReader(gzip.GzipFile(fileobj=raw), 1 << 20), raw  # type: ignore[arg-type]
    raw.seek(0)
    return io.BufferedReader(raw, 1 << 20), raw  # type: ignore[arg-type]


def is_blank(line: bytes) -> bool:
    """Whether a line holds nothing but ASCII white space (neither a record nor a bad one)."""
    return not line.strip()


def blocks(stream: BinaryIO, too_long: Callable[[int], None], size: int = CHUNK) -> Iterator[tuple[int, bytes]]:
    """(number of the first line, block) for successive pieces of `stream`, lines numbered from 1: whole lines,
    each ending in a newline (one is added to a last line that has none). A line over `MAX_LINE` is read past
    without being kept: its number goes to `too_long` and an empty line stands in its place, so the lines
    after it keep their numbers. Holds at most `size` + `MAX_LINE` bytes of the stream at once."""
    number = 1  # the number of the next line to begin
    rest = b""  # the start of a line whose end is still to come: at most MAX_LINE bytes
    skipping = False  # inside an over-long line whose end is still to come
    while True:
        data = stream.read(size)
        if not data:
            break
        first, pieces, pos = number, [], 0
        if skipping:
            end = data.find(b"\n")
            if end < 0:
                continue
            too_long(number)
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
            too_long(number)
            pieces.append(b"\n")
            number += 1
            start = pos = end + 1
        if not skipping:
            cut = data.rfind(b"\n", pos) + 1 or pos
            kept, rest = data[start:cut], data[cut:]
            pieces.append(kept)
            number += kept.count(b"\n")
        block = b"".join(pieces)
        if block:
            yield first, block
    if skipping:
        too_long(number)
    elif rest:
        yield number, rest + b"\n"


def lines(stream: BinaryIO, too_long: Callable[[int], None]) -> Iterator[tuple[int, bytes]]:
    """(number, line without its newline) for each line of `stream` up to `MAX_LINE` bytes, as `blocks` reads
    them; an over-long line's number goes to `too_long` instead."""
    for first, block in blocks(stream, too_long):
        yield from enumerate(block.split(b"\n")[:-1], first)
