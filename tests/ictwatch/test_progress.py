"""The replay progress bar: drawn on a real pseudo-terminal, silent when output is not a terminal."""

from __future__ import annotations

import io
import os
import select
import time
from pathlib import Path
from types import SimpleNamespace

from ictwatch.progress import ProgressBar


def fake_source(done: int, total: int) -> SimpleNamespace:
    return SimpleNamespace(path=Path("day.pcap"), progress=SimpleNamespace(done=done, total=total))


def test_draws_on_a_terminal():
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as tty, ProgressBar(tty, interval=0.01) as bar:
        bar.follow(fake_source(50, 100))
        time.sleep(0.1)
        bar.follow(None)
    chunks = []
    while select.select([master], [], [], 0.5)[0]:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the other end is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    text = b"".join(chunks).decode()
    assert "day.pcap" in text and "50%" in text and "#" * 15 in text
    assert text.endswith("\r\x1b[K")  # the line is cleared when the replay ends


def test_silent_when_not_a_terminal():
    out = io.StringIO()
    with ProgressBar(out, interval=0.01) as bar:
        bar.follow(fake_source(50, 100))
        time.sleep(0.05)
    assert out.getvalue() == ""
