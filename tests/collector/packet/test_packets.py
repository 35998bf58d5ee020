"""The packet decoder on frames built by scapy: link types, VLANs, IPv6, flows and their names."""

from __future__ import annotations

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop
from scapy.layers.l2 import CookedLinux, Dot1Q, Ether

from collector.packet.packets import PacketDecoder
from collector.skips import SkipCounter
from fixtures.make_school_day import client_hello

T0 = 1_781_596_200_000_000
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")  # explicit: scapy would ARP for a destination


def run(frames: list[tuple[int, bytes]]) -> tuple[list, SkipCounter]:
    out: list = []
    skips = SkipCounter()
    dec = PacketDecoder(out.append, skips, "t.pcap")
    for i, (linktype, data) in enumerate(frames, 1):
        dec.packet(i, T0 + i * 1000, linktype, data)
    dec.finish()
    return out, skips


def hello_segment(l3, sport=40000, dport=443, sni="www.example.org"):
    return l3 / TCP(sport=sport, dport=dport, flags="PA") / client_hello(sni)


def test_qinq_vlan_and_client_mac():
    frame = Ether(src="3c:22:fb:30:00:01") / Dot1Q(vlan=100) / Dot1Q(vlan=40) / hello_segment(
        IP(src="10.20.10.5", dst="192.0.2.1"))
    out, _ = run([(1, bytes(frame))])
    (tls,) = [o for o in out if o.kind == "tls"]
    assert (tls.sni, tls.vlan, tls.src_mac) == ("www.example.org", 40, "3c:22:fb:30:00:01")


def test_linux_cooked_and_raw_ip():
    sll = CookedLinux(proto=0x0800) / hello_segment(IP(src="10.0.0.1", dst="192.0.2.1"), sni="a.example")
    raw = hello_segment(IP(src="10.0.0.2", dst="192.0.2.2"), sni="b.example")
    out, skips = run([(113, bytes(sll)), (101, bytes(raw))])
    assert sorted(o.sni for o in out if o.kind == "tls") == ["a.example", "b.example"]
    assert skips.total == 0


def test_ipv6_extension_headers_are_walked():
    frame = ETH / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / TCP(
        sport=40001, dport=443, flags="PA") / client_hello("v6.example")
    out, _ = run([(1, bytes(frame))])
    (tls,) = [o for o in out if o.kind == "tls"]
    assert (tls.src_ip, tls.dst_ip, tls.sni) == ("2001:db8::1", "2001:db8::2", "v6.example")


def test_flow_is_named_from_an_earlier_dns_answer_and_oriented_by_syn():
    query = ETH / IP(src="10.0.0.9", dst="10.0.0.2") / UDP(sport=5000, dport=53) / DNS(
        id=9, qd=DNSQR(qname="smtp.mail.example"))
    answer = ETH / IP(src="10.0.0.2", dst="10.0.0.9") / UDP(sport=53, dport=5000) / DNS(
        id=9, qr=1, qd=DNSQR(qname="smtp.mail.example"), an=DNSRR(rrname="smtp.mail.example", rdata="192.0.2.25"))
    syn_ack = ETH / IP(src="192.0.2.25", dst="10.0.0.9") / TCP(sport=587, dport=41000, flags="SA")
    ack = ETH / IP(src="10.0.0.9", dst="192.0.2.25") / TCP(sport=41000, dport=587, flags="A")
    out, _ = run([(1, bytes(f)) for f in (query, answer, syn_ack, ack)])
    (dns,) = [o for o in out if o.kind == "dns"]
    assert (dns.host, dns.answers, dns.rcode, dns.src_ip) == ("smtp.mail.example", ["192.0.2.25"], "NOERROR",
                                                              "10.0.0.9")
    (flow,) = [o for o in out if o.kind == "flow" and o.dst_port == 587]
    # The capture began with the server's SYN-ACK: the client is still the side that receives it.
    assert (flow.src_ip, flow.dst_ip, flow.host) == ("10.0.0.9", "192.0.2.25", "smtp.mail.example")
    assert (flow.packets_out, flow.packets_in, flow.bytes_out, flow.bytes_in) == (1, 1, 40, 40)


def test_fragments_and_bad_headers_are_counted():
    frag = ETH / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF", frag=0) / UDP(sport=1, dport=2) / (b"x" * 20)
    bad_tcp = bytearray(bytes(ETH / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2)))
    bad_tcp[14 + 20 + 12] = 0x20  # data offset 8 bytes: impossible
    out, skips = run([(1, bytes(frag)), (1, bytes(bad_tcp)), (1, b"\x00" * 10), (147, b"\x00" * 40)])
    assert skips.by_reason == {"ip_fragment_incomplete": 1, "bad_tcp_header": 1, "truncated_link": 1,
                               "unsupported_link_type": 1}
    assert out == []


def test_split_client_hello_is_counted_not_guessed():
    hello = client_hello("split.example")
    first = ETH / IP(src="10.0.0.1", dst="192.0.2.1") / TCP(sport=1234, dport=443, flags="PA") / hello[:50]
    out, skips = run([(1, bytes(first))])
    assert [o.kind for o in out] == ["flow"]
    assert skips.by_reason == {"tls_hello_incomplete": 1}


def test_snap_length_cut_payload_still_counts_ip_bytes():
    full = bytes(ETH / IP(src="10.0.0.1", dst="192.0.2.1") / TCP(sport=4000, dport=80, flags="PA") / (
        b"GET / HTTP/1.1\r\nHost: cut.example\r\n\r\n" + bytes(500)))
    out, skips = run([(1, full[:54 + 37])])  # Ethernet, IP and TCP headers and the 37-byte request head
    (flow,) = [o for o in out if o.kind == "flow"]
    assert (flow.bytes_out, flow.packets_out, skips.total) == (20 + 20 + 37 + 500, 1, 0)
    assert [o.host for o in out if o.kind == "http"] == ["cut.example"]


def test_injected_decoder_bug_is_counted_and_the_capture_goes_on(tmp_path):
    """Fault injection: the real decoder survives the fuzz tests, so a decoder failing on frame 7 is faked
    by a subclass of the real one that overrides `packet`."""
    from collector.sources import CaptureSource
    from tests.conftest import SCHOOL_DAY

    class FailsOnFrame7(PacketDecoder):
        def packet(self, frame, ts, linktype, data):
            if frame == 7:
                raise RuntimeError("injected")
            super().packet(frame, ts, linktype, data)

        def bypass(self, ts, data, base, caplen):
            return False  # every frame goes through packet(), frame 7 included

    source = CaptureSource(SCHOOL_DAY / "school-day.pcap", decoder=FailsOnFrame7)
    out: list = []
    source.run(out.append)
    assert source.skips.by_reason == {"decoder_error": 1}
    assert sum(o.kind == "tls" for o in out) == 11  # frame 7 is an ACK: every hello still decoded (9 + 2 STARTTLS)


def test_long_flow_is_reported_every_minute_and_records_add_up():
    c, s = IP(src="10.20.10.5", dst="192.0.2.80"), IP(src="192.0.2.80", dst="10.20.10.5")
    out: list = []
    dec = PacketDecoder(out.append, SkipCounter(), "t.pcap")
    frames = [bytes(ETH / c / TCP(sport=4000, dport=443, flags="S")),
              bytes(ETH / s / TCP(sport=443, dport=4000, flags="SA"))]
    frames += [bytes(ETH / (c if i % 2 else s) / TCP(sport=4000 if i % 2 else 443, dport=443 if i % 2 else 4000,
                                                     flags="A") / bytes(100)) for i in range(30)]
    for i, f in enumerate(frames):  # one packet every 5 s: 160 s in all
        dec.packet(i + 1, T0 + i * 5_000_000, 1, f)
    dec.finish()
    flows = [o for o in out if o.kind == "flow"]
    assert [f.interim for f in flows] == [True, True, False]
    assert sum(f.packets_out + f.packets_in for f in flows) == len(frames)
    assert sum(f.bytes_out + f.bytes_in for f in flows) == sum(len(f) - 14 for f in frames)
    assert [f.conn_state for f in flows] == ["S1", "S1", "S1"]
    assert flows[1].ts_us == flows[0].ts_us + int(flows[0].duration_s * 1e6)  # each record starts where the last ended


def test_flow_table_is_bounded():
    out: list = []
    skips = SkipCounter()
    dec = PacketDecoder(out.append, skips, "t.pcap")
    dec.max_flows = 3
    for i in range(5):
        frame = bytes(ETH / IP(src=f"10.0.0.{i + 1}", dst="192.0.2.1") / UDP(sport=5000, dport=9999) / b"x")
        dec.packet(i + 1, T0 + i, 1, frame)
    assert [o.src_ip for o in out] == ["10.0.0.1", "10.0.0.2"]  # the two oldest, reported when evicted
    assert skips.by_reason == {"flow_table_full": 2}
    dec.finish()
    assert len([o for o in out if o.kind == "flow"]) == 5


def test_a_host_talking_to_itself_on_one_port_is_one_flow_that_expires():
    """Both directions of such a flow have the same key (a LAND-style packet does this): it is one flow,
    and the sweep that ends it after the UDP idle timeout (60 s) must not trip over its second key."""
    out: list = []
    skips = SkipCounter()
    dec = PacketDecoder(out.append, skips, "t.pcap")
    me = ETH / IP(src="10.20.10.5", dst="10.20.10.5")
    dec.packet(1, T0, 1, bytes(me / UDP(sport=7000, dport=7000) / b"ping"))
    dec.packet(2, T0 + 1_000_000, 1, bytes(me / UDP(sport=7000, dport=7000) / b"pong"))
    later = ETH / IP(src="10.20.10.9", dst="192.0.2.1") / UDP(sport=5000, dport=9999) / b"x"
    dec.packet(3, T0 + 70_000_000, 1, bytes(later))  # 69 s after the last: the sweep ends the flow
    flows = [o for o in out if o.kind == "flow"]
    assert [(f.src_ip, f.src_port, f.dst_ip, f.dst_port) for f in flows] == [("10.20.10.5", 7000, "10.20.10.5", 7000)]
    assert flows[0].packets_out + flows[0].packets_in == 2
    assert flows[0].bytes_out + flows[0].bytes_in == 2 * (20 + 8 + 4)
    assert skips.total == 0
    dec.finish()
    assert len([o for o in out if o.kind == "flow"]) == 2


def _decode_file(path, bypass: bool) -> tuple[list, int, int]:
    """(observations, packets decoded, frames that took the full path): through `CaptureSource`, which
    offers frames to `bypass` in place, or every frame to `packet()` as `read_packets` yields it."""
    from collector.packet.pcap import read_packets
    from collector.sources import CaptureSource

    out: list = []
    full_path = 0

    class Counting(PacketDecoder):
        def packet(self, frame, ts, linktype, data):
            nonlocal full_path
            full_path += 1
            super().packet(frame, ts, linktype, data)

    if bypass:
        source = CaptureSource(path, decoder=Counting)
        source.run(out.append)
        return out, source.packets, full_path
    dec = Counting(out.append, SkipCounter(), path.name)
    with path.open("rb") as f:
        for frame, ts, linktype, data in read_packets(f):
            dec.packet(frame, ts, linktype, data)
    dec.finish()
    return out, dec.packets, full_path


def test_bypass_changes_nothing_but_the_work_done(tmp_path):
    """The bulk fast path must leave every observation as the full path makes it: flows' bytes, packets,
    states and times included, on the benchmark's mix (untagged) and on the school day (VLAN-tagged)."""
    from tests.bench.bench_decode import write_capture
    from tests.conftest import SCHOOL_DAY

    mix = tmp_path / "mix.pcap"
    write_capture(mix, 5000)
    for path in (mix, SCHOOL_DAY / "school-day.pcap"):
        full, packets, full_path = _decode_file(path, bypass=False)
        assert full_path == packets
        fast, fast_packets, fast_full_path = _decode_file(path, bypass=True)
        assert fast == full
        assert fast_packets == packets
        # the bulk did take the fast path: TCP data, FIN and RST, QUIC after its hello (78% of the mix
        # and 64% of the school day when this was written)
        assert 0.6 < 1 - fast_full_path / packets < 0.9
