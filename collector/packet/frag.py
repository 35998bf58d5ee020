"""IPv4 and IPv6 fragment reassembly, bounded.

Fragments are held per datagram (source, destination, protocol, identification) until the pieces from
offset 0 to the end of the last fragment are all there; then the whole transport payload is returned.
Limits keep memory flat whatever arrives: a datagram may not exceed 65,535 bytes, at most MAX_DATAGRAMS
are held at once (the oldest is dropped to make room), and a datagram still incomplete after TIMEOUT
is dropped. Every drop is counted by reason. Overlapping pieces keep the bytes that arrived first.
"""

from __future__ import annotations

from collections.abc import Callable

MAX_DATAGRAMS = 4096
MAX_SIZE = 65535
TIMEOUT_US = 30_000_000  # as Linux's ipfrag_time


class _Datagram:
    __slots__ = ("first", "pieces", "total", "size")

    def __init__(self, ts: int) -> None:
        self.first = ts
        self.pieces: dict[int, bytes] = {}
        self.total: int | None = None  # known once the last fragment (more=0) arrives
        self.size = 0


class FragmentReassembler:
    """Holds fragments until a datagram is whole. `drop(reason)` counts what is given up."""

    def __init__(self, drop: Callable[[str], None]) -> None:
        self._held: dict[tuple, _Datagram] = {}
        self._drop = drop

    def add(self, key: tuple, offset: int, data: bytes, more: bool, ts: int) -> bytes | None:
        """Add one fragment's payload at byte `offset`; the whole payload once complete, else None."""
        dgram = self._held.get(key)
        if dgram is None:
            if len(self._held) >= MAX_DATAGRAMS:
                self._held.pop(next(iter(self._held)))  # the oldest: dicts keep insertion order
                self._drop("ip_fragment_overflow")
            dgram = self._held[key] = _Datagram(ts)
        end = offset + len(data)
        if end > MAX_SIZE:
            del self._held[key]
            self._drop("ip_fragment_too_big")
            return None
        if not more:
            dgram.total = end
        if offset not in dgram.pieces:
            dgram.pieces[offset] = data
            dgram.size += len(data)
        return self._whole(key, dgram)

    def _whole(self, key: tuple, dgram: _Datagram) -> bytes | None:
        if dgram.total is None or dgram.size < dgram.total:
            return None
        out = bytearray()
        for offset in sorted(dgram.pieces):
            piece = dgram.pieces[offset]
            if offset > len(out):
                return None  # a hole: more pieces to come
            out += piece[len(out) - offset :]
        if len(out) < dgram.total:
            return None
        del self._held[key]
        return bytes(out[: dgram.total])

    def expire(self, now: int) -> None:
        """Drop datagrams that waited longer than TIMEOUT_US."""
        stale = [k for k, d in self._held.items() if now - d.first > TIMEOUT_US]
        for key in stale:
            del self._held[key]
            self._drop("ip_fragment_timeout")

    def flush(self) -> None:
        """End of input: whatever is still incomplete is dropped and counted."""
        for _ in range(len(self._held)):
            self._drop("ip_fragment_incomplete")
        self._held.clear()
