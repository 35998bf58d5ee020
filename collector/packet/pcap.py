"""Streaming readers for pcap and pcapng captures.

`read_packets` yields `(frame_number, ts_us, linktype, data)` one packet at a time, reading from a
binary stream (a file, a gzip stream or a pipe from dumpcap), so memory stays flat whatever the
capture's size. For a classic pcap, `pcap_chunks` hands out whole records in chunks instead, to a
decoder that walks them itself (`PacketDecoder.decode_pcap`) and copies out only the frames it reads.
Supported: pcap in both byte orders with micro- or nanosecond stamps; pcapng with several interfaces,
each with its own link type and timestamp resolution, Enhanced and Simple Packet Blocks, and sections
in either byte order. A capture cut off in the middle of a record ends with `TruncatedCapture`.
"""

from __future__ import annotations

import io
import os
import stat
import struct
from collections.abc import Iterator
from typing import IO

from mypy_extensions import i64

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1),  # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1),
    b"\x4d\x3c\xb2\xa1": ("<", 1000),  # little-endian, nanoseconds (divide by 1000 for us)
    b"\xa1\xb2\x3c\x4d": (">", 1000),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"

Packet = tuple[int, int, int, bytes]
"""(1-based frame number, microseconds since the epoch, link type, frame bytes as captured)."""


class CaptureError(ValueError):
    """The stream is not a capture this reader understands (bad magic, impossible header)."""


class TruncatedCapture(Exception):
    """The capture ends in the middle of a record; `frame` is the number the cut record would have had."""

    def __init__(self, frame: int) -> None:
        super().__init__(f"capture cut off in record {frame}")
        self.frame = frame


CHUNK = 1 << 18
MAX_RECORD = 0x4000000


def read_packets(stream: IO[bytes]) -> Iterator[Packet]:
    """Packets from a pcap or pcapng stream, chosen by its first four bytes."""
    magic = stream.read(4)
    if magic == PCAPNG_MAGIC:
        return _read_pcapng(stream, magic)
    if magic in PCAP_MAGICS:
        chunks = _pcap_chunks(stream, magic)
        return _read_pcap(chunks)
    raise CaptureError(f"not a pcap or pcapng capture (magic {magic.hex() or 'empty'})")


def u32(buf: bytes, pos: i64, little: bool) -> i64:
    """An unsigned 32-bit field of a record header, in the capture's byte order. A native 64-bit integer
    in the compiled build: a record's time in microseconds (seconds times a million) does not fit the
    range in which the compiled build multiplies its ordinary integers inline, so with `int` each record
    paid for two boxed integers and a call into the interpreter's long multiplication (callgrind)."""
    if little:
        return i64(buf[pos]) | (i64(buf[pos + 1]) << 8) | (i64(buf[pos + 2]) << 16) | (i64(buf[pos + 3]) << 24)
    return (i64(buf[pos]) << 24) | (i64(buf[pos + 1]) << 16) | (i64(buf[pos + 2]) << 8) | i64(buf[pos + 3])


class PcapChunks:
    """A classic pcap's records, handed out in chunks of `CHUNK` bytes (256 KB: one stays in the core's cache
    while it is decoded) or of a whole record where one is larger; each begins with a record and holds
    at least one whole record. Whoever walks the records (`PacketDecoder.decode_pcap`, `_read_pcap`) asks
    for the next chunk with `more(buf, pos, frame)`: the bytes from `buf[pos]` on, followed by what comes
    next. A plain file on disk is read with `pread` at the offset of `buf[pos]`, so nothing is copied
    twice and the file's pages never count in this process's memory; a pipe or a gzip stream is read
    forward and the unread tail carried over."""

    def __init__(self, stream: IO[bytes], little: bool, ts_div: int, linktype: int) -> None:
        self.little, self.ts_div, self.linktype = little, ts_div, linktype
        self._stream = stream
        self._fd = _plain_file(stream)
        self._offset = stream.tell() if self._fd >= 0 else 0  # file offset of the current chunk's first byte
        self._read = getattr(stream, "read1", stream.read)  # what is there: a pipe is not waited on

    def more(self, buf: bytes, pos: int, frame: int) -> bytes | None:
        """The chunk that starts at `buf[pos]`; None at the clean end of the capture. `frame` records have
        been read so far (it numbers the record a cut or impossible header is reported against)."""
        if self._fd >= 0:
            self._offset += pos
            chunk = os.pread(self._fd, CHUNK, self._offset)
            need = self._need(chunk, frame)
            if need > len(chunk):
                chunk = os.pread(self._fd, need, self._offset)
            self._stream.seek(self._offset + len(chunk))  # progress follows the file's position
        else:
            chunk = buf[pos:]
            need = self._need(chunk, frame)
            while need > len(chunk):
                got = self._read(max(CHUNK, need - len(chunk)))
                if not got:
                    break
                chunk += got
                need = self._need(chunk, frame)
        if not chunk:
            return None
        if need > len(chunk):
            raise TruncatedCapture(frame + 1)
        return chunk

    def _need(self, chunk: bytes, frame: int) -> int:
        """How many bytes from the chunk's start its first record needs (header and frame)."""
        if len(chunk) < 16:
            return 16 if chunk else 1
        incl = u32(chunk, 8, self.little)
        if incl > MAX_RECORD:
            raise CaptureError(f"record {frame + 1} claims {incl} bytes")
        return 16 + incl


def _pcap_chunks(stream: IO[bytes], magic: bytes) -> PcapChunks:
    """The chunk reader for a classic pcap whose 4-byte magic was just read."""
    endian, ts_div = PCAP_MAGICS[magic]
    rest = stream.read(20)
    if len(rest) < 20:
        raise CaptureError("pcap file header cut short")
    little = endian == "<"
    return PcapChunks(stream, little, ts_div, u32(rest, 16, little) & 0x0FFFFFFF)


def pcap_chunks(stream: IO[bytes]) -> PcapChunks | None:
    """A chunk reader when `stream` (which must offer `peek`) holds a classic pcap; None, with nothing
    consumed, for anything else (pcapng goes to `read_packets`)."""
    magic = stream.peek(4)[:4]  # type: ignore[attr-defined]
    if magic not in PCAP_MAGICS:
        return None
    return _pcap_chunks(stream, stream.read(4))


def frame_time(seconds: int, fraction: int, ts_div: int) -> int:
    """Microseconds since the epoch of a classic pcap record's stamp (`fraction` in µs, or ns when `ts_div`
    is 1000); -1, a time the store does not keep (the frame is then skipped as `time_out_of_range`), when
    the fraction is a whole second or more, which no capture tool writes."""
    if fraction >= ts_div * 1_000_000:
        return -1
    return seconds * 1_000_000 + fraction // ts_div


def _read_pcap(chunks: PcapChunks) -> Iterator[Packet]:
    little, ts_div, linktype = chunks.little, chunks.ts_div, chunks.linktype
    buf, pos, frame = b"", 0, 0
    while True:
        chunk = chunks.more(buf, pos, frame)
        if chunk is None:
            return
        buf, pos = chunk, 0
        size = len(buf)
        while size - pos >= 16:
            end = pos + 16 + u32(buf, pos + 8, little)
            if end > size:
                break
            frame += 1
            yield frame, frame_time(u32(buf, pos, little), u32(buf, pos + 4, little), ts_div), linktype, buf[
                pos + 16 : end]
            pos = end


def _plain_file(stream: IO[bytes]) -> int:
    """The descriptor of a plain file on disk under `stream` (not gzip, not a pipe), or -1."""
    raw = getattr(stream, "raw", None)
    while raw is not None and not isinstance(raw, io.FileIO):  # buffered readers may be stacked
        raw = getattr(raw, "raw", None)
    if raw is None:
        return -1
    try:
        if not stat.S_ISREG(os.fstat(raw.fileno()).st_mode):
            return -1
    except (OSError, ValueError):
        return -1
    return raw.fileno()


def _read_pcapng(stream: IO[bytes], magic: bytes) -> Iterator[Packet]:
    interfaces: list[tuple[int, int, int]] = []  # (linktype, units per second, offset seconds)
    endian = "<"
    frame = 0
    first = True
    while True:
        head = magic if first else stream.read(4)
        first = False
        if not head:
            return
        rest = stream.read(4)
        if len(head) < 4 or len(rest) < 4:
            raise TruncatedCapture(frame + 1)
        if head == PCAPNG_MAGIC:
            endian = _section_endian(stream)
            block_type, total = 0x0A0D0D0A, struct.unpack(endian + "I", rest)[0]
            if total < 28 or total % 4:
                raise CaptureError(f"pcapng section header of impossible length {total}")
            body = stream.read(total - 12 - 4)  # the byte-order magic is already read
            interfaces = []
        else:
            block_type = struct.unpack(endian + "I", head)[0]
            total = struct.unpack(endian + "I", rest)[0]
            if total < 12 or total % 4:
                raise CaptureError(f"pcapng block of impossible length {total}")
            body = stream.read(total - 12)
        trailer = stream.read(4)
        if len(trailer) < 4 or (block_type != 0x0A0D0D0A and len(body) < total - 12):
            raise TruncatedCapture(frame + 1)
        try:
            if block_type == 1:
                interfaces.append(_interface(body, endian))
            elif block_type in (6, 3):
                frame += 1
                yield _packet_block(block_type, body, endian, interfaces, frame)
        except struct.error:
            raise CaptureError(f"pcapng block of type {block_type} too short for its fields") from None


def _section_endian(stream: IO[bytes]) -> str:
    bom = stream.read(4)
    if bom == b"\x4d\x3c\x2b\x1a":
        return "<"
    if bom == b"\x1a\x2b\x3c\x4d":
        return ">"
    raise CaptureError("pcapng section header with an unknown byte-order mark")


def _interface(body: bytes, endian: str) -> tuple[int, int, int]:
    linktype = struct.unpack_from(endian + "H", body, 0)[0]
    units, offset = 1_000_000, 0
    pos = 8
    while pos + 4 <= len(body):
        code, length = struct.unpack_from(endian + "HH", body, pos)
        value = body[pos + 4 : pos + 4 + length]
        if code == 0:
            break
        if code == 9 and value:  # if_tsresol
            r = value[0]
            units = 2 ** (r & 0x7F) if r & 0x80 else 10 ** r
        elif code == 14 and len(value) == 8:  # if_tsoffset, seconds
            offset = struct.unpack(endian + "q", value)[0]
        pos += 4 + ((length + 3) & ~3)
    return linktype, units, offset


def _packet_block(
    block_type: int, body: bytes, endian: str, interfaces: list[tuple[int, int, int]], frame: int
) -> Packet:
    if block_type == 3:  # Simple Packet Block: interface 0, no timestamp
        orig_len = struct.unpack_from(endian + "I", body, 0)[0]
        linktype = interfaces[0][0] if interfaces else 1
        return frame, 0, linktype, body[4 : 4 + orig_len]
    iface, ts_hi, ts_lo, caplen, _orig = struct.unpack_from(endian + "IIIII", body, 0)
    if iface >= len(interfaces):
        raise CaptureError(f"packet {frame} names undeclared interface {iface}")
    linktype, units, offset = interfaces[iface]
    ticks = (ts_hi << 32) | ts_lo
    ts_us = ticks * 1_000_000 // units + offset * 1_000_000
    return frame, ts_us, linktype, body[20 : 20 + caplen]
