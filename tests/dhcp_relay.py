"""A visitor's laptop joins the guest Wi-Fi, whose DHCP server sits in the server room: the relayed
exchanges (v4 with option 82 and giaddr, v4 with giaddr only, DHCPv6 through a relay), as frames captured
at the server's switch port. Every frame goes between the server and a relay agent, so none of their
addresses is the client's: shared by the decoder's tests and identity's."""

from __future__ import annotations

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dhcp6 import (
    DUID_LL,
    DHCP6_Advertise,
    DHCP6_RelayForward,
    DHCP6_RelayReply,
    DHCP6_Reply,
    DHCP6_Request,
    DHCP6_Solicit,
    DHCP6OptClientId,
    DHCP6OptIA_NA,
    DHCP6OptIAAddress,
    DHCP6OptIfaceId,
    DHCP6OptRelayMsg,
    DHCP6OptRemoteID,
)
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether

SERVER, RELAY_UPLINK = "10.20.0.2", "10.20.0.1"  # the DHCP server; the router's address in the server room
GUEST_GATEWAY = "10.20.40.1"  # the router's address on the guest Wi-Fi: the relay's giaddr
VISITOR_MAC, VISITOR_IP = "3c:22:fb:30:00:40", "10.20.40.77"
TABLET_MAC, TABLET_IP = "3c:22:fb:30:00:41", "10.20.40.78"  # relayed by a router that adds no option 82
CIRCUIT, REMOTE = b"AP-HALL-2:VS-Guest", bytes.fromhex("001b21aa00ee")
SERVER6, RELAY6_UPLINK, GUEST6_GATEWAY = "2001:db8:10::2", "2001:db8:10::1", "2001:db8:40::1"
VISITOR6_LINK_LOCAL, VISITOR6_IP = "fe80::3e22:fbff:fe30:40", "2001:db8:40::77"
SERVER_ROOM_VLAN = 10
ROUTER_MAC, SERVER_MAC = "00:00:5e:00:01:01", "00:00:5e:00:01:02"


def _leg(to_server: bool, payload, v6: bool = False) -> Ether:
    """One frame between the relay (the router's server-room side) and the server, on the server VLAN."""
    ends = (RELAY6_UPLINK, SERVER6) if v6 else (RELAY_UPLINK, SERVER)
    src, dst = ends if to_server else (ends[1], ends[0])
    macs = (ROUTER_MAC, SERVER_MAC) if to_server else (SERVER_MAC, ROUTER_MAC)
    port = 547 if v6 else 67
    net = IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst)
    return Ether(src=macs[0], dst=macs[1]) / Dot1Q(vlan=SERVER_ROOM_VLAN) / net / UDP(sport=port, dport=port) / payload


def _bootp(op: int, xid: int, mac: str, kind: str, options: list, **fields) -> BOOTP:
    chaddr = bytes.fromhex(mac.replace(":", "")) + bytes(10)
    return BOOTP(op=op, xid=xid, hops=1, giaddr=GUEST_GATEWAY, chaddr=chaddr, **fields) / DHCP(
        options=[("message-type", kind), *options, "end"])


def v4_frames() -> list[Ether]:
    """The visitor's DISCOVER, OFFER, REQUEST and ACK relayed with option 82 (the server echoes it in its
    replies, RFC 3046); the tablet's REQUEST and ACK relayed with giaddr only."""
    agent = (82, bytes([1, len(CIRCUIT)]) + CIRCUIT + bytes([2, len(REMOTE)]) + REMOTE)
    offer = [("server_id", SERVER), ("lease_time", 3600), agent]
    return [
        _leg(True, _bootp(1, 0x40, VISITOR_MAC, "discover", [agent])),
        _leg(False, _bootp(2, 0x40, VISITOR_MAC, "offer", offer, yiaddr=VISITOR_IP)),
        _leg(True, _bootp(1, 0x40, VISITOR_MAC, "request", [("requested_addr", VISITOR_IP), agent])),
        _leg(False, _bootp(2, 0x40, VISITOR_MAC, "ack", offer, yiaddr=VISITOR_IP)),
        _leg(True, _bootp(1, 0x41, TABLET_MAC, "request", [("requested_addr", TABLET_IP)])),
        _leg(False, _bootp(2, 0x41, TABLET_MAC, "ack", [("server_id", SERVER), ("lease_time", 3600)],
                           yiaddr=TABLET_IP)),
    ]


def v6_frames() -> list[Ether]:
    """The visitor's SOLICIT, ADVERTISE, REQUEST and REPLY, each inside the relay's RELAY-FORW or the
    server's RELAY-REPL, with the relay's interface-id and remote-id."""
    duid = DHCP6OptClientId(duid=DUID_LL(lladdr=VISITOR_MAC))
    given = DHCP6OptIA_NA(iaid=1, ianaopts=[DHCP6OptIAAddress(addr=VISITOR6_IP, preflft=1800, validlft=3600)])
    agent = DHCP6OptIfaceId(ifaceid=CIRCUIT) / DHCP6OptRemoteID(enterprisenum=9, remoteid=REMOTE)

    def relayed(to_server: bool, msg) -> Ether:
        wrap = DHCP6_RelayForward if to_server else DHCP6_RelayReply
        return _leg(to_server, wrap(linkaddr=GUEST6_GATEWAY, peeraddr=VISITOR6_LINK_LOCAL)
                    / DHCP6OptRelayMsg(message=msg) / agent, v6=True)

    return [
        relayed(True, DHCP6_Solicit(trid=0x60) / duid / DHCP6OptIA_NA(iaid=1)),
        relayed(False, DHCP6_Advertise(trid=0x60) / duid / given),
        relayed(True, DHCP6_Request(trid=0x61) / duid / DHCP6OptIA_NA(iaid=1, ianaopts=[
            DHCP6OptIAAddress(addr=VISITOR6_IP, preflft=1800, validlft=3600)])),
        relayed(False, DHCP6_Reply(trid=0x61) / duid / given),
    ]
