"""Which application handler reads a flow: one table for TCP, one for UDP.

Each protocol module holds its pure parser and, at its end, its handler (a `flows.Handler`) and its
`OFFER` (a `flows.Offer`), which says from a flow's ports and first bytes whether that handler is the one.
The decoder asks the offers below, in order, when a flow's first bytes (in order, after reassembly)
arrive; the first handler offered reads the flow. A
handler's `client`/`server` methods take the next bytes of that direction and return whether it still
wants bytes; once it does not, the flow costs only its byte counts. A new protocol is a module with a
parser, a handler and its `OFFER`, and one entry here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from collector.packet import dns, http, logins, mail, p2p, quic, tls
from collector.packet.flows import Handler, Offer

if TYPE_CHECKING:
    from collector.packet.flows import Flow

TCP_OFFERS: Final[tuple[Offer, ...]] = (
    dns.OFFER,  # by port: DNS over TCP, mail, clear-text logins
    mail.OFFER,
    logins.OFFER,
    tls.OFFER,  # by the client's first bytes: TLS, HTTP, BitTorrent's peer wire
    http.OFFER,
    p2p.OFFER,
)
UDP_OFFERS: Final[tuple[Offer, ...]] = (
    quic.OFFER,
    p2p.OFFER,
)


def choose(flow: Flow, outbound: bool, data: bytes) -> Handler | None:
    """The handler for a TCP flow, from its ports and the first in-order bytes seen (None: read nothing)."""
    for offer in TCP_OFFERS:
        handler = offer.tcp(flow, outbound, data)
        if handler is not None:
            return handler
    return None


def choose_udp(outbound: bool, data: bytes) -> Handler | None:
    """The handler for a UDP flow from its first datagram (None: read nothing more)."""
    for offer in UDP_OFFERS:
        handler = offer.udp(outbound, data)
        if handler is not None:
            return handler
    return None
