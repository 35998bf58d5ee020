"""In-order delivery of one direction of a TCP stream, for the bytes an application parser needs.

Segments arrive with sequence numbers; `Reassembler.feed` returns the bytes that became contiguous,
holding early segments until the gap before them fills, trimming retransmitted and overlapping bytes.
Memory is bounded: at most `MAX_PENDING` bytes wait out of order per direction; past that the stream
gives up (`failed`) and the caller counts it. Parsers use it only until they have what they need (a
ClientHello, a mail dialogue up to STARTTLS), so bulk transfers never pass through here.
"""

from __future__ import annotations

MAX_PENDING = 64 * 1024
_MOD = 1 << 32
_HALF = 1 << 31


class Reassembler:
    """One direction of a TCP stream, reassembled from its first byte seen (or the SYN)."""

    __slots__ = ("next", "pending", "pending_bytes", "failed")

    def __init__(self) -> None:
        self.next: int | None = None
        self.pending: dict[int, bytes] = {}
        self.pending_bytes = 0
        self.failed = False

    def syn(self, seq: int) -> None:
        """The SYN's sequence number: data starts one after it."""
        if self.next is None:
            self.next = (seq + 1) % _MOD

    def feed(self, seq: int, data: bytes) -> bytes:
        """Add a segment; return the bytes that are now in order (possibly empty)."""
        if self.failed or not data:
            return b""
        if self.next is None:
            self.next = seq
        ahead = (seq - self.next) % _MOD
        if ahead >= _HALF:  # starts before what was delivered: keep only the new tail
            behind = _MOD - ahead
            if behind >= len(data):
                return b""
            data, ahead = data[behind:], 0
        if ahead:
            if self.pending_bytes + len(data) > MAX_PENDING:
                self.failed = True
                self.pending.clear()
                self.pending_bytes = 0
                return b""
            if len(data) > len(self.pending.get(seq, b"")):
                self.pending_bytes += len(data) - len(self.pending.get(seq, b""))
                self.pending[seq] = data
            return b""
        out = [data]
        self.next = (self.next + len(data)) % _MOD
        if self.pending:
            self._drain(out)
        return b"".join(out)

    def _drain(self, out: list[bytes]) -> None:
        """Move every held segment that now starts at or before `next` into `out`, until none does."""
        assert self.next is not None
        nxt = self.next
        progressed = True
        while progressed and self.pending:
            progressed = False
            for seq in list(self.pending):
                ahead = (seq - nxt) % _MOD
                if 0 < ahead < _HALF:
                    continue
                data = self.pending.pop(seq)
                self.pending_bytes -= len(data)
                skip = 0 if ahead == 0 else _MOD - ahead
                if skip < len(data):
                    out.append(data[skip:])
                    nxt = (nxt + len(data) - skip) % _MOD
                progressed = True
        self.next = nxt
