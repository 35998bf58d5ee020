"""DHCP parsing, on messages built by scapy, including option overload (RFC 2132 §9.3)."""

from __future__ import annotations

import pytest
from scapy.layers.dhcp import BOOTP, DHCP

from collector.packet.dhcp import parse_message


def test_request_with_fingerprint_fields():
    msg = BOOTP(op=1, xid=0x1234, chaddr=bytes.fromhex("3c22fb300001") + bytes(10)) / DHCP(options=[
        ("message-type", "request"), ("hostname", b"Sams-iPhone"), ("requested_addr", "10.20.1.31"),
        ("param_req_list", [1, 121, 3, 6, 15, 108, 114, 119, 252]), ("vendor_class_id", b"android-dhcp-13"), "end"])
    m = parse_message(bytes(msg))
    assert (m.xid, m.msg_type, m.mac, m.hostname, m.requested_ip, m.vendor_class) == (
        0x1234, "REQUEST", "3c:22:fb:30:00:01", "Sams-iPhone", "10.20.1.31", "android-dhcp-13")
    assert m.params == ["1", "121", "3", "6", "15", "108", "114", "119", "252"]


def test_options_overloaded_into_the_file_field():
    file_field = bytes([12, 6]) + b"laptop" + bytes([255])
    msg = BOOTP(op=2, xid=7, yiaddr="10.20.2.13", chaddr=bytes(16), file=file_field.ljust(128, b"\0")) / DHCP(
        options=[("message-type", "ack"), ("lease_time", 3600), (52, b"\x01"), "end"])
    m = parse_message(bytes(msg))
    assert (m.msg_type, m.assigned_ip, m.lease_s, m.hostname) == ("ACK", "10.20.2.13", 3600, "laptop")


@pytest.mark.parametrize("data", [b"\x01" * 100, bytes(236) + b"\x63\x82\x53\x63" + bytes([12, 50, 1])])
def test_malformed(data):
    with pytest.raises(ValueError):
        parse_message(data)


def test_relay_agent_information_option_82():
    """A Wi-Fi controller relaying the request adds circuit id `AP name:SSID` and a binary remote id."""
    relay = bytes([1, 23]) + b"AP-STAFFROOM-1:VS-Staff" + bytes([2, 6]) + bytes.fromhex("001b21aa00ff")
    msg = BOOTP(op=2, xid=9, yiaddr="10.20.1.60", chaddr=bytes.fromhex("3c22fb300001") + bytes(10)) / DHCP(options=[
        ("message-type", "ack"), (82, relay), "end"])
    m = parse_message(bytes(msg))
    assert (m.circuit_id, m.remote_id) == ("AP-STAFFROOM-1:VS-Staff", "00:1b:21:aa:00:ff")
    plain = parse_message(bytes(BOOTP(op=2, xid=9, chaddr=bytes(16)) / DHCP(options=[("message-type", "ack"), "end"])))
    assert (plain.circuit_id, plain.remote_id) == (None, None)
