"""DNS message parsing (RFC 1035): header, first question, and the answer section.

Pure: bytes in, a `DnsMessage` out, `ValueError` for anything malformed (a name pointer that loops or
points outside the message, a record that runs past the end). Only the answer section is read; the
authority and additional sections do not name what the client asked for.

`DnsTcp`, at the end, is the flow handler for DNS over TCP; UDP datagrams on `PORTS` the decoder reads itself.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Final

from collector.packet.flows import MAX_STREAM, Handler, Offer
from collector.packet.wire import ipv4_text, u16, u32

if TYPE_CHECKING:
    from collector.packet.flows import Flow, FlowTable

QTYPE_NAMES = {
    1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 13: "HINFO", 15: "MX", 16: "TXT", 28: "AAAA",
    32: "NIMLOC", 33: "SRV", 35: "NAPTR", 41: "OPT", 43: "DS", 44: "SSHFP", 46: "RRSIG", 47: "NSEC",
    48: "DNSKEY", 50: "NSEC3", 52: "TLSA", 64: "SVCB", 65: "HTTPS", 99: "SPF", 255: "*", 257: "CAA",
}
RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
_NAME_TYPES = {2, 5, 12}  # NS, CNAME, PTR: rdata is a domain name


class DnsMessage:
    """The parts of a DNS message that name what a client looked up and what it was told.

    A plain class rather than a dataclass: the compiled build (mypyc) makes its constructor native, and
    one is made for every DNS packet."""

    __slots__ = ("txid", "is_response", "rcode", "qname", "qtype", "answers", "addresses")

    def __init__(self, txid: int, is_response: bool, rcode: str, qname: str | None, qtype: str | None) -> None:
        self.txid, self.is_response, self.rcode, self.qname, self.qtype = txid, is_response, rcode, qname, qtype
        self.answers: list[str] = []
        self.addresses: list[tuple[bytes, int]] = []
        """(address as 4 or 16 bytes, TTL seconds) from A and AAAA answers, for the address → name cache."""


def type_name(code: int) -> str:
    """`A`, `AAAA`, ... or `TYPEnnn` for a code without a mnemonic here."""
    return QTYPE_NAMES.get(code, f"TYPE{code}")


def parse_message(buf: bytes, netbios: bool = False) -> DnsMessage:
    """Parse one DNS message (without the TCP length prefix); `netbios` decodes NBNS names."""
    if len(buf) < 12:
        raise ValueError(f"dns header needs 12 bytes, got {len(buf)}")
    txid, flags, qdcount, ancount = u16(buf, 0), u16(buf, 2), u16(buf, 4), u16(buf, 6)
    rcode = flags & 0x0F
    msg = DnsMessage(txid, bool(flags & 0x8000), RCODE_NAMES.get(rcode, f"RCODE{rcode}"), None, None)
    pos = 12
    for i in range(qdcount):
        name, pos = read_name(buf, pos)
        if pos + 4 > len(buf):
            raise ValueError("dns question cut short")
        if i == 0:
            msg.qname = netbios_name(name) if netbios else name
            msg.qtype = type_name(u16(buf, pos))
        pos += 4
    for _ in range(ancount):
        pos = _read_answer(buf, pos, msg)
    return msg



def _read_answer(buf: bytes, pos: int, msg: DnsMessage) -> int:
    owner, pos = read_name(buf, pos)
    if msg.qname is None:  # an answer with no question (mDNS announcements): named by its owner, as Zeek does
        msg.qname = owner
    if pos + 10 > len(buf):
        raise ValueError("dns answer header cut short")
    rtype, ttl, rdlen = u16(buf, pos), u32(buf, pos + 4), u16(buf, pos + 8)
    pos += 10
    end = pos + rdlen
    if end > len(buf):
        raise ValueError("dns answer data cut short")
    if rtype == 1 and rdlen == 4:
        raw = buf[pos:end]
        msg.answers.append(ipv4_text(raw))
        msg.addresses.append((raw, ttl))
    elif rtype == 28 and rdlen == 16:
        raw = buf[pos:end]
        msg.answers.append(socket.inet_ntop(socket.AF_INET6, raw))
        msg.addresses.append((raw, ttl))
    elif rtype in _NAME_TYPES:
        msg.answers.append(read_name(buf, pos)[0])
    elif rtype == 15 and rdlen > 2:  # MX: preference, exchange
        msg.answers.append(read_name(buf, pos + 2)[0])
    elif rtype == 33 and rdlen > 6:  # SRV: priority, weight, port, target
        msg.answers.append(read_name(buf, pos + 6)[0])
    elif rtype == 44 and rdlen > 2:  # SSHFP: algorithm, fingerprint type, fingerprint (Zeek's rendering)
        msg.answers.append(f"SSHFP: {buf[pos + 2 : end].hex()}")
    elif rtype == 46 and rdlen > 18:  # RRSIG: type covered ... signer name (Zeek's rendering)
        covered = u16(buf, pos)
        msg.answers.append(f"RRSIG {covered} {read_name(buf, pos + 18)[0]}")
    return end


def netbios_name(name: str) -> str:
    """Undo NetBIOS first-level encoding (RFC 1001 §14.1): 32 letters A-P → 15 characters and a suffix
    byte; trailing spaces dropped. Names that are not so encoded are returned unchanged."""
    label, _, _scope = name.partition(".")
    if len(label) != 32 or not all("a" <= c <= "p" for c in label):
        return name
    raw = bytes(((ord(label[i]) - 97) << 4) | (ord(label[i + 1]) - 97) for i in range(0, 32, 2))
    return raw[:15].decode("latin-1").rstrip(" \x00")


def read_name(buf: bytes, pos: int) -> tuple[str, int]:
    """Read a possibly compressed name at `pos`; return it (lower case, no final dot) and the next offset."""
    labels: list[bytes] = []
    end = -1
    jumps = 0
    while True:
        if pos >= len(buf):
            raise ValueError("dns name runs past the message")
        length = buf[pos]
        if length == 0:
            pos += 1
            break
        if length & 0xC0 == 0xC0:
            if pos + 1 >= len(buf):
                raise ValueError("dns name pointer cut short")
            jumps += 1
            if jumps > 32:
                raise ValueError("dns name pointers loop")
            if end < 0:
                end = pos + 2
            pos = ((length & 0x3F) << 8) | buf[pos + 1]
            continue
        if length & 0xC0:
            raise ValueError(f"dns label type {length >> 6} not supported")
        label = buf[pos + 1 : pos + 1 + length]
        if len(label) < length:
            raise ValueError("dns label cut short")
        labels.append(label)
        pos += 1 + length
    return b".".join(labels).decode("ascii", "backslashreplace").lower(), (end if end >= 0 else pos)


# -- the handler: what the decoder reads of a flow with this protocol ------------------------------


PORTS: dict[int, str] = {53: "dns", 5353: "mdns", 5355: "llmnr", 137: "nbns"}
"""UDP ports of the DNS family, and which member each carries (the decoder reads these datagrams itself)."""


class DnsTcp(Handler):
    """DNS over TCP: two-byte length-prefixed messages, several per segment or one over several."""

    service = "dns"

    def __init__(self) -> None:
        self.bufs = [b"", b""]
        self.read = 0

    def client(self, dec: FlowTable, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        return self._feed(0, dec, flow, data, frame, ts)

    def server(self, dec: FlowTable, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        return self._feed(1, dec, flow, data, frame, ts)

    def _feed(self, side: int, dec: FlowTable, flow: Flow, data: bytes, frame: int, ts: int) -> bool:
        self.read += len(data)
        buf = self.bufs[side] + data
        while len(buf) >= 2:
            size = (buf[0] << 8) | buf[1]
            if len(buf) < 2 + size:
                break
            msg, buf = buf[2 : 2 + size], buf[2 + size :]
            src, sport, dst, dport = (flow.orig, flow.oport, flow.resp, flow.rport) if side == 0 else (
                flow.resp, flow.rport, flow.orig, flow.oport)
            dec.dns_message(msg, frame, ts, src, sport, dst, dport, flow.mac, flow.vlan, "tcp")
        self.bufs[side] = buf
        return self.read <= MAX_STREAM


class DnsOffer(Offer):
    """Offers this module's handler for DNS over TCP."""

    def tcp(self, flow: Flow, outbound: bool, data: bytes) -> Handler | None:
        """A `DnsTcp` handler for a TCP flow to port 53."""
        return DnsTcp() if flow.rport == 53 else None


OFFER: Final[Offer] = DnsOffer()
