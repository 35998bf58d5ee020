"""DHCPv6 (RFC 8415) on messages built by scapy, through the decoder, and checked against Wireshark's tshark."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from scapy.layers.dhcp6 import (
    DUID_EN,
    DUID_LL,
    DUID_LLT,
    DUID_UUID,
    VENDOR_CLASS_DATA,
    DHCP6_Advertise,
    DHCP6_RelayForward,
    DHCP6_Reply,
    DHCP6_Request,
    DHCP6_Solicit,
    DHCP6OptClientFQDN,
    DHCP6OptClientId,
    DHCP6OptClientLinkLayerAddr,
    DHCP6OptIA_NA,
    DHCP6OptIAAddress,
    DHCP6OptOptReq,
    DHCP6OptRelayMsg,
    DHCP6OptVendorClass,
)
from scapy.layers.inet import UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from collector.packet.dhcp import parse_v6
from collector.sources import open_source
from tests.dhcp_relay import VISITOR_MAC, v6_frames

LAPTOP = "3c:22:fb:30:00:07"
PHONE = "da:a1:19:00:00:42"  # locally administered: a randomised MAC
SERVER_MAC = "00:00:5e:00:01:01"
LEASED = "2001:db8:20::1234"


def _client(msg, mac=LAPTOP, src="fe80::1"):
    return Ether(src=mac, dst="33:33:00:01:00:02") / IPv6(src=src, dst="ff02::1:2") / UDP(sport=546, dport=547) / msg


def _server(msg, mac=LAPTOP):
    return Ether(src=SERVER_MAC, dst=mac) / IPv6(src="fe80::ff", dst="fe80::1") / UDP(sport=547, dport=546) / msg


def frames() -> list:
    """A laptop's SOLICIT, the ADVERTISE, its REQUEST and the REPLY; a phone with a UUID DUID; a relayed
    REQUEST whose DUID holds no MAC but whose relay adds the client's link-layer address."""
    laptop_id = DHCP6OptClientId(duid=DUID_LLT(lladdr=LAPTOP, timeval=700000000))
    fqdn = DHCP6OptClientFQDN(flags=1, fqdn=b"staff-lt-12.valley.sch.uk.")
    vendor = DHCP6OptVendorClass(enterprisenum=311, vcdata=[VENDOR_CLASS_DATA(data=b"MSFT 5.0")])
    oro = DHCP6OptOptReq(reqopts=[23, 24, 39])
    offered = DHCP6OptIA_NA(iaid=7, ianaopts=[DHCP6OptIAAddress(addr=LEASED, preflft=3600, validlft=7200)])
    phone_id = DHCP6OptClientId(duid=DUID_UUID(uuid=b"\x11" * 16))
    relayed = DHCP6_Request(trid=0x0A0B0C) / DHCP6OptClientId(duid=DUID_EN(enterprisenum=9, id=b"abc"))
    return [
        _client(DHCP6_Solicit(trid=0x123456) / laptop_id / fqdn / vendor / oro / DHCP6OptIA_NA(iaid=7)),
        _server(DHCP6_Advertise(trid=0x123456) / DHCP6OptClientId(duid=DUID_LL(lladdr=LAPTOP)) / offered),
        _client(DHCP6_Request(trid=0x654321) / laptop_id / fqdn / DHCP6OptIA_NA(
            iaid=7, ianaopts=[DHCP6OptIAAddress(addr=LEASED, preflft=0, validlft=0)])),
        _server(DHCP6_Reply(trid=0x654321) / laptop_id / offered),
        _client(DHCP6_Solicit(trid=0x000777) / phone_id, mac=PHONE, src="fe80::2"),
        Ether(src="00:00:5e:00:02:02", dst=SERVER_MAC) / IPv6(src="2001:db8:30::1", dst="2001:db8::547")
        / UDP(sport=547, dport=547) / DHCP6_RelayForward(linkaddr="2001:db8:30::1", peeraddr="fe80::3")
        / DHCP6OptRelayMsg(message=relayed) / DHCP6OptClientLinkLayerAddr(clladdr="3c:22:fb:30:00:99"),
    ]


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("dhcp6") / "dhcp6.pcap"
    wrpcap(str(path), frames())
    return path


def test_messages_through_the_decoder(capture):
    out: list = []
    source = open_source(capture)
    source.run(out.append)
    rows = [(o.dhcp_type, o.dhcp_xid, o.src_mac, o.hostname, o.domain, o.requested_ip, o.assigned_ip, o.lease_s)
            for o in out if o.kind == "dhcp"]
    assert rows == [
        ("SOLICIT", 0x123456, LAPTOP, "staff-lt-12", "valley.sch.uk", None, None, None),
        ("ADVERTISE", 0x123456, LAPTOP, None, None, None, LEASED, 7200),
        ("REQUEST", 0x654321, LAPTOP, "staff-lt-12", "valley.sch.uk", LEASED, None, None),
        ("REPLY", 0x654321, LAPTOP, None, None, None, LEASED, 7200),
        ("SOLICIT", 0x000777, PHONE, None, None, None, None, None),  # UUID DUID: the frame's sender
        ("REQUEST", 0x0A0B0C, "3c:22:fb:30:00:99", None, None, None, None, None),  # the relay's option 79
    ]
    solicit = next(o for o in out if o.kind == "dhcp")
    assert (solicit.vendor_class, solicit.dhcp_params) == ("MSFT 5.0", ["23", "24", "39"])
    assert source.skips.total == 0


def test_a_given_up_address_is_not_an_assignment():
    reply = DHCP6_Reply(trid=1) / DHCP6OptIA_NA(iaid=1, ianaopts=[DHCP6OptIAAddress(addr=LEASED, validlft=0)])
    assert parse_v6(bytes(reply)).assigned_ip is None


@pytest.mark.parametrize("data", [b"\x01\x00", bytes(DHCP6_Reply(trid=1) / DHCP6OptIA_NA(iaid=1))[:-3],
                                  bytes([12]) + bytes(40), bytes([12]) * 40 * 9])
def test_malformed_is_counted(tmp_path, data):
    with pytest.raises(ValueError):
        parse_v6(data)
    path = tmp_path / "bad.pcap"
    wrpcap(str(path), [_client(data)])
    source = open_source(path)
    source.run(lambda obs: None)
    assert source.skips.by_reason == {"bad_dhcp": 1}


def test_fields_match_tshark(capture):
    """tshark's dissector reads the same types, transaction ids, DUID addresses and leased addresses."""
    exe = shutil.which("tshark")
    if exe is None:
        pytest.skip("tshark is not installed (./dev test installs it when run as root)")
    fields = ["dhcpv6.msgtype", "dhcpv6.xid", "dhcpv6.duidllt.link_layer_addr", "dhcpv6.iaaddr.ip",
              "dhcpv6.iaaddr.valid_lifetime"]
    out = subprocess.run([exe, "-n", "-r", str(capture), "-T", "fields", "-E", "occurrence=l"]
                         + [a for f in fields for a in ("-e", f)], capture_output=True, text=True, check=True).stdout
    theirs = [line.split("\t") for line in out.splitlines()]
    ours: list = []
    open_source(capture).run(ours.append)
    names = {1: "SOLICIT", 2: "ADVERTISE", 3: "REQUEST", 7: "REPLY"}  # the relayed message's own, as ours
    for obs, (msgtype, xid, llt_mac, addr, valid) in zip([o for o in ours if o.kind == "dhcp"], theirs, strict=True):
        assert obs.dhcp_type == names[int(msgtype)]
        assert obs.dhcp_xid == int(xid, 16)
        if llt_mac:
            assert obs.src_mac == llt_mac
        if obs.assigned_ip:
            assert (obs.assigned_ip, obs.lease_s) == (addr, int(valid))


def test_a_relayed_exchange_keeps_the_relay_and_the_client(tmp_path):
    """RELAY-FORW and RELAY-REPL between the router and the server: the relay's link-address,
    peer-address, interface-id and remote-id are the client's link, its own address and its place, as
    Wireshark reads them."""
    path = tmp_path / "relayed6.pcap"
    wrpcap(str(path), v6_frames())
    out: list = []
    open_source(path).run(out.append)
    dhcp = [o for o in out if o.kind == "dhcp"]
    rows = [(o.dhcp_type, o.src_ip, o.src_mac, o.dhcp_relay_ip, o.dhcp_client_ip, o.requested_ip, o.assigned_ip,
             o.dhcp_circuit_id, o.dhcp_remote_id) for o in dhcp]
    link, me, addr = "2001:db8:40::1", "fe80::3e22:fbff:fe30:40", "2001:db8:40::77"
    ap, remote = "AP-HALL-2:VS-Guest", "00:1b:21:aa:00:ee"
    assert rows == [
        ("SOLICIT", "2001:db8:10::1", VISITOR_MAC, link, me, None, None, ap, remote),
        ("ADVERTISE", "2001:db8:10::2", VISITOR_MAC, link, me, None, addr, ap, remote),
        ("REQUEST", "2001:db8:10::1", VISITOR_MAC, link, me, addr, None, ap, remote),
        ("REPLY", "2001:db8:10::2", VISITOR_MAC, link, me, None, addr, ap, remote),
    ]
    exe = shutil.which("tshark")
    if exe is None:
        pytest.skip("tshark is not installed (./dev test installs it when run as root)")
    fields = ["dhcpv6.linkaddr", "dhcpv6.peeraddr", "dhcpv6.interface_id", "dhcpv6.remoteid_enterprise_id"]
    text = subprocess.run([exe, "-n", "-r", str(path), "-T", "fields"] + [a for f in fields for a in ("-e", f)],
                          capture_output=True, text=True, check=True).stdout
    assert [tuple(line.split("\t")) for line in text.splitlines()] == [
        (o.dhcp_relay_ip, o.dhcp_client_ip, (o.dhcp_circuit_id or "").encode().hex(),
         (o.dhcp_remote_id or "").replace(":", "")) for o in dhcp]


def test_nested_relays_keep_the_relay_nearest_the_client():
    """A second relay wraps the first one's RELAY-FORW: the link-address and peer-address kept are the
    first relay's (the client's link), not the second's (the first relay's link)."""
    first = DHCP6_RelayForward(linkaddr="2001:db8:40::1", peeraddr="fe80::9") / DHCP6OptRelayMsg(
        message=DHCP6_Solicit(trid=5))
    second = DHCP6_RelayForward(hopcount=1, linkaddr="2001:db8:99::1", peeraddr="2001:db8:99::40") / DHCP6OptRelayMsg(
        message=first)
    msg = parse_v6(bytes(second))
    assert (msg.msg_type, msg.relay_ip, msg.client_ip) == ("SOLICIT", "2001:db8:40::1", "fe80::9")
