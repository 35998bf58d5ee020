"""BitTorrent and its relatives (clauses P12, P13): recognised from the bytes, whatever the port.

Pure functions over one payload: the peer-wire handshake (BEP 3), an HTTP tracker announce (BEP 3),
a UDP tracker request (BEP 15), and a DHT message (BEP 5, bencoded KRPC). Each returns what it found
(kind and info-hash) or None.
"""

from __future__ import annotations

import re
import struct
from urllib.parse import unquote_to_bytes, urlsplit

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
