"""The logs `ictwatch run` follows while it captures: each a `LogFollower` with its checkpoint and the
follower parser of its format, read on a thread of its own by `Followed.run`.

A log's checkpoint advances only once the consumer has the observations of the lines before it safe, so
a crash re-reads lines rather than loses them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from collector.config import CollectorSettings
from collector.logs import formats
from collector.logs.follow import LogFollower, Position
from collector.logs.lines import LINE_TOO_LONG
from collector.metrics import FOLLOW_LAG, FOLLOW_READ
from collector.observation import to_table
from collector.skips import SkipCounter


@dataclass(frozen=True)
class Followed:
    """A log to follow while capturing: its follower (with its checkpoint), parser and skip reason."""

    follower: LogFollower
    parse: formats.FollowParser
    skip_reason: str
    _saved: list[Position] = field(default_factory=list)
    _pending: list[Position] = field(default_factory=list)
    _ready: dict[Position, dict[str, object]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _submitted(self, mark: dict[str, object]) -> None:
        with self._lock:
            self._pending.append(_position(mark))

    def keep(self, mark: dict[str, object]) -> None:
        """The lines up to `mark` are safe (called on the writer's thread once they are stored or spooled):
        save the latest checkpoint that passes no line still on its way. The writer's threads may finish
        batches out of order, and lines that gave nothing are safe at once, yet a batch before them that is
        not stored yet must be read again after a crash."""
        at = _position(mark)
        with self._lock:
            if at in self._pending:
                self._pending.remove(at)
            self._ready[at] = mark
            floor = min(self._pending, default=None)
            done = [p for p in self._ready if floor is None or p < floor]
            if not done:
                return
            best = max(done)
            if not self._saved or best > self._saved[0]:
                self.follower.save(self._ready[best])
                self._saved[:] = [best]
            for p in done:
                del self._ready[p]

    def run(self, submit: Callable[..., None], stop: threading.Event, skips: SkipCounter) -> None:
        """Until `stop` is set, read new lines as they are written and hand their observations to
        `submit(table, kept)`, where `kept()` saves the checkpoint after them and is to be called once
        they are safe (stored, or fsynced in the spool); a line the parser refuses, or one over
        `lines.MAX_LINE` (read past, never held), is counted in `skips`."""
        name = self.follower.path.name
        while not stop.is_set():
            lines = self.follower.poll()
            FOLLOW_LAG.labels(name).set(self.follower.lag())
            ends = [position for position, _ in lines] + self.follower.too_long
            if not ends:
                stop.wait(0.5)
                continue
            FOLLOW_READ.labels(name).set(time.time())
            for position in self.follower.too_long:
                skips.skip(LINE_TOO_LONG, f"{name}@{position.generation}:{position.offset}")
            found = []
            for position, raw in lines:
                ref = f"{name}@{position.generation}:{position.offset}"  # where the line ends, as positions grow
                try:
                    found.extend(self.parse(raw.decode("utf-8", "replace"), ref))
                except ValueError as exc:
                    skips.refused(exc, self.skip_reason, ref)
            mark = self.follower.mark(max(ends))
            if found:
                self._submitted(mark)
                submit(to_table(found), lambda m=mark: self.keep(m))
            else:
                self.keep(mark)


def _position(mark: dict[str, object]) -> Position:
    return Position(int(mark["generation"]), int(mark["offset"]))  # type: ignore[call-overload]


def followed_logs(settings: CollectorSettings, base: Path, checkpoints: Path) -> tuple[Followed, ...]:
    """The logs `settings.follow` names (a relative path is taken from `base`, the configuration's folder),
    each with its checkpoint in the folder `checkpoints`, named after the log's absolute path."""
    out = []
    for log in settings.follow:
        path = base / log.path
        checkpoint = checkpoints / (str(path.resolve()).strip("/").replace("/", "_") + ".json")
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        fmt = formats.followed(log.format)
        out.append(Followed(LogFollower(path, checkpoint), fmt.follower(path, settings), fmt.skip_reason))
    return tuple(out)
