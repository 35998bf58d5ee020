"""Following a live log: partial lines, both rotation styles, restarts, and `kill -9` for real."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from collector.logs.follow import LogFollower, Position


def lines_of(polled: list[tuple[Position, bytes]]) -> list[bytes]:
    return [line for _pos, line in polled]


def append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


def test_partial_last_line_is_held_until_its_newline(tmp_path):
    log = tmp_path / "access.log"
    log.write_text("one\ntw")
    f = LogFollower(log, tmp_path / "cp")
    assert lines_of(f.poll()) == [b"one"]
    append(log, "o\nthree")
    assert lines_of(f.poll()) == [b"two"]
    append(log, "\n")
    polled = f.poll()
    assert lines_of(polled) == [b"three"] and polled[0][0] == Position(0, len("one\ntwo\nthree\n"))


def test_rename_and_create_reads_the_old_file_to_its_end(tmp_path):
    log = tmp_path / "access.log"
    log.write_text("a\n")
    f = LogFollower(log, tmp_path / "cp")
    assert lines_of(f.poll()) == [b"a"]
    append(log, "b\nc")  # written to the old file, the last line without its newline
    log.rename(tmp_path / "access.log.1")
    log.write_text("d\n")
    polled = f.poll()
    assert lines_of(polled) == [b"b", b"c", b"d"]
    assert [p.generation for p, _ in polled] == [0, 0, 1]


def test_copytruncate_takes_the_unread_tail_from_the_copy(tmp_path):
    log = tmp_path / "access.log"
    log.write_text("a\nb\n")
    f = LogFollower(log, tmp_path / "cp")
    assert lines_of(f.poll()) == [b"a", b"b"]
    append(log, "c\n")  # not read yet when logrotate copies and truncates
    shutil.copyfile(log, tmp_path / "access.log.1")
    with log.open("r+") as t:
        t.truncate(0)
    append(log, "d\n")
    assert lines_of(f.poll()) == [b"c", b"d"]


def _stopped_after_a(tmp_path):
    """A follower that read "a" and "b", saved its checkpoint after "a" only (what was safely stored), and
    stopped; returns the log and the checkpoint."""
    log, cp = tmp_path / "access.log", tmp_path / "cp"
    log.write_text("a\nb\n")
    f = LogFollower(log, cp)
    polled = f.poll()
    f.save(f.mark(polled[0][0]))
    f.close()
    return log, cp


def test_restart_resumes_after_the_committed_line(tmp_path):
    log, cp = _stopped_after_a(tmp_path)
    append(log, "c\n")
    again = LogFollower(log, cp)
    assert lines_of(again.poll()) == [b"b", b"c"]


def test_rotated_twice_while_down(tmp_path):
    log, cp = _stopped_after_a(tmp_path)
    log.rename(tmp_path / "access.log.1")
    log.write_text("c\n")
    (tmp_path / "access.log.1").rename(tmp_path / "access.log.2")
    log.rename(tmp_path / "access.log.1")
    log.write_text("d\n")
    again = LogFollower(log, cp)
    polled = again.poll()
    assert lines_of(polled) == [b"b", b"c", b"d"]
    assert [p.generation for p, _ in polled] == [0, 1, 2]


def _copytruncate(log: Path) -> None:
    shutil.copyfile(log, log.with_name(log.name + ".1"))
    with log.open("r+") as t:
        t.truncate(0)


def test_copied_and_truncated_while_down_reads_the_rest_from_the_copy(tmp_path):
    """Stopped after "a" with "b" unstored; logrotate copies and truncates, "c" is written: the restart
    takes "b" from the copy, then "c" from the log."""
    log, cp = _stopped_after_a(tmp_path)
    _copytruncate(log)
    append(log, "c\n")
    polled = LogFollower(log, cp).poll()
    assert lines_of(polled) == [b"b", b"c"]
    assert [p.generation for p, _ in polled] == [0, 1]


def test_copied_truncated_and_then_renamed_while_down(tmp_path):
    """The copy moved on to access.log.2 by a rename rotation before the restart: "b" from the copy, "c"
    from the renamed log (access.log.1), "d" from the new one."""
    log, cp = _stopped_after_a(tmp_path)
    _copytruncate(log)
    append(log, "c\n")
    (tmp_path / "access.log.1").rename(tmp_path / "access.log.2")
    log.rename(tmp_path / "access.log.1")
    log.write_text("d\n")
    polled = LogFollower(log, cp).poll()
    assert lines_of(polled) == [b"b", b"c", b"d"]
    assert [p.generation for p, _ in polled] == [0, 1, 2]


def test_truncated_and_rewritten_while_down_starts_over(tmp_path):
    log, cp = tmp_path / "access.log", tmp_path / "cp"
    log.write_text("first line\n")
    f = LogFollower(log, cp)
    f.save(f.mark(f.poll()[-1][0]))
    f.close()
    log.write_text("other text!\nmore\n")  # same inode, longer, but not the line we stored
    assert lines_of(LogFollower(log, cp).poll()) == [b"other text!", b"more"]


CONSUMER = textwrap.dedent('''
    import os, sys, time
    from pathlib import Path
    from collector.logs.follow import LogFollower, Position
    log, out_path, cp = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    last = Position(-1, 0)
    if out_path.exists():  # an idempotent sink: what it already stored, it knows by position
        for row in out_path.read_text().splitlines():
            g, o, _ = row.split(" ", 2)
            last = Position(int(g), int(o))
    follower = LogFollower(log, cp)
    with out_path.open("a") as out:
        while True:
            polled = follower.poll()
            fresh = [(p, l) for p, l in polled if p > last]
            for p, line in fresh:
                out.write(f"{p.generation} {p.offset} {line.decode()}\\n")
            if polled:
                out.flush(); os.fsync(out.fileno())
                follower.save(follower.mark(polled[-1][0]))
                if fresh:
                    last = fresh[-1][0]
            time.sleep(0.005)
''')

WRITER = textwrap.dedent('''
    import os, shutil, sys, time
    from pathlib import Path
    log, n = Path(sys.argv[1]), int(sys.argv[2])
    for i in range(n):
        with log.open("a") as f:
            f.write(f"line {i:05d} " + "x" * (i % 50) + "\\n")
        if i % 700 == 699:  # rename and create
            for k in (3, 2, 1):
                old = log.with_name(f"{log.name}.{k}")
                if old.exists():
                    old.rename(log.with_name(f"{log.name}.{k + 1}"))
            log.rename(log.with_name(log.name + ".1"))
            log.touch()
        elif i % 1100 == 1099:  # copy and truncate
            for k in (3, 2, 1):
                old = log.with_name(f"{log.name}.{k}")
                if old.exists():
                    old.rename(log.with_name(f"{log.name}.{k + 1}"))
            shutil.copyfile(log, log.with_name(log.name + ".1"))
            with log.open("r+") as f:
                f.truncate(0)
        time.sleep(0.0005)
''')


def test_kill_9_neither_loses_nor_repeats_a_line(tmp_path):
    """A writer appends 4,000 lines, rotating by rename five times (every 700th line) and by copytruncate
    three times (lines 1,100, 2,200 and 3,300); the consumer is killed with SIGKILL five times at random
    moments and restarted. Every line must be stored once, in order."""
    from tests.conftest import ROOT

    log, out, cp = tmp_path / "access.log", tmp_path / "out.txt", tmp_path / "checkpoint.json"
    log.touch()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(log), "4000"], env=env)

    def consumer() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", CONSUMER, str(log), str(out), str(cp)], env=env, cwd=ROOT)

    rng = random.Random(9)
    proc = consumer()
    for _ in range(5):
        time.sleep(rng.uniform(0.3, 0.9))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc = consumer()
    writer.wait(timeout=120)
    deadline = time.time() + 30
    while time.time() < deadline and (not out.exists() or "line 03999" not in out.read_text()):
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    got = [row.split(" ", 2)[2] for row in out.read_text().splitlines()]
    expected = [f"line {i:05d} " + "x" * (i % 50) for i in range(4000)]
    assert len(got) == len(set(got)), "a line was stored twice"
    assert got == expected


def test_lag_counts_what_is_written_but_not_read(tmp_path):
    """The follower-lag metric's source: 0 when caught up, the bytes appended since the last poll, and
    after a rename-and-create the whole new file until it is reached."""
    log, checkpoint = tmp_path / "access.log", tmp_path / "cp.json"
    log.write_bytes(b"one\ntwo\n")
    follower = LogFollower(log, checkpoint)
    follower.poll()
    assert follower.lag() == 0
    with log.open("ab") as out:
        out.write(b"three\n")  # 6 bytes
    assert follower.lag() == 6
    follower.poll()
    log.rename(tmp_path / "access.log.1")
    log.write_bytes(b"four\n")  # 5 bytes in the new file
    assert follower.lag() == 5
    follower.poll()
    assert follower.lag() == 0
    follower.close()


def test_a_line_that_never_ends_is_read_past_not_held(tmp_path):
    """A followed log that a crash filled with NUL bytes (50 MB here, without a newline, written while the
    follower polls): nothing is handed out and the follower holds no more than a chunk and 64 KiB of it; once
    the line ends, it is listed in `too_long` where it ends and the next line comes out. A checkpoint there
    resumes after it."""
    import tracemalloc

    log = tmp_path / "access.log"
    log.write_text("before\n")
    f = LogFollower(log, tmp_path / "cp")
    assert lines_of(f.poll()) == [b"before"]
    tracemalloc.start()
    with log.open("ab") as out:
        for _ in range(50):
            out.write(bytes(1 << 20))
            out.flush()
            assert f.poll() == [] and f.too_long == []
        peak = tracemalloc.get_traced_memory()[1]
        out.write(b"\nafter\n")
    tracemalloc.stop()
    assert peak < 4 * (1 << 20), peak  # the 1 MB chunk read, the line's end held, and their joining
    end = Position(0, len("before\n") + 50 * (1 << 20) + 1)
    assert lines_of(f.poll()) == [b"after"] and f.too_long == [end]
    f.save(f.mark(end))
    f.close()
    again = LogFollower(log, tmp_path / "cp")
    assert lines_of(again.poll()) == [b"after"]  # resumed after the long line, not from the start
    again.close()
