"""The daemon's command socket: how a command works while `ictwatch run` holds the store.

An embedded store can be opened by one process only, so while the daemon runs, a command that needs the
store (`breaches`, `report`, `grant`, `audit`, `check-ipads`, `explain`, `spool`, `replay`) finds the
daemon's Unix socket (`control.socket`; by default `ictwatch.sock` beside the spool folder) and sends
it its argument list. The daemon parses and runs the very same command function, in a thread of its own
against its own store, and streams back what the command prints, the files it writes for the caller, and
its exit status. With no daemon answering (no socket, or a stale one) the command runs in its own process.

The socket is made 0600: the service's user alone (and root) may connect, and the daemon checks the
peer's uid again (SO_PEERCRED) before reading a byte; the `ictwatch` group is not enough, since the
capture's user is in it. What comes in is bounded: the request in size and time, at most `SESSIONS`
commands at once, files the daemon asks the caller for in size; and only commands marked `via_daemon`
run. The client, in turn, reads and writes only files its own argument list names.

Frames, both ways: a type byte, the payload's length (u32, big-endian), the payload. The caller sends
`Q` (the request, JSON), then answers `R` (read a file) with `F` (its bytes) or `N` (why not) and `W`
(write a file) with `K` (JSON: where it went) or `N`. The daemon sends `O` and `E` (stdout and stderr
bytes), `R`, `W` (JSON header length u32, JSON, bytes) and last `X` (the exit status, JSON).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import re
import signal
import socket
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ictwatch.caller import FORWARDED_ENV, Local, route

REQUEST_BYTES = 64 << 10
"""Largest request (argument list, a few environment variables)."""
REQUEST_S = 10.0
"""Time a caller has to send its whole request once connected."""
IO_S = 120.0
"""Longest wait for the other side to take or give one frame while a command runs."""
SESSIONS = 4
"""Commands the daemon runs at once; a caller beyond that is told to try again."""
_FRAME = struct.Struct(">cI")
_log = logging.getLogger(__name__)


class DaemonUnusable(Exception):
    """A daemon answers on the socket but cannot run the command for this caller (one line says why)."""


Runner = Callable[[list[str]], int]
"""Runs one command's argument list in this thread (for the caller `route` set up); its exit status."""


def _send(conn: socket.socket, kind: bytes, payload: bytes) -> None:
    conn.sendall(_FRAME.pack(kind, len(payload)) + payload)


def _recv_exact(conn: socket.socket, size: int, by: float | None = None) -> bytes:
    """`size` bytes; by the `time.monotonic()` instant `by`, if given (else within the socket's timeout of
    each read), or `TimeoutError`."""
    chunks, left = [], size
    while left:
        if by is not None:
            if time.monotonic() >= by:
                raise TimeoutError("too slow")
            conn.settimeout(by - time.monotonic())
        chunk = conn.recv(min(left, 1 << 20))
        if not chunk:
            raise ConnectionError("the other side closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _recv(conn: socket.socket, limit: int, by: float | None = None) -> tuple[bytes, bytes]:
    """(type, payload) of the next frame (whole by `by`, if given); `ValueError` when its length passes
    `limit`."""
    kind, size = _FRAME.unpack(_recv_exact(conn, _FRAME.size, by))
    if size > limit:
        raise ValueError(f"a frame of {size:,} bytes (at most {limit:,})")
    return kind, _recv_exact(conn, size, by)


# -- the daemon's side ---------------------------------------------------------------------------------


class _Frames(io.RawIOBase):
    """A writable stream whose every write is one frame of `kind` to the caller."""

    def __init__(self, conn: socket.socket, kind: bytes, tty: bool, lock: threading.Lock) -> None:
        self._conn, self._kind, self._tty, self._lock = conn, kind, tty, lock

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._tty

    def write(self, data: Any) -> int:
        data = bytes(data)
        with self._lock:  # whole frames, whichever thread of the command writes
            _send(self._conn, self._kind, data)
        return len(data)


class _Session:
    """One caller of one command, as the command sees it (`Caller`), over the connection."""

    remote = True

    def __init__(self, conn: socket.socket, request: dict[str, Any]) -> None:
        self._conn = conn
        self._env = request["env"]
        self._cwd = Path(request["cwd"])
        tty = request["tty"]
        self._lock = lock = threading.Lock()
        self.out = io.TextIOWrapper(io.BufferedWriter(_Frames(conn, b"O", tty[0], lock)), "utf-8",
                                    "backslashreplace", line_buffering=True)
        self.err = io.TextIOWrapper(io.BufferedWriter(_Frames(conn, b"E", tty[1], lock)), "utf-8",
                                    "backslashreplace", line_buffering=True)

    def path(self, path: Path) -> Path:
        """See `Caller.path`: the daemon opens it itself, so it must be a path the service can read."""
        return self._cwd / path

    def env(self, name: str) -> str:
        """See `Caller.env`."""
        return str(self._env.get(name, "")) if name in FORWARDED_ENV else ""

    def read_file(self, path: Path, limit: int) -> bytes:
        """See `Caller.read_file`: the caller reads it and sends it."""
        self.flush()
        with self._lock:
            _send(self._conn, b"R", json.dumps({"path": str(path), "limit": limit}).encode())
        kind, payload = _recv(self._conn, limit)
        if kind == b"F":
            return payload
        raise OSError(0, payload.decode(errors="replace")[:300] if kind == b"N" else "no answer")

    def write_file(self, path: Path, data: bytes) -> Path:
        """See `Caller.write_file`: the caller writes it."""
        self.flush()
        head = json.dumps({"path": str(path)}).encode()
        with self._lock:
            _send(self._conn, b"W", struct.pack(">I", len(head)) + head + data)
        kind, payload = _recv(self._conn, 4096)
        if kind != b"K":
            raise OSError(0, payload.decode(errors="replace")[:300] if kind == b"N" else "no answer")
        return Path(json.loads(payload)["path"])

    def flush(self) -> None:
        """Send what the command printed so far."""
        self.out.flush()
        self.err.flush()


def _request(conn: socket.socket) -> dict[str, Any]:
    """The caller's request, checked: `ValueError` for anything but what a client of ours sends."""
    kind, payload = _recv(conn, REQUEST_BYTES, time.monotonic() + REQUEST_S)
    request = json.loads(payload)
    argv, tty, env, cwd = request.get("argv"), request.get("tty"), request.get("env"), request.get("cwd")
    if kind != b"Q" or not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise ValueError("not a request")
    if not isinstance(tty, list) or len(tty) != 2 or not isinstance(env, dict) or not isinstance(cwd, str):
        raise ValueError("not a request")
    return {"argv": argv, "tty": [bool(t) for t in tty], "cwd": cwd,
            "env": {k: v for k, v in env.items() if k in FORWARDED_ENV and isinstance(v, str)}}


class ControlServer:
    """The daemon's end: accepts callers on `path` and runs their commands with `runner`."""

    def __init__(self, path: Path, runner: Runner) -> None:
        self.path = path
        self._runner = runner
        self._slots = threading.BoundedSemaphore(SESSIONS)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if _answers(path):
            raise DaemonUnusable(f"another daemon already answers on {path}")
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise FileExistsError(errno.EEXIST, "there is a file there that is not a socket")
            path.unlink()  # a socket left by a daemon that did not stop cleanly
        path.parent.mkdir(parents=True, exist_ok=True)
        umask = os.umask(0o177)
        try:
            self._sock.bind(str(path))
        finally:
            os.umask(umask)
        os.chmod(path, 0o600)
        self._sock.listen(16)
        self._own = os.geteuid()
        self._stopped = False

    def serve_forever(self) -> None:
        """Accept callers until `shutdown`, each on a thread of its own."""
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._stopped:
                    return
                raise
            threading.Thread(target=self._serve, args=(conn,), daemon=True, name="control").start()

    def shutdown(self) -> None:
        """Stop accepting callers (a command running finishes)."""
        self._stopped = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def server_close(self) -> None:
        """Close and remove the socket."""
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            if uid not in (self._own, 0):
                _log.warning("command socket: refused uid %d (pid %d): neither the service's user nor root", uid, pid)
                self._refuse(conn, f"refused: uid {uid} is neither the service's user nor root")
                return
            if not self._slots.acquire(blocking=False):
                self._refuse(conn, f"the daemon is already running {SESSIONS} commands: try again shortly")
                return
            try:
                self._run(conn, pid, uid)
            finally:
                self._slots.release()

    @staticmethod
    def _refuse(conn: socket.socket, why: str) -> None:
        with contextlib.suppress(OSError):
            conn.settimeout(REQUEST_S)
            _send(conn, b"E", f"ictwatch: {why}\n".encode())
            _send(conn, b"X", b"1")

    def _run(self, conn: socket.socket, pid: int, uid: int) -> None:
        conn.settimeout(REQUEST_S)
        try:
            request = _request(conn)
        except (OSError, ValueError, RecursionError) as exc:  # a timeout is an OSError, bad JSON a ValueError
            _log.warning("command socket: a bad request from uid %d (pid %d): %s", uid, pid, type(exc).__name__)
            self._refuse(conn, "not a request this daemon understands")
            return
        conn.settimeout(IO_S)
        session = _Session(conn, request)
        name = request["argv"][0] if request["argv"] and re.fullmatch(r"[a-z-]{1,20}", request["argv"][0]) else "?"
        try:
            with route(session, session.out, session.err):
                status = self._runner(request["argv"])
            session.flush()
        except OSError as exc:  # the caller went away, or stopped reading
            _log.warning("command socket: uid %d (pid %d) left during `%s` (%s)", uid, pid, name, type(exc).__name__)
            return
        except Exception as exc:
            _log.exception("command socket: `%s` for uid %d (pid %d) failed", name, uid, pid)
            with contextlib.suppress(OSError):
                session.flush()
                _send(conn, b"E", f"ictwatch: the daemon could not run the command ({type(exc).__name__}); its "
                      "log says more\n".encode())
                _send(conn, b"X", b"1")
            return
        print(f"command socket: `{name}` for uid {uid} (pid {pid}): exit {status}", file=sys.stderr, flush=True)
        with contextlib.suppress(OSError):
            _send(conn, b"X", str(status).encode())


# -- the caller's side ---------------------------------------------------------------------------------


def _answers(path: Path) -> bool:
    """Whether something accepts connections on the socket `path` (a daemon, to our knowledge)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            return False
        except PermissionError:
            return True
    return True


def forward(path: Path, argv: list[str]) -> int | None:
    """Run the command `argv` in the daemon answering on `path`: its output printed here, the files it
    names read and written here; its exit status. None when no daemon answers (run it here, then).
    `DaemonUnusable` when one answers but this user may not use it, or it goes away mid-command."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
        conn.close()
        return None
    except PermissionError:
        conn.close()
        raise DaemonUnusable(f"the daemon's socket {path} is not open to this user: run the command as the "
                             "service's user (sudo -u ictwatch ...)") from None
    with conn:
        env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
        request = {"argv": argv, "tty": [sys.stdout.isatty(), sys.stderr.isatty()], "env": env, "cwd": os.getcwd()}
        try:
            _send(conn, b"Q", json.dumps(request).encode())
            return _follow(conn, _named(argv))
        except (ConnectionError, ValueError) as exc:
            raise DaemonUnusable(f"the daemon on {path} stopped answering before the command finished "
                                 f"({exc})") from None


def _follow(conn: socket.socket, named: set[str]) -> int:
    """Print what the daemon sends and do the file work it asks for, until its exit status."""
    local = Local()
    streams: dict[bytes, IO[bytes]] = {b"O": sys.stdout.buffer, b"E": sys.stderr.buffer}
    while True:
        kind, payload = _recv(conn, 1 << 31)
        if kind in streams:
            try:
                streams[kind].write(payload)
                streams[kind].flush()
            except BrokenPipeError:  # our reader went away (`| head`): stop as a program writing a pipe does
                os.dup2(os.open(os.devnull, os.O_WRONLY), streams[kind].fileno())  # nothing left to flush at exit
                return 128 + signal.SIGPIPE
        elif kind == b"X":
            return int(payload)
        elif kind == b"R":
            ask = json.loads(payload)
            try:
                _only_named(ask["path"], named)
                data = local.read_file(Path(ask["path"]), int(ask["limit"]))
            except OSError as exc:
                _send(conn, b"N", (exc.strerror or str(exc)).encode())
            else:
                _send(conn, b"F", data)
        elif kind == b"W":
            size = struct.unpack(">I", payload[:4])[0]
            head = json.loads(payload[4 : 4 + size])
            try:
                _only_named(head["path"], named)
                written = local.write_file(Path(head["path"]), payload[4 + size :])
            except OSError as exc:
                _send(conn, b"N", (exc.strerror or str(exc)).encode())
            else:
                _send(conn, b"K", json.dumps({"path": str(written)}).encode())
        else:
            raise ValueError(f"an unknown frame {kind!r}")


def _named(argv: list[str]) -> set[str]:
    """Every path the argument list could name: each argument, the value of `--opt=VALUE` and of `-oVALUE`,
    as argparse's `type=Path` writes them."""
    values = set(argv) | {a.split("=", 1)[1] for a in argv if a.startswith("--") and "=" in a}
    values |= {a[2:] for a in argv if a.startswith("-") and not a.startswith("--") and len(a) > 2}
    return {str(Path(v)) for v in values if v}


def _only_named(path: str, named: set[str]) -> None:
    """The daemon may have the caller read or write only a file the caller's own command line names."""
    if path not in named:
        raise OSError(0, "not a file this command line names")
