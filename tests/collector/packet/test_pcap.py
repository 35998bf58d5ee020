"""pcap and pcapng reading, on captures assembled byte by byte from the file-format specifications."""

from __future__ import annotations

import gzip
import io
import struct

import pytest

from collector.packet.pcap import CaptureError, TruncatedCapture, read_packets

FRAME = bytes(range(60))


def pcap(endian: str, magic: int, records: list[tuple[int, int, bytes]], linktype: int = 1) -> bytes:
    out = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for sec, frac, data in records:
        out += struct.pack(endian + "IIII", sec, frac, len(data), len(data)) + data
    return out


@pytest.mark.parametrize(
    ("endian", "magic", "frac", "expect_us"),
    [
        ("<", 0xA1B2C3D4, 250_000, 1_700_000_000_250_000),  # little-endian, microseconds
        (">", 0xA1B2C3D4, 250_000, 1_700_000_000_250_000),  # big-endian
        ("<", 0xA1B23C4D, 250_000_999, 1_700_000_000_250_000),  # nanoseconds: truncated to the microsecond
        (">", 0xA1B23C4D, 1_500, 1_700_000_000_000_001),
    ],
)
def test_pcap_byte_orders_and_resolutions(endian, magic, frac, expect_us):
    data = pcap(endian, magic, [(1_700_000_000, frac, FRAME), (1_700_000_001, 0, FRAME[:20])])
    packets = list(read_packets(io.BytesIO(data)))
    assert [(n, lt, len(d)) for n, _ts, lt, d in packets] == [(1, 1, 60), (2, 1, 20)]
    assert packets[0][1] == expect_us


def test_pcap_cut_off_inside_a_record_reports_the_record():
    data = pcap("<", 0xA1B2C3D4, [(1, 0, FRAME), (2, 0, FRAME)])[:-10]
    stream = read_packets(io.BytesIO(data))
    assert next(stream)[0] == 1
    with pytest.raises(TruncatedCapture) as cut:
        next(stream)
    assert cut.value.frame == 2


def test_not_a_capture():
    with pytest.raises(CaptureError, match="not a pcap"):
        list(read_packets(io.BytesIO(b"hello world")))


def _block(block_type: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    total = len(body) + 12
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def test_pcapng_interfaces_have_their_own_link_type_and_resolution():
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    eth = _block(1, struct.pack("<HHI", 1, 0, 65535))  # default resolution: microseconds
    raw_ns = _block(1, struct.pack("<HHI", 101, 0, 65535) + _option(9, b"\x09") + _option(0, b""))
    ts_us = 1_700_000_000_123_456
    ts_ns = ts_us * 1000 + 789
    epb0 = _block(6, struct.pack("<IIIII", 0, ts_us >> 32, ts_us & 0xFFFFFFFF, 60, 60) + FRAME)
    epb1 = _block(6, struct.pack("<IIIII", 1, ts_ns >> 32, ts_ns & 0xFFFFFFFF, 20, 20) + FRAME[:20])
    packets = list(read_packets(io.BytesIO(shb + eth + raw_ns + epb0 + epb1)))
    assert [(n, ts, lt, len(d)) for n, ts, lt, d in packets] == [(1, ts_us, 1, 60), (2, ts_us, 101, 20)]


def test_gzip_capture_is_read_through_the_source(tmp_path):
    from collector.sources import CaptureSource, open_source

    path = tmp_path / "c.pcap.gz"
    path.write_bytes(gzip.compress(pcap("<", 0xA1B2C3D4, [(1, 0, FRAME)])))
    source = open_source(path)
    assert isinstance(source, CaptureSource)
    source.run(lambda obs: None)
    assert source.packets == 1


def _shb() -> bytes:
    return _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


@pytest.mark.parametrize(
    "blocks",
    [
        [_block(1, b"")],  # interface description without its link type
        [_block(1, struct.pack("<HHI", 1, 0, 65535)), _block(6, b"\0\0\0\0")],  # packet block too short
        [_block(1, struct.pack("<HHI", 1, 0, 65535)), _block(3, b"")],  # simple packet block, no length
    ],
)
def test_pcapng_blocks_too_short_for_their_fields(blocks):
    with pytest.raises(CaptureError, match="too short"):
        list(read_packets(io.BytesIO(_shb() + b"".join(blocks))))


def test_pcapng_section_header_of_impossible_length():
    data = struct.pack("<II", 0x0A0D0D0A, 8) + b"\x4d\x3c\x2b\x1a" + bytes(40)
    with pytest.raises(CaptureError, match="impossible length 8"):
        list(read_packets(io.BytesIO(data)))


def test_broken_record_after_good_ones_keeps_the_good_ones(tmp_path):
    from collector.sources import open_source

    good = pcap("<", 0xA1B2C3D4, [(1, 0, FRAME), (2, 0, FRAME)])
    path = tmp_path / "broken.pcap"
    path.write_bytes(good + struct.pack("<IIII", 3, 0, 0x7FFFFFFF, 60) + FRAME)
    source = open_source(path)
    source.run(lambda obs: None)
    assert source.packets == 2
    assert source.skips.by_reason == {"bad_capture_record": 1}


def _records_across_chunks() -> list[tuple[int, int, bytes]]:
    """Records of many sizes, one larger than a whole chunk, so that records straddle chunk ends."""
    from collector.packet.pcap import CHUNK

    sizes = [60, 1514, 3, 0, CHUNK + 4321, 70, *range(1000, 9000, 7)]
    return [(1_700_000_000 + i, i, bytes([i % 251]) * size) for i, size in enumerate(sizes)]


@pytest.mark.parametrize("how", ["file", "gzip", "stream"])
def test_pcap_records_straddling_chunks_come_out_whole(tmp_path, how):
    """The three ways a classic pcap is read in chunks (a plain file by `pread`, a gzip stream and a pipe
    read forward) give every record as written, and a cut in the last record is reported against it."""
    records = _records_across_chunks()
    data = pcap("<", 0xA1B2C3D4, records)
    for body, cut in ((data, False), (data[:-5], True)):
        path = tmp_path / f"c-{cut}.pcap"
        if how == "gzip":
            path.write_bytes(gzip.compress(body))
            stream = io.BufferedReader(gzip.GzipFile(path))
        elif how == "file":
            path.write_bytes(body)
            stream = path.open("rb")
        else:
            stream = io.BufferedReader(io.BytesIO(body))
        got = []
        with stream:
            try:
                got.extend(read_packets(stream))
            except TruncatedCapture as exc:
                assert cut and exc.frame == len(records)
            else:
                assert not cut
        expect = records[:-1] if cut else records
        assert [d for _n, _ts, _lt, d in got] == [d for _s, _f, d in expect]
        assert [n for n, _ts, _lt, _d in got] == list(range(1, len(expect) + 1))
        assert got[4][1] == (1_700_000_000 + 4) * 1_000_000 + 4


def test_a_gzipped_capture_cut_short_keeps_what_came_before(tmp_path):
    """Issue 19: a capture whose compression stopped (a full disk) is read up to the cut, which is counted."""
    from collector.sources import open_source

    records = b"".join(struct.pack("<IIII", 1_700_000_000 + i, 0, 60, 60) + FRAME for i in range(200_000))
    whole = gzip.compress(pcap("<", 0xA1B2C3D4, []) + records, compresslevel=1)
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(whole[: len(whole) // 2])
    source = open_source(path)
    source.run(lambda obs: None)
    assert 0 < source.packets < 200_000 and source.skips.by_reason == {"truncated_capture": 1}
