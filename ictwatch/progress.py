"""A progress bar for long replays, shown only when the output is a terminal."""

from __future__ import annotations

import threading
from typing import Any, TextIO


class ProgressBar:
    """Redraws `name  42%  12.3 MB` on one line every 0.2 s while a source runs; silent off a terminal."""

    def __init__(self, out: TextIO, interval: float = 0.2) -> None:
        self._out = out
        self._interval = interval
        self._source: Any = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ProgressBar:
        if self._out.isatty():
            self._thread = threading.Thread(target=self._draw_loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
            self._out.write("\r\033[K")
            self._out.flush()

    def follow(self, source: Any) -> None:
        """Called by the pipeline with each source as it starts (None at the end)."""
        self._source = source

    def _draw_loop(self) -> None:
        while not self._done.wait(self._interval):
            src = self._source
            progress = src.progress if src is not None else None
            if progress is None or not progress.total:
                continue
            share = min(progress.done / progress.total, 1.0)
            bar = "#" * int(share * 30)
            self._out.write(f"\r{src.path.name}  [{bar:<30}] {share:4.0%}  {progress.done / 1e6:.1f} MB")
            self._out.flush()
