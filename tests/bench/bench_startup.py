"""Start-up: `ictwatch breaches`, `report` and `replay` of a 50 KB capture, beside Suricata's whole run of the
same capture and the floor of opening the embedded engine, in the same run.

    ./dev bench-startup                             # best of 5 rounds (BENCH_ROUNDS)
    python -m tests.bench.bench_startup --quick     # one round: checks it still runs (CI)

Each command runs as a process of its own, as an operator runs it, timed from its start to its exit, with its
peak resident memory sampled over its process tree (anonymous, and file-backed beside it: tests/bench/
memory.py). `breaches` and `report` read the demo's store (the school day replayed into a temporary folder
first); each `replay` of fixtures/school-day/school-day.pcap (49.7 KB) goes into a fresh store. The rounds
take every entry in turn, so that a noisy moment on the machine hits all of them alike; a time is the best
round's, a memory figure the highest seen in any round.

Beside them: `breaches` while the daemon holds the store (`ictwatch run` on an idle FIFO; the caller only:
it forwards its arguments over the command socket), `ictwatch --help`, Suricata 7's `-r` of the same capture
(one thread, EVE flow/dns/tls/http, no rules: start-up, run and exit), and the floors: chDB's `SELECT 1` in a
Python process, in memory and on a store of its own (what a command opens: connecting imports pyarrow and
numpy), `clickhouse local` when it is installed, and Python itself.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.bench.memory import run_measured
from tests.conftest import free_port, school_config

ROOT = Path(__file__).resolve().parents[2]
DAY = ROOT / "fixtures" / "school-day"
CAPTURE = DAY / "school-day.pcap"
PERIOD = ["--from", "2026-06-16", "--to", "2026-06-16"]
GOAL_S, GOAL_MB = 0.5, 100.0
"""Issue 21's goal for each of the three commands: at most this long, and this much anonymous memory at peak."""
ICTWATCH = [sys.executable, "-m", "ictwatch.cli"]


class Entry:
    """One command measured in every round: its best time, its highest peaks. `env(round)` adds to the
    environment of each run."""

    def __init__(self, name: str, argv: list[str], env: Callable[[int], dict[str, str]] = lambda _: {}) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.best_s, self.anon_mb, self.file_mb = float("inf"), 0.0, 0.0

    def run(self, round_no: int, said: Path) -> None:
        """Run it once (what it prints on stderr into `said`); a failure stops the benchmark with that."""
        with said.open("wb") as err:
            wall, peak, status = run_measured(self.argv, env={**os.environ, **self.env(round_no)}, cwd=ROOT,
                                              stdout=subprocess.DEVNULL, stderr=err)
        if status != 0:
            raise SystemExit(f"bench-startup: {' '.join(self.argv)} failed ({status}): {said.read_text()[-2000:]}")
        self.best_s = min(self.best_s, wall)
        self.anon_mb, self.file_mb = max(self.anon_mb, peak.anon_mb), max(self.file_mb, peak.file_mb)

    def line(self) -> str:
        """Its row of the table."""
        return f"  {self.name:<52} {self.best_s:7.3f} s {self.anon_mb:7.0f} MB {self.file_mb:7.0f} MB"


def entries(tmp: Path, store: Path) -> tuple[list[Entry], list[Entry]]:
    """(ictwatch's three commands and `--help`, the peers and floors on this machine)."""
    config = str(DAY / "ictwatch.yaml")

    def on_store(_: int) -> dict[str, str]:
        return {"ICTWATCH_STORAGE_URL": f"chdb://{store}"}

    ours = [
        Entry("ictwatch breaches (a day)", [*ICTWATCH, "breaches", "--config", config, *PERIOD], on_store),
        Entry("ictwatch report (one person, a day, HTML)", [
            *ICTWATCH, "report", "--config", config, "--user", "sokafor", *PERIOD, "--requested-by", "dpatel",
            "--reason", "start-up benchmark", "-o", str(tmp / "report.html")], on_store),
        Entry("ictwatch replay (49.7 KB capture, fresh store)", [*ICTWATCH, "replay", "--config", config, str(CAPTURE)],
              lambda n: {"ICTWATCH_STORAGE_URL": f"chdb://{tmp / f'replay-{n}'}"}),
        Entry("ictwatch --help", [*ICTWATCH, "--help"]),
    ]
    peers = [Entry("python -c pass (the interpreter)", [sys.executable, "-c", "pass"]),
             Entry("chDB: import, SELECT 1 (python -c)", [sys.executable, "-c", "import chdb; chdb.query('SELECT 1')"]),
             Entry("chDB: import, open a store, SELECT 1", [
                 sys.executable, "-c", f"import chdb; chdb.connect({str(tmp / 'floor')!r}).query('SELECT 1')"])]
    clickhouse = shutil.which("clickhouse")
    if clickhouse:
        peers.append(Entry("clickhouse local: SELECT 1", [clickhouse, "local", "--query", "SELECT 1"]))
    suricata = shutil.which("suricata")
    if suricata:
        (tmp / "suricata").mkdir()
        peers.append(Entry("suricata 7 -r (same capture, one thread, EVE)", [
            suricata, "-c", str(Path(__file__).with_name("suricata.yaml")), "-r", str(CAPTURE), "--runmode", "single",
            "-k", "none", "-S", "/dev/null", "-l", str(tmp / "suricata")]))
    return ours, peers


def through_daemon(tmp: Path, store: Path, rounds: int) -> Entry:
    """`breaches` while `ictwatch run` holds `store` (its capture an idle FIFO): the caller's process alone."""
    fifo = tmp / "capture.fifo"
    os.mkfifo(fifo)
    config = school_config(tmp / "daemon", f"collector:\n  capture_tool: pipe\n  capture_pipe: {fifo}\n"
                           f"metrics:\n  listen: 127.0.0.1:{free_port()}\n")
    env = {"ICTWATCH_STORAGE_URL": f"chdb://{store}"}
    daemon = subprocess.Popen([*ICTWATCH, "run", "--config", str(config), "--no-web"], env={**os.environ, **env},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        socket = store.parent / "ictwatch.sock"
        deadline = time.monotonic() + 120
        while not socket.exists():
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench-startup: the daemon did not start: {daemon.communicate()[1]}")
            time.sleep(0.1)
        entry = Entry("ictwatch breaches, through the daemon (the caller)",
                      [*ICTWATCH, "breaches", "--config", str(config), *PERIOD], lambda _: env)
        for n in range(rounds):
            entry.run(n, tmp / "said.txt")
        return entry
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=120)


def run(rounds: int) -> list[Entry]:
    """Make the demo's store, then time every entry `rounds` times in turn; print the table. Returns the
    entries (ours first)."""
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        store = tmp / "demo" / "store"
        subprocess.run([*ICTWATCH, "replay", "--config", str(DAY / "ictwatch.yaml"), str(CAPTURE),
                        str(DAY / "squid-access.log")], env={**os.environ, "ICTWATCH_STORAGE_URL": f"chdb://{store}"},
                       check=True, capture_output=True, cwd=ROOT)
        ours, peers = entries(tmp, store)
        for n in range(rounds):
            for entry in (*ours, *peers):
                entry.run(n, tmp / "said.txt")
        daemon = through_daemon(tmp, store, rounds)
    load = os.getloadavg()[0]
    print(f"start-up, best of {rounds} round{'s' if rounds > 1 else ''} (load {load:.1f}): wall time, peak resident "
          "memory (anonymous, file-backed)")
    for entry in (*ours, daemon, *peers):
        print(entry.line())
    suricata = next((e for e in peers if e.name.startswith("suricata")), None)
    if suricata:
        print(f"  ratio ictwatch replay / suricata -r, wall: {ours[2].best_s / suricata.best_s:.1f}x")
    missed = [e.name.split(" (")[0] for e in ours[:3] if e.best_s > GOAL_S or e.anon_mb > GOAL_MB]
    print(f"  goal (each of the three ≤ {GOAL_S} s, ≤ {GOAL_MB:.0f} MB anonymous): "
          + (f"not met by {', '.join(missed)}" if missed else "met"))
    return [*ours, daemon, *peers]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: `--quick` for one round."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round, to check it runs")
    args = parser.parse_args(argv)
    run(1 if args.quick else int(os.environ.get("BENCH_ROUNDS", "5")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
