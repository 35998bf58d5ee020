"""Live capture, nothing lost: `ictwatch run` beside Suricata on a veth pair, at stepped rates.

    ./dev bench-live                   # 5 s per rate from 25,000 packets/s (root, tcpreplay, dumpcap, suricata)
    BENCH_RATES=80000,100000 BENCH_ROUNDS=3 ./dev bench-live    # the rates to try; tries at a rate (2)
    BENCH_TOOLS=afpacket ./dev bench-live   # ictwatch's capture paths to run (afpacket,dumpcap: both)
    python -m tests.bench.bench_live --quick     # 2 s at 2,000 and 5,000 packets/s: checks that it runs

Two network namespaces joined by a veth pair, IPv6 off on both ends so that neither sends anything of its
own. In one, tcpreplay (pinned to core 0) replays the generated school mix (the decoder benchmark's,
preloaded and looped) for 5 s at each asked rate; in the other, the monitor, pinned to core 1:
- ictwatch: `ictwatch run` with the demo school's policy, the embedded store, and each capture path
  asked for (BENCH_TOOLS): `afpacket`, the capture worker reading the kernel's memory-mapped ring itself,
  and `dumpcap`, dumpcap writing pcap into the worker's pipe;
- Suricata 7: AF_PACKET, one capture-and-decode thread (workers mode with one worker: Suricata implements
  the tpacket v3 ring it recommends only in that mode), no rules, EVE flow/dns/tls/http.

Each program is started afresh for each rate, on a fresh store, and given the same 1 s of warm-up traffic
at 1,000 packets/s (ictwatch's first traffic loads libraries once; the warm-up keeps that out of the rate
being measured) before the measured replay; 2 s after the replay ends it is stopped, and its own final
counts are read: for ictwatch, the packets it decoded and what the capture dropped (dumpcap's count or
the ring's), from the line `ictwatch run` prints as it ends (dumpcap only gives its count as it stops, so
the daemon is restarted rather than read live); for Suricata, its last EVE `stats` event (`decoder.pkts`,
`capture.kernel_drops`; Suricata writes one as it stops). tcpreplay's own count of what it sent ("Actual:
N packets") and the rate it achieved ("Rated: … pps") are what the monitor is judged against: lost = sent
(warm-up included) − decoded, and a rate is lossless when nothing is lost. Where it was lost: "kernel" is
what the capture says it dropped (dumpcap's figure sums the socket ring's drops, which libpcap reads from
the kernel, and its own; the daemon keeps only the sum), "iface" the monitor interface's `rx_dropped`,
"backlog" the kernel's input backlog drops (/proc/net/softnet_stat, the whole machine's), "other" the
rest (lost where no counter saw it). Beside them: the monitor's CPU time per 10,000 packets decoded over
the replay and the 2 s after it (user and system, summed over its process tree: the daemon and dumpcap)
and its peak anonymous and file-backed resident memory over the replay (tests/bench/memory.py, the same
tree).

Before the stepped rates, each capture path's worker alone (`python -m collector.capture.worker`, no
daemon) is given the sender's top speed for 5 s (1 s in quick mode): what it decoded and lost, its CPU per
10,000 packets (the worker and dumpcap) and the packets it decodes per second of its own CPU. With no
judging and no store beside it, that is the capture path's own cost, the steadiest figure on a loaded
machine.

The machine is shared, so each rate is tried up to twice (BENCH_ROUNDS), the programs in turn, and each
program's round that lost least is kept. A program stops stepping up once it has lost packets at two
rates running; the run stops when the sender goes no faster than at the rate before (within 2%).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.capture.messages import read_message
from tests.bench.bench_decode import write_capture
from tests.bench.live_rig import in_namespace, start_daemon, stop_daemon, tree_cpu, wait_for
from tests.bench.memory import PeakMemory
from tests.conftest import ROOT, veth_namespaces

RATES = (25_000, 50_000, 75_000, 100_000, 150_000, 185_000, 220_000, 260_000, 290_000, 330_000, 380_000, 440_000)
SENDER_CPU, MONITOR_CPU = 0, 1
WARM_RATE, WARM_S, DRAIN_S = 1_000, 1.0, 2.0
AF_PACKET = """
af-packet:
  - interface: default
    threads: 1
    tpacket-v3: yes
stats:
  enabled: yes
  interval: 1
"""


@dataclass
class Step:
    """One program at one asked rate."""

    program: str
    asked: int
    achieved: float = 0.0
    """The rate tcpreplay says it reached."""
    sent: int = 0
    """Packets tcpreplay sent at the measured rate (the warm-up's not included)."""
    warm: int = 0
    """Packets of the warm-up."""
    decoded: int = 0
    """Packets the monitor decoded, warm-up included."""
    kernel_drops: int = 0
    """What the capture says it dropped: for ictwatch, dumpcap's count (the socket ring's drops, which
    libpcap reads from the kernel, plus dumpcap's own, which the daemon reports summed) or the AF_PACKET
    ring's, Suricata's
    `capture.kernel_drops`."""
    iface_drops: int = 0
    """The monitor interface's `rx_dropped` over the measured replay."""
    backlog_drops: int = 0
    """The kernel's input backlog drops over the measured replay (the whole machine's: others' too)."""
    cpu_s: float = 0.0
    """CPU seconds of the monitor's processes over the measured replay and the drain after it."""
    anon_mb: float = 0.0
    """Peak anonymous resident memory of the monitor's processes over the measured replay."""
    file_mb: float = 0.0
    """Peak file-backed resident memory, likewise."""

    @property
    def lost(self) -> int:
        return self.sent + self.warm - self.decoded

    @property
    def other(self) -> int:
        """Lost where no counter saw it: between the socket and the decoder, or on the way to the socket."""
        return self.lost - self.kernel_drops - self.iface_drops - self.backlog_drops

    @property
    def cpu_per_10k(self) -> float:
        return self.cpu_s / max(1, self.decoded - self.warm) * 10_000


def replay(ns: str, interface: str, capture: Path, rate: int, seconds: float) -> tuple[int, float]:
    """tcpreplay `capture` looped at `rate` (0: as fast as it can) for `seconds`: (packets sent, packets/s
    achieved)."""
    speed = f"--pps={rate}" if rate else "--topspeed"
    out = subprocess.run(in_namespace(ns, SENDER_CPU) + [
        "tcpreplay", f"--intf1={interface}", speed, "--loop=0", f"--duration={seconds:g}",
        "--preload-pcap", str(capture)], capture_output=True, text=True, timeout=seconds + 60).stdout
    sent, pps = re.search(r"Actual: (\d+) packets", out), re.search(r"Rated: .*?([\d.]+) pps", out)
    if not sent or not pps:
        raise RuntimeError(f"tcpreplay said: {out[-500:]}")
    return int(sent.group(1)), float(pps.group(1))


def interface_drops(ns: str, interface: str) -> int:
    """The interface's receive drops as the kernel counts them."""
    out = subprocess.run(["ip", "-n", ns, "-j", "-s", "link", "show", interface], capture_output=True, text=True,
                         check=True).stdout
    return int(json.loads(out)[0]["stats64"]["rx"]["dropped"])


def backlog_drops() -> int:
    """Packets the kernel dropped because a core's input backlog was full (all cores, the whole machine)."""
    return sum(int(line.split()[1], 16) for line in Path("/proc/net/softnet_stat").read_text().splitlines())


class Rig:
    """The veth pair, the capture to replay and a folder for each program's files."""

    def __init__(self, monitor_ns: str, sender_ns: str, monitor_if: str, sender_if: str, tmp: Path) -> None:
        self.monitor_ns, self.sender_ns, self.monitor_if, self.sender_if = monitor_ns, sender_ns, monitor_if, sender_if
        self.tmp = tmp
        self.capture = tmp / "mix.pcap"
        write_capture(self.capture, 30_000)
        self.runs = 0

    def folder(self, program: str) -> Path:
        """A new folder's path for one run of a program."""
        self.runs += 1
        return self.tmp / f"{program}-{self.runs}"

    def measure(self, step: Step, pid: int, seconds: float) -> None:
        """Warm the monitor up, then replay at the step's rate, filling in everything but what the monitor
        says it decoded and dropped."""
        step.warm = replay(self.sender_ns, self.sender_if, self.capture, WARM_RATE, WARM_S)[0]
        time.sleep(1)
        iface, backlog, cpu = interface_drops(self.monitor_ns, self.monitor_if), backlog_drops(), tree_cpu(pid)
        with PeakMemory(pid, every_s=0.05) as peak:
            step.sent, step.achieved = replay(self.sender_ns, self.sender_if, self.capture, step.asked, seconds)
            time.sleep(DRAIN_S)
            step.cpu_s = tree_cpu(pid) - cpu
        step.iface_drops = interface_drops(self.monitor_ns, self.monitor_if) - iface
        step.backlog_drops = backlog_drops() - backlog
        step.anon_mb, step.file_mb = peak.anon_mb, peak.file_mb

    def ictwatch(self, tool: str) -> Callable[[int, float], Step]:
        """`ictwatch run` with capture tool `tool`, as a program to step through the rates."""
        return lambda rate, seconds: self._ictwatch(tool, rate, seconds)

    def _ictwatch(self, tool: str, rate: int, seconds: float) -> Step:
        step = Step(f"ictwatch-{tool}", rate)
        daemon = start_daemon(self.monitor_ns, self.monitor_if, self.folder("ictwatch"), MONITOR_CPU, tool)
        try:
            self.measure(step, daemon.pid, seconds)
        finally:
            step.decoded, step.kernel_drops = stop_daemon(daemon)
        return step

    def suricata(self, rate: int, seconds: float) -> Step:
        """Suricata, AF_PACKET, one worker thread, at one rate."""
        step = Step("suricata", rate)
        logdir = self.folder("suricata")
        logdir.mkdir()
        config = logdir / "suricata.yaml"
        config.write_text(Path(__file__).with_name("suricata.yaml").read_text() + AF_PACKET)
        proc = subprocess.Popen(in_namespace(self.monitor_ns, MONITOR_CPU) + [
            "suricata", "-c", str(config), f"--af-packet={self.monitor_if}", "--runmode", "workers", "-k", "none",
            "-S", "/dev/null", "-l", str(logdir), "--set", "outputs.0.eve-log.types.4=stats"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert proc.stdout is not None
            wait_for(proc.stdout, "Engine started")
            self.measure(step, proc.pid, seconds)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
        stats = [json.loads(line)["stats"] for line in (logdir / "eve.json").read_text().splitlines()
                 if '"event_type":"stats"' in line][-1]
        step.decoded, step.kernel_drops = stats["decoder"]["pkts"], stats["capture"]["kernel_drops"]
        return step

    def worker_alone(self, tool: str, seconds: float) -> Step:
        """The capture worker alone with capture tool `tool`, the sender at its top speed."""
        step = Step(f"worker-{tool}", 0)
        proc = subprocess.Popen(in_namespace(self.monitor_ns, MONITOR_CPU) + [
            sys.executable, "-m", "collector.capture.worker", "--tool", tool, "--interface", self.monitor_if],
            stdout=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.stdout is not None
        last: list[tuple[Any, ...]] = []
        reader = threading.Thread(target=lambda: last.extend(read_all(proc.stdout.fileno())), daemon=True)
        reader.start()
        try:
            time.sleep(1.5)  # the worker opens its capture
            cpu = tree_cpu(proc.pid)
            step.sent, step.achieved = replay(self.sender_ns, self.sender_if, self.capture, 0, seconds)
            time.sleep(DRAIN_S)
            step.cpu_s = tree_cpu(proc.pid) - cpu
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            reader.join(60)
        step.decoded, step.kernel_drops = last[-1][2], last[-1][5]
        return step


def table(steps: list[Step]) -> None:
    """Print one program's steps."""
    print(f"{steps[0].program}:")
    print(f"{'asked':>8} {'achieved':>9} {'sent':>9} {'decoded':>9} {'lost':>8} {'kernel':>7} {'other':>6} "
          f"{'iface':>5} {'backlog':>7} {'lossless':>8} {'CPU s/10k':>9} {'anon MB':>8} {'file MB':>8}")
    for s in steps:
        print(f"{s.asked:>8,} {s.achieved:>9,.0f} {s.sent:>9,} {s.decoded:>9,} {s.lost:>8,} {s.kernel_drops:>7,} "
              f"{s.other:>6,} {s.iface_drops:>5,} {s.backlog_drops:>7,} {'yes' if s.lost <= 0 else 'no':>8} "
              f"{s.cpu_per_10k:>9.3f} {s.anon_mb:>8.0f} {s.file_mb:>8.0f}")


def highest_lossless(steps: list[Step]) -> float:
    """The highest achieved rate with nothing lost (0 if none)."""
    return max((s.achieved for s in steps if s.lost <= 0), default=0.0)


def read_all(fd: int) -> list[tuple[Any, ...]]:
    """A capture worker's messages until its output ends, keeping only the last."""
    last: list[tuple[Any, ...]] = []
    while (message := read_message(fd)) is not None:
        last[:] = [message]
    return last


def workers_alone(rig: Rig, tools: list[str], seconds: float) -> None:
    """Each capture path's worker alone at the sender's top speed, printed."""
    print(f"the capture worker alone, the sender at its top speed for {seconds:g} s:")
    print(f"{'worker':>16} {'achieved':>9} {'sent':>9} {'decoded':>9} {'lost':>8} {'kernel':>7} {'CPU s/10k':>9} "
          f"{'packets/CPU s':>13}")
    for tool in tools:
        s = rig.worker_alone(tool, seconds)
        print(f"{s.program:>16} {s.achieved:>9,.0f} {s.sent:>9,} {s.decoded:>9,} {s.lost:>8,} {s.kernel_drops:>7,} "
              f"{s.cpu_per_10k:>9.4f} {10_000 / max(s.cpu_per_10k, 1e-9):>13,.0f}", flush=True)


def run(rates: list[int], seconds: float, rounds: int, tools: list[str], alone_s: float) -> dict[str, list[Step]]:
    """The workers alone (`workers_alone`); then step each ictwatch capture path in `tools` and Suricata up
    through `rates`, each rate up to `rounds` times (in turn, keeping each program's round that lost least;
    a lossless round ends the trying); print a table each and the summary."""
    with tempfile.TemporaryDirectory() as tmpdir, veth_namespaces(f"bl{os.getpid() % 10000}", ipv6=False) as (
            monitor_ns, sender_ns, monitor_if, sender_if):
        rig = Rig(monitor_ns, sender_ns, monitor_if, sender_if, Path(tmpdir))
        programs: dict[str, Callable[[int, float], Step]] = {f"ictwatch-{tool}": rig.ictwatch(tool) for tool in tools}
        programs["suricata"] = rig.suricata
        results: dict[str, list[Step]] = {name: [] for name in programs}
        print(f"rig: {seconds:g} s per rate, best of {rounds}, sender on core {SENDER_CPU}, monitor on core "
              f"{MONITOR_CPU}; load {os.getloadavg()[0]:.2f}")
        workers_alone(rig, tools, alone_s)
        fastest = 0.0
        for rate in rates:
            best: dict[str, Step] = {}
            for _ in range(rounds):
                for name, measure in programs.items():
                    steps = results[name]
                    if len(steps) >= 2 and steps[-1].lost > 0 and steps[-2].lost > 0:
                        continue  # lost at two rates running: no need to go higher
                    if name in best and best[name].lost <= 0:
                        continue
                    step = measure(rate, seconds)
                    print(f"  {name} at {rate:,}: achieved {step.achieved:,.0f}, lost {step.lost:,}", flush=True)
                    if name not in best or step.lost < best[name].lost:
                        best[name] = step
            for name, step in best.items():
                results[name].append(step)
            achieved = [step.achieved for step in best.values()]
            if not achieved or max(achieved) < 1.02 * fastest:
                print(f"  stopping at {rate:,}: {'the sender went no faster' if achieved else 'all lost packets'}")
                break
            fastest = max(achieved)
    for steps in results.values():
        if steps:
            table(steps)
    theirs = highest_lossless(results["suricata"])
    for name in programs:
        if name != "suricata":
            ours = highest_lossless(results[name])
            ratio = f"{ours / theirs:.2f}" if theirs else "n/a"
            print(f"highest lossless rate: {name} {ours:,.0f} packets/s, suricata {theirs:,.0f} packets/s; "
                  f"ratio {ratio}; load {os.getloadavg()[0]:.2f}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 s at 2,000 and 5,000 packets/s: checks that it runs")
    args = parser.parse_args(argv)
    missing = [tool for tool in ("ip", "taskset", "tcpreplay", "dumpcap", "suricata") if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing:
        print(f"bench-live: needs root and {', '.join(missing) or 'nothing else'}")
        return 0
    tools = os.environ.get("BENCH_TOOLS", "afpacket,dumpcap").split(",")
    if args.quick:
        run([2_000, 5_000], 2, 1, tools, 1)
    else:
        env = os.environ.get("BENCH_RATES")
        run([int(r) for r in env.split(",")] if env else list(RATES), 5, int(os.environ.get("BENCH_ROUNDS", "2")),
            tools, 5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
