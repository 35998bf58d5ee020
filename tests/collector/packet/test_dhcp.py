"""DHCP parsing, on messages built by scapy, including option overload (RFC 2132 §9.3) and a relayed
exchange through the decoder, checked against Wireshark's tshark."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.utils import wrpcap

from collector.packet.dhcp import parse_message
from collector.sources import open_source
from tests.dhcp_relay import TABLET_MAC, VISITOR_MAC, v4_frames


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


def test_relay_and_client_addresses():
    """giaddr is the relay agent's address on the client's link; ciaddr the address a client already has
    (here a server's ACK to an INFORM, which assigns none)."""
    msg = BOOTP(op=2, xid=3, ciaddr="10.20.40.77", giaddr="10.20.40.1", chaddr=bytes(16)) / DHCP(
        options=[("message-type", "ack"), "end"])
    m = parse_message(bytes(msg))
    assert (m.relay_ip, m.client_ip, m.assigned_ip) == ("10.20.40.1", "10.20.40.77", None)
    unrelayed = parse_message(bytes(BOOTP(op=1, xid=3, chaddr=bytes(16)) / DHCP(options=[("message-type", "discover"),
                                                                                          "end"])))
    assert (unrelayed.relay_ip, unrelayed.client_ip) == (None, None)


@pytest.fixture(scope="module")
def relayed_capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("relayed") / "relayed.pcap"
    wrpcap(str(path), v4_frames())
    return path


def _dhcp_rows(path) -> list:
    out: list = []
    open_source(path).run(out.append)
    return [o for o in out if o.kind == "dhcp"]


def test_a_relayed_exchange_keeps_the_relay_and_the_client(relayed_capture):
    """Every frame goes between the router's server-room address and the server; the client is told by
    chaddr, giaddr, option 82 and the addresses in the message."""
    rows = [(o.dhcp_type, o.src_ip, o.src_mac, o.dhcp_relay_ip, o.dhcp_client_ip, o.requested_ip, o.assigned_ip,
             o.dhcp_circuit_id, o.dhcp_remote_id) for o in _dhcp_rows(relayed_capture)]
    ap, remote = "AP-HALL-2:VS-Guest", "00:1b:21:aa:00:ee"
    assert rows == [
        ("DISCOVER", "10.20.0.1", VISITOR_MAC, "10.20.40.1", None, None, None, ap, remote),
        ("OFFER", "10.20.0.2", VISITOR_MAC, "10.20.40.1", None, None, "10.20.40.77", ap, remote),
        ("REQUEST", "10.20.0.1", VISITOR_MAC, "10.20.40.1", None, "10.20.40.77", None, ap, remote),
        ("ACK", "10.20.0.2", VISITOR_MAC, "10.20.40.1", None, None, "10.20.40.77", ap, remote),
        ("REQUEST", "10.20.0.1", TABLET_MAC, "10.20.40.1", None, "10.20.40.78", None, None, None),
        ("ACK", "10.20.0.2", TABLET_MAC, "10.20.40.1", None, None, "10.20.40.78", None, None),
    ]


def test_relay_fields_match_tshark(relayed_capture):
    """Wireshark's dissector reads the same giaddr, ciaddr, yiaddr and option 82 sub-options."""
    exe = shutil.which("tshark")
    if exe is None:
        pytest.skip("tshark is not installed (./dev test installs it when run as root)")
    agent = "dhcp.option.agent_information_option"
    fields = ["dhcp.ip.relay", "dhcp.ip.client", "dhcp.ip.your", f"{agent}.agent_circuit_id",
              f"{agent}.agent_remote_id"]
    out = subprocess.run([exe, "-n", "-r", str(relayed_capture), "-T", "fields"]
                         + [a for f in fields for a in ("-e", f)], capture_output=True, text=True, check=True).stdout
    theirs = [line.split("\t") for line in out.splitlines()]
    ours = [(o.dhcp_relay_ip or "0.0.0.0", o.dhcp_client_ip or "0.0.0.0", o.assigned_ip or "0.0.0.0",
             (o.dhcp_circuit_id or "").encode().hex(), (o.dhcp_remote_id or "").replace(":", ""))
            for o in _dhcp_rows(relayed_capture)]
    assert [tuple(t) for t in theirs] == ours
