"""A process that appends batches to a spool until it is killed (tests/storage/test_spool.py kills it
with SIGKILL in the middle of an append). After each append returns (fsynced) it prints the batch
number and the segment's size, so the test knows what was kept and when a new append has begun.

    python -m tests.storage.spool_child SPOOL_FOLDER ROWS
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

from storage.spool import Spool
from storage.store import to_record
from tests.storage.test_store import activities


def batch(frame: pl.DataFrame, number: int) -> pl.DataFrame:
    """`frame` with every source_ref marked with the batch number and every time moved on by as many
    microseconds: each batch distinct records (not the same ones read from another file), same size."""
    return frame.with_columns(source_ref=pl.col("source_ref") + f"/b{number:04d}",
                              ts=pl.col("ts") + pl.duration(microseconds=number))


def main() -> None:
    folder, rows = Path(sys.argv[1]), int(sys.argv[2])
    frame = activities(rows)
    spool = Spool(folder)
    number = 0
    while True:
        spool.append(to_record(batch(frame, number)))
        size = sum(p.stat().st_size for p in folder.glob("segment-*.spool"))
        print(f"kept {number} {size}", flush=True)
        number += 1


if __name__ == "__main__":
    main()
