"""The flow table: every open conversation, its counts and TCP states, and when it ends.

`FlowTable` is the state the packet path keeps between packets: flows by either direction's key, DNS
queries waiting for their answers, the names those answers gave addresses, IP fragments waiting for the
rest, and a timing wheel that says when each flow is next due to end (idle past its timeout) or to be
reported (a minute since its last report). It is also what an application handler (`Handler`, below)
is handed: `emit`, `flow_observation`, `dns_message` and `skip`. `packets.PacketDecoder` adds the link,
IP and transport decoding on top.

Byte convention for flows: IP bytes (IP header and payload, link header excluded), the same as Zeek's
`orig_ip_bytes`/`resp_ip_bytes`, taken from the IP length field, so a capture with a short snap length
(headers only) still counts every byte; only a frame whose IP or transport header was cut is skipped.
"""

from __future__ import annotations

import heapq
import socket
import struct
from collections.abc import Callable
from typing import Final

from mypy_extensions import mypyc_attr

from collector.observation import Observation
from collector.packet.frag import FragmentReassembler
from collector.packet.tcp import Reassembler
from collector.packet.wire import ipv4_text
from collector.skips import SkipCounter

TCP: Final = 6
UDP: Final = 17
FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
ACK: Final = 0x10
# Final: the compiled build (mypyc) inlines these instead of looking them up for every packet.
_SERVER_PORTS: Final = frozenset({53, 67, 123, 137, 138, 161, 443, 514, 1900, 3478, 5353, 5355})


def _group_address(addr: bytes) -> bool:
    """Broadcast or multicast: IPv4 224/4 and 255.255.255.255, IPv6 ff00::/8."""
    return addr[0] >= 224 if len(addr) == 4 else addr[0] == 0xFF


US: Final = 1_000_000
MAX_FLOWS: Final = 200_000  # beyond this the oldest flow is reported and forgotten: memory stays bounded
ACTIVE_TIMEOUT: Final = 60 * US  # a flow still open is reported every minute, with the counts since its last report
TCP_CLOSE_DELAY: Final = 5 * US  # Zeek's tcp_close_delay: a closed flow lingers for late ACKs
TCP_IDLE: Final = 300 * US  # Zeek's tcp_inactivity_timeout
UDP_IDLE: Final = 60 * US  # Zeek's udp_inactivity_timeout
DNS_WAIT: Final = 30 * US  # an unanswered query is reported after this
DNS_NAME_GRACE: Final = 3600 * US  # a name is kept past its TTL: clients connect after the TTL runs out
SWEEP_EVERY: Final = US  # expire flows once per second of capture time

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
        self.handler: Handler | None = None
        self.service = ""
        self.cstream: Reassembler | None = None  # made when a TCP direction's bytes are first needed
        self.sstream: Reassembler | None = None
        self.cisn = self.sisn = -1  # each side's SYN sequence number, until its reassembler is made
        self.wake = -1  # the second of capture time the sweep looks at this flow next; -1 once forgotten


def count_packet(flow: Flow, outbound: bool, data: bytes, mac: bool, ts: int, ip_len: int) -> None:
    """One packet's share of its flow: time, bytes, packets, and the client's MAC when first seen."""
    if outbound and flow.mac is None and mac:
        flow.mac = data[6:12]
    add_packet(flow, outbound, ts, ip_len)


def add_packet(flow: Flow, outbound: bool, ts: int, ip_len: int) -> None:
    """One packet's time, bytes and packet count in its flow."""
    flow.last = ts
    if outbound:
        flow.bytes_out += ip_len
        flow.pkts_out += 1
    else:
        flow.bytes_in += ip_len
        flow.pkts_in += 1


def stream_of(flow: Flow, outbound: bool) -> Reassembler:
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


def deadline(flow: Flow) -> int:
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


MAX_STREAM = 64 * 1024
"""Bytes a handler reads from one direction before it gives up on a conversation."""


class Handler:
    """Base: reads nothing, wants nothing."""

    reassemble = True
    service = ""
    successor: Handler | None = None
    """Set when the handler is done but the conversation goes on in another protocol (STARTTLS)."""
    want = 3
    """Directions whose bytes the handler reads now: 1 client, 2 server. The decoder does not even cut
    out the payload of a direction the handler does not want (an HTTP response body, say)."""

    def client(self, dec: FlowTable, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        """Bytes from the client; True while more are wanted."""
        return False

    def server(self, dec: FlowTable, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        """Bytes from the server; True while more are wanted."""
        return False

    def finish(self, dec: FlowTable, flow: Flow) -> None:
        """The flow ended: report anything still held."""


class Offer:
    """One protocol's entry in `apps`' tables: from a flow's ports and first bytes (in order, after
    reassembly), its handler for the flow, or None. A native class rather than a function, so that the
    compiled decoder asks each entry with a direct call."""

    def tcp(self, flow: Flow, outbound: bool, data: bytes) -> Handler | None:
        """The handler for a TCP flow whose client (`outbound`) or server sent `data` first."""
        return None

    def udp(self, outbound: bool, data: bytes) -> Handler | None:
        """The handler for a UDP flow whose first datagram is `data`."""
        return None


@mypyc_attr(allow_interpreted_subclasses=True)  # PacketDecoder is subclassed by a test
class FlowTable:
    """The packet path's state between packets, and what handlers call to report what they read."""

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
        """Frames decoded so far."""
        self.max_flows = MAX_FLOWS
        self._fragments = FragmentReassembler(lambda reason: self._skips.skip(reason, f"{self._name}#{self.packets}"))

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
        if flags & RST:
            if state != CLOSED:
                flow.syn_then_rst = flow.syn_then_rst or (outbound and state == SYN_SENT)
                state = RESET
        elif flags & FIN:
            if state != RESET:
                state = CLOSED
        elif flags & SYN:
            if state == INACTIVE:
                state = SYN_ACK_SENT if flags & ACK else SYN_SENT
            other = flow.rstate if outbound else flow.ostate
            if flags & ACK and other == SYN_SENT:  # the handshake's reply: both sides are established
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
        syn_ack = proto == TCP and flags & (SYN | ACK) == (SYN | ACK)
        from_server = syn_ack or (
            not flags & SYN
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
        self._schedule(flow, deadline(flow))
        return flow

    # -- DNS ---------------------------------------------------------------------------------------

    def dns_message(
        self, payload: bytes, frame: int, ts: int, src: bytes, sport: int, dst: bytes, dport: int,
        mac: bytes | None, vlan: int | None, proto: str, service: str = "dns",
    ) -> None:
        """One DNS-family message: a query waits (in `_dns_pending`) for its response; the pair is one
        observation. The decoder (`packets.PacketDecoder`) reads it; this table only keeps what waits."""
        raise NotImplementedError

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

    def flow_observation(self, kind: str, flow: Flow, frame: int, ts: int, reverse: bool = False) -> Observation:
        """A new observation carrying the flow's addresses, ports, MAC, VLAN and name; `reverse`: from the
        flow's server to its client (a DHT query the server side sent), with no MAC (the frame's source is
        the server's, or the gateway's) and no name (the name is the server's)."""
        proto = "tcp" if flow.proto == TCP else "udp"
        if reverse:
            return Observation(ts, kind, "pcap", f"{self._name}#{frame}", ip_text(flow.resp), flow.rport,
                               ip_text(flow.orig), flow.oport, proto, None, flow.vlan)
        return Observation(
            ts, kind, "pcap", f"{self._name}#{frame}", ip_text(flow.orig), flow.oport, ip_text(flow.resp),
            flow.rport, proto, mac_text(flow.mac) if flow.mac else None,
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
        obs.duration_s = (flow.last - since) / US
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
            self._schedule(f, deadline(f))
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
