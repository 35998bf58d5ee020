"""Packet decoding: link, IP and transport headers by hand, on top of the flow table (`flows`).

`PacketDecoder.packet()` takes one captured frame and, through the flow table, emits Observations for
DNS transactions (UDP/53), DHCP messages, and whatever the flow's application handler reads (`apps`
chooses it from the flow's first bytes and ports); when a flow ends, the flow itself. Headers are read
with slicing and `struct` on the raw bytes; no per-packet objects are built. Malformed frames are
counted by reason and skipped.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Final

from mypy_extensions import i64, mypyc_attr

from collector.observation import EARLIEST_US, LATEST_US, TIME_OUT_OF_RANGE, Observation
from collector.packet import apps, dhcp, dns
from collector.packet.flows import (
    DNS_NAME_GRACE,
    FIN,
    INACTIVE,
    RST,
    SYN,
    TCP,
    UDP,
    US,
    ConsumerFailed,
    Flow,
    FlowTable,
    add_packet,
    count_packet,
    flow_key,
    ip_text,
    mac_text,
    stream_of,
)
from collector.packet.pcap import PcapChunks, frame_time, u32
from collector.packet.wire import u16
from collector.packet.wire import u32 as u32be
from collector.skips import SkipCounter

# Final: the compiled build (mypyc) inlines these instead of looking them up for every packet.
_VLAN_TYPES: Final = (0x8100, 0x88A8, 0x9100)
_DHCP_PORTS: Final = (67, 68)
_DHCP6_PORTS: Final = (546, 547)
_DNS_PORTS: Final[dict[int, str]] = dns.PORTS
_IPV6_EXT: Final = (0, 43, 60)  # hop-by-hop, routing, destination options: (len+1)*8 bytes
_HOST_LITTLE: Final = sys.byteorder == "little"  # a TPACKET ring's fields are in the host's order
TP_STATUS_VLAN_VALID: Final = 1 << 4
TP_STATUS_VLAN_TPID_VALID: Final = 1 << 6


class Stop:
    """A flag a source's `stop()` sets and its decoding loop reads after each frame."""

    __slots__ = ("set",)

    def __init__(self) -> None:
        self.set = False


def decode_frame(decoder: PacketDecoder, frame: int, ts: int, linktype: int, data: bytes, skips: SkipCounter,
                 name: str) -> None:
    """`decoder.packet(...)`, where a failure the decoder did not foresee on this frame is counted as
    `decoder_error` and the input goes on: one frame must not end a capture. The consumer's failure
    (`ConsumerFailed`) goes up. A frame stamped outside the times the store holds (a pcapng's resolution and
    offset can make any time of a 64-bit count) is counted as `time_out_of_range` and not decoded: its flow's
    times would be wrong too. A classic pcap's 32-bit seconds run to 2106, past them, so `decode_pcap`
    checks the frames it takes in place too."""
    if not EARLIEST_US <= ts <= LATEST_US:
        skips.skip(TIME_OUT_OF_RANGE, f"{name}#{frame}")
        return
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


def _u16_host(buf: bytes, pos: i64) -> i64:
    """A 16-bit field of a TPACKET ring, in the host's byte order."""
    if _HOST_LITTLE:
        return i64(buf[pos]) | (i64(buf[pos + 1]) << 8)
    return (i64(buf[pos]) << 8) | i64(buf[pos + 1])


@mypyc_attr(allow_interpreted_subclasses=True)  # a test injects a fault by overriding `packet`
class PacketDecoder(FlowTable):
    """Turns frames into Observations. One instance per input stream; `finish()` at its end."""

    def decode_pcap(self, chunks: PcapChunks, skips: SkipCounter, name: str, stop: Stop) -> None:
        """Every record of a classic pcap, walked where `chunks` read them: an Ethernet frame is offered
        to `bypass` in place and copied out for `packet()` only when that declines, so most packets cost
        no copy and no call into the interpreter. Failures as in `decode_frame`."""
        little, linktype = chunks.little, chunks.linktype
        ts_div: i64 = chunks.ts_div
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
                ts = frame_time(u32(buf, pos, little), u32(buf, pos + 4, little), ts_div)
                self._offer(frame, ts, linktype, buf, pos + 16, end, skips, name)
                pos = end
                if stop.set:
                    return

    def decode_tpacket_block(self, block: bytes, frame: i64, linktype: int, skips: SkipCounter, name: str) -> i64:
        """Every frame of one block of a TPACKET_V3 ring (collector/capture/afpacket.py), walked in place as
        `decode_pcap` walks a chunk; `frame` is the number of frames before the block, and the number after
        it is returned. The block starts with `tpacket_block_desc` (linux/if_packet.h): its `num_pkts` at
        byte 12 and `offset_to_first_pkt` at 16; each frame with a `tpacket3_hdr`: `tp_next_offset`, `tp_sec`,
        `tp_nsec`, `tp_snaplen`, `tp_len`, `tp_status` as 32-bit words, then `tp_mac` (16 bits) at 24 and,
        when `tp_status` has TP_STATUS_VLAN_VALID, the 802.1Q tag the kernel took off the frame (its TCI at
        32, its TPID at 36 when TP_STATUS_VLAN_TPID_VALID). Such a frame is rebuilt with its tag put back, as
        libpcap does, so the decoder sees what dumpcap would have written. The ring is in host byte order."""
        ether = linktype == 1
        count: i64 = u32(block, 12, _HOST_LITTLE)
        pos: i64 = u32(block, 16, _HOST_LITTLE)
        size: i64 = len(block)
        i: i64 = 0
        while i < count and pos + 28 <= size:
            start = pos + _u16_host(block, pos + 24)
            end = start + u32(block, pos + 12, _HOST_LITTLE)
            if end > size:
                break
            frame += 1
            ts = u32(block, pos + 4, _HOST_LITTLE) * 1_000_000 + u32(block, pos + 8, _HOST_LITTLE) // 1000
            status = u32(block, pos + 20, _HOST_LITTLE)
            if status & TP_STATUS_VLAN_VALID and ether and end - start >= 12:
                tpid = _u16_host(block, pos + 36) if status & TP_STATUS_VLAN_TPID_VALID else 0x8100
                tci = u32(block, pos + 32, _HOST_LITTLE) & 0xFFFF
                tagged = block[start : start + 12] + bytes((tpid >> 8, tpid & 0xFF, tci >> 8, tci & 0xFF)) \
                    + block[start + 12 : end]
                self._offer(frame, ts, linktype, tagged, 0, len(tagged), skips, name)
            else:
                self._offer(frame, ts, linktype, block, start, end, skips, name)
            step = u32(block, pos + 0, _HOST_LITTLE)
            if step == 0:
                break  # the block's last frame
            pos += step
            i += 1
        return frame

    def _offer(self, frame: int, ts: int, linktype: int, buf: bytes, start: i64, end: i64, skips: SkipCounter,
               name: str) -> None:
        """The frame at `buf[start:end]`: an Ethernet frame to `bypass` in place, copied out for `packet()`
        (through `decode_frame`) only when that declines."""
        if not (linktype == 1 and EARLIEST_US <= ts <= LATEST_US and self.bypass(ts, buf, start, end - start)):
            decode_frame(self, frame, ts, linktype, buf[start:end], skips, name)

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
            if flags & SYN:
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
            add_packet(flow, outbound, ts, ip_len)
            if payload:
                flow.payload = True
            if flags & (FIN | RST):
                self._tcp_state(flow, outbound, flags)
        elif proto == UDP:
            key = data[off + 12 : off + 24]
            flow = self._udp_flows.get(key)
            if flow is None or not flow.done or cap_end < head + 28:
                return False
            outbound = key == flow.key
            if outbound and flow.mac is None:
                return False
            add_packet(flow, outbound, ts, ip_len)
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
        count_packet(flow, outbound, data, mac, ts, ip_len)
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
        count_packet(flow, outbound, data, mac, ts, ip_len)
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

    def _tcp_data(self, flow: Flow, outbound: bool, seq: int, payload: bytes, frame: int, ts: int) -> None:
        handler = flow.handler
        if handler is not None and not handler.reassemble:
            data = payload
        else:
            stream = stream_of(flow, outbound)
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
            dhcp_circuit_id=msg.circuit_id, dhcp_remote_id=msg.remote_id, dhcp_relay_ip=msg.relay_ip,
            dhcp_client_ip=msg.client_ip, service="dhcp",
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

    # -- DNS, read here for the flow table and for `dns.DnsTcp` -------------------------------------------

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
                self._names[raw] = (msg.qname, ts + ttl * US + DNS_NAME_GRACE)
        self.emit(pair)
