"""How a network endpoint is written in the text that people read (`decode`, `breaches`, `explain`):
`address:port`, an IPv6 address in brackets (`[2001:db8::1]:443`, as in a URL: RFC 3986, RFC 5952 §6),
so that the port is never read as the address's last group. JSON keeps the address and port apart."""

from __future__ import annotations


def endpoint(address: str | None, port: int | None = None) -> str:
    """`address:port`, bracketing an IPv6 address; the address alone when there is no port, "" when there
    is no address."""
    if not address:
        return ""
    shown = f"[{address}]" if ":" in address else address
    return f"{shown}:{port}" if port else shown
