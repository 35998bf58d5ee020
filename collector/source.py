"""What an input is to the pipeline: the `Source` protocol every reader meets (captures, logs, live capture),
with the progress it reports. `collector.sources` opens the right one for a file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from collector.observation import Emit
from collector.skips import SkipCounter

if TYPE_CHECKING:
    import polars as pl

BatchSink = Callable[["pl.DataFrame"], None]
"""Takes one frame of observations (the columns of `collector.observation.to_table`)."""


class Progress:
    """Bytes consumed so far of how many, read by the CLI's progress bar."""

    def __init__(self, raw: BinaryIO, total: int) -> None:
        self._raw = raw
        self.total = total

    @property
    def done(self) -> int:
        return self._raw.tell()


class Source(Protocol):
    """What every input is to the pipeline: `run(emit)` until its end or `stop()`, and what it read."""

    @property
    def path(self) -> Path | None:
        """The file read; None for a live capture."""

    @property
    def skips(self) -> SkipCounter:
        """The records skipped so far, by reason."""

    @property
    def packets(self) -> int:
        """Packets read so far (0 for a log; for Suricata's EVE, the packets of its flow records)."""

    @property
    def progress(self) -> Progress | None:
        """How far through the input reading is; None where that is not known."""

    @property
    def run_batches(self) -> Callable[[BatchSink], int] | None:
        """For an input that can be read a chunk at a time straight into frames: that reader, which hands
        `sink` each frame and returns the rows; None for one read only with `run`."""

    def run(self, emit: Emit) -> None:
        """Read the input, handing each observation to `emit`."""

    def stop(self) -> None:
        """Stop reading at the next record."""
