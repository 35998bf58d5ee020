"""The parent's side of a capture worker (collector/capture/worker.py): starting it, and the messages it
sends, each a little-endian 4-byte length and a pickle (protocol 5) of a tuple, `("tick", ...)` or
`("end", ...)` as the worker's docstring says. Only the standard library, so that `ictwatch replay` can
start a worker on its captures (`decode_ahead`) before it imports anything heavy: the worker decodes
while the command imports the engine and opens the store.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HEADER = struct.Struct("<I")
AHEAD_BYTES = 16 << 20
"""The smallest capture `decode_ahead` hands to a worker. The worker costs 0.1–0.2 s of CPU to start and to
send what it decoded; what it saves the command is the decoding, some 17 µs of an observation (the school
mix: 0.85 s for 300,000 packets, 257 MB), so below about 16 MB (50 ms of decoding) there is nothing worth
having and a small capture is decoded in the command's own process."""
_PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
                b"\x0a\x0d\x0d\x0a")  # collector.packet.pcap's, which cannot be imported light


def start_worker(args: list[str]) -> subprocess.Popen[bytes]:
    """A capture worker with `args`, its messages on a pipe of its standard output; `OSError` when it
    cannot be started."""
    return subprocess.Popen([sys.executable, "-m", "collector.capture.worker", "--parent", str(os.getpid()), *args],
                            stdout=subprocess.PIPE, bufsize=0)


def spare_core() -> bool:
    """Whether a core is free for a worker: two or more this process may run on, and fewer processes
    running or waiting to run (the last minute's load) than those cores less one. On a loaded machine the
    worker only competes with the command it was to make faster (measured: docs/performance.md)."""
    cores = len(os.sched_getaffinity(0))
    return cores >= 2 and os.getloadavg()[0] <= cores - 1


def decode_ahead(paths: Iterable[Path], min_bytes: int = AHEAD_BYTES) -> dict[Path, subprocess.Popen[bytes]]:
    """A worker decoding each capture (pcap or pcapng, plain or gzip) of `min_bytes` or more among `paths`;
    the rest (logs, small captures, what cannot be read) are left to be opened as ever. None at all when
    no core is spare (`spare_core`): a worker then only adds the cost of sending what it decoded."""
    started: dict[Path, subprocess.Popen[bytes]] = {}
    if not spare_core():
        return started
    for path in paths:
        try:
            if os.path.getsize(path) < min_bytes:
                continue
            with open(path, "rb") as raw:
                head = raw.read(4)
                if head[:2] == b"\x1f\x8b":
                    raw.seek(0)
                    with gzip.open(raw) as unzipped:
                        head = unzipped.read(4)
        except (OSError, EOFError, gzip.BadGzipFile):
            continue
        if head in _PCAP_MAGICS:
            try:
                started[path] = start_worker(["--file", str(path)])
            except OSError:
                continue
    return started


def encode(message: tuple[Any, ...]) -> bytes:
    """One message as it goes down the pipe."""
    body = pickle.dumps(message, protocol=5)
    return HEADER.pack(len(body)) + body


def read_message(fd: int) -> tuple[Any, ...] | None:
    """The next message from a worker's output (its descriptor); None at its end. `EOFError` for a message
    cut short, `ValueError` (or pickle's own errors) for one that is not a worker's."""
    head = _read_exact(fd, HEADER.size)
    if not head:
        return None
    body = _read_exact(fd, HEADER.unpack(head)[0])
    message = pickle.loads(body)
    if not isinstance(message, tuple) or message[0] not in ("tick", "end"):
        raise ValueError("not a capture worker's message")
    return message


def _read_exact(fd: int, size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        part = os.read(fd, min(size - got, 1 << 22))
        if not part:
            if got:
                raise EOFError("capture worker's message cut short")
            return b""
        parts.append(part)
        got += len(part)
    return b"".join(parts)
