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
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def keep(self, mark: dict[str, object]) -> None:
        """Save the checkpoint `mark` (called on the writer's thread once the lines up to it are safe), unless
        a later one is saved already."""
        at = Position(int(mark["generation"]), int(mark["offset"]))  # type: ignore[call-overload]
        with self._lock:
            if self._saved and self._saved[0] >= at:
                return
            self.follower.save(mark)
            self._saved[:] = [at]

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
                submit(to_table(found), lambda m=mark: self.keep(m))
            else:
                self.keep(mark)


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
