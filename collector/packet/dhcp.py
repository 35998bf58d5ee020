"""DHCP messages, v4 (RFC 2131/2132) and v6 (RFC 8415): who asked for an address, what they called
themselves, what they got.

Pure: a UDP payload in, a `DhcpMessage` out, `ValueError` for anything malformed (for v4, anything that
is not a BOOTP message with the DHCP magic cookie). v4 options are read from the options field and, when
option 52 (overload) says so, from the `file` and `sname` fields as well.
"""

from __future__ import annotations

import ipaddress
import struct

MESSAGE_TYPES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE",
                 8: "INFORM"}
_COOKIE = b"\x63\x82\x53\x63"


class DhcpMessage:
    """The fields of one DHCP message that identify a device and its lease. A plain class, as the other
    parsers' results, so that the compiled build (mypyc) makes its constructor native."""

    __slots__ = ("xid", "msg_type", "mac", "client_ip", "assigned_ip", "hostname", "domain", "requested_ip",
                 "server_ip", "lease_s", "params", "vendor_class", "circuit_id", "remote_id", "relay_ip")

    def __init__(
        self, *, xid: int, msg_type: str | None, mac: str | None, client_ip: str | None, assigned_ip: str | None,
        hostname: str | None, domain: str | None, requested_ip: str | None, server_ip: str | None,
        lease_s: int | None, params: list[str], vendor_class: str | None, circuit_id: str | None = None,
        remote_id: str | None = None, relay_ip: str | None = None,
    ) -> None:
        self.xid, self.msg_type, self.mac, self.client_ip, self.assigned_ip = xid, msg_type, mac, client_ip, assigned_ip
        self.hostname, self.domain, self.requested_ip, self.server_ip = hostname, domain, requested_ip, server_ip
        self.lease_s = lease_s
        self.params = params
        """Parameter-request list in the client's order: with the vendor class, a device fingerprint."""
        self.vendor_class = vendor_class
        self.circuit_id, self.remote_id = circuit_id, remote_id
        """The relay agent's circuit and remote ids (v4 option 82): where a Wi-Fi controller or switch
        says the client is (an access point's name or MAC, the SSID, a port); for v6, the interface-id
        (option 18) and the remote-id (option 37) of the relay nearest the client."""
        self.relay_ip = relay_ip
        """The relay agent's address on the client's link: v4 `giaddr`, v6 the link-address of the relay
        nearest the client. `client_ip` is v4 `ciaddr`, or v6 that relay's peer-address (the client's own
        source address, usually link-local)."""


def _ip(raw: bytes) -> str | None:
    return None if raw == b"\0\0\0\0" or len(raw) != 4 else str(ipaddress.IPv4Address(raw))


def _options(area: bytes, found: dict[int, bytes]) -> None:
    pos = 0
    while pos < len(area):
        code = area[pos]
        if code == 0:
            pos += 1
            continue
        if code == 255:
            return
        if pos + 1 >= len(area) or pos + 2 + area[pos + 1] > len(area):
            raise ValueError(f"dhcp option {code} runs past the message")
        value = area[pos + 2 : pos + 2 + area[pos + 1]]
        found[code] = found.get(code, b"") + value  # RFC 3396: a repeated option continues the first
        pos += 2 + area[pos + 1]


def _text(raw: bytes | None) -> str | None:
    return raw.rstrip(b"\0").decode("utf-8", "backslashreplace") if raw else None


def _shown(value: bytes | None) -> str | None:
    """A relay agent's id as text when printable, else hex."""
    if not value:
        return None
    return value.decode("ascii") if all(32 <= b < 127 for b in value) else value.hex(":")


def _relay_ids(raw: bytes | None) -> tuple[str | None, str | None]:
    """Circuit id (sub-option 1) and remote id (2) of option 82."""
    found: dict[int, bytes] = {}
    pos = 0
    data = raw or b""
    while pos + 2 <= len(data):
        code, length = data[pos], data[pos + 1]
        found[code] = data[pos + 2 : pos + 2 + length]
        pos += 2 + length
    return _shown(found.get(1)), _shown(found.get(2))


def parse_message(buf: bytes) -> DhcpMessage:
    """Parse a BOOTP/DHCP message."""
    if len(buf) < 240 or buf[236:240] != _COOKIE:
        raise ValueError("not a dhcp message (short, or no magic cookie)")
    xid = struct.unpack_from("!I", buf, 4)[0]
    hlen = buf[2]
    opts: dict[int, bytes] = {}
    _options(buf[240:], opts)
    overload = opts.get(52, b"\0")[0]
    if overload & 1:
        _options(buf[108:236], opts)
    if overload & 2:
        _options(buf[44:108], opts)
    kind = opts.get(53)
    lease = opts.get(51)
    circuit, remote = _relay_ids(opts.get(82))
    return DhcpMessage(
        xid=xid,
        msg_type=MESSAGE_TYPES.get(kind[0], f"TYPE{kind[0]}") if kind else None,
        mac=buf[28:34].hex(":") if hlen == 6 else None,
        client_ip=_ip(buf[12:16]),
        assigned_ip=_ip(buf[16:20]),
        hostname=_text(opts.get(12)),
        domain=_text(opts.get(15)),
        requested_ip=_ip(opts.get(50, b"")),
        server_ip=_ip(opts.get(54, b"")),
        lease_s=struct.unpack("!I", lease)[0] if lease and len(lease) == 4 else None,
        params=[str(b) for b in opts.get(55, b"")],
        vendor_class=_text(opts.get(60)),
        circuit_id=circuit,
        remote_id=remote,
        relay_ip=_ip(buf[24:28]),
    )


# -- DHCPv6 (RFC 8415) ------------------------------------------------------------------------------

V6_MESSAGE_TYPES = {1: "SOLICIT", 2: "ADVERTISE", 3: "REQUEST", 4: "CONFIRM", 5: "RENEW", 6: "REBIND", 7: "REPLY",
                    8: "RELEASE", 9: "DECLINE", 10: "RECONFIGURE", 11: "INFORMATION-REQUEST"}
_V6_FROM_SERVER = frozenset({"ADVERTISE", "REPLY", "RECONFIGURE"})
_RELAY_FORW, _RELAY_REPL = 12, 13
_MAX_RELAY_HOPS = 8  # RFC 8415's HOP_COUNT_LIMIT is 8 (section 7.6)


def _v6_options(area: bytes) -> dict[int, list[bytes]]:
    """Options in order, by code; a code may repeat (several IA_NA, IAADDR...)."""
    found: dict[int, list[bytes]] = {}
    pos = 0
    while pos < len(area):
        if pos + 4 > len(area):
            raise ValueError("dhcpv6 option header runs past the message")
        code, length = struct.unpack_from("!HH", area, pos)
        if pos + 4 + length > len(area):
            raise ValueError(f"dhcpv6 option {code} runs past the message")
        found.setdefault(code, []).append(area[pos + 4 : pos + 4 + length])
        pos += 4 + length
    return found


def _duid_mac(duid: bytes) -> str | None:
    """The Ethernet address in a DUID-LLT (type 1) or DUID-LL (type 3); the other types hold none."""
    if len(duid) >= 4 and duid[2:4] == b"\x00\x01":  # hardware type 1: Ethernet
        kind = duid[1] if duid[0] == 0 else 0
        raw = duid[8:14] if kind == 1 else duid[4:10] if kind == 3 else b""
        if len(raw) == 6:
            return raw.hex(":")
    return None


def _dns_name(raw: bytes) -> str | None:
    """A name in DNS wire format, complete or partial (RFC 4704 client FQDN), as dotted text."""
    labels, pos = [], 0
    while pos < len(raw) and raw[pos]:
        length = raw[pos]
        if length > 63 or pos + 1 + length > len(raw):
            raise ValueError("dhcpv6 client fqdn with a bad label")
        labels.append(raw[pos + 1 : pos + 1 + length].decode("utf-8", "backslashreplace"))
        pos += 1 + length
    return ".".join(labels) or None


def _ia_address(ia_options: list[bytes]) -> tuple[str | None, int | None]:
    """The first address of the first IA_NA (option 3) and its valid lifetime: (None, None) without one."""
    for ia in ia_options:
        if len(ia) < 12:
            raise ValueError("dhcpv6 IA_NA shorter than its fixed fields")
        for addr in _v6_options(ia[12:]).get(5, []):  # IAADDR
            if len(addr) < 24:
                raise ValueError("dhcpv6 IAADDR shorter than its fixed fields")
            return str(ipaddress.IPv6Address(addr[:16])), struct.unpack_from("!I", addr, 20)[0]
    return None, None


def v6_from_server(msg: DhcpMessage) -> bool:
    """Whether a parsed DHCPv6 message goes from a server to a client (ADVERTISE, REPLY, RECONFIGURE)."""
    return msg.msg_type in _V6_FROM_SERVER


def parse_v6(buf: bytes, hops: int = 0) -> DhcpMessage:
    """Parse a DHCPv6 message (UDP 546/547); a relayed one is unwrapped to the client's message, whose
    MAC may come from the relay's client link-layer address option (RFC 6939), and whose `relay_ip`,
    `client_ip`, `circuit_id` and `remote_id` are the link-address, peer-address, interface-id and
    remote-id (RFC 4649) of the relay nearest the client.

    Mapped onto `DhcpMessage`: `mac` from the client's DUID (or the relay's option), `hostname` and
    `domain` from the client FQDN option, `assigned_ip` (server to client) or `requested_ip` (client to
    server) from the IA_NA address, `lease_s` its valid lifetime, `params` the option-request list and
    `vendor_class` the first vendor class datum. An address with a valid lifetime of 0 is being given up,
    so it is not an assignment."""
    if len(buf) < 4:
        raise ValueError("dhcpv6 message shorter than its header")
    kind = buf[0]
    if kind in (_RELAY_FORW, _RELAY_REPL):
        if hops >= _MAX_RELAY_HOPS or len(buf) < 34:
            raise ValueError("dhcpv6 relay message too short or nested too deep")
        relay = _v6_options(buf[34:])
        inner = relay.get(9)
        if not inner:
            raise ValueError("dhcpv6 relay message without a relayed message")
        msg = parse_v6(inner[0], hops + 1)
        linklayer = relay.get(79, [b""])[0]
        if msg.mac is None and len(linklayer) == 8 and linklayer[:2] == b"\x00\x01":
            msg.mac = linklayer[2:].hex(":")
        if inner[0][0] not in (_RELAY_FORW, _RELAY_REPL):  # the relay on the client's own link
            link, peer = buf[2:18], buf[18:34]
            msg.relay_ip = None if link == bytes(16) else str(ipaddress.IPv6Address(link))
            msg.client_ip = None if peer == bytes(16) else str(ipaddress.IPv6Address(peer))
            msg.circuit_id = _shown(relay.get(18, [b""])[0])  # interface-id
            msg.remote_id = _shown(relay.get(37, [b""])[0][4:])  # remote-id, after its enterprise number
        return msg
    opts = _v6_options(buf[4:])
    name = V6_MESSAGE_TYPES.get(kind, f"TYPE{kind}")
    address, lifetime = _ia_address(opts.get(3, []))
    fqdn = opts.get(39, [b""])[0]
    hostname = _dns_name(fqdn[1:]) if len(fqdn) > 1 else None
    vendor = opts.get(16, [b""])[0]
    vendor_class = None
    if len(vendor) >= 6:
        size = struct.unpack_from("!H", vendor, 4)[0]
        vendor_class = _text(vendor[6 : 6 + size])
    oro = opts.get(6, [b""])[0]
    from_server = name in _V6_FROM_SERVER
    return DhcpMessage(
        xid=int.from_bytes(buf[1:4], "big"),
        msg_type=name,
        mac=_duid_mac(opts.get(1, [b""])[0]),
        client_ip=None,
        assigned_ip=address if from_server and lifetime else None,
        hostname=hostname.split(".", 1)[0] if hostname else None,
        domain=hostname.split(".", 1)[1] if hostname and "." in hostname else None,
        requested_ip=None if from_server else address,
        server_ip=None,
        lease_s=lifetime if from_server and lifetime else None,
        params=[str(struct.unpack_from("!H", oro, i)[0]) for i in range(0, len(oro) - 1, 2)],
        vendor_class=vendor_class,
    )
