"""The parts of a live capture on a veth pair, shared by the soak and the live benchmark.

`veth_namespaces` (tests/conftest.py) makes the two namespaces; here: starting `ictwatch run` in one of
them (the demo school's policy, dumpcap or the AF_PACKET ring, the embedded store in a temporary folder, metrics on the
namespace's own loopback), reading what it has decoded, stopping it, and the CPU time of a process tree.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from tests.bench.memory import descendants
from tests.conftest import ROOT, school_config

FETCH = ("import sys, urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9750/metrics', timeout=5)"
         ".read().decode())")


def in_namespace(ns: str, cpu: int | None = None) -> list[str]:
    """The start of a command line that runs in namespace `ns`, pinned to core `cpu` if given."""
    return ["ip", "netns", "exec", ns] + (["taskset", "-c", str(cpu)] if cpu is not None else [])


def wait_for(stream: IO[str], text: str) -> None:
    """Read `stream` until a line holds `text`, then keep reading it (and throwing it away) on a thread, so
    that the program never blocks on a full pipe. RuntimeError if the stream ends first."""
    seen: list[str] = []
    for line in iter(stream.readline, ""):
        if text in line:
            threading.Thread(target=stream.read, daemon=True).start()
            return
        seen = (seen + [line])[-20:]
    raise RuntimeError(f"exited before {text!r}:\n{''.join(seen)}")


def start_daemon(ns: str, interface: str, tmp: Path, cpu: int | None = None,
                 tool: str = "dumpcap") -> subprocess.Popen[str]:
    """`ictwatch run` capturing `interface` in namespace `ns` with capture tool `tool`, with its configuration
    and store in `tmp` (which must not hold them yet); returned once it says it is capturing."""
    config = school_config(tmp / "school", f"collector:\n  capture_tool: {tool}\n")
    env = {**os.environ, "ICTWATCH_STORAGE_URL": f"chdb://{tmp / 'store'}", "PYTHONPATH": str(ROOT)}
    daemon = subprocess.Popen(in_namespace(ns, cpu) + [sys.executable, "-m", "ictwatch.cli", "run", "--config",
                                                       str(config), "--interface", interface, "--no-web"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert daemon.stderr is not None
    wait_for(daemon.stderr, "capturing on")  # said as the daemon starts its capture worker
    wait_for_capture(ns)
    return daemon


def wait_for_capture(ns: str, timeout_s: float = 60) -> None:
    """Until a packet socket taking every protocol is open in namespace `ns` (the capture worker's ring or
    dumpcap's), and a moment more: traffic sent before it would be lost to no counter."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = subprocess.run(in_namespace(ns) + ["cat", "/proc/net/packet"], capture_output=True, text=True).stdout
        if any(line.split()[3] == "0003" for line in lines.splitlines()[1:]):
            time.sleep(0.2)
            return
        time.sleep(0.05)
    raise RuntimeError(f"no capture opened in {ns} in {timeout_s:g} s")


def decoded(ns: str) -> int:
    """The daemon's `ictwatch_packets_total` now (published every half second while it captures)."""
    out = subprocess.run(in_namespace(ns) + [sys.executable, "-c", FETCH], capture_output=True, text=True,
                         timeout=30).stdout
    found = re.search(r"^ictwatch_packets_total (\S+)$", out, re.M)
    return int(float(found.group(1))) if found else 0


def stop_daemon(daemon: subprocess.Popen[str]) -> tuple[int, int]:
    """Stop the daemon (SIGTERM, as systemd would); (packets decoded, packets the capture tool dropped), from
    the line it prints as it ends."""
    daemon.send_signal(signal.SIGTERM)
    assert daemon.stdout is not None
    out = daemon.stdout.read()
    daemon.wait(timeout=120)
    found = re.search(r"captured (\d+) packets.*the capture tool dropped (\d+)", out)
    if not found:
        raise RuntimeError(f"the daemon ended without its summary line ({daemon.returncode}): {out[-500:]}")
    return int(found.group(1)), int(found.group(2))


def tree_cpu(pid: int) -> float:
    """CPU seconds (user and system) used so far by `pid` and every process below it."""
    total = 0
    for each in descendants(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone since it was listed
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")
