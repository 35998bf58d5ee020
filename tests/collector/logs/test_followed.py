"""A followed log read on its own thread: lines in, observation tables out, the checkpoint saved only
when the consumer says the lines are safe, and bad lines counted under the format's skip reason."""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from prometheus_client import REGISTRY

from collector.config import CollectorSettings, FollowedLog
from collector.logs.followed import Followed, followed_logs
from collector.skips import SkipCounter
from tests.conftest import SCHOOL_DAY

LINES = SCHOOL_DAY.joinpath("squid-access.log").read_text().splitlines(keepends=True)  # line 7 is bad


def checkpoint_of(folder: Path, log: Path) -> Path:
    """Where `followed_logs` keeps a log's checkpoint: named after its absolute path."""
    return folder / (str(log.resolve()).strip("/").replace("/", "_") + ".json")


@pytest.fixture
def running(tmp_path):
    """A squid log configured by a path relative to the config's folder, followed on a thread; yields
    (log, the followed log, what it submitted, its skips) and stops it afterwards."""
    log = tmp_path / "access.log"
    log.write_text("")
    settings = CollectorSettings(follow=(FollowedLog(path=Path("access.log"), format="squid"),))
    (followed,) = followed_logs(settings, tmp_path, tmp_path / "checkpoints")
    submitted: queue.Queue[tuple[pa.Table, object]] = queue.Queue()
    skips, stop = SkipCounter(), threading.Event()
    thread = threading.Thread(target=followed.run, args=(lambda table, kept: submitted.put((table, kept)), stop, skips))
    thread.start()
    yield log, followed, submitted, skips
    stop.set()
    thread.join(10)
    followed.follower.close()


def test_lines_are_submitted_and_the_checkpoint_waits_until_they_are_kept(tmp_path, running):
    log, followed, submitted, skips = running
    with log.open("a") as out:
        out.writelines(LINES)
    table, kept = submitted.get(timeout=10)
    refs = table.column("source_ref").to_pylist()
    assert len(refs) == 8 and refs[0] == f"access.log@0:{len(LINES[0])}"
    assert skips.by_reason == {"bad_squid_line": 1}  # the squid entry's reason, line 7
    checkpoint = checkpoint_of(tmp_path / "checkpoints", log)
    assert followed.follower.checkpoint == checkpoint and not checkpoint.exists()
    kept()
    assert json.loads(checkpoint.read_text())["offset"] == log.stat().st_size
    assert REGISTRY.get_sample_value("ictwatch_follow_lag_bytes", {"log": "access.log"}) == 0


def test_lines_that_give_nothing_advance_the_checkpoint_at_once(tmp_path, running):
    log, _followed, submitted, skips = running
    log.write_text("garbage\n")
    checkpoint = checkpoint_of(tmp_path / "checkpoints", log)
    deadline = time.monotonic() + 10
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert json.loads(checkpoint.read_text())["offset"] == len("garbage\n")
    assert submitted.empty() and skips.by_reason == {"bad_squid_line": 1}


def test_a_line_over_64_kib_is_counted_and_the_checkpoint_passes_it(tmp_path, running):
    """Issue 19, point 12: a line of 100,000 NUL bytes, then a Squid line: the long one is counted as
    `line_too_long` where it ends, never handed to the parser; the Squid line is submitted."""
    log, _followed, submitted, skips = running
    with log.open("ab") as out:
        out.write(bytes(100_000) + b"\n" + LINES[0].encode())
    table, kept = submitted.get(timeout=10)
    assert table.column("source_ref").to_pylist() == [f"access.log@0:{100_001 + len(LINES[0])}"]
    assert skips.by_reason == {"line_too_long": 1}
    kept()
    checkpoint = checkpoint_of(tmp_path / "checkpoints", log)
    assert json.loads(checkpoint.read_text())["offset"] == log.stat().st_size


def test_an_earlier_checkpoint_kept_late_does_not_go_back(tmp_path):
    log = tmp_path / "access.log"
    log.write_text(LINES[0] + LINES[1])
    settings = CollectorSettings(follow=(FollowedLog(path=log, format="squid"),))
    (followed,) = followed_logs(settings, Path("/nonexistent"), tmp_path / "checkpoints")  # an absolute path
    assert isinstance(followed, Followed)
    (first, _line), (second, _) = followed.follower.poll()
    early, late = followed.follower.mark(first), followed.follower.mark(second)
    followed.keep(late)
    followed.keep(early)  # the writer's threads may finish batches out of order
    assert json.loads(followed.follower.checkpoint.read_text())["offset"] == second.offset
    followed.follower.close()


def wait_for(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_lines_that_give_nothing_wait_for_a_batch_before_them(tmp_path, running):
    """A batch on its way to the store, then a line that gives nothing: the checkpoint must not pass the
    batch before it is safe, or a crash in between loses its lines."""
    log, _followed, submitted, skips = running
    with log.open("a") as out:
        out.write(LINES[0])
    _table, kept = submitted.get(timeout=10)
    with log.open("a") as out:
        out.write("garbage\n")
    wait_for(lambda: skips.by_reason.get("bad_squid_line") == 1)
    checkpoint = checkpoint_of(tmp_path / "checkpoints", log)
    time.sleep(0.3)
    assert not checkpoint.exists()
    kept()
    assert json.loads(checkpoint.read_text())["offset"] == log.stat().st_size  # past the garbage too


def test_a_later_batch_stored_first_does_not_pass_an_earlier_one(tmp_path, running):
    log, _followed, submitted, _skips = running
    with log.open("a") as out:
        out.write(LINES[0])
    _first, kept_first = submitted.get(timeout=10)
    with log.open("a") as out:
        out.write(LINES[1])
    _second, kept_second = submitted.get(timeout=10)
    checkpoint = checkpoint_of(tmp_path / "checkpoints", log)
    kept_second()
    assert not checkpoint.exists()
    kept_first()
    assert json.loads(checkpoint.read_text())["offset"] == len(LINES[0]) + len(LINES[1])
