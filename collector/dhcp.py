"""DHCPv4 messages (RFC 2131/2132): who asked for an address, what they called themselves, what they got.

Pure: a UDP payload in, a `DhcpMessage` out, `ValueError` for anything that is not a BOOTP message with
the DHCP magic cookie. Options are read from the options field and, when option 52 (overload) says so,
from the `file` and `sname` fields as well.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

MESSAGE_TYPES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE",
                 8: "INFORM"}
_COOKIE = b"\x63\x82\x53\x63"


@dataclass(slots=True)
class DhcpMessage:
    """The fields of one DHCP message that identify a device and its lease."""

    xid: int
    msg_type: str | None
    mac: str | None
    client_ip: str | None
    assigned_ip: str | None
    hostname: str | None = None
    domain: str | None = None
    requested_ip: str | None = None
    server_ip: str | None = None
    lease_s: int | None = None
    params: list[str] = field(default_factory=list)
    """Parameter-request list (option 55) in the client's order: with the vendor class, a device fingerprint."""
    vendor_class: str | None = None


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
    )
