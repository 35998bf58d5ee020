"""Packet decoding: link and IP headers by hand, and the flow table that hands each flow to its handler.

`PacketDecoder.packet()` takes one captured frame (`decode_pcap` walks a classic pcap's records in place,
counting in `bypass` the frames whose headers are all that is needed). Through the flow table it emits
Observations for DNS transactions (DNS, mDNS, LLMNR, NetBIOS-NS), DHCP and DHCPv6 messages, whatever the
application handler chosen for a flow finds (`collector.packet.apps`: TLS and QUIC hellos, HTTP requests
with their response status, mail dialogues, logins in clear, BitTorrent), and the flow itself when it
ends and every minute while it stays open. Headers are read by indexing the raw bytes
(`collector.packet.wire`); no per-packet objects are built. Malformed frames are counted by reason and
skipped.

Byte convention for flows: IP bytes (IP header and payload, link header excluded), the same as Zeek's
`orig_ip_bytes`/`resp_ip_bytes`, taken from the IP length field, so a capture with a short snap length
(headers only) still counts every byte; only a frame whose IP or transport header was cut is skipped.
"""

from __future__ import annotations

import heapq
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Final

from mypy_extensions import i64, mypyc_attr

from collector.observation import Observation
from collector.packet import apps, dhcp, dns
from collector.packet.frag import FragmentReassembler
from collector.packet.pcap import PcapChunks, u32
from collector.packet.tcp import Reassembler
from collector.packet.wire import ipv4_text, u16
from collector.packet.wire import u32 as u32be
from collector.skips import SkipCounter

TCP: Final = 6
UDP: Final = 17
_FIN: Final = 0x01
_SYN: Final = 0x02
_RST: Final = 0x04
_ACK: Final = 0x10
# Final: the compiled build (mypyc) inlines these instead of looking them up for every packet.
_VLAN_TYPES: Final = (0x8100, 0x88A8, 0x9100)
_DHCP_PORTS: Final = (67, 68)
_DHCP6_PORTS: Final = (546, 547)
_DNS_PORTS: Final[dict[int, str]] = apps.DNS_PORTS
_SERVER_PORTS: Final = frozenset({53, 67, 123, 137, 138, 161, 443, 514, 1900, 3478, 5353, 5355})


def _group_address(addr: bytes) -> bool:
    """Broadcast or multicast: IPv4 224/4 and 255.255.255.255, IPv6 ff00::/8."""
    return addr[0] >= 224 if len(addr) == 4 else addr[0] == 0xFF
_IPV6_EXT: Final = (0, 43, 60)  # hop-by-hop, routing, destination options: (len+1)*8 bytes
_US: Final = 1_000_000
MAX_FLOWS: Final = 200_000  # beyond this the oldest flow is reported and forgotten: memory stays bounded
ACTIVE_TIMEOUT: Final = 60 * _US  # a flow still open is reported every minute, with the counts since its last report
TCP_CLOSE_DELAY: Final = 5 * _US  # Zeek's tcp_close_delay: a closed flow lingers for late ACKs
TCP_IDLE: Final = 300 * _US  # Zeek's tcp_inactivity_timeout
UDP_IDLE: Final = 60 * _US  # Zeek's udp_inactivity_timeout
DNS_WAIT: Final = 30 * _US  # an unanswered query is reported after this
DNS_NAME_GRACE: Final = 3600 * _US  # a name is kept past its TTL: clients connect after the TTL runs out
SWEEP_EVERY: Final = _US  # expire flows once per second of capture time

_PORTS: Final = struct.Struct("!HH")


# TCP endpoint states, after Zeek's (TCP_INACTIVE, TCP_SYN_SENT, ...): `conn_state` reads them.
INACTIVE: Final = 0
SYN_SENT: Final = 1
SYN_ACK_SENT: Final = 2
ESTABLISHED: Final = 3
PARTIAL: Final = 4
CLOSED: Final = 5
RESET: Final = 6


def conn_state(flow: Flow) -> str:
    """Zeek's conn.log `conn_state` (S0, S1, SF, REJ, S2, S3, RSTO, RSTR, RSTOS0, RSTRH, SH, SHR, OTH)."""
    os_, rs = flow.ostate, flow.rstate
    if flow.proto != TCP:
        if flow.pkts_out:
            return "SF" if flow.pkts_in else "S0"
        return "SHR" if flow.pkts_in else "OTH"
    o_inactive, r_inactive = os_ in (INACTIVE, PARTIAL), rs in (INACTIVE, PARTIAL)
    if rs == RESET:
        if os_ in (SYN_SENT, SYN_ACK_SENT) or (os_ == RESET and not flow.payload):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if os_ == RESET:
        if r_inactive:
            return "RSTOS0" if flow.syn_then_rst else "OTH"
        return "RSTO"
    if os_ == CLOSED and rs == CLOSED:
        return "SF"
    if os_ == CLOSED:
        return "SH" if r_inactive else "S2"
    if rs == CLOSED:
        return "SHR" if o_inactive else "S3"
    if os_ == SYN_SENT and rs == INACTIVE:
        return "S0"
    if os_ == ESTABLISHED and rs == ESTABLISHED:
        return "S1"
    return "OTH"


_IP_TEXT: Final[dict[bytes, str]] = {}
_IP_TEXT_MAX: Final = 65536


def ip_text(raw: bytes) -> str:
    """Printable form of a 4- or 16-byte address, remembered for the next 65,536 addresses: a plain dict
    the compiled build reads natively, where `functools.lru_cache` is a call into the interpreter."""
    text = _IP_TEXT.get(raw)
    if text is None:
        if len(_IP_TEXT) >= _IP_TEXT_MAX:
            _IP_TEXT.clear()
        text = _IP_TEXT[raw] = ipv4_text(raw) if len(raw) == 4 else socket.inet_ntop(socket.AF_INET6, raw)
    return text


def mac_text(raw: bytes) -> str:
    """`aa:bb:cc:dd:ee:ff` form of a 6-byte MAC."""
    return raw.hex(":")


class Flow:
    """One transport conversation, oriented client (orig) → server (resp)."""

    __slots__ = (
        "key", "rkey", "orig", "oport", "resp", "rport", "proto", "first", "last", "frame", "mac", "vlan",
        "bytes_out", "bytes_in", "pkts_out", "pkts_in", "host", "done", "ostate", "rstate", "closed", "handler",
        "service", "cstream", "sstream", "payload", "syn_then_rst", "reported", "want", "wake", "cisn", "sisn",
    )

    def __init__(
        self, key: bytes, rkey: bytes, orig: bytes, oport: int, resp: bytes, rport: int, proto: int, ts: int,
        frame: int,
    ) -> None:
        self.key = key
        """Client to server as a packet's headers hold them: addresses, then ports (`flow_key`)."""
        self.rkey = rkey  # server to client, the same way
        self.orig, self.oport, self.resp, self.rport, self.proto = orig, oport, resp, rport, proto
        self.first = self.last = ts
        self.frame = frame
        self.mac: bytes | None = None
        self.vlan: int | None = None
        self.bytes_out = self.bytes_in = self.pkts_out = self.pkts_in = 0
        self.host: str | None = None
        self.done = False  # no handler wants this flow's bytes any more: count them, nothing else
        self.want = 3  # directions whose payload is read now (1 client, 2 server): the handler's `want`
        self.ostate = self.rstate = INACTIVE
        self.closed = False  # both sides closed, or one reset: the flow ends after TCP_CLOSE_DELAY
        self.payload = False  # any payload either way (Zeek's "size" of an endpoint, as a yes/no)
        self.syn_then_rst = False
        self.reported: tuple[int, int, int, int, int] | None = None  # (ts, bytes/packets out/in) last reported
        self.handler: apps.Handler | None = None
        self.service = ""
        self.cstream: Reassembler | None = None  # made when a TCP direction's bytes are first needed
        self.sstream: Reassembler | None = None
        self.cisn = self.sisn = -1  # each side's SYN sequence number, until its reassembler is made
        self.wake = -1  # the second of capture time the sweep looks at this flow next; -1 once forgotten


def _count(flow: Flow, outbound: bool, data: bytes, mac: bool, ts: int, ip_len: int) -> None:
    """One packet's share of its flow: time, bytes, packets, and the client's MAC when first seen."""
    if outbound and flow.mac is None and mac:
        flow.mac = data[6:12]
    _add(flow, outbound, ts, ip_len)


def _add(flow: Flow, outbound: bool, ts: int, ip_len: int) -> None:
    """One packet's time, bytes and packet count in its flow."""
    flow.last = ts
    if outbound:
        flow.bytes_out += ip_len
        flow.pkts_out += 1
    else:
        flow.bytes_in += ip_len
        flow.pkts_in += 1


def _stream(flow: Flow, outbound: bool) -> Reassembler:
    """The reassembler of one direction of a TCP flow, made when its first bytes are wanted (most flows'
    server side never is), starting after that side's SYN if one was seen."""
    stream = flow.cstream if outbound else flow.sstream
    if stream is None:
        stream = Reassembler()
        isn = flow.cisn if outbound else flow.sisn
        if isn >= 0:
            stream.syn(isn)
        if outbound:
            flow.cstream = stream
        else:
            flow.sstream = stream
    return stream


def _deadline(flow: Flow) -> int:
    """The capture time (us) from which the sweep has something to do with `flow`: end it (idle past its
    timeout) or report it (a minute since its last report)."""
    idle = TCP_CLOSE_DELAY if flow.closed else TCP_IDLE if flow.proto == TCP else UDP_IDLE
    since = flow.reported[0] if flow.reported else flow.first
    return min(flow.last + idle + 1, since + ACTIVE_TIMEOUT)


def flow_key(src: bytes, dst: bytes, ports: bytes) -> bytes:
    """A flow's key in one direction: source and destination address, then the transport header's first
    four bytes (source and destination port). An IPv4 header without options holds the first twelve in a
    row, so `bypass` looks a packet up by one slice of it."""
    return src + dst + ports


class ConsumerFailed(Exception):
    """The consumer of observations failed (a closed pipe, a full disk...); `cause` is its exception."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__("the consumer of observations failed")
        self.cause = cause


class Stop:
    """A flag a source's `stop()` sets and its decoding loop reads after each frame."""

    __slots__ = ("set",)

    def __init__(self) -> None:
        self.set = False


def decode_frame(decoder: PacketDecoder, frame: int, ts: int, linktype: int, data: bytes, skips: SkipCounter,
                 name: str) -> None:
    """`decoder.packet(...)`, where a failure the decoder did not foresee on this frame is counted as
    `decoder_error` and the input goes on: one frame must not end a capture. The consumer's failure
    (`ConsumerFailed`) goes up."""
    try:
        decoder.packet(frame, ts, linktype, data)
    except ConsumerFailed:
        raise
    except Exception:
        skips.skip("decoder_error", f"{name}#{frame}")


def decode_frames(decoder: PacketDecoder, frames: Iterator[tuple[int, int, int, bytes]], skips: SkipCounter,
                  name: str, stop: Stop) -> None:
    """Every frame through `decode_frame`, until the frames run out or `stop` is set. Compiled with the
    decoder, so the loop costs nothing next to it."""
    for frame, ts, linktype, data in frames:
        decode_frame(decoder, frame, ts, linktype, data, skips, name)
        if stop.set:
            return


@mypyc_attr(allow_interpreted_subclasses=True)  # a test injects a fault by overriding `packet`
class PacketDecoder:
    """Turns frames into Observations. One instance per input stream; `finish()` at its end."""

    def __init__(self, emit: Callable[[Observation], None], skips: SkipCounter, name: str) -> None:
        self._emit = emit
        self._skips = skips
        self._name = name
        self._flows: dict[Flow, None] = {}  # every open flow, oldest first, for the table's limit
        # Flows by either direction's key (`flow_key`); a packet is outbound when its key is the flow's.
        # Keys are bytes and values the flows themselves: nothing here is a container the cyclic garbage
        # collector must scan, which it otherwise did for every flow that outlived a collection.
        self._tcp_flows: dict[bytes, Flow] = {}
        self._udp_flows: dict[bytes, Flow] = {}
        self._dns_pending: dict[tuple, Observation] = {}
        self._names: dict[bytes, tuple[str, int]] = {}  # address → (name, expiry us)
        self._next_sweep = 0
        # Flows by the second (of capture time) when they may next end or be due a report, so that a
        # sweep looks only at those: second → flows, and a heap of the seconds.
        self._wheel: dict[int, list[Flow]] = {}
        self._wheel_seconds: list[int] = []
        self.packets = 0
        self.max_flows = MAX_FLOWS
        self._fragments = FragmentReassembler(lambda reason: self._skips.skip(reason, f"{self._name}#{self.packets}"))

    def decode_pcap(self, chunks: PcapChunks, skips: SkipCounter, name: str, stop: Stop) -> None:
        """Every record of a classic pcap, walked where `chunks` read them: an Ethernet frame is offered
        to `bypass` in place and copied out for `packet()` only when that declines, so most packets cost
        no copy and no call into the interpreter. Failures as in `decode_frame`."""
        little, linktype = chunks.little, chunks.linktype
        ts_div: i64 = chunks.ts_div
        ether = linktype == 1
        buf, frame = b"", 0
        pos: i64 = 0
        while True:
            chunk = chunks.more(buf, pos, frame)
            if chunk is None:
                return
            buf, pos = chunk, 0
            size: i64 = len(chunk)
            while size - pos >= 16:
                end = pos + 16 + u32(buf, pos + 8, little)
                if end > size:
                    break
                frame += 1
                ts = u32(buf, pos, little) * _US + u32(buf, pos + 4, little) // ts_div
                if not (ether and self.bypass(ts, buf, pos + 16, end - pos - 16)):
                    decode_frame(self, frame, ts, linktype, buf[pos + 16 : end], skips, name)
                pos = end
                if stop.set:
                    return

    # -- link and network layers -------------------------------------------------------------------

    def bypass(self, ts: int, data: bytes, base: i64, caplen: i64) -> bool:
        """Count one Ethernet frame in its flow from its headers, when that is all `packet()` would do with
        it; True when done, False to hand the whole frame to `packet()`. The frame is `caplen` bytes at
        `data[base]`; nothing past them is read (in a chunk of a capture, the next record follows).

        Most packets at a gateway are the bulk of a flow whose names and policy signals were read at its
        start. Taken here: an IPv4 packet (untagged or one 802.1Q tag, no IP options, not a fragment)
        that is either a TCP segment without SYN, in an open flow whose endpoint has been seen, carrying
        no payload or a payload its flow's handler does not read (a FIN or RST moves the endpoint's state
        as `packet()` would); or a UDP datagram of a flow nothing reads any more (QUIC after its hello).
        Everything else, and the once-a-second expiry, takes the full path. Offsets are native 64-bit
        integers: the compiled build then adds them without checking for its boxed-integer range."""
        if ts >= self._next_sweep or caplen < 42:
            return False
        off: i64 = base + 14
        if data[base + 12] == 0x81 and data[base + 13] == 0:
            off += 4
        head = off - base  # the link header's length
        if caplen < head + 28 or data[off - 2] != 8 or data[off - 1] != 0 or data[off] != 0x45:
            return False
        if data[off + 6] & 0x3F or data[off + 7]:  # more fragments, or an offset: a fragment
            return False
        ip_len: i64 = (i64(data[off + 2]) << 8) | i64(data[off + 3])
        cap_end = head + ip_len if head + ip_len <= caplen else caplen  # where the captured IP packet ends
        proto = data[off + 9]
        if proto == TCP:
            if caplen < head + 40:
                return False
            tcp = off + 20
            flags = data[tcp + 13]
            if flags & _SYN:
                return False
            key = data[off + 12 : off + 24]
            flow = self._tcp_flows.get(key)
            if flow is None:
                return False
            outbound = key == flow.key
            payload_off = head + 20 + (i64(data[tcp + 12]) >> 4) * 4
            if payload_off < head + 40 or payload_off > cap_end:
                return False  # a bad or cut header: the full path counts it as such
            payload = payload_off < cap_end
            if payload and not flow.done and flow.want & (1 if outbound else 2):
                return False
            if (flow.ostate if outbound else flow.rstate) == INACTIVE or (outbound and flow.mac is None):
                return False  # a first packet, or the client's MAC still to be taken from a frame
            _add(flow, outbound, ts, ip_len)
            if payload:
                flow.payload = True
            if flags & (_FIN | _RST):
                self._tcp_state(flow, outbound, flags)
        elif proto == UDP:
            key = data[off + 12 : off + 24]
            flow = self._udp_flows.get(key)
            if flow is None or not flow.done or cap_end < head + 28:
                return False
            outbound = key == flow.key
            if outbound and flow.mac is None:
                return False
            _add(flow, outbound, ts, ip_len)
        else:
            return False
        self.packets += 1
        return True

    def packet(self, frame: int, ts: int, linktype: int, data: bytes) -> None:
        """Decode one captured frame."""
        self.packets += 1
        if ts >= self._next_sweep:
            self._sweep(ts)
        if linktype != 1:
            return self._other_link(frame, ts, linktype, data)
        # Ethernet, and IPv4 inline: the path nearly every packet at a school gateway takes.
        size = len(data)
        if size < 14:
            return self.skip("truncated_link", frame)
        etype = (data[12] << 8) | data[13]
        off = 14
        vlan = None
        while etype in _VLAN_TYPES:
            if size < off + 4:
                return self.skip("truncated_link", frame)
            vlan = ((data[off] & 0x0F) << 8) | data[off + 1]
            etype = (data[off + 2] << 8) | data[off + 3]
            off += 4
        if etype == 0x0800:
            return self._ipv4(frame, ts, data, off, True, vlan)
        if etype == 0x86DD:
            return self._ipv6(frame, ts, data, off, True, vlan)
        return None

    def _other_link(self, frame: int, ts: int, linktype: int, data: bytes) -> None:
        if linktype in (101, 12, 14, 228, 229):  # raw IP
            off = 0
            etype = 0x0800 if data and data[0] >> 4 == 4 else 0x86DD
        elif linktype == 113:  # Linux cooked v1
            if len(data) < 16:
                return self.skip("truncated_link", frame)
            etype, off = (data[14] << 8) | data[15], 16
        elif linktype == 276:  # Linux cooked v2
            if len(data) < 20:
                return self.skip("truncated_link", frame)
            etype, off = (data[0] << 8) | data[1], 20
        elif linktype in (0, 108):  # BSD loopback: address family, host or network order
            if len(data) < 4:
                return self.skip("truncated_link", frame)
            family = data[0] or data[3]
            etype, off = (0x0800 if family == 2 else 0x86DD), 4
        else:
            return self.skip("unsupported_link_type", frame)
        if etype == 0x0800:
            return self._ipv4(frame, ts, data, off, False, None)
        if etype == 0x86DD:
            return self._ipv6(frame, ts, data, off, False, None)
        return None

    def _ipv4(self, frame: int, ts: int, data: bytes, off: int, mac: bool, vlan: int | None) -> None:
        if len(data) < off + 20:
            return self.skip("truncated_ip", frame)
        b0 = data[off]
        ihl = (b0 & 0x0F) * 4
        if b0 >> 4 != 4 or ihl < 20:
            return self.skip("bad_ip_header", frame)
        total = (data[off + 2] << 8) | data[off + 3]
        if total < ihl:
            return self.skip("bad_ip_length", frame)
        if off + ihl > len(data):
            return self.skip("truncated_ip", frame)
        if ((data[off + 6] << 8) | data[off + 7]) & 0x3FFF:
            return self._ipv4_fragment(frame, ts, data, off, ihl, total, vlan)
        src, dst = data[off + 12 : off + 16], data[off + 16 : off + 20]
        if data[off + 9] == 6:
            return self._tcp(frame, ts, data, off + ihl, off + total, src, dst, total, mac, vlan)
        return self._transport(frame, ts, data, off + ihl, off + total, data[off + 9], src, dst, total, mac, vlan)

    def _ipv6(self, frame: int, ts: int, data: bytes, off: int, mac: bool, vlan: int | None) -> None:
        if len(data) < off + 40:
            return self.skip("truncated_ip", frame)
        if data[off] >> 4 != 6:
            return self.skip("bad_ip_header", frame)
        plen = (data[off + 4] << 8) | data[off + 5]
        end = off + 40 + plen
        nxt, pos = data[off + 6], off + 40
        while nxt in _IPV6_EXT or nxt == 44:
            if pos + 8 > min(end, len(data)):
                return self.skip("truncated_ip", frame)
            if nxt == 44:
                field = u16(data, pos + 2)
                if field & 0xFFF9:
                    return self._ipv6_fragment(frame, ts, data, off, pos, end, field, vlan)
                nxt, pos = data[pos], pos + 8
            else:
                nxt, pos = data[pos], pos + (data[pos + 1] + 1) * 8
        self._transport(
            frame, ts, data, pos, end, nxt, data[off + 8 : off + 24], data[off + 24 : off + 40], 40 + plen,
            mac, vlan,
        )

    # -- fragments -----------------------------------------------------------------------------------

    def _ipv4_fragment(
        self, frame: int, ts: int, data: bytes, off: int, ihl: int, total: int, vlan: int | None
    ) -> None:
        end = off + total
        if end > len(data):
            return self.skip("truncated_ip", frame)  # a fragment cut by the snap length cannot be joined
        field = (data[off + 6] << 8) | data[off + 7]
        src, dst, proto = data[off + 12 : off + 16], data[off + 16 : off + 20], data[off + 9]
        key = (src, dst, proto, (data[off + 4] << 8) | data[off + 5])
        whole = self._fragments.add(key, (field & 0x1FFF) * 8, data[off + ihl : end], bool(field & 0x2000), ts)
        if whole is not None:
            self._transport(frame, ts, whole, 0, len(whole), proto, src, dst, ihl + len(whole), False, vlan)

    def _ipv6_fragment(
        self, frame: int, ts: int, data: bytes, off: int, pos: int, end: int, field: int, vlan: int | None
    ) -> None:
        if end > len(data) or pos + 8 > end:
            return self.skip("truncated_ip", frame)
        src, dst, proto = data[off + 8 : off + 24], data[off + 24 : off + 40], data[pos]
        key = (src, dst, u32be(data, pos + 4))
        whole = self._fragments.add(key, field & 0xFFF8, data[pos + 8 : end], bool(field & 1), ts)
        if whole is not None:
            self._transport(frame, ts, whole, 0, len(whole), proto, src, dst, 40 + len(whole), False, vlan)

    # -- transport and flows -----------------------------------------------------------------------

    def _transport(
        self, frame: int, ts: int, data: bytes, off: int, end: int, proto: int, src: bytes, dst: bytes,
        ip_len: int, mac: bool, vlan: int | None,
    ) -> None:
        """`mac` says whether `data` starts with an Ethernet header (bytes 6-11: the sender's MAC).
        `end` is where the IP packet ends; a capture with a short snap length holds less than that. Such a
        packet still counts in full (IP length) as long as its transport header was captured."""
        if proto == 6:
            return self._tcp(frame, ts, data, off, end, src, dst, ip_len, mac, vlan)
        size = len(data)
        cap_end = end if end <= size else size
        if proto != 17:
            return None
        if cap_end - off < 8:
            return self.skip("truncated_udp", frame)
        sport = (data[off] << 8) | data[off + 1]
        dport = (data[off + 2] << 8) | data[off + 3]
        key = flow_key(src, dst, data[off : off + 4])
        flow = self._udp_flows.get(key)
        if flow is None:
            flow = self._open(self._udp_flows, key, None, frame, ts, src, sport, dst, dport, UDP, 0, vlan)
        outbound = key == flow.key
        _count(flow, outbound, data, mac, ts, ip_len)
        if off + 8 >= cap_end:
            return None
        payload = data[off + 8 : cap_end]
        service = _DNS_PORTS.get(dport) or _DNS_PORTS.get(sport)
        if service is not None:
            flow.service = service
            self.dns_message(payload, frame, ts, src, sport, dst, dport, data[6:12] if mac else None, vlan, "udp",
                             service)
        elif sport in _DHCP_PORTS and dport in _DHCP_PORTS:
            flow.service = "dhcp"
            self._dhcp(flow, payload, frame, ts, src, sport, dst, dport, vlan, None)
        elif sport in _DHCP6_PORTS and dport in _DHCP6_PORTS:
            flow.service = "dhcp"
            self._dhcp(flow, payload, frame, ts, src, sport, dst, dport, vlan, data[:12] if mac else b"")
        elif not flow.done:
            self._udp_data(flow, outbound, payload, frame, ts)
        return None

    def _tcp(
        self, frame: int, ts: int, data: bytes, off: int, end: int, src: bytes, dst: bytes, ip_len: int, mac: bool,
        vlan: int | None,
    ) -> None:
        size = len(data)
        cap_end = end if end <= size else size
        doff = (data[off + 12] >> 4) * 4 if cap_end - off >= 20 else 20
        if doff < 20 or off + doff > end:
            return self.skip("bad_tcp_header", frame)
        if off + doff > cap_end:
            return self.skip("truncated_tcp", frame)
        flags = data[off + 13]
        sport = (data[off] << 8) | data[off + 1]
        dport = (data[off + 2] << 8) | data[off + 3]
        key = flow_key(src, dst, data[off : off + 4])
        flow = self._tcp_flows.get(key)
        if flow is None or (flags & 0x12 == 0x02 and flow.closed):  # new, or a SYN on a closed 4-tuple
            flow = self._open(self._tcp_flows, key, flow, frame, ts, src, sport, dst, dport, TCP, flags, vlan)
        outbound = key == flow.key
        _count(flow, outbound, data, mac, ts, ip_len)
        if flags & 0x07 or (flow.ostate if outbound else flow.rstate) == INACTIVE:  # SYN/FIN/RST, or a first packet
            self._tcp_state(flow, outbound, flags)
        payload_off = off + doff
        if payload_off < cap_end:
            flow.payload = True
        if flow.done:
            return None
        seq = u32be(data, off + 4)
        if flags & 0x02:
            stream = flow.cstream if outbound else flow.sstream
            if stream is not None:
                stream.syn(seq)
            elif outbound:
                flow.cisn = flow.cisn if flow.cisn >= 0 else seq
            else:
                flow.sisn = flow.sisn if flow.sisn >= 0 else seq
        if payload_off < cap_end and flow.want & (1 if outbound else 2):
            self._tcp_data(flow, outbound, seq, data[payload_off:cap_end], frame, ts)
        return None

    def _open(
        self, table: dict[bytes, Flow], key: bytes, old: Flow | None, frame: int, ts: int, src: bytes, sport: int,
        dst: bytes, dport: int, proto: int, flags: int, vlan: int | None,
    ) -> Flow:
        """The flow for a packet whose `key` has none in `table` (`old` is None) or a closed one it
        replaces: a new flow, indexed under both directions' keys so that each packet costs one lookup."""
        if old is not None:  # the 4-tuple is reused after a close: a new connection, as Zeek counts it
            self._forget(old)
            self._end_flow(old)
        if len(self._flows) >= self.max_flows:  # the oldest flow makes room (dicts keep creation order)
            oldest = next(iter(self._flows))
            self._forget(oldest)
            self._end_flow(oldest)
            self.skip("flow_table_full", frame)
        flow = self._new_flow(key, frame, ts, src, sport, dst, dport, proto, flags, vlan)
        table[flow.key] = flow
        table[flow.rkey] = flow
        return flow

    def _forget(self, flow: Flow) -> None:
        flow.wake = -1
        del self._flows[flow]
        table = self._tcp_flows if flow.proto == TCP else self._udp_flows
        del table[flow.key]
        table.pop(flow.rkey, None)  # the same key when a host talks to itself on one port

    def _tcp_state(self, flow: Flow, outbound: bool, flags: int) -> None:
        """Move the sending endpoint's state on SYN, FIN, RST, or its first packet."""
        state = flow.ostate if outbound else flow.rstate
        if flags & _RST:
            if state != CLOSED:
                flow.syn_then_rst = flow.syn_then_rst or (outbound and state == SYN_SENT)
                state = RESET
        elif flags & _FIN:
            if state != RESET:
                state = CLOSED
        elif flags & _SYN:
            if state == INACTIVE:
                state = SYN_ACK_SENT if flags & _ACK else SYN_SENT
            other = flow.rstate if outbound else flow.ostate
            if flags & _ACK and other == SYN_SENT:  # the handshake's reply: both sides are established
                state = ESTABLISHED
                if outbound:
                    flow.rstate = ESTABLISHED
                else:
                    flow.ostate = ESTABLISHED
        elif state == INACTIVE:
            state = PARTIAL  # first seen mid-conversation
        if outbound:
            flow.ostate = state
        else:
            flow.rstate = state
        if not flow.closed and (RESET in (flow.ostate, flow.rstate) or flow.ostate == flow.rstate == CLOSED):
            flow.closed = True
            self._schedule(flow, flow.last + TCP_CLOSE_DELAY + 1)

    def _new_flow(
        self, key: bytes, frame: int, ts: int, src: bytes, sport: int, dst: bytes, dport: int, proto: int,
        flags: int, vlan: int | None,
    ) -> Flow:
        # The opener is the client: a bare SYN says so. A SYN-ACK, or (no SYN) a packet from a server
        # port to a port that is not one, means the sender is the server, unless it was sent to a
        # broadcast or multicast address, which no client has (Zeek's likely_server_ports rule).
        syn_ack = proto == TCP and flags & (_SYN | _ACK) == (_SYN | _ACK)
        from_server = syn_ack or (
            not flags & _SYN
            and (sport < 1024 <= dport or (sport in _SERVER_PORTS and dport not in _SERVER_PORTS))
            and not _group_address(dst)
        )
        back = flow_key(dst, src, _PORTS.pack(dport, sport))
        if from_server:
            flow = Flow(back, key, dst, dport, src, sport, proto, ts, frame)
        else:
            flow = Flow(key, back, src, sport, dst, dport, proto, ts, frame)
        flow.vlan = vlan
        self._flows[flow] = None
        self._schedule(flow, _deadline(flow))
        return flow

    def _tcp_data(self, flow: Flow, outbound: bool, seq: int, payload: bytes, frame: int, ts: int) -> None:
        handler = flow.handler
        if handler is not None and not handler.reassemble:
            data = payload
        else:
            stream = _stream(flow, outbound)
            data = stream.feed(seq, payload)
            if stream.failed:
                self.skip("tcp_reassembly_overflow", frame)
                return self._stop_reading(flow)
            if not data:
                return
            if handler is None:
                handler = flow.handler = apps.choose(flow, outbound, data)
                if handler is None:
                    return self._stop_reading(flow)
                flow.service = handler.service
        if outbound:
            wanted = handler.client(self, flow, data, seq, frame, ts)
        else:
            wanted = handler.server(self, flow, data, seq, frame, ts)
        if wanted:
            flow.want = handler.want
        elif handler.successor is not None:  # e.g. STARTTLS: the TLS hello comes next
            flow.handler = handler.successor
            flow.want = flow.handler.want
            flow.service = f"{flow.service},{flow.handler.service}"
        else:
            self._stop_reading(flow)

    def _dhcp(
        self, flow: Flow, payload: bytes, frame: int, ts: int, src: bytes, sport: int, dst: bytes, dport: int,
        vlan: int | None, v6_link: bytes | None,
    ) -> None:
        """A DHCP message; `v6_link` is None for DHCPv4, else the frame's Ethernet addresses (or b"")."""
        try:
            msg = dhcp.parse_message(payload) if v6_link is None else dhcp.parse_v6(payload)
        except ValueError:
            return self.skip("bad_dhcp", frame)
        if msg.mac is None and v6_link and payload[0] not in (12, 13):
            # a DUID without a MAC (DUID-EN, DUID-UUID), not relayed: the client is the frame's own end
            msg.mac = mac_text(v6_link[:6] if dhcp.v6_from_server(msg) else v6_link[6:12])
        obs = Observation(
            ts, "dhcp", "pcap", f"{self._name}#{frame}", ip_text(src), sport, ip_text(dst), dport, "udp", msg.mac,
            vlan, host=msg.hostname, dhcp_type=msg.msg_type, dhcp_xid=msg.xid, hostname=msg.hostname,
            domain=msg.domain, requested_ip=msg.requested_ip, assigned_ip=msg.assigned_ip,
            lease_s=msg.lease_s, dhcp_params=msg.params, vendor_class=msg.vendor_class,
            dhcp_circuit_id=msg.circuit_id, dhcp_remote_id=msg.remote_id, service="dhcp",
        )
        self.emit(obs)

    def _udp_data(self, flow: Flow, outbound: bool, payload: bytes, frame: int, ts: int) -> None:
        handler = flow.handler
        if handler is None:
            handler = flow.handler = apps.choose_udp(outbound, payload)
            if handler is None:
                return self._stop_reading(flow)
            flow.service = handler.service
        if not (handler.client(self, flow, payload, 0, frame, ts) if outbound else
                handler.server(self, flow, payload, 0, frame, ts)):
            self._stop_reading(flow)

    def _stop_reading(self, flow: Flow) -> None:
        flow.done = True
        flow.cstream = flow.sstream = None  # from now on its packets are only counted (`bypass`)
        if flow.handler is not None:
            flow.handler.finish(self, flow)
            flow.handler = None

    # -- DNS ---------------------------------------------------------------------------------------

    def dns_message(
        self, payload: bytes, frame: int, ts: int, src: bytes, sport: int, dst: bytes, dport: int,
        mac: bytes | None, vlan: int | None, proto: str, service: str = "dns",
    ) -> None:
        """One DNS-family message: a query waits for its response; the pair is one observation."""
        try:
            msg = dns.parse_message(payload, netbios=service == "nbns")
        except ValueError:
            return self.skip("bad_dns", frame)
        if not msg.is_response:
            query = Observation(
                ts, "dns", "pcap", f"{self._name}#{frame}", ip_text(src), sport, ip_text(dst), dport, proto,
                mac_text(mac) if mac else None, vlan, host=msg.qname, qtype=msg.qtype, service=service,
            )
            earlier = self._dns_pending.get((src, sport, dst, dport, msg.txid))
            if earlier is not None:  # the same query again (a retry, a multicast repeat): each is reported
                del self._dns_pending[(src, sport, dst, dport, msg.txid)]
                self.emit(earlier)
            self._dns_pending[(src, sport, dst, dport, msg.txid)] = query
            return
        key = (dst, dport, src, sport, msg.txid)
        pair = self._dns_pending.pop(key) if key in self._dns_pending else None
        if pair is None:  # a response whose query was not captured: the receiver is the client
            pair = Observation(
                ts, "dns", "pcap", f"{self._name}#{frame}", ip_text(dst), dport, ip_text(src), sport, proto,
                None, vlan, host=msg.qname, qtype=msg.qtype, service=service,
            )
        pair.rcode, pair.answers = msg.rcode, msg.answers
        if msg.qname and service == "dns":
            for raw, ttl in msg.addresses:
                self._names[raw] = (msg.qname, ts + ttl * _US + DNS_NAME_GRACE)
        self.emit(pair)

    def name_for(self, addr: bytes, ts: int) -> str | None:
        """The name a client looked up to reach `addr`, if an answer naming it is still fresh."""
        entry = self._names.get(addr)
        return entry[0] if entry is not None and entry[1] >= ts else None

    # -- expiry and output -------------------------------------------------------------------------

    def emit(self, obs: Observation) -> None:
        """Hand an observation to the source's sink. The sink's failure is not the frame's: it goes up as
        `ConsumerFailed`, which `decode_frame` lets through."""
        try:
            self._emit(obs)
        except BaseException as exc:
            raise ConsumerFailed(exc) from exc

    def flow_observation(self, kind: str, flow: Flow, frame: int, ts: int) -> Observation:
        """A new observation carrying the flow's addresses, ports, MAC, VLAN and name."""
        return Observation(
            ts, kind, "pcap", f"{self._name}#{frame}", ip_text(flow.orig), flow.oport, ip_text(flow.resp),
            flow.rport, "tcp" if flow.proto == TCP else "udp", mac_text(flow.mac) if flow.mac else None,
            flow.vlan, host=flow.host or self.name_for(flow.resp, ts),
        )

    def _end_flow(self, flow: Flow) -> None:
        if flow.handler is not None:
            flow.handler.finish(self, flow)
        self._report_flow(flow, interim=False)

    def _report_flow(self, flow: Flow, interim: bool) -> None:
        """A flow record: the counts since the flow's previous report (all of them, for most flows)."""
        since, b_out, b_in, p_out, p_in = flow.reported or (flow.first, 0, 0, 0, 0)
        obs = self.flow_observation("flow", flow, flow.frame, since)
        obs.service, obs.conn_state, obs.interim = flow.service or None, conn_state(flow), interim
        obs.bytes_out, obs.bytes_in = flow.bytes_out - b_out, flow.bytes_in - b_in
        obs.packets_out, obs.packets_in = flow.pkts_out - p_out, flow.pkts_in - p_in
        obs.duration_s = (flow.last - since) / _US
        flow.reported = (flow.last, flow.bytes_out, flow.bytes_in, flow.pkts_out, flow.pkts_in)
        self.emit(obs)

    def _schedule(self, flow: Flow, when: int) -> None:
        """Have the sweep look at `flow` at capture time `when` (us), or at the next sweep if that is
        past; an earlier booking of the flow is then ignored."""
        second = max(when // SWEEP_EVERY, self._next_sweep // SWEEP_EVERY)
        if flow.wake == second:
            return
        flow.wake = second
        booked = self._wheel.get(second)
        if booked is None:
            self._wheel[second] = [flow]
            heapq.heappush(self._wheel_seconds, second)
        else:
            booked.append(flow)

    def _sweep(self, now: int) -> None:
        """Once a second of capture time: end the flows idle past their timeout, report the ones open a
        minute since their last report, and expire fragments and unanswered queries. Only the flows
        booked for a second up to `now` are looked at (in the order they began), each then booked again
        for its next deadline; a flow not yet due keeps its counts as they are."""
        now_second = now // SWEEP_EVERY
        self._next_sweep = now + SWEEP_EVERY
        due: list[Flow] = []
        while self._wheel_seconds and self._wheel_seconds[0] <= now_second:
            second = heapq.heappop(self._wheel_seconds)
            due.extend(f for f in self._wheel.pop(second) if f.wake == second)
        due.sort(key=lambda f: f.frame)
        done = []
        for f in due:
            if now - f.last > (TCP_CLOSE_DELAY if f.closed else TCP_IDLE if f.proto == TCP else UDP_IDLE):
                done.append(f)
                continue
            if now - (f.reported[0] if f.reported else f.first) >= ACTIVE_TIMEOUT:
                self._report_flow(f, interim=True)
            self._schedule(f, _deadline(f))
        for flow in done:
            self._forget(flow)
            self._end_flow(flow)
        self._fragments.expire(now)
        stale = [k for k, o in self._dns_pending.items() if now - o.ts_us > DNS_WAIT]
        for k in stale:
            self.emit(self._dns_pending.pop(k))

    def tick(self, now: int) -> None:
        """Time passes with no packet (live capture): let flows and queries expire as they would."""
        if now >= self._next_sweep:
            self._sweep(now)

    def finish(self) -> None:
        """End of input: report every open flow and unanswered query; count unjoined fragments."""
        self._fragments.flush()
        for obs in self._dns_pending.values():
            self.emit(obs)
        self._dns_pending.clear()
        for flow in sorted(self._flows, key=lambda f: f.first):
            self._end_flow(flow)
        self._flows.clear()
        self._tcp_flows.clear()
        self._udp_flows.clear()
        self._wheel.clear()
        self._wheel_seconds.clear()

    def skip(self, reason: str, frame: int) -> None:
        """Count frame `frame` as skipped for `reason`."""
        self._skips.skip(reason, f"{self._name}#{frame}")
