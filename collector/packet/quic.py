"""QUIC Initial packets: remove the protection a passive observer can remove, and read the ClientHello.

Initial packets are encrypted with keys derived from the client's Destination Connection ID and a salt
published in the RFC, so anyone on the path can decrypt them (RFC 9001 §5.2; QUIC v2: RFC 9369 §3.3).
`client_initials` decrypts every Initial packet in a client datagram (coalesced packets included) and
returns its CRYPTO frames; `CryptoStream` joins frames, from one or several packets, into the TLS
ClientHello. Pure: bytes in, values out, `ValueError` for anything malformed or that fails to decrypt.

`QuicHello`, at the end, is the flow handler that feeds a UDP flow's Initial packets to these functions.
"""

from __future__ import annotations

import hashlib
import struct
from functools import lru_cache
from typing import TYPE_CHECKING, Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from collector.packet import tls
from collector.packet.flows import Handler, Offer
from collector.packet.wire import u32

if TYPE_CHECKING:
    from collector.packet.flows import Flow, FlowTable

V1, V2 = 0x00000001, 0x6B3343CF
# RFC 9001 §5.2 and RFC 9369 §3.3.1: initial salts; §5.1 / §3.3.2: key derivation labels.
_SALT = {
    V1: bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"),
    V2: bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9"),
}
_LABELS = {V1: (b"quic key", b"quic iv", b"quic hp"), V2: (b"quicv2 key", b"quicv2 iv", b"quicv2 hp")}
_INITIAL_TYPE = {V1: 0, V2: 1}  # long-header packet type bits of an Initial packet
VERSION_NAMES = {V1: "1", V2: "2"}


class Initial:
    """The decrypted CRYPTO frames of one client Initial packet (a plain class, as the other parsers'
    results, so that the compiled build makes its constructor native)."""

    __slots__ = ("version", "dcid", "crypto")

    def __init__(self, version: int, dcid: bytes, crypto: tuple[tuple[int, bytes], ...]) -> None:
        self.version, self.dcid = version, dcid
        self.crypto = crypto
        """(offset, data) of each CRYPTO frame."""


def is_long_header_initial(datagram: bytes) -> bool:
    """Cheap test for the start of a v1 or v2 Initial packet (no decryption)."""
    if len(datagram) < 7 or datagram[0] & 0xC0 != 0xC0:
        return False
    version = u32(datagram, 1)
    return version in _SALT and (datagram[0] >> 4) & 0x03 == _INITIAL_TYPE[version]


class _Hmac:
    """HMAC-SHA256 (RFC 2104) under one key, for the messages HKDF signs with it: the key's inner and
    outer pads are hashed once, and each message then costs two copies of those states, half the time of
    a one-shot `hmac.digest` (which sets up OpenSSL's HMAC anew each call; measured with `perf`). Keys
    here (the salts, then 32-byte secrets) are shorter than SHA-256's 64-byte block."""

    __slots__ = ("inner", "outer")

    def __init__(self, key: bytes) -> None:
        block = key.ljust(64, b"\x00")
        self.inner = hashlib.sha256(block.translate(_IPAD))
        self.outer = hashlib.sha256(block.translate(_OPAD))

    def digest(self, msg: bytes) -> bytes:
        """HMAC(key, msg)."""
        inner = self.inner.copy()
        inner.update(msg)
        outer = self.outer.copy()
        outer.update(inner.digest())
        return outer.digest()


_IPAD = bytes(b ^ 0x36 for b in range(256))  # translation tables: each key byte XOR the pad byte
_OPAD = bytes(b ^ 0x5C for b in range(256))
_SALT_HMAC = {version: _Hmac(salt) for version, salt in _SALT.items()}


def _hkdf_expand_label(mac: _Hmac, label: bytes, length: int) -> bytes:
    """HKDF-Expand-Label (RFC 8446 §7.1) with an empty context, for lengths up to one SHA-256 block."""
    full = b"tls13 " + label
    return mac.digest(struct.pack("!HB", length, len(full)) + full + b"\x00\x01")[:length]


def client_keys(version: int, dcid: bytes) -> tuple[bytes, bytes, bytes]:
    """(key, iv, header-protection key) for the client's Initial packets on connection `dcid`."""
    initial = _SALT_HMAC[version].digest(dcid)  # HKDF-Extract(salt, dcid)
    secret = _Hmac(_hkdf_expand_label(_Hmac(initial), b"client in", 32))
    key_label, iv_label, hp_label = _LABELS[version]
    return (_hkdf_expand_label(secret, key_label, 16), _hkdf_expand_label(secret, iv_label, 12),
            _hkdf_expand_label(secret, hp_label, 16))


class _Ciphers:
    """One connection's Initial decryption: the AEAD, its IV, and the header-protection cipher."""

    __slots__ = ("aead", "iv", "mask")

    def __init__(self, version: int, dcid: bytes) -> None:
        key, iv, hp = client_keys(version, dcid)
        self.aead = AESGCM(key)
        self.iv = int.from_bytes(iv, "big")
        self.mask = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()  # ECB: each block on its own


@lru_cache(maxsize=64)
def _ciphers(version: int, dcid: bytes) -> _Ciphers:
    """The ciphers of a recent connection: a hello spread over several Initials, or a retransmitted one,
    costs the key derivation and the cipher set-up once."""
    return _Ciphers(version, dcid)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(buf):
        raise ValueError("quic varint runs past the packet")
    size = 1 << (buf[pos] >> 6)
    if pos + size > len(buf):
        raise ValueError("quic varint runs past the packet")
    value = buf[pos] & 0x3F
    for b in buf[pos + 1 : pos + size]:
        value = (value << 8) | b
    return value, pos + size


def client_initials(datagram: bytes) -> list[Initial]:
    """Decrypt every Initial packet at the start of a client datagram (they may be coalesced)."""
    found = []
    pos = 0
    while pos < len(datagram) and is_long_header_initial(datagram[pos:]):
        initial, pos = _one_initial(datagram, pos)
        found.append(initial)
    return found


def _one_initial(buf: bytes, start: int) -> tuple[Initial, int]:
    version = u32(buf, start + 1)
    pos = start + 5
    dcid_len = buf[pos]
    dcid = buf[pos + 1 : pos + 1 + dcid_len]
    pos += 1 + dcid_len
    if pos >= len(buf) or dcid_len > 20:
        raise ValueError("quic connection id runs past the packet")
    pos += 1 + buf[pos]  # source connection id
    token_len, pos = _varint(buf, pos)
    length, pn_offset = _varint(buf, pos + token_len)
    end = pn_offset + length
    if end > len(buf) or length < 20:
        raise ValueError("quic initial packet longer than its datagram")
    ciphers = _ciphers(version, dcid)
    mask = ciphers.mask.update(buf[pn_offset + 4 : pn_offset + 20])
    first = buf[start] ^ (mask[0] & 0x0F)
    pn_len = (first & 0x03) + 1
    pn = 0
    for i in range(pn_len):
        pn = (pn << 8) | (buf[pn_offset + i] ^ mask[1 + i])
    pn_bytes = pn.to_bytes(pn_len, "big")
    header = bytes([first]) + buf[start + 1 : pn_offset] + pn_bytes
    nonce = (ciphers.iv ^ pn).to_bytes(12, "big")
    try:
        plain = ciphers.aead.decrypt(nonce, buf[pn_offset + pn_len : end], header)
    except Exception as exc:  # cryptography raises InvalidTag: not a packet for these keys
        raise ValueError("quic initial does not decrypt") from exc
    return Initial(version, dcid, tuple(_crypto_frames(plain))), end


def _crypto_frames(plain: bytes) -> list[tuple[int, bytes]]:
    frames = []
    pos = 0
    while pos < len(plain):
        kind = plain[pos]
        pos += 1
        if kind in (0x00, 0x01):  # PADDING, PING
            continue
        if kind == 0x06:  # CRYPTO: offset, length, data
            offset, pos = _varint(plain, pos)
            size, pos = _varint(plain, pos)
            frames.append((offset, plain[pos : pos + size]))
            pos += size
        elif kind in (0x02, 0x03):  # ACK: largest, delay, range count, first range, ranges (+ ECN)
            pos = _skip_ack(plain, pos, kind == 0x03)
        elif kind == 0x1C:  # CONNECTION_CLOSE: error, frame type, reason
            _, pos = _varint(plain, pos)
            _, pos = _varint(plain, pos)
            reason, pos = _varint(plain, pos)
            pos += reason
        else:
            break  # no other frame may appear in an Initial; stop rather than guess
    return frames


def _skip_ack(buf: bytes, pos: int, ecn: bool) -> int:
    _, pos = _varint(buf, pos)
    _, pos = _varint(buf, pos)
    ranges, pos = _varint(buf, pos)
    _, pos = _varint(buf, pos)
    for _ in range(2 * ranges + (3 if ecn else 0)):
        _, pos = _varint(buf, pos)
    return pos


class CryptoStream:
    """CRYPTO frame data of one connection, put in order until the ClientHello is whole."""

    def __init__(self) -> None:
        self.parts: dict[int, bytes] = {}

    def add(self, frames: tuple[tuple[int, bytes], ...]) -> tls.ClientHello | None:
        """Add frames; the ClientHello once it is complete, None until then."""
        for offset, data in frames:
            if offset + len(data) > tls.MAX_HELLO:
                raise ValueError("quic crypto data beyond any client hello")
            if len(data) > len(self.parts.get(offset, b"")):
                self.parts[offset] = data
        stream = bytearray()
        for offset in sorted(self.parts):
            if offset > len(stream):
                return None
            stream += self.parts[offset][len(stream) - offset :]
        if len(stream) < 4:
            return None
        need = 4 + int.from_bytes(stream[1:4], "big")
        return tls.parse_handshake(bytes(stream[:need])) if len(stream) >= need else None


# -- the handler: what the decoder reads of a flow with this protocol ------------------------------


class QuicHello(Handler):
    """Decrypts the client's Initial packets until their CRYPTO frames hold the whole ClientHello."""

    service = "quic"
    want = 1
    MAX_PACKETS = 8

    def __init__(self) -> None:
        self.stream = CryptoStream()
        self.first: tuple[int, int] | None = None
        self.datagrams = 0

    def client(self, dec: FlowTable, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        if not is_long_header_initial(data):
            return True  # a later packet type: the hello may still be coming in another Initial
        self.first = self.first or (frame, ts)
        self.datagrams += 1
        try:
            for initial in client_initials(data):
                hello = self.stream.add(initial.crypto)
                if hello is not None:
                    self._report(dec, flow, hello, initial.version)
                    return False
        except ValueError:
            dec.skip("bad_quic_initial", frame)
            return False
        return self.datagrams < self.MAX_PACKETS

    def server(self, dec: FlowTable, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        return True

    def _report(self, dec: FlowTable, flow: Flow, hello: tls.ClientHello, version: int) -> None:
        first_frame, first_ts = self.first or (flow.frame, flow.first)
        flow.host = hello.sni or flow.host
        obs = dec.flow_observation("quic", flow, first_frame, first_ts)
        obs.host = hello.sni or obs.host
        obs.sni, obs.alpn, obs.tls_version, obs.ech = hello.sni, hello.alpn, hello.version, hello.ech
        obs.quic_version = VERSION_NAMES[version]
        dec.emit(obs)


class QuicOffer(Offer):
    """Offers this module's handler for QUIC."""

    def udp(self, outbound: bool, data: bytes) -> Handler | None:
        """A `QuicHello` handler for a UDP flow whose client opens with a long-header Initial packet."""
        return QuicHello() if outbound and is_long_header_initial(data) else None


OFFER: Final[Offer] = QuicOffer()
