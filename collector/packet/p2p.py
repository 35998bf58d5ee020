"""BitTorrent and its relatives (clauses P12, P13): recognised from the bytes, whatever the port.

Pure functions over one payload: the peer-wire handshake (BEP 3), an HTTP tracker announce (BEP 3),
a UDP tracker request (BEP 15), and a DHT message (BEP 5, bencoded KRPC). Each returns what it found
(kind and info-hash) or None.

`PeerWire`, `UdpTracker` and `Dht`, at the end, are the flow handlers that report what these functions find:
the handshake and the tracker request once a flow, every DHT message of a flow (up to `MAX_DHT_MESSAGES`).
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


DHT_QUERIES: Final = ("ping", "find_node", "get_peers", "announce_peer", "get", "put", "sample_infohashes")
"""KRPC query methods kept by name (BEP 5's four, BEP 44's `get` and `put`, BEP 51's `sample_infohashes`);
any other is kept as `query`. Suricata's EVE `request_type` names them the same."""
DHT_MESSAGES: Final = (*DHT_QUERIES, "query", "response", "error")
"""What `krpc` says a message is: a query by its method, or a response or an error as such."""
MAX_DHT_MESSAGES: Final = 32
"""DHT messages read from one flow, either way; the ones after are counted as skipped (`dht_message_limit`),
so a flood in one flow makes neither memory nor the store grow without limit."""
_MAX_DEPTH: Final = 8  # KRPC nests three deep (message, response, list of values); deeper is not KRPC
_MAX_DIGITS: Final = 6  # a string of a UDP datagram is shorter than 1,000,000 bytes
_KRPC_STARTS: Final = (b"d1:ad", b"d1:rd", b"d2:ip", b"d1:el")
"""How a KRPC message opens (its keys are sorted: the arguments of a query, BEP 42's `ip` before a
response's `r`, an error's list): Suricata's probe for the protocol, the same here."""


def _string(data: bytes, pos: int) -> tuple[int, int]:
    """(start, end) of the bencoded string whose length begins at `pos`; (-1, -1) when there is none."""
    n = 0
    i = pos
    size = len(data)
    while i < size and i - pos <= _MAX_DIGITS:
        c = data[i]
        if c == 58 and i > pos:  # ':' after at least one digit
            end = i + 1 + n
            return (i + 1, end) if end <= size else (-1, -1)
        if c < 48 or c > 57:
            return -1, -1
        n = n * 10 + c - 48
        i += 1
    return -1, -1


def _skip(data: bytes, pos: int) -> int:
    """Where the bencoded value at `pos` ends; -1 when it is not well-formed or nests deeper than _MAX_DEPTH.
    One pass, no recursion: a list or dictionary raises the depth, its `e` lowers it."""
    depth = 0
    size = len(data)
    while pos < size:
        c = data[pos]
        if c == 100 or c == 108:  # 'd', 'l'
            depth += 1
            if depth > _MAX_DEPTH:
                return -1
            pos += 1
            continue
        if c == 101:  # 'e'
            if depth == 0:
                return -1
            depth -= 1
            pos += 1
        elif c == 105:  # 'i': digits, maybe a minus, up to 'e'
            close = data.find(b"e", pos + 1, pos + 22)
            digits = data[pos + 2 : close] if close > pos + 1 and data[pos + 1] == 45 else data[pos + 1 : close]
            if close < 0 or not digits.isdigit():
                return -1
            pos = close + 1
        else:
            pos = _string(data, pos)[1]
            if pos < 0:
                return -1
        if depth == 0:
            return pos
    return -1


def _info_hash(data: bytes, pos: int) -> tuple[int, str | None]:
    """(end, info-hash) of the query arguments (a dictionary) at `pos`: the `info_hash` they carry as 40
    lower-case hex digits, None when there is none of 20 bytes; end -1 when they are not well-formed."""
    if pos >= len(data) or data[pos] != 100:
        return _skip(data, pos), None
    found: str | None = None
    pos += 1
    while pos < len(data) and data[pos] != 101:
        start, end = _string(data, pos)
        if start < 0:
            return -1, None
        value_end = _skip(data, end)
        if value_end < 0:
            return -1, None
        if data[start:end] == b"info_hash":
            vstart, vend = _string(data, end)
            found = data[vstart:vend].hex() if vstart >= 0 and vend - vstart == 20 else None
        pos = value_end
    return (pos + 1 if pos < len(data) else -1), found


def krpc(data: bytes) -> tuple[str, str | None] | None:
    """(what the message is, info-hash) of one bencoded KRPC message (BEP 5): a query's method (one of
    DHT_QUERIES, else `query`), `response` or `error`; the info-hash of a query's arguments (get_peers,
    announce_peer) as 40 lower-case hex digits. None when the datagram is not a well-formed bencoded
    dictionary with a `y` of q, r or e (and a query its `q`)."""
    size = len(data)
    if size < 2 or data[0] != 100:
        return None
    y = q = b""
    info_hash: str | None = None
    pos = 1
    while pos < size and data[pos] != 101:
        start, end = _string(data, pos)
        if start < 0:
            return None
        key = data[start:end]
        if key == b"a":
            pos, info_hash = _info_hash(data, end)
        elif key == b"y" or key == b"q":
            vstart, pos = _string(data, end)
            if key == b"y":
                y = data[vstart:pos]
            else:
                q = data[vstart:pos]
        else:
            pos = _skip(data, end)
        if pos < 0:
            return None
    if pos >= size:  # the dictionary never ended
        return None
    if y == b"q" and q:
        method = q.decode("ascii", "replace")
        return (method if method in DHT_QUERIES else "query"), info_hash
    if y == b"r":
        return "response", None
    if y == b"e":
        return "error", None
    return None


# -- the handler: what the decoder reads of a flow with this protocol ------------------------------


class PeerWire(Handler):
    """A BitTorrent peer-wire handshake opens the stream: report the torrent, read nothing more."""

    service = "bittorrent"

    def client(self, dec: FlowTable, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        obs = dec.flow_observation("p2p", flow, frame, ts)
        obs.service, obs.info_hash = "bittorrent", peer_handshake(data)
        dec.emit(obs)
        return False


class UdpTracker(Handler):
    """The first datagram of a UDP tracker conversation: one observation, nothing more read."""

    service = "bittorrent-udp-tracker"

    def __init__(self, action: str, info_hash: str | None) -> None:
        self.action, self.info_hash = action, info_hash

    def client(self, dec: FlowTable, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        obs = dec.flow_observation("p2p", flow, frame, ts)
        obs.service, obs.method, obs.info_hash = self.service, self.action, self.info_hash
        dec.emit(obs)
        return False

    def server(self, dec: FlowTable, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        return self.client(dec, flow, data, seq, frame, ts)


class Dht(Handler):
    """Every KRPC message of a DHT flow, either way, as an observation of its own (up to MAX_DHT_MESSAGES;
    the rest counted as `dht_message_limit`); one that is not well-formed is counted (`dht_malformed`) and
    the flow read on. Each goes from the node that asked to the node asked, as a DNS transaction goes from
    client to server: a query from its sender (so what another node sought is never the device's), a
    response or an error from the node it answers."""

    service = "dht"

    def __init__(self) -> None:
        self.messages = 0

    def _message(self, dec: FlowTable, flow: Flow, data: bytes, frame: int, ts: int, outbound: bool) -> bool:
        self.messages += 1
        if self.messages > MAX_DHT_MESSAGES:
            dec.skip("dht_message_limit", frame)
            return True
        found = krpc(data)
        if found is None:
            dec.skip("dht_malformed", frame)
            return True
        method, info_hash = found
        query = method != "response" and method != "error"
        obs = dec.flow_observation("p2p", flow, frame, ts, reverse=query != outbound)
        obs.service, obs.method, obs.info_hash = "dht", method, info_hash
        dec.emit(obs)
        return True

    def client(self, dec: FlowTable, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        return self._message(dec, flow, data, frame, ts, True)

    def server(self, dec: FlowTable, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        return self._message(dec, flow, data, frame, ts, False)


class P2pOffer(Offer):
    """Offers this module's handler for BitTorrent's peer wire, UDP trackers and the DHT."""

    def tcp(self, flow: Flow, outbound: bool, data: bytes) -> Handler | None:
        """A `PeerWire` handler for a flow whose client opens with the peer-wire handshake."""
        return PeerWire() if outbound and data.startswith(_HANDSHAKE) and len(data) >= 48 else None

    def udp(self, outbound: bool, data: bytes) -> Handler | None:
        """A `Dht` handler for a UDP flow that opens as a KRPC message does, a `UdpTracker` for one that
        opens with a UDP tracker request."""
        if data.startswith(_KRPC_STARTS):
            return Dht()
        found = udp_tracker(data)
        if found is not None:
            return UdpTracker(*found)
        return None


OFFER: Final[Offer] = P2pOffer()
