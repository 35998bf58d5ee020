"""The TLS ClientHello handler: on port 443, after STARTTLS, wherever a TLS stream starts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from collector.packet import tls
from collector.packet.handler import Handler

if TYPE_CHECKING:
    from collector.packet.packets import Flow, PacketDecoder


class TlsHello(Handler):
    """Collects the client's first records until the ClientHello is whole, then reports it."""

    service = "ssl"
    want = 1

    def __init__(self) -> None:
        self.buf = b""
        self.first: tuple[int, int] | None = None  # (frame, ts) of the hello's first segment

    def client(self, dec: PacketDecoder, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        self.first = self.first or (frame, ts)
        self.buf += data
        try:
            hello = tls.hello_from_stream(self.buf)
        except ValueError:
            dec.skip("bad_tls_hello", frame)
            return False
        if hello is None:
            if len(self.buf) <= tls.MAX_HELLO:
                return True
            dec.skip("tls_hello_incomplete", frame)
            return False
        self.buf = b""
        first_frame, first_ts = self.first
        flow.host = hello.sni or flow.host
        obs = dec.flow_observation("tls", flow, first_frame, first_ts)
        obs.host = hello.sni or obs.host
        obs.sni, obs.alpn, obs.tls_version, obs.ech = hello.sni, hello.alpn, hello.version, hello.ech
        dec.emit(obs)
        return False

    def server(self, dec: PacketDecoder, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        return True  # the server's reply is not read, but the client's hello may not be whole yet

    def finish(self, dec: PacketDecoder, flow: Flow) -> None:
        if self.buf:
            dec.skip("tls_hello_incomplete", self.first[0] if self.first else flow.frame)
