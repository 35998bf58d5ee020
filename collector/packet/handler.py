"""The shape of an application handler for one flow (see `collector.packet.apps`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collector.packet.packets import Flow, PacketDecoder

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

    def client(self, dec: PacketDecoder, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        """Bytes from the client; True while more are wanted."""
        return False

    def server(self, dec: PacketDecoder, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        """Bytes from the server; True while more are wanted."""
        return False

    def finish(self, dec: PacketDecoder, flow: Flow) -> None:
        """The flow ended: report anything still held."""
