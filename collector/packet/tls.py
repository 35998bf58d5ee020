"""TLS ClientHello parsing: server name (SNI), ALPN, the highest offered version, and ECH.

Pure. `hello_from_stream` takes the start of the client's reassembled byte stream, joins the handshake
fragments of as many records as the hello spans, and returns a `ClientHello`, or None while more bytes
are needed; `ValueError` when the bytes are not a ClientHello. `parse_handshake` reads a bare handshake
message (QUIC carries the hello in CRYPTO frames, without TLS records).

`TlsHello`, at the end, is the flow handler that gathers a client's records until its hello is whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from collector.packet.flows import Handler, Offer
from collector.packet.wire import u16

if TYPE_CHECKING:
    from collector.packet.flows import Flow, FlowTable

_VERSIONS = {0x0300: "SSLv3", 0x0301: "TLSv10", 0x0302: "TLSv11", 0x0303: "TLSv12", 0x0304: "TLSv13"}


MAX_HELLO = 64 * 1024
_ECH = 0xFE0D  # encrypted_client_hello (draft-ietf-tls-esni): the SNI seen is the outer, public name


class ClientHello:
    """What a ClientHello says about where the client is going. A plain class rather than a dataclass,
    as the other parsers' results, so that the compiled build (mypyc) makes its constructor native."""

    __slots__ = ("sni", "alpn", "version", "ech")

    def __init__(self, sni: str | None, version: str | None) -> None:
        self.sni = sni
        self.alpn: list[str] = []
        self.version = version
        self.ech = False


def version_name(code: int) -> str:
    """Zeek-style version name: TLSv12, TLSv13, TLSv13-draft23, or unknown-0xNNNN."""
    if code in _VERSIONS:
        return _VERSIONS[code]
    if code >> 8 == 0x7F:
        return f"TLSv13-draft{code & 0xFF}"
    return f"unknown-0x{code:04x}"


def version_rank(code: int) -> tuple[int, int]:
    """Order of versions: TLS 1.3 drafts (0x7fNN) above TLS 1.2 and below final TLS 1.3."""
    if code >> 8 == 0x7F:
        return (0x0304, code & 0xFF)
    return (code, 0x100 if code == 0x0304 else 0)


def _is_grease(code: int) -> bool:
    return code & 0x0F0F == 0x0A0A and code >> 8 == code & 0xFF


def begins_handshake(payload: bytes) -> bool:
    """The first bytes of a stream (one at least) can begin a TLS handshake record (type 22, major version 3)."""
    return payload[:1] == b"\x16" and payload[1:2] in (b"", b"\x03")


def looks_like_client_hello(payload: bytes) -> bool:
    """A handshake record (type 22, major version 3) whose first message is a ClientHello."""
    return len(payload) > 5 and payload[0] == 0x16 and payload[1] == 3 and payload[5] == 1


def hello_from_stream(buf: bytes) -> ClientHello | None:
    """The ClientHello at the start of a client stream, or None until enough records have arrived."""
    if not looks_like_client_hello(buf[:6]) and len(buf) >= 6:
        raise ValueError("not a tls client hello")
    handshake = bytearray()
    pos = 0
    while len(buf) >= pos + 5:
        if buf[pos] != 0x16 or buf[pos + 1] != 3:
            raise ValueError("tls hello interrupted by a non-handshake record")
        end = pos + 5 + u16(buf, pos + 3)
        handshake += buf[pos + 5 : end]
        if len(handshake) >= 4:
            need = 4 + int.from_bytes(handshake[1:4], "big")
            if need > MAX_HELLO:
                raise ValueError(f"tls client hello claims {need} bytes")
            if len(handshake) >= need:
                return parse_handshake(bytes(handshake[:need]))
        pos = end
    return None


def parse_handshake(msg: bytes) -> ClientHello:
    """Parse a complete ClientHello handshake message (type, 3-byte length, body)."""
    if not msg or msg[0] != 1:
        raise ValueError("not a client hello handshake message")
    try:
        return _parse_body(msg[4:])
    except IndexError as exc:
        raise ValueError("tls client hello cut short") from exc


def _parse_body(b: bytes) -> ClientHello:
    legacy_version = u16(b, 0)
    pos = 2 + 32
    pos += 1 + b[pos]  # session id
    pos += 2 + u16(b, pos)  # cipher suites
    pos += 1 + b[pos]  # compression methods
    hello = ClientHello(None, version_name(legacy_version))
    if pos == len(b):
        return hello  # no extensions (SSLv3 / early TLS)
    ext_end = pos + 2 + u16(b, pos)
    if ext_end > len(b):
        raise ValueError("tls client hello cut short")
    pos += 2
    while pos + 4 <= ext_end:
        etype, elen = u16(b, pos), u16(b, pos + 2)
        _read_extension(hello, etype, b[pos + 4 : pos + 4 + elen])
        pos += 4 + elen
    return hello


def _read_extension(hello: ClientHello, etype: int, data: bytes) -> None:
    if etype == 0 and len(data) > 5 and data[2] == 0:  # server_name, host_name entry
        n = u16(data, 3)
        hello.sni = data[5 : 5 + n].decode("ascii", "backslashreplace").lower().rstrip(".")
    elif etype == 16 and len(data) > 2:  # ALPN
        pos = 2
        while pos < len(data):
            n = data[pos]
            hello.alpn.append(data[pos + 1 : pos + 1 + n].decode("ascii", "backslashreplace"))
            pos += 1 + n
    elif etype == _ECH:
        hello.ech = True
    elif etype == 43 and data:  # supported_versions
        best = -1
        for i in range(0, data[0] - 1, 2):
            code = u16(data, 1 + i)
            if not _is_grease(code) and (best < 0 or version_rank(code) > version_rank(best)):
                best = code
        if best >= 0:
            hello.version = version_name(best)


# -- the handler: what the decoder reads of a flow with this protocol ------------------------------


class TlsHello(Handler):
    """Collects the client's first records until the ClientHello is whole, then reports it."""

    service = "ssl"
    want = 1

    def __init__(self) -> None:
        self.buf = b""
        self.first: tuple[int, int] | None = None  # (frame, ts) of the hello's first segment
        self.hello: ClientHello | None = None  # once read

    def client(self, dec: FlowTable, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        self.first = self.first or (frame, ts)
        self.buf += data
        try:
            hello = hello_from_stream(self.buf)
        except ValueError:
            dec.skip("bad_tls_hello", frame)
            return False
        if hello is None:
            if len(self.buf) <= MAX_HELLO:
                return True
            dec.skip("tls_hello_incomplete", frame)
            return False
        self.buf, self.hello = b"", hello
        first_frame, first_ts = self.first
        flow.host = hello.sni or flow.host
        obs = dec.flow_observation("tls", flow, first_frame, first_ts)
        obs.host = hello.sni or obs.host
        obs.sni, obs.alpn, obs.tls_version, obs.ech = hello.sni, hello.alpn, hello.version, hello.ech
        dec.emit(obs)
        return False

    def server(self, dec: FlowTable, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        return True  # the server's reply is not read, but the client's hello may not be whole yet

    def finish(self, dec: FlowTable, flow: Flow) -> None:
        if self.buf:
            dec.skip("tls_hello_incomplete", self.first[0] if self.first else flow.frame)


def opens_with_hello(data: bytes) -> bool:
    """A client's first bytes are a ClientHello's record, or too few to tell and beginning like one."""
    return looks_like_client_hello(data[:6]) or (len(data) < 6 and data[:1] == b"\x16")


class TlsOffer(Offer):
    """Offers this module's handler for TLS."""

    def tcp(self, flow: Flow, outbound: bool, data: bytes) -> Handler | None:
        """A `TlsHello` handler for a flow whose client opens with a TLS handshake record (or its first bytes)."""
        if outbound and opens_with_hello(data):
            return TlsHello()
        return None


OFFER: Final[Offer] = TlsOffer()
