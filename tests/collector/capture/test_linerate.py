"""Line-rate mode's capture filter, applied by tcpdump (libpcap's own BPF compiler and filter) to real
captures: everything the policy reads survives it (every observation but flows is the same before and
after), most bytes do not, and a ClientHello split over two segments keeps both; over three, the middle
one is lost (the limit collector/capture/linerate.py states)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from collector.capture.linerate import CAPTURE_FILTER, capture_filter
from collector.sources import CaptureSource
from fixtures.make_school_day import client_hello
from tests.bench.bench_decode import write_capture
from tests.conftest import SCHOOL_DAY

pytestmark = pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")


def filtered(source: Path, out: Path, expression: str = CAPTURE_FILTER) -> Path:
    subprocess.run(["tcpdump", "-r", str(source), "-w", str(out), expression], check=True, capture_output=True)
    return out


def signals(path: Path) -> list[tuple]:
    """Every observation but flows, by what the policy reads from it."""
    found = []
    CaptureSource(path).run(found.append)
    return sorted((o.kind, o.ts, o.src_ip, o.dst_ip, o.dst_port, o.host, o.sni, o.url, o.status, o.content_type,
                   o.qtype, tuple(o.answers or ()), o.dhcp_type, o.cleartext_credentials, o.starttls)
                  for o in found if o.kind != "flow")


@pytest.mark.parametrize("capture", ["school-day", "mix"])
def test_the_filter_keeps_every_signal_and_drops_most_bytes(tmp_path, capture):
    if capture == "mix":
        source = tmp_path / "mix.pcap"
        write_capture(source, 6000)  # DNS, TLS, QUIC, HTTP, SMTP with STARTTLS, DHCP, bulk TCP
    else:
        source = SCHOOL_DAY / "school-day.pcap"  # 802.1Q-tagged
    kept = filtered(source, tmp_path / "kept.pcap")
    before, after = signals(source), signals(kept)
    assert before and after == before
    if capture == "mix":
        assert kept.stat().st_size < 0.2 * source.stat().st_size  # bulk data is most of the bytes


def conversation(hello_segments: int) -> list:
    """A TLS connection whose ClientHello is written in one send and cut into `hello_segments` segments
    (PSH on the last only, as the kernel does), then 50 full segments of encrypted download."""
    client, server, sport = "10.20.10.21", "203.0.113.9", 50123
    hello = client_hello("long-hello.example")
    cut = [hello[i * len(hello) // hello_segments:(i + 1) * len(hello) // hello_segments]
           for i in range(hello_segments)]
    seq, ack, frames = 1000, 5000, []

    def tcp(src, dst, sp, dp, flags, s, a, data=b""):
        frames.append(Ether(src="00:1b:21:aa:00:01", dst="00:00:5e:00:01:01") / IP(src=src, dst=dst)
                      / TCP(sport=sp, dport=dp, flags=flags, seq=s, ack=a) / data)

    tcp(client, server, sport, 443, "S", seq - 1, 0)
    tcp(server, client, 443, sport, "SA", ack - 1, seq)
    tcp(client, server, sport, 443, "A", seq, ack)
    for i, piece in enumerate(cut):
        tcp(client, server, sport, 443, "PA" if i == len(cut) - 1 else "A", seq, ack, piece)
        seq += len(piece)
    for _ in range(50):
        tcp(server, client, 443, sport, "A", ack, seq, b"\x17\x03\x03" + b"\xab" * 1397)
        ack += 1400
    tcp(client, server, sport, 443, "FA", seq, ack)
    return frames


@pytest.mark.parametrize(("segments", "named"), [(1, True), (2, True), (3, False)])
def test_a_split_client_hello(tmp_path, segments, named):
    source = tmp_path / "split.pcap"
    wrpcap(str(source), conversation(segments))
    kept = filtered(source, tmp_path / "kept.pcap")
    names = [o[6] for o in signals(kept) if o[0] == "tls"]
    assert names == (["long-hello.example"] if named else [])
    found: list = []
    CaptureSource(kept).run(found.append)
    assert [o.kind for o in found].count("flow") == 1  # the connection itself is still seen, without its name
    assert kept.stat().st_size < source.stat().st_size / 5  # the download is gone


def test_the_schools_own_filter_narrows_it():
    assert capture_filter("not host 10.20.0.5") == f"({CAPTURE_FILTER}) and (not host 10.20.0.5)"


def test_every_dht_message_survives_the_filter(tmp_path):
    """suricata-verify's sixteen KRPC messages, and a response that opens with BEP 42's `ip` key: all kept."""
    source = tmp_path / "dht.pcap"
    bep42 = b"d2:ip6:\x0a\x14\x0a\x15\x1a\xe11:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re"
    ping = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"
    wrpcap(str(source), [Ether() / IP(src="10.20.1.31", dst="198.51.100.9") / UDP(sport=6881, dport=51413) / ping,
                         Ether() / IP(src="198.51.100.9", dst="10.20.1.31") / UDP(sport=51413, dport=6881) / bep42])
    dht = Path(__file__).parents[1] / "packet" / "captures" / "suricata-verify-bittorrent-dht.pcap"
    for capture in (source, dht):
        before, after = signals(capture), signals(filtered(capture, tmp_path / "kept.pcap"))
        assert after == before and len(before) == {source: 2, dht: 16}[capture]
