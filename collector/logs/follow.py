"""Following a log that is still being written, like `tail -F`, with a checkpoint that survives `kill -9`.

`LogFollower.poll()` returns the complete lines added since the last call, each with its `Position`:
(generation, offset after the line). A partial last line is held until its newline arrives; one that
grows past `lines.MAX_LINE` (64 KiB) is read past without being held, and where it ends is listed in
`too_long` instead of being handed out. Rotation is followed both ways logrotate does it:
rename-and-create (the old file is read to its end first, then the new one from its start) and
copytruncate (the file shrinks under us: start again at 0). Each rotation starts a new generation, so
positions only ever grow.

`mark(position)` says how far the consumer has got: inode, generation, offset and a hash of the line that
ends there; `save(mark)`, once the lines up to it are safely stored (from any thread), writes it to a
temporary file, fsynced and renamed over the checkpoint, so a crash leaves the old checkpoint or the new
one, never a torn one. On start the follower resumes there:
- same file, same line at the offset: carry on after it;
- the file was rotated while we were down: the old file is found by its inode among its neighbours
  (`access.log.1` ...), read to its end, then the new file from the start;
- the log was copied and truncated while we were down (copytruncate): the copy is found among the
  neighbours by the line at the offset, read from there to its end, then any newer rotated files, then
  the log from its start;
- the line at the offset is not the one we stored, and no copy holds it (truncated and rewritten):
  start the file again.
A consumer that stores lines and saves its checkpoint separately may see the lines after its last
checkpoint twice after a crash; positions let it drop those (the storage layer's deduplication does
exactly that).
Known limit (logrotate's own): with copytruncate, lines written between the copy and the truncate are
in the copy only and are not read.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from collector.logs.lines import MAX_LINE


@dataclass(frozen=True, order=True, slots=True)
class Position:
    """Where a line ends: rotations seen (generation), then the byte offset after its newline."""

    generation: int
    offset: int


@dataclass(frozen=True, slots=True)
class _Saved:
    inode: int
    generation: int
    offset: int
    last_line: str  # sha256 of the line that ends at `offset` ("" at offset 0)


def _digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


class LogFollower:
    """One log file, followed across rotations, resuming from its checkpoint."""

    def __init__(self, path: Path, checkpoint: Path) -> None:
        self.path = path
        self.checkpoint = checkpoint
        self._fd: int | None = None
        self._inode = 0
        self._generation = 0
        self._offset = 0  # offset after the last complete line handed out
        self._last: bytes | None = b""  # that line (None after a resume: only its digest is known)
        self._last_digest = ""
        self._partial = b""  # the line still to end (of one over MAX_LINE, its last MAX_LINE bytes)
        self._dropped = 0  # bytes of that line read past and not held
        self.too_long: list[Position] = []
        """Where the lines over `MAX_LINE` that the latest poll read past end: skipped, not handed out."""
        self._next: list[Path] = []  # rotated files still to read, oldest first, before the log itself
        self._recent: dict[Position, tuple[int, bytes]] = {}  # latest poll: position → (inode, line)
        self._resume()

    # -- public -------------------------------------------------------------------------------------

    def poll(self) -> list[tuple[Position, bytes]]:
        """Complete lines written since the last call (without their newline), in order."""
        out: list[tuple[Position, bytes]] = []
        self._recent, self.too_long = {}, []
        if self._fd is None and not self._open_current(from_start=True):
            return out
        self._read_available(out)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return out  # rotated and not yet re-created: keep reading the old one next time
        if st.st_ino != self._inode:  # renamed away: finish it, then any newer rotated files, then the log
            self._read_available(out)
            self._next_file(out)
        elif st.st_size < self._offset + self._pending():  # truncated in place (copytruncate)
            self._finish_from_copy(out)
            self._generation += 1
            self._partial, self._dropped, self._offset, self._last = b"", 0, 0, b""
            assert self._fd is not None
            os.lseek(self._fd, 0, os.SEEK_SET)
            self._read_available(out)
        return out

    def _next_file(self, out: list[tuple[Position, bytes]]) -> None:
        while True:
            self._flush_partial(out)
            self._close()
            self._generation += 1
            if not self._next:
                self._open_current(from_start=True)
                self._read_available(out)
                return
            path = self._next.pop(0)
            try:
                self._fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            self._inode, self._offset, self._last, self._partial = os.fstat(self._fd).st_ino, 0, b"", b""
            self._dropped = 0
            self._read_available(out)

    def _finish_from_copy(self, out: list[tuple[Position, bytes]]) -> None:
        """copytruncate: the lines after our offset are in the copy logrotate just made; read them there."""
        digest = self._last_digest if self._last is None else (_digest(self._last) if self._offset else "")
        for copy in self._rotated()[:1]:
            try:
                fd = os.open(copy, os.O_RDONLY)
            except OSError:
                continue
            try:
                if os.fstat(fd).st_size >= self._offset and self._line_ends_at(fd, self._offset, digest):
                    os.lseek(fd, self._offset + self._pending(), os.SEEK_SET)
                    own = self._fd
                    self._fd = fd
                    self._read_available(out)
                    self._flush_partial(out)
                    self._fd = own
            finally:
                os.close(fd)

    def mark(self, position: Position) -> dict[str, object]:
        """What the checkpoint for `position` (one returned by the latest poll) says: take it right after
        the poll and `save` it later (from any thread), once the lines up to it are stored."""
        if position in self._recent:
            inode, line = self._recent[position]
            digest = _digest(line)
        elif position == Position(self._generation, self._offset):
            inode = self._inode
            digest = self._last_digest if self._last is None else (_digest(self._last) if self._offset else "")
        else:
            raise ValueError(f"{position} was not returned by the latest poll")
        return {"inode": inode, "generation": position.generation, "offset": position.offset, "last_line": digest}

    def save(self, saved: dict[str, object]) -> None:
        """Write a checkpoint made by `mark` (it touches only the checkpoint file): to a temporary file,
        fsynced, renamed over the checkpoint, and the directory fsynced."""
        tmp = self.checkpoint.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(saved, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.checkpoint)
        dir_fd = os.open(self.checkpoint.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def close(self) -> None:
        """Release the file."""
        self._close()

    def lag(self) -> int:
        """Bytes written to the log that have not been handed out yet (the whole of a new file after a
        rotation not yet reached; 0 when the log does not exist)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return 0
        return max(0, st.st_size - self._offset - self._pending()) if st.st_ino == self._inode else st.st_size

    # -- reading ------------------------------------------------------------------------------------

    def _read_available(self, out: list[tuple[Position, bytes]]) -> None:
        if self._fd is None:
            return
        while True:
            chunk = os.read(self._fd, 1 << 20)
            if not chunk:
                return
            data = self._partial + chunk
            start = 0
            while True:
                end = data.find(b"\n", start)
                if end < 0:
                    break
                self._hand_out(out, data[start:end])
                start = end + 1
            self._partial = data[start:]
            if len(self._partial) > MAX_LINE:  # a line too long to read: hold no more of it than its end
                self._dropped += len(self._partial) - MAX_LINE
                self._partial = self._partial[-MAX_LINE:]

    def _pending(self) -> int:
        """Bytes read of the line still to end."""
        return self._dropped + len(self._partial)

    def _hand_out(self, out: list[tuple[Position, bytes]], line: bytes, newline: bool = True) -> None:
        """The line that ends here (its held bytes: all of it, or the last MAX_LINE of one longer) goes to
        `out`, or to `too_long` when it is over MAX_LINE. Its checkpoint's digest is of those held bytes, which
        `_line_ends_at` reads back."""
        length = self._dropped + len(line)
        self._offset += length + (1 if newline else 0)
        self._last, self._dropped = line[-MAX_LINE:], 0
        position = Position(self._generation, self._offset)
        self._recent[position] = (self._inode, self._last)
        if length > MAX_LINE:
            self.too_long.append(position)
        else:
            out.append((position, line))

    def _flush_partial(self, out: list[tuple[Position, bytes]]) -> None:
        """A rotated file that ends without a newline: its last line is complete all the same."""
        if self._pending():
            self._hand_out(out, self._partial, newline=False)
            self._partial = b""

    # -- files --------------------------------------------------------------------------------------

    def _open_current(self, from_start: bool) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        self._fd, self._inode = fd, os.fstat(fd).st_ino
        if from_start:
            self._offset, self._last, self._partial, self._dropped = 0, b"", b"", 0
        return True

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _resume(self) -> None:
        saved = self._load()
        if saved is None:
            self._open_current(from_start=True)
            return
        self._generation = saved.generation
        fd = self._find_inode(saved.inode)
        if fd is None:  # the file we were reading is gone entirely: start the current one
            self._generation += 1
            self._open_current(from_start=True)
            return
        if self._line_ends_at(fd, saved.offset, saved.last_line):
            self._fd, self._inode, self._offset = fd, saved.inode, saved.offset
            self._last, self._last_digest = None, saved.last_line
            os.lseek(fd, saved.offset, os.SEEK_SET)
        else:  # copied and truncated while we were down, or rewritten
            os.close(fd)
            if not self._resume_in_copy(saved):
                self._next = []
                self._generation += 1
                self._open_current(from_start=True)

    def _resume_in_copy(self, saved: _Saved) -> bool:
        """Resume in the rotated file that holds the stored line at the stored offset (logrotate's copy,
        however far later rotations have moved it), the newer rotated files queued after it."""
        rotated = self._rotated()
        for i, candidate in enumerate(rotated):
            try:
                fd = os.open(candidate, os.O_RDONLY)
            except OSError:
                continue
            if os.fstat(fd).st_size >= saved.offset and self._line_ends_at(fd, saved.offset, saved.last_line):
                self._fd, self._inode, self._offset = fd, os.fstat(fd).st_ino, saved.offset
                self._last, self._last_digest = None, saved.last_line
                self._next = list(reversed(rotated[:i]))
                os.lseek(fd, saved.offset, os.SEEK_SET)
                return True
            os.close(fd)
        return False

    def _load(self) -> _Saved | None:
        try:
            data = json.loads(self.checkpoint.read_text(encoding="utf-8"))
            return _Saved(int(data["inode"]), int(data["generation"]), int(data["offset"]), str(data["last_line"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{self.checkpoint}: not a checkpoint ({exc})") from None

    def _rotated(self) -> list[Path]:
        """`log.1`, `log.2`, ... newest first (logrotate's numbering; compressed ones are not read)."""
        found = [p for p in self.path.parent.glob(self.path.name + ".*") if p.suffix[1:].isdigit()]
        return sorted(found, key=lambda p: int(p.suffix[1:]))

    def _find_inode(self, inode: int) -> int | None:
        """An open descriptor on the file with `inode`: the log itself or a rotated neighbour. For a
        neighbour, the newer rotated files are queued to be read after it, oldest first."""
        rotated = self._rotated()
        for i, candidate in enumerate([self.path, *rotated]):
            try:
                if candidate.stat().st_ino == inode:
                    self._next = list(reversed(rotated[: i - 1])) if i else []
                    return os.open(candidate, os.O_RDONLY)
            except OSError:
                continue
        return None

    @staticmethod
    def _line_ends_at(fd: int, offset: int, digest: str) -> bool:
        if offset == 0:
            return True
        size = os.fstat(fd).st_size
        if size < offset:
            return False
        start = max(0, offset - MAX_LINE - 1)
        chunk = os.pread(fd, offset - start, start)
        if not chunk.endswith(b"\n") and offset != size:
            return False
        body = chunk[:-1] if chunk.endswith(b"\n") else chunk
        line = body[body.rfind(b"\n") + 1 :][-MAX_LINE:]  # of a line over MAX_LINE, what `_hand_out` kept
        return _digest(line) == digest
