"""IP fragment reassembly, on fragments cut by scapy's own fragmenters."""

from __future__ import annotations

import random

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
from scapy.layers.l2 import Ether

from collector.packet.frag import MAX_DATAGRAMS, FragmentReassembler
from tests.collector.packet.test_packets import run

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def big_dns_answer(ip_layer):
    answers = [DNSRR(rrname=f"n{i}.example", rdata=f"192.0.2.{i}") for i in range(1, 120)]
    return ip_layer / UDP(sport=53, dport=5000) / DNS(id=5, qr=1, qd=DNSQR(qname="big.example"), an=answers)


def test_ipv4_fragments_in_any_order():
    pkt = big_dns_answer(IP(src="10.20.0.2", dst="10.20.1.31", id=77))
    frags = fragment(pkt, fragsize=400)
    assert len(frags) >= 4
    random.Random(5).shuffle(frags)
    out, skips = run([(1, bytes(ETH / f)) for f in frags])
    (dns,) = [o for o in out if o.kind == "dns"]
    assert (dns.host, len(dns.answers), skips.total) == ("big.example", 119, 0)
    (flow,) = [o for o in out if o.kind == "flow"]
    assert (flow.packets_in, flow.bytes_in) == (1, len(bytes(pkt)))  # one datagram, its whole IP length


def test_ipv6_fragments():
    pkt = big_dns_answer(IPv6(src="2001:db8::2", dst="2001:db8::31") / IPv6ExtHdrFragment(id=9))
    frags = fragment6(pkt, 600)
    assert len(frags) >= 3
    out, skips = run([(1, bytes(ETH / f)) for f in reversed(frags)])
    assert [len(o.answers) for o in out if o.kind == "dns"] == [119] and skips.total == 0


def test_limits_are_counted():
    dropped: list[str] = []
    r = FragmentReassembler(dropped.append)
    assert r.add(("a",), 65000, b"x" * 600, False, 0) is None
    for i in range(MAX_DATAGRAMS + 1):
        r.add(("b", i), 8, b"y", True, 0)
    r.expire(31_000_000)
    assert dropped.count("ip_fragment_too_big") == 1
    assert dropped.count("ip_fragment_overflow") == 1
    assert dropped.count("ip_fragment_timeout") == MAX_DATAGRAMS


def test_overlap_keeps_first_bytes():
    r = FragmentReassembler(lambda reason: None)
    assert r.add(("k",), 0, b"AAAAAAAA", True, 0) is None
    assert r.add(("k",), 8, b"BBBBBBBB", False, 0) == b"AAAAAAAABBBBBBBB"
    r2 = FragmentReassembler(lambda reason: None)
    r2.add(("k",), 0, b"AAAAAAAAAAAAAAAA", True, 0)
    assert r2.add(("k",), 8, b"BBBBBBBBCC", False, 0) == b"AAAAAAAAAAAAAAAACC"
