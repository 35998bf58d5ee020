"""BitTorrent and DHT recognised from generated traffic; HTTP facts for P2 and P7."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from collector.packet import http, p2p
from tests.collector.packet.test_packets import run

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
HASH = bytes(range(20))


def test_peer_wire_handshake_on_any_port():
    hs = b"\x13BitTorrent protocol" + bytes(8) + HASH + b"-qB4650-" + bytes(12)
    ip = IP(src="10.20.1.31", dst="198.51.100.7")
    frames = [(1, bytes(ETH / ip / TCP(sport=50000, dport=443, flags="PA") / hs))]
    out, _ = run(frames)
    (peer,) = [o for o in out if o.kind == "p2p"]
    assert (peer.service, peer.info_hash, peer.dst_port) == ("bittorrent", HASH.hex(), 443)


def test_udp_tracker_and_dht():
    connect = struct.pack("!QII", 0x41727101980, 0, 7)
    announce = struct.pack("!QII", 99, 1, 8) + HASH + b"-TR3000-" + bytes(12) + bytes(58)
    dht = b"d1:ad2:id20:" + bytes(20) + b"9:info_hash20:" + HASH + b"e1:q9:get_peers1:t2:aa1:y1:qe"
    ip = IP(src="10.20.1.31", dst="198.51.100.9")
    payloads = (connect, announce, dht)
    frames = [(1, bytes(ETH / ip / UDP(sport=6881 + i, dport=6969) / p)) for i, p in enumerate(payloads)]
    out, _ = run(frames)
    found = sorted((o.service, o.method, o.info_hash) for o in out if o.kind == "p2p")
    assert found == [("bittorrent-udp-tracker", "announce", HASH.hex()), ("bittorrent-udp-tracker", "connect", None),
                     ("dht", "get_peers", HASH.hex())]


@pytest.mark.parametrize(("url", "expected"), [
    ("http://t.example/announce?info_hash=%00%01%02%03%04%05%06%07%08%09%0a%0b%0c%0d%0e%0f%10%11%12%13&port=1",
     HASH.hex()),
    ("http://t.example/announce?port=1", None),
    ("http://t.example/announce.html?info_hash=x", None),
    ("http://[bad/announce?info_hash=%00", None),  # found by the fuzz test: urlsplit raised
])
def test_tracker_urls(url, expected):
    assert p2p.tracker_announce(url) == expected


def test_basic_credentials_in_clear_keep_the_user_only():
    head = b"GET /admin HTTP/1.1\r\nHost: nas.local\r\nAuthorization: Basic dGV2YW5zOmh1bnRlcjI=\r\n\r\n"
    req = http.parse_request(head)
    assert (req.auth_scheme, req.basic_user) == ("Basic", "tevans")  # base64 of tevans:hunter2


@pytest.mark.parametrize(("target", "ext"), [
    ("/dl/ChromeSetup.EXE?x=1", "exe"), ("/a/b.tar.gz", "gz"), ("/app.apk#frag", "apk"), ("/", None),
    ("/no-extension", None), ("http://h.example/installer.msi", "msi"),
])
def test_requested_file_extension(target, ext):
    assert http.parse_request(f"GET {target} HTTP/1.1\r\nHost: h.example\r\n\r\n".encode()).file_ext == ext
