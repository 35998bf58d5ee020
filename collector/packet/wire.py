"""Big-endian fields read from bytes by indexing, for the parsers that run on every packet.

`struct.unpack_from` is a call into the interpreter's `struct` module; in the compiled build (mypyc)
these are native functions whose indexing is native too, several times cheaper (measured with
callgrind on the decoder benchmark). Like indexing, they raise `IndexError` past the end of `buf`.
"""

from __future__ import annotations


def u16(buf: bytes, pos: int) -> int:
    """The unsigned 16-bit field at `pos`."""
    return (buf[pos] << 8) | buf[pos + 1]


def u32(buf: bytes, pos: int) -> int:
    """The unsigned 32-bit field at `pos`."""
    return (buf[pos] << 24) | (buf[pos + 1] << 16) | (buf[pos + 2] << 8) | buf[pos + 3]


def ipv4_text(raw: bytes) -> str:
    """Dotted-quad form of a 4-byte address."""
    return f"{raw[0]}.{raw[1]}.{raw[2]}.{raw[3]}"
