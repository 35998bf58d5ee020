"""TCP reassembly: order, overlap, retransmission, sequence wrap, and the memory bound."""

from __future__ import annotations

import random

import pytest

from collector.packet.tcp import MAX_PENDING, Reassembler

DATA = bytes(random.Random(3).randrange(256) for _ in range(3000))


def segments(isn: int, sizes: list[int]) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    for n in sizes:
        out.append(((isn + 1 + pos) % (1 << 32), DATA[pos : pos + n]))
        pos += n
    return out


@pytest.mark.parametrize("isn", [1000, (1 << 32) - 700])  # the second wraps around zero mid-stream
@pytest.mark.parametrize("order", ["in", "reversed", "shuffled"])
def test_any_arrival_order_gives_the_stream(isn, order):
    segs = segments(isn, [500, 300, 700, 1500])
    if order == "reversed":
        segs.reverse()
    elif order == "shuffled":
        random.Random(7).shuffle(segs)
    r = Reassembler()
    r.syn(isn)
    got = b"".join(r.feed(seq, data) for seq, data in segs)
    assert got == DATA


def test_retransmissions_and_overlaps_are_delivered_once():
    r = Reassembler()
    r.syn(0)
    got = r.feed(1, DATA[:1000])
    got += r.feed(1, DATA[:1000])  # retransmitted
    got += r.feed(1501, DATA[1500:2000])  # early
    got += r.feed(801, DATA[800:1600])  # overlaps both sides of the gap
    got += r.feed(1901, DATA[1900:3000])  # overlaps what was held
    assert got == DATA


def test_stream_without_syn_starts_at_the_first_segment_seen():
    r = Reassembler()
    assert r.feed(5000, b"abc") == b"abc" and r.feed(5003, b"def") == b"def"


def test_out_of_order_backlog_is_bounded():
    r = Reassembler()
    r.syn(0)
    r.feed(2, b"x" * MAX_PENDING)  # byte 1 missing: all held
    assert not r.failed
    assert r.feed(MAX_PENDING + 2, b"y") == b"" and r.failed
    assert r.feed(1, b"z") == b"" and r.pending_bytes == 0
