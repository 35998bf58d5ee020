"""Application handlers for TCP and UDP flows: what to read from a conversation, and when to stop reading.

The decoder picks a handler from the first bytes of a flow (in order, after reassembly) and its ports
(`choose`; `choose_udp` for a UDP flow's first datagram: QUIC Initials, BitTorrent's DHT and trackers).
A handler's `client`/`server` methods take the next bytes of that direction and return whether the
handler still wants bytes; once it does not, the flow costs only its byte counts. Handlers with
`reassemble = False` see raw segments (HTTP reads heads at segment starts, as they are in practice,
so a large download never passes through the reassembler).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from collector.observation import Observation
from collector.packet import http, logins, mail, p2p, quic, tls
from collector.packet.handler import MAX_STREAM, Handler
from collector.packet.tls_handler import TlsHello

if TYPE_CHECKING:
    from collector.packet.packets import Flow, PacketDecoder

class Http(Handler):
    """Every request head at the start of a client segment; the status of the response to each."""

    reassemble = False
    service = "http"
    want = 1  # the server's bytes only while a request waits for its response head

    def __init__(self) -> None:
        self.pending: deque[Observation] = deque()
        self.last_seq = -1

    def client(self, dec: PacketDecoder, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        if seq == self.last_seq or not http.is_request(data):  # a retransmitted request is not a second one
            return True
        self.last_seq = seq
        try:
            req = http.parse_request(data)
        except ValueError:
            dec.skip("bad_http_request", frame)
            return True
        flow.host = req.host or flow.host
        obs = dec.flow_observation("http", flow, frame, ts)
        obs.host, obs.url, obs.method, obs.user_agent = req.host or obs.host, req.url, req.method, req.user_agent
        obs.file_ext, obs.auth_mechanism = req.file_ext, req.auth_scheme
        if req.auth_scheme and req.auth_scheme.lower() == "basic":
            obs.auth_user, obs.cleartext_credentials = req.basic_user, True
        self.pending.append(obs)
        self.want = 3
        info_hash = p2p.tracker_announce(req.url)
        if info_hash is not None:
            flow.service = "http,bittorrent"
            announce = dec.flow_observation("p2p", flow, frame, ts)
            announce.service, announce.url, announce.info_hash = "bittorrent-tracker", req.url, info_hash
            dec.emit(announce)
        return True

    def server(self, dec: PacketDecoder, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        if self.pending and data.startswith(b"HTTP/"):
            obs = self.pending.popleft()
            try:
                resp = http.parse_response(data)
            except ValueError:
                dec.skip("bad_http_response", frame)
            else:
                obs.status, obs.content_type = resp.status, resp.content_type
            dec.emit(obs)
            if not self.pending:
                self.want = 1
        return True

    def finish(self, dec: PacketDecoder, flow: Flow) -> None:
        for obs in self.pending:
            dec.emit(obs)
        self.pending.clear()


class DnsTcp(Handler):
    """DNS over TCP: two-byte length-prefixed messages, several per segment or one over several."""

    service = "dns"

    def __init__(self) -> None:
        self.bufs = [b"", b""]
        self.read = 0

    def client(self, dec: PacketDecoder, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        return self._feed(0, dec, flow, data, frame, ts)

    def server(self, dec: PacketDecoder, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        return self._feed(1, dec, flow, data, frame, ts)

    def _feed(self, side: int, dec: PacketDecoder, flow: Flow, data: bytes, frame: int, ts: int) -> bool:
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


class QuicHello(Handler):
    """Decrypts the client's Initial packets until their CRYPTO frames hold the whole ClientHello."""

    service = "quic"
    want = 1
    MAX_PACKETS = 8

    def __init__(self) -> None:
        self.stream = quic.CryptoStream()
        self.first: tuple[int, int] | None = None
        self.datagrams = 0

    def client(self, dec: PacketDecoder, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        if not quic.is_long_header_initial(data):
            return True  # a later packet type: the hello may still be coming in another Initial
        self.first = self.first or (frame, ts)
        self.datagrams += 1
        try:
            for initial in quic.client_initials(data):
                hello = self.stream.add(initial.crypto)
                if hello is not None:
                    self._report(dec, flow, hello, initial.version)
                    return False
        except ValueError:
            dec.skip("bad_quic_initial", frame)
            return False
        return self.datagrams < self.MAX_PACKETS

    def server(self, dec: PacketDecoder, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        return True

    def _report(self, dec: PacketDecoder, flow: Flow, hello: tls.ClientHello, version: int) -> None:
        first_frame, first_ts = self.first or (flow.frame, flow.first)
        flow.host = hello.sni or flow.host
        obs = dec.flow_observation("quic", flow, first_frame, first_ts)
        obs.host = hello.sni or obs.host
        obs.sni, obs.alpn, obs.tls_version, obs.ech = hello.sni, hello.alpn, hello.version, hello.ech
        obs.quic_version = quic.VERSION_NAMES[version]
        dec.emit(obs)


class PeerWire(Handler):
    """A BitTorrent peer-wire handshake opens the stream: report the torrent, read nothing more."""

    service = "bittorrent"

    def client(self, dec: PacketDecoder, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        obs = dec.flow_observation("p2p", flow, frame, ts)
        obs.service, obs.info_hash = "bittorrent", p2p.peer_handshake(data)
        dec.emit(obs)
        return False


class UdpP2p(Handler):
    """The first datagram of a UDP tracker or DHT conversation: one observation, nothing more read."""

    def __init__(self, service: str, detail: str, info_hash: str | None) -> None:
        self.service, self.detail, self.info_hash = service, detail, info_hash

    def client(self, dec: PacketDecoder, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        obs = dec.flow_observation("p2p", flow, frame, ts)
        obs.service, obs.method, obs.info_hash = self.service, self.detail, self.info_hash
        dec.emit(obs)
        return False

    def server(self, dec: PacketDecoder, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        return self.client(dec, flow, data, seq, frame, ts)


def choose_udp(outbound: bool, data: bytes) -> Handler | None:
    """The handler for a UDP flow from its first datagram (None: read nothing more)."""
    if outbound and quic.is_long_header_initial(data):
        return QuicHello()
    found = p2p.dht_message(data)
    if found is not None:
        return UdpP2p("dht", *found)
    found = p2p.udp_tracker(data)
    if found is not None:
        return UdpP2p("bittorrent-udp-tracker", *found)
    return None


def choose(flow: Flow, outbound: bool, data: bytes) -> Handler | None:
    """The handler for a flow, from its ports and the first in-order bytes seen (None: read nothing)."""
    if flow.rport == 53:
        return DnsTcp()
    if flow.rport in mail.PORTS:
        return mail.Mail(mail.PORTS[flow.rport])
    if flow.rport in logins.PORTS:
        return logins.ClearLogin(logins.PORTS[flow.rport])
    if outbound:
        if tls.looks_like_client_hello(data[:6]) or (len(data) < 6 and data[:1] == b"\x16"):
            return TlsHello()
        if http.is_request(data):
            return Http()
        if data.startswith(b"\x13BitTorrent protocol") and len(data) >= 48:
            return PeerWire()
    return None


DNS_PORTS: dict[int, str] = {53: "dns", 5353: "mdns", 5355: "llmnr", 137: "nbns"}
"""UDP ports of the DNS family, and which member each carries."""

