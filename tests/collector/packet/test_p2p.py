"""BitTorrent and DHT recognised from generated traffic and from suricata-verify's DHT capture (beside the
installed Suricata); HTTP facts for P2 and P7."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from collector.packet import http, p2p
from collector.sources import open_source
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


# -- every DHT message (issue 20, point 7) --------------------------------------------------------------

SV_DHT = Path(__file__).with_name("captures") / "suricata-verify-bittorrent-dht.pcap"
SOUGHT = b"mnopqrstuvwxyz123456".hex()  # the info_hash suricata-verify's test.yaml expects: 6d6e6f70...3536
SV_EXPECTED = [  # packet, what it is, info-hash: each `bittorrent_dht` record of the capture's test.yaml
    (1, "ping", None), (2, "response", None), (3, "ping", None), (4, "error", None), (5, "find_node", None),
    (6, "response", None), (7, "get_peers", SOUGHT), (8, "response", None), (9, "get_peers", SOUGHT),
    (10, "response", None), (11, "announce_peer", SOUGHT), (12, "response", None),
    (13, "announce_peer", SOUGHT), (14, "response", None), (15, "ping", None), (16, "error", None),
]


def _ours(path: Path) -> list:
    out: list = []
    source = open_source(path)
    source.run(out.append)
    return [o for o in out if o.kind == "p2p"]


def test_every_message_of_suricata_verifys_dht_capture():
    """Sixteen KRPC messages in two flows: each is an observation with its method and, for get_peers and
    announce_peer, the info-hash sought (what suricata-verify checks); every one was asked by 190.0.0.1,
    so every observation goes from it (a response belongs to the query it answers, as a DNS answer does)."""
    found = _ours(SV_DHT)
    assert [(int(o.source_ref.rsplit("#", 1)[1]), o.method, o.info_hash) for o in found] == SV_EXPECTED
    assert {(o.src_ip, o.dst_ip, o.service) for o in found} == {("190.0.0.1", "190.0.0.2", "dht"),
                                                                ("190.0.0.1", "190.0.0.3", "dht")}


SURICATA_DHT = """%YAML 1.1
---
outputs:
  - eve-log: {enabled: yes, filetype: regular, filename: eve.json, types: [bittorrent-dht]}
app-layer:
  protocols:
    bittorrent-dht: {enabled: yes}
"""


@pytest.mark.skipif(shutil.which("suricata") is None, reason="suricata is not installed")
def test_dht_messages_as_suricata_reads_them(tmp_path):
    """The installed Suricata over the same capture: one record per message, and ours agree on each
    packet's method (its request_type; a response or error as such) and info-hash."""
    config = tmp_path / "suricata.yaml"
    config.write_text(SURICATA_DHT)
    subprocess.run(["suricata", "-c", str(config), "-r", str(SV_DHT), "--runmode", "single", "-k", "none",
                    "-S", "/dev/null", "-l", str(tmp_path)], check=True, capture_output=True, timeout=120)
    theirs = []
    for line in (tmp_path / "eve.json").read_text().splitlines():
        dht = json.loads(line)["bittorrent_dht"]
        what = dht.get("request_type") or ("response" if "response" in dht else "error")
        theirs.append((json.loads(line)["pcap_cnt"], what, dht.get("request", {}).get("info_hash")))
    ours = [(int(o.source_ref.rsplit("#", 1)[1]), o.method, o.info_hash) for o in _ours(SV_DHT)]
    assert sorted(theirs) == ours == SV_EXPECTED


BEP5_GET_PEERS = b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe"


@pytest.mark.parametrize(("message", "expected"), [
    # BEP 5's own examples
    (b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe", ("ping", None)),
    (BEP5_GET_PEERS, ("get_peers", SOUGHT)),
    (b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re",
     ("response", None)),
    (b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee", ("error", None)),
    # BEP 42: a response that tells the asker its address opens with `ip`, not `r`
    (b"d2:ip6:\x0a\x14\x0a\x15\x1a\xe11:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re", ("response", None)),
    # a method no BEP here names is a query all the same, under no name of its own
    (b"d1:ad2:id20:abcdefghij0123456789e1:q4:vote1:t2:aa1:y1:qe", ("query", None)),
    # an info_hash that is not 20 bytes names no torrent
    (b"d1:ad2:id20:abcdefghij01234567899:info_hash3:abce1:q9:get_peers1:t2:aa1:y1:qe", ("get_peers", None)),
    # not KRPC, or not well-formed bencode: None, whatever the bytes
    (b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:q", None),  # the dictionary never ends
    (b"d1:ad2:id99:abcdefghij0123456789e1:q4:ping1:y1:qe", None),  # a string longer than what is left
    (b"d1:ad2:id20:abcdefghij01234567891:xi12x4ee1:q4:ping1:y1:qe", None),  # an integer with a letter in it
    (b"d1:ad2:id" + b"9" * 5000 + b":x" + b"e1:q4:ping1:y1:qe", None),  # a length of 5,000 digits
    (b"d1:a" + b"l" * 100 + b"e" * 100 + b"1:q4:ping1:y1:qe", None),  # nested a hundred deep
    (b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aae", None),  # no `y`
    (b"d1:ad2:id20:abcdefghij0123456789e1:t2:aa1:y1:qe", None),  # a query without its method
    (b"d1:rd2:id20:abcdefghij0123456789e1:t2:aa1:y1:xe", None),  # `y` neither q, r nor e
    (b"di1e1:y1:qe", None),  # a key that is not a string
    (b"", None), (b"d", None), (b"le", None),
])
def test_krpc_messages(message, expected):
    assert p2p.krpc(message) == expected


def _dht(sport: int, dport: int, payload: bytes, src: str = "10.20.1.31", dst: str = "198.51.100.9") -> bytes:
    return bytes(ETH / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload)


PING = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"
PONG = b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re"


def test_a_query_the_other_node_sent_is_that_nodes():
    """In a flow the pupil's device opened, the remote node asks for a torrent of its own: that query, and the
    device's answer to it, go from the remote node (what it sought is not the device's); the device's own
    query and the answer it got go from the device."""
    theirs = BEP5_GET_PEERS.replace(b"mnopqrstuvwxyz123456", b"01234567890123456789")
    frames = [(1, _dht(6881, 51413, PING)), (1, _dht(51413, 6881, PONG, "198.51.100.9", "10.20.1.31")),
              (1, _dht(51413, 6881, theirs, "198.51.100.9", "10.20.1.31")), (1, _dht(6881, 51413, PONG))]
    out, skips = run(frames)
    found = [(o.src_ip, o.src_port, o.dst_ip, o.method, o.info_hash, o.src_mac) for o in out if o.kind == "p2p"]
    mac = "02:00:00:00:00:01"
    assert found == [("10.20.1.31", 6881, "198.51.100.9", "ping", None, mac),
                     ("10.20.1.31", 6881, "198.51.100.9", "response", None, mac),
                     ("198.51.100.9", 51413, "10.20.1.31", "get_peers", b"01234567890123456789".hex(), None),
                     ("198.51.100.9", 51413, "10.20.1.31", "response", None, None)]
    assert skips.total == 0


def test_a_flood_of_dht_messages_in_one_flow_is_bounded():
    """Ten thousand get_peers in one flow: the first MAX_DHT_MESSAGES are observations, the rest counted as
    skipped unread; malformed ones among them are counted and the messages after them still read."""
    good, bad = _dht(6881, 51413, BEP5_GET_PEERS), _dht(6881, 51413, b"d1:ad2:id")
    frames = [(1, bad if i == 3 else good) for i in range(10_000)]
    out, skips = run(frames)
    found = [o for o in out if o.kind == "p2p"]
    assert len(found) == p2p.MAX_DHT_MESSAGES - 1 and {o.method for o in found} == {"get_peers"}
    assert skips.by_reason == {"dht_malformed": 1, "dht_message_limit": 10_000 - p2p.MAX_DHT_MESSAGES}
    (flow,) = [o for o in out if o.kind == "flow"]
    assert flow.packets_out == 10_000  # every datagram still counted in its flow


def test_a_malformed_first_message_still_opens_the_dht_flow():
    out, skips = run([(1, _dht(6881, 51413, b"d1:ad2:id20:short")), (1, _dht(6881, 51413, PING))])
    assert [o.method for o in out if o.kind == "p2p"] == ["ping"]
    assert skips.by_reason == {"dht_malformed": 1}


_KRPC = (
    b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe", BEP5_GET_PEERS, PONG,
    b"d1:rd2:id20:abcdefghij01234567895:nodes9:def456...5:token8:aoeusnthe1:t2:aa1:y1:re",
    b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee")


@given(st.sampled_from(_KRPC), st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
       st.integers(0, 200), st.sampled_from(_KRPC))
@settings(max_examples=500, derandomize=True, deadline=None)
def test_mutated_krpc_is_read_or_refused(message, flips, cut, other):
    """Bytes flipped, the message cut short or spliced onto another: a message and a hash of the documented
    forms, or None (the decoder counts it as `dht_malformed`); never an exception."""
    buf = bytearray(message)
    for at, value in flips:
        if buf:
            buf[at % len(buf)] = value
    found = p2p.krpc(bytes(buf[:cut]) + other[cut:] if cut % 3 == 0 else bytes(buf[: cut or None]))
    if found is not None:
        method, info_hash = found
        assert method in p2p.DHT_MESSAGES
        assert info_hash is None or (len(info_hash) == 40 and info_hash == info_hash.lower())
