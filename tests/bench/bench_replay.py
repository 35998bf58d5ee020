"""The whole `ictwatch replay` of the school mix beside Suricata's whole run, on the same file in the same run.

    ./dev bench-replay                 # ~300k packets (BENCH_PACKETS to change), best of 3 rounds (BENCH_ROUNDS)
    python -m tests.bench.bench_replay --quick    # a few thousand packets: checks it still runs (CI)

Issue 21's fourth goal: the command a school runs on a day's capture, start-up included, against Suricata 7 in
single-thread mode with EVE flow/dns/tls/http output and no rules (tests/bench/suricata.yaml), each started
afresh. The capture is bench_decode's mix. ictwatch replays it with the demo's configuration (the Valley
School: its policy, directory and lists) into a new embedded store each round, so every round judges and
stores every record. Printed for each: the wall time and packets/s of the best round, and the highest peak
of anonymous and file-backed resident memory over the rounds (tests/bench/memory.py: the process tree's sum);
then Suricata's wall time over ictwatch's (the goal is at least 1.5). The two take turns in each round, so
that a noisy moment on the machine hits both alike. The current figures: docs/performance.md.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from collector import compiled
from tests.bench import size_and_rounds
from tests.bench.bench_decode import write_capture
from tests.bench.memory import run_measured

CONFIG = Path(__file__).parents[2] / "fixtures" / "school-day" / "ictwatch.yaml"
GOAL = 1.5
"""Suricata's wall time over ictwatch's that issue 21 asks for."""


@dataclass
class Best:
    """The fastest round's wall time, and the highest peaks of memory over all rounds."""

    wall: float = float("inf")
    anon_mb: float = 0.0
    file_mb: float = 0.0

    def add(self, wall: float, anon_mb: float, file_mb: float) -> None:
        self.wall = min(self.wall, wall)
        self.anon_mb = max(self.anon_mb, anon_mb)
        self.file_mb = max(self.file_mb, file_mb)


def _ictwatch() -> list[str]:
    """The installed `ictwatch` command beside this interpreter (as a school runs it), else the module."""
    script = Path(sys.executable).with_name("ictwatch")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ictwatch.cli"]


def _replay(path: Path, store: Path, out: Path) -> tuple[float, float, float]:
    """(wall seconds, peak anonymous MB, peak file-backed MB) of `ictwatch replay` into a new store."""
    env = {**os.environ, "ICTWATCH_STORAGE_URL": f"chdb://{store}"}
    env.pop("ICTWATCH_SPOOL", None)  # the spool beside the store, in the same temporary folder
    with out.open("w") as said:
        wall, peak, status = run_measured([*_ictwatch(), "replay", "--config", str(CONFIG), str(path)], env=env,
                                          stdout=said, stderr=subprocess.STDOUT)
    if status != 0:
        raise RuntimeError(f"ictwatch replay failed ({status}): {out.read_text()[-500:]}")
    return wall, peak.anon_mb, peak.file_mb


def _suricata(exe: str, path: Path, logdir: Path) -> tuple[float, float, float]:
    """(wall seconds, peak anonymous MB, peak file-backed MB) of Suricata's whole run."""
    logdir.mkdir()
    cmd = [exe, "-c", str(Path(__file__).with_name("suricata.yaml")), "-r", str(path), "--runmode", "single",
           "-k", "none", "-S", "/dev/null", "-l", str(logdir)]
    wall, peak, status = run_measured(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if status != 0:
        raise RuntimeError(f"suricata failed ({status})")
    return wall, peak.anon_mb, peak.file_mb


def run(packets: int, rounds: int) -> dict[str, Best]:
    """Write the mix, then replay it and run Suricata on it `rounds` times in turn; returns each one's best."""
    results: dict[str, Best] = {"ictwatch replay": Best()}
    suricata = shutil.which("suricata")
    if suricata:
        results["suricata 7 single thread"] = Best()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        path = tmp / "bench-mix.pcap"
        count = write_capture(path, packets)
        print(f"capture: {count} packets, {path.stat().st_size / 1e6:.1f} MB (bench_decode's mix)")
        print(f"  ictwatch collector: {'compiled with mypyc' if compiled() else 'pure Python'}; "
              f"config {CONFIG.relative_to(CONFIG.parents[2])}, a new embedded store each round")
        if not suricata:
            print("  suricata: not installed (./dev test installs it from backports when run as root)")
        for n in range(rounds):
            said = tmp / f"replay-{n}.txt"
            results["ictwatch replay"].add(*_replay(path, tmp / f"store-{n}", said))
            if n == 0:
                stored = re.search(r"^stored .*$", said.read_text(), re.M)
                judged = re.search(r"^judged [\d,]+ activities: [\d,]+ breaches", said.read_text(), re.M)
                print(f"  ictwatch: {judged.group(0) if judged else '?'}; {stored.group(0) if stored else '?'}")
            shutil.rmtree(tmp / f"store-{n}", ignore_errors=True)
            shutil.rmtree(tmp / f"store-{n}-spool", ignore_errors=True)
            if suricata:
                results["suricata 7 single thread"].add(*_suricata(suricata, path, tmp / f"suricata-eve-{n}"))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"best of {rounds} round(s), the two taking turns (load average at the end {load}):")
    for name, best in results.items():
        print(f"{name + ' (whole run)':38} {best.wall:6.2f} s {count / best.wall:12,.0f} packets/s   "
              f"peak {best.anon_mb:5.0f} MB anonymous + {best.file_mb:4.0f} MB file-backed")
    if suricata:
        ratio = results["suricata 7 single thread"].wall / results["ictwatch replay"].wall
        print(f"ratio suricata wall / ictwatch replay wall: {ratio:.2f} (goal ≥ {GOAL})")
    return results


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: `--quick` for a small run."""
    run(*size_and_rounds(argv, __doc__ or "", "a few thousand packets, one round: checks it runs", "BENCH_PACKETS",
                         300_000, 3000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
