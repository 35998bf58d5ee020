"""BitTorrent and its relatives (clauses P12, P13): recognised from the bytes, whatever the port.

Pure functions over one payload: the peer-wire handshake (BEP 3), an HTTP tracker announce (BEP 3),
a UDP tracker request (BEP 15), and a DHT message (BEP 5, bencoded KRPC). Each returns what it found
(kind and info-hash) or None.

`PeerWire` and `UdpP2p`, at the end, are the flow handlers that report what these functions find.
"""

from __future__ import annotations

import re
import struct
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote_to_bytes, urlsplit

from collector.packet.flows import Handler, Offer

if TYPE_CHECKING:
    from collector.packet.flows import Flow, FlowTable

_HANDSHAKE = b"\x13BitTorrent protocol"
_UDP_MAGIC = 0x41727101980
_INFO_HASH = re.compile(r"(?:^|&)info_hash=([^&]*)")


def peer_handshake(data: bytes) -> str | None:
    """Info-hash (hex) of a peer-wire handshake at the start of a stream."""
    if data.startswith(_HANDSHAKE) and len(data) >= 48:
        return data[28:48].hex()
    return None


def tracker_announce(url: str) -> str | None:
    """Info-hash (hex) of an HTTP tracker announce or scrape URL; None for any other URL."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. a malformed [IPv6] host
        return None
    if not parts.path.endswith(("/announce", "/scrape", "/announce.php")):
        return None
    match = _INFO_HASH.search(parts.query)
    if match is None:
        return None
    raw = unquote_to_bytes(match.group(1))
    return raw.hex() if len(raw) == 20 else None


def udp_tracker(data: bytes) -> tuple[str, str | None] | None:
    """(`connect` or `announce`, info-hash) for a BEP 15 tracker request."""
    if len(data) >= 16:
        magic, action = struct.unpack_from("!QI", data, 0)
        if magic == _UDP_MAGIC and action == 0:
            return "connect", None
    if len(data) >= 98 and struct.unpack_from("!I", data, 8)[0] == 1:
        return "announce", data[16:36].hex()
    return None


def dht_message(data: bytes) -> tuple[str, str | None] | None:
    """(query method or `response`, info-hash) for a bencoded KRPC message."""
    if not data.startswith(b"d1:") or b"1:y1:" not in data:
        return None
    y = data[data.index(b"1:y1:") + 5 : data.index(b"1:y1:") + 6]
    if y == b"q":
        q = re.search(rb"1:q(\d+):", data)
        method = data[q.end() : q.end() + int(q.group(1))].decode("ascii", "replace") if q else "query"
    else:
        method = "response" if y == b"r" else "error"
    h = data.find(b"9:info_hash20:")
    return method, (data[h + 14 : h + 34].hex() if h >= 0 and len(data) >= h + 34 else None)


# -- the handler: what the decoder reads of a flow with this protocol ------------------------------


class PeerWire(Handler):
    """A BitTorrent peer-wire handshake opens the stream: report the torrent, read nothing more."""

    service = "bittorrent"

    def client(self, dec: FlowTable, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        obs = dec.flow_observation("p2p", flow, frame, ts)
        obs.service, obs.info_hash = "bittorrent", peer_handshake(data)
        dec.emit(obs)
        return False


class UdpP2p(Handler):
    """The first datagram of a UDP tracker or DHT conversation: one observation, nothing more read."""

    def __init__(self, service: str, detail: str, info_hash: str | None) -> None:
        self.service, self.detail, self.info_hash = service, detail, info_hash

    def client(self, dec: FlowTable, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        obs = dec.flow_observation("p2p", flow, frame, ts)
        obs.service, obs.method, obs.info_hash = self.service, self.detail, self.info_hash
        dec.emit(obs)
        return False

    def server(self, dec: FlowTable, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        return self.client(dec, flow, data, seq, frame, ts)


class P2pOffer(Offer):
    """Offers this module's handler for BitTorrent's peer wire, UDP trackers and the DHT."""

    def tcp(self, flow: Flow, outbound: bool, data: bytes) -> Handler | None:
        """A `PeerWire` handler for a flow whose client opens with the peer-wire handshake."""
        return PeerWire() if outbound and data.startswith(_HANDSHAKE) and len(data) >= 48 else None

    def udp(self, outbound: bool, data: bytes) -> Handler | None:
        """A `UdpP2p` handler for a UDP flow that opens with a DHT message or a UDP tracker request."""
        found = dht_message(data)
        if found is not None:
            return UdpP2p("dht", *found)
        found = udp_tracker(data)
        if found is not None:
            return UdpP2p("bittorrent-udp-tracker", *found)
        return None


OFFER: Final[Offer] = P2pOffer()
