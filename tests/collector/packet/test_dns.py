"""DNS message parsing, against messages built by scapy (an independent encoder)."""

from __future__ import annotations

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR

from collector.packet.dns import parse_message, read_name


def test_cname_chain_then_address_in_answer_order():
    msg = DNS(
        id=7, qr=1, rd=1, ra=1, qd=DNSQR(qname="Meta.Wikimedia.org", qtype="A"),
        an=[DNSRR(rrname="meta.wikimedia.org", type="CNAME", rdata="text.wikimedia.org"),
            DNSRR(rrname="text.wikimedia.org", type="CNAME", rdata="text.pmtpa.wikimedia.org"),
            DNSRR(rrname="text.pmtpa.wikimedia.org", type="A", ttl=3600, rdata="208.80.152.2")],
    )
    parsed = parse_message(bytes(msg))
    assert (parsed.txid, parsed.is_response, parsed.rcode) == (7, True, "NOERROR")
    assert (parsed.qname, parsed.qtype) == ("meta.wikimedia.org", "A")  # lower-cased
    assert parsed.answers == ["text.wikimedia.org", "text.pmtpa.wikimedia.org", "208.80.152.2"]
    assert parsed.addresses == [(bytes([208, 80, 152, 2]), 3600)]


def test_nxdomain_aaaa_and_unknown_type():
    parsed = parse_message(bytes(DNS(id=1, qr=1, rcode=3, qd=DNSQR(qname="nope.example", qtype="AAAA"))))
    assert (parsed.rcode, parsed.qtype, parsed.answers) == ("NXDOMAIN", "AAAA", [])
    assert parse_message(bytes(DNS(qd=DNSQR(qname="x.example", qtype=65280)))).qtype == "TYPE65280"


@pytest.mark.parametrize(
    "payload",
    [
        b"\x00\x01",  # shorter than a header
        b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05abc",  # label runs past the end
        b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c",  # pointer to itself
    ],
)
def test_malformed_messages_raise_value_error(payload):
    with pytest.raises(ValueError):
        parse_message(payload)


def test_compressed_name_pointer():
    buf = b"\x03www\x07example\x03com\x00" + b"\x04mail\xc0\x04"
    assert read_name(buf, 0) == ("www.example.com", 17)
    assert read_name(buf, 17) == ("mail.example.com", 24)
