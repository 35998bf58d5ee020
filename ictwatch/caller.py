"""Whom a command runs for: the person at this terminal, or the `ictwatch` process in another terminal
whose command runs inside the daemon (ictwatch/control.py).

A command prints as any program does (print, `sys.stdout`, `sys.stderr`): inside the daemon those two are
routed, thread by thread, to the caller of the command that thread runs (`route`). What else a command
takes from or gives its caller goes through `current()`: an environment variable, a file the caller
names to read or to write. A file is always read and written by the caller's own process, with its own
permissions and working directory, never by the daemon's.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TextIO

FORWARDED_ENV = ("ICTWATCH_EXPORT_PASSPHRASE",)
"""The only environment variables a command reads from its caller (the rest are the daemon's own)."""


class Caller(Protocol):
    """What a command takes from and gives to whoever ran it, besides its output."""

    remote: bool
    """Whether the command runs inside the daemon for another process."""

    def path(self, path: Path) -> Path:
        """A path as the caller meant it: a relative one is from the caller's working directory."""
        ...

    def env(self, name: str) -> str:
        """The caller's environment variable `name` (one of `FORWARDED_ENV`), or ''."""
        ...

    def read_file(self, path: Path, limit: int) -> bytes:
        """The caller's file `path`, at most `limit` bytes; `OSError` (with a `strerror`) when it cannot."""
        ...

    def write_file(self, path: Path, data: bytes) -> Path:
        """Write `data` to the caller's file `path` (folders made, mode 0600); returns its absolute path."""
        ...


class Local:
    """The person at this terminal: this process's environment and files."""

    remote = False

    def path(self, path: Path) -> Path:
        """See `Caller.path`."""
        return path

    def env(self, name: str) -> str:
        """See `Caller.env`."""
        return os.environ.get(name, "")

    def read_file(self, path: Path, limit: int) -> bytes:
        """See `Caller.read_file`."""
        with open(path, "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise OSError(0, f"larger than {limit:,} bytes")
        return data

    def write_file(self, path: Path, data: bytes) -> Path:
        """See `Caller.write_file`: 0600 whatever the umask (a report is confidential). Written to a new file
        made 0600 beside it (mkstemp: O_CREAT|O_EXCL with that mode), then renamed over `path`, so an older
        report there, however readable, is replaced rather than rewritten in place. A device or pipe
        (`/dev/stdout`) is written into, not replaced: it holds nothing at rest."""
        if path.exists() and not path.is_file():
            path.write_bytes(data)
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        return path.resolve()


_LOCAL = Local()
_here = threading.local()


def current() -> Caller:
    """The caller of the command this thread runs."""
    return getattr(_here, "caller", _LOCAL)


class _Routed:
    """Stands in for `sys.stdout` or `sys.stderr` in the daemon: the stream of the caller this thread runs a
    command for, else the daemon's own."""

    def __init__(self, name: str, own: TextIO) -> None:
        self._name = name
        self._own = own

    def __getattr__(self, attr: str) -> Any:
        return getattr(getattr(_here, self._name, None) or self._own, attr)


_install = threading.Lock()


def stderr() -> TextIO:
    """This thread's stderr itself, not the stand-in: for a thread of its own that a command starts (a
    progress bar), which would otherwise write to the daemon's."""
    err: TextIO | _Routed = getattr(_here, "err", None) or sys.stderr
    return err._own if isinstance(err, _Routed) else err


@contextmanager
def route(caller: Caller, out: TextIO, err: TextIO) -> Iterator[None]:
    """While the block runs, this thread's commands run for `caller`, printing to `out` and `err`."""
    with _install:
        if not isinstance(sys.stdout, _Routed):
            sys.stdout = _Routed("out", sys.stdout)  # type: ignore[assignment]
            sys.stderr = _Routed("err", sys.stderr)  # type: ignore[assignment]
    _here.caller, _here.out, _here.err = caller, out, err
    try:
        yield
    finally:
        del _here.caller, _here.out, _here.err
