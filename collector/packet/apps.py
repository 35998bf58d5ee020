"""Which application handler reads a flow: one table for TCP, one for UDP.

Each protocol module holds its pure parser and, at its end, its handler (a `flows.Handler`) with a
function that says from a flow's ports and first bytes whether the handler is the one: `tcp_handler(flow,
outbound, data)` or `udp_handler(outbound, data)`. The decoder asks the functions below, in order, when
a flow's first bytes (in order, after reassembly) arrive; the first handler offered reads the flow. A
handler's `client`/`server` methods take the next bytes of that direction and return whether it still
wants bytes; once it does not, the flow costs only its byte counts. A new protocol is a module with a
parser, a handler and its `tcp_handler` or `udp_handler`, and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from collector.packet import dns, http, logins, mail, p2p, quic, tls
from collector.packet.flows import Handler

if TYPE_CHECKING:
    from collector.packet.flows import Flow

TCP_HANDLERS: Final[tuple[Callable[[Flow, bool, bytes], Handler | None], ...]] = (
    dns.tcp_handler,  # by port: DNS over TCP, mail, clear-text logins
    mail.tcp_handler,
    logins.tcp_handler,
    tls.tcp_handler,  # by the client's first bytes: TLS, HTTP, BitTorrent's peer wire
    http.tcp_handler,
    p2p.tcp_handler,
)
UDP_HANDLERS: Final[tuple[Callable[[bool, bytes], Handler | None], ...]] = (
    quic.udp_handler,
    p2p.udp_handler,
)


def choose(flow: Flow, outbound: bool, data: bytes) -> Handler | None:
    """The handler for a TCP flow, from its ports and the first in-order bytes seen (None: read nothing)."""
    for offer in TCP_HANDLERS:
        handler = offer(flow, outbound, data)
        if handler is not None:
            return handler
    return None


def choose_udp(outbound: bool, data: bytes) -> Handler | None:
    """The handler for a UDP flow from its first datagram (None: read nothing more)."""
    for offer in UDP_HANDLERS:
        handler = offer(outbound, data)
        if handler is not None:
            return handler
    return None
