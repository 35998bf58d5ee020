"""Streaming readers for pcap and pcapng captures.

Both yield `(frame_number, ts_us, linktype, data)` one packet at a time, reading from a binary stream
(a file, a gzip stream or a pipe from dumpcap), so memory stays flat whatever the capture's size.
Supported: pcap in both byte orders with micro- or nanosecond stamps; pcapng with several interfaces,
each with its own link type and timestamp resolution, Enhanced and Simple Packet Blocks, and sections
in either byte order. A capture cut off in the middle of a record ends the stream with `TruncatedCapture`.
"""

from __future__ import annotations

import io
import mmap
import struct
from collections.abc import Callable, Iterator
from typing import BinaryIO

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


CHUNK = 1 << 20
MAX_RECORD = 0x4000000
_RELEASE = 32 << 20  # hand back mapped pages every 32 MB read, so memory stays flat on any capture size


Bypass = Callable[[int, bytes, int, int], bool]
"""`bypass(ts_us, buf, off, caplen)`: offered each Ethernet frame of a pcap before the frame is copied
out, as `buf[off:]` (which holds at least its first `head` bytes, or all of it when shorter); when it
returns True the frame is taken care of and not yielded (its frame number is still used up)."""


def read_packets(stream: BinaryIO, bypass: Bypass | None = None, head: int = 0) -> Iterator[Packet]:
    """Packets from a pcap or pcapng stream, chosen by its first four bytes."""
    magic = stream.read(4)
    if magic == PCAPNG_MAGIC:
        return _read_pcapng(stream, magic)
    if magic in PCAP_MAGICS:
        endian, ts_div = PCAP_MAGICS[magic]
        return _read_pcap(stream, endian == "<", ts_div, bypass, head)
    raise CaptureError(f"not a pcap or pcapng capture (magic {magic.hex() or 'empty'})")


def _offer(bypass: Bypass, ts: int, buf: bytes, off: int, caplen: int) -> bool:
    """Whether `bypass` took the frame; if it fails, the frame takes the ordinary path (which counts it)."""
    try:
        return bypass(ts, buf, off, caplen)
    except Exception:
        return False


def _u32(buf: bytes, pos: int, little: bool) -> int:
    """An unsigned 32-bit field: indexing is compiled to native code, where `struct` would be a call."""
    if little:
        return buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16 | buf[pos + 3] << 24
    return buf[pos] << 24 | buf[pos + 1] << 16 | buf[pos + 2] << 8 | buf[pos + 3]


def _read_pcap(stream: BinaryIO, little: bool, ts_div: int, bypass: Bypass | None, head: int) -> Iterator[Packet]:
    # Records are cut out of 1 MB chunks rather than read one by one: two read calls per packet cost
    # more than the decoding of most packets. `read1` returns what is there, so a pipe is not waited on.
    rest = stream.read(20)
    if len(rest) < 20:
        raise CaptureError("pcap file header cut short")
    linktype = _u32(rest, 16, little) & 0x0FFFFFFF
    if linktype != 1:
        bypass = None
    mapped = _map(stream)
    if mapped is not None:
        yield from _records_in_map(mapped, stream, little, ts_div, linktype, bypass, head)
        return
    read = getattr(stream, "read1", stream.read)
    buf, pos, frame = b"", 0, 0
    while True:
        size = len(buf)
        if size - pos >= 16:
            incl = _u32(buf, pos + 8, little)
            end = pos + 16 + incl
            if end <= size:
                frame += 1
                ts = _u32(buf, pos, little) * 1_000_000 + _u32(buf, pos + 4, little) // ts_div
                if bypass is None or not _offer(bypass, ts, buf, pos + 16, incl):
                    yield frame, ts, linktype, buf[pos + 16 : end]
                pos = end
                continue
            if incl > MAX_RECORD:
                raise CaptureError(f"record {frame + 1} claims {incl} bytes")
        more = read(max(CHUNK, end - size) if size - pos >= 16 else CHUNK)
        if not more:
            if size > pos:
                raise TruncatedCapture(frame + 1)
            return
        buf, pos = buf[pos:] + more, 0


def _map(stream: BinaryIO) -> mmap.mmap | None:
    """The whole file, memory-mapped, when the stream is a plain file on disk (not gzip, not a pipe)."""
    raw = getattr(stream, "raw", None)
    while raw is not None and not isinstance(raw, io.FileIO):  # buffered readers may be stacked
        raw = getattr(raw, "raw", None)
    if raw is None:
        return None
    try:
        return mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None


def _records_in_map(
    buf: mmap.mmap, stream: BinaryIO, little: bool, ts_div: int, linktype: int, bypass: Bypass | None, head: int,
) -> Iterator[Packet]:
    """Records sliced straight out of the mapped file; the stream's position follows for progress. Each
    record's header and first `head` bytes are taken in one slice; the rest only if `bypass` declines."""
    size, pos, frame, released = len(buf), 24, 0, 0
    buf.madvise(mmap.MADV_SEQUENTIAL)
    try:
        while pos + 16 <= size:
            rec = buf[pos : pos + 16 + head]
            incl = _u32(rec, 8, little)
            end = pos + 16 + incl
            if end > size:
                if incl > MAX_RECORD:
                    raise CaptureError(f"record {frame + 1} claims {incl} bytes")
                raise TruncatedCapture(frame + 1)
            frame += 1
            ts = _u32(rec, 0, little) * 1_000_000 + _u32(rec, 4, little) // ts_div
            if bypass is None or not _offer(bypass, ts, rec, 16, incl):
                yield frame, ts, linktype, rec[16 : 16 + incl] if incl <= head else buf[pos + 16 : end]
            pos = end
            if not frame & 0xFFF:
                stream.seek(pos)
                if pos - released >= _RELEASE:  # pages already read leave this process's memory
                    upto = pos - pos % mmap.PAGESIZE
                    buf.madvise(mmap.MADV_DONTNEED, released, upto - released)
                    released = upto
        if pos < size:
            raise TruncatedCapture(frame + 1)
    finally:
        stream.seek(pos)
        buf.close()


def _read_pcapng(stream: BinaryIO, magic: bytes) -> Iterator[Packet]:
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


def _section_endian(stream: BinaryIO) -> str:
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
