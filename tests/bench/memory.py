"""What a program holds of the machine's memory, the way a gateway's owner would count it.

Anonymous resident memory (`RssAnon`: heaps, arenas, caches) is what competes for a gateway's RAM; the
file-backed part (`RssFile`: mostly the embedded ClickHouse's library, mapped from disk) can be dropped by
the kernel and read back when needed, so it is reported beside the anonymous part, not added to it. A
program of several processes (the daemon, its capture tool, its decoding worker) is counted as the sum
over its process tree.

    with PeakMemory(pid) as peak: ...     # samples every 5 ms until the block ends
    peak.anon_mb, peak.file_mb            # the highest sums seen
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

_FIELD = re.compile(r"^(RssAnon|RssFile|RssShmem):\s+(\d+) kB", re.M)


@dataclass
class Memory:
    """Resident memory in MB, anonymous and file-backed (shared memory counted with the file-backed)."""

    anon_mb: float = 0.0
    file_mb: float = 0.0


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (read from /proc's children lists)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        children = Path(f"/proc/{current}/task/{current}/children")
        try:
            todo.extend(int(child) for child in children.read_text().split())
        except OSError:
            continue  # gone since it was listed
    return found


def process_memory(pid: int) -> Memory:
    """One process's resident memory now (zero once it has gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return Memory()
    kb = {name: int(value) for name, value in _FIELD.findall(status)}
    return Memory(kb.get("RssAnon", 0) / 1024, (kb.get("RssFile", 0) + kb.get("RssShmem", 0)) / 1024)


def tree_memory(pid: int) -> Memory:
    """The resident memory of `pid` and all its descendants, summed."""
    total = Memory()
    for each in descendants(pid):
        one = process_memory(each)
        total.anon_mb += one.anon_mb
        total.file_mb += one.file_mb
    return total


class PeakMemory:
    """The highest anonymous and file-backed sums of a process tree, sampled on a thread while the block
    runs (every `every_s`; a spike shorter than that can be missed)."""

    def __init__(self, pid: int, every_s: float = 0.005) -> None:
        self.pid = pid
        self.every_s = every_s
        self.anon_mb = 0.0
        self.file_mb = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)

    def _sample(self) -> None:
        while True:
            now = tree_memory(self.pid)
            self.anon_mb = max(self.anon_mb, now.anon_mb)
            self.file_mb = max(self.file_mb, now.file_mb)
            if self._done.wait(self.every_s):
                return

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._done.set()
        self._thread.join()


def run_measured(argv: list[str], **popen: object) -> tuple[float, PeakMemory, int]:
    """Run a command to its end: (wall seconds, its peak memory, exit status)."""
    import subprocess

    start = time.perf_counter()
    proc = subprocess.Popen(argv, **popen)  # type: ignore[call-overload]
    with PeakMemory(proc.pid) as peak:
        status = proc.wait()
    return time.perf_counter() - start, peak, status
