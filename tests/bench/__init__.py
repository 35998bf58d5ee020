"""Benchmarks: each compares ictwatch with a peer in the same run (docs/performance.md has the figures)."""

from __future__ import annotations

import argparse
import os


def size_and_rounds(argv: list[str] | None, doc: str, quick_help: str, size_var: str, full: int,
                    quick: int) -> tuple[int, int]:
    """The command line of a benchmark that only has a size and rounds: `--quick` for `quick` items and one
    round (checks it runs), else `size_var` items (`full` by default) and `BENCH_ROUNDS` rounds (3)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    if parser.parse_args(argv).quick:
        return quick, 1
    return int(os.environ.get(size_var, str(full))), int(os.environ.get("BENCH_ROUNDS", "3"))
