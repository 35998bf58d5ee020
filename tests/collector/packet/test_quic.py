"""QUIC Initial decryption: real client Initials from aioquic (v1, v2, a hello over three packets) and
the two real captures Zeek logged (Z13 Chromium, Z14 curl)."""

from __future__ import annotations

from collections import Counter

import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicProtocolVersion
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from collector.packet import quic
from collector.sources import open_source
from tests.collector.packet.test_packets import run
from tests.conftest import ZEEK, need


def aioquic_datagrams(version: QuicProtocolVersion, alpn: list[str], sni: str = "quic.example") -> list[bytes]:
    config = QuicConfiguration(is_client=True, server_name=sni, alpn_protocols=alpn, supported_versions=[version])
    conn = QuicConnection(configuration=config)
    conn.connect(("192.0.2.1", 443), now=0.0)
    return [d for d, _addr in conn.datagrams_to_send(now=0.0)]


def frames(datagrams: list[bytes]) -> list[tuple[int, bytes]]:
    ip = IP(src="10.20.10.5", dst="192.0.2.1")
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    return [(1, bytes(eth / ip / UDP(sport=50000, dport=443) / d)) for d in datagrams]


@pytest.mark.parametrize(("version", "name"), [(QuicProtocolVersion.VERSION_1, "1"),
                                               (QuicProtocolVersion.VERSION_2, "2")])
def test_one_initial(version, name):
    out, skips = run(frames(aioquic_datagrams(version, ["h3"])))
    (q,) = [o for o in out if o.kind == "quic"]
    assert (q.sni, q.alpn, q.quic_version, q.tls_version, skips.total) == ("quic.example", ["h3"], name, "TLSv13", 0)
    (flow,) = [o for o in out if o.kind == "flow"]
    assert (flow.service, flow.host) == ("quic", "quic.example")


@pytest.mark.parametrize("version", [QuicProtocolVersion.VERSION_1, QuicProtocolVersion.VERSION_2])
@pytest.mark.parametrize("order", ["in", "reversed"])
def test_hello_over_three_initial_packets(version, order):
    alpn = [f"proto-{i:02d}-" + "x" * 40 for i in range(40)]  # ~2 KB of ALPN: the hello needs 3 packets
    datagrams = aioquic_datagrams(version, alpn, "split.quic.example")
    assert len(datagrams) == 3
    if order == "reversed":
        datagrams.reverse()
    out, skips = run(frames(datagrams))
    (q,) = [o for o in out if o.kind == "quic"]
    assert (q.sni, q.alpn, skips.total) == ("split.quic.example", alpn, 0)


def test_wrong_keys_do_not_decrypt():
    datagram = bytearray(aioquic_datagrams(QuicProtocolVersion.VERSION_1, ["h3"])[0])
    datagram[6] ^= 0x01  # one bit of the destination connection id: other keys
    with pytest.raises(ValueError, match="does not decrypt"):
        quic.client_initials(bytes(datagram))
    out, skips = run(frames([bytes(datagram)]))
    assert [o.kind for o in out] == ["flow"] and skips.by_reason == {"bad_quic_initial": 1}


def test_rfc9001_appendix_a_client_keys():
    """RFC 9001 Appendix A.1: keys for the client Initial of connection 0x8394c8f03e515708."""
    key, iv, hp = quic.client_keys(quic.V1, bytes.fromhex("8394c8f03e515708"))
    assert (key.hex(), iv.hex(), hp.hex()) == (
        "1f369613dd76d5467730efcbe3b1a22d", "fa044b2f42a3fd3b46fb255c", "9f50449e04a0e810283a1e9933adedd2")


def test_rfc9369_appendix_a_client_keys():
    """RFC 9369 Appendix A.1: the same connection id under QUIC version 2."""
    key, iv, hp = quic.client_keys(quic.V2, bytes.fromhex("8394c8f03e515708"))
    assert (key.hex(), iv.hex(), hp.hex()) == (
        "8b1a0bc121284290a29e0971b5cd045d", "91f73e2351d8fa91660e909f", "45b95e15235d6f45a6b19cbcb0294ba9")


@pytest.mark.parametrize("trace", ["Z13", "Z14"])
def test_real_quic_captures_match_zeek(trace):
    from tests.collector.packet.test_peer_zeek import zeek_rows

    (path,) = need(ZEEK).glob(f"{trace}_*.pcap")
    out: list = []
    open_source(path).run(out.append)
    ours = Counter((o.src_ip, o.dst_ip, o.dst_port, o.sni, o.alpn[0], o.quic_version) for o in out if o.kind == "quic")
    theirs = Counter((r["id.orig_h"], r["id.resp_h"], int(r["id.resp_p"]), r["server_name"], r["client_protocol"],
                      r["version"]) for r in zeek_rows(trace, "quic"))
    assert ours == theirs and sum(ours.values()) == 1
