"""The capture worker reading an AF_PACKET ring (`--tool afpacket`, collector/capture/afpacket.py), on a real
veth pair: the school day's capture (every frame 802.1Q-tagged, a tag the kernel takes off before any
socket sees it) replayed by tcpreplay, captured at once by the ring and by dumpcap, and dumpcap's file
decoded by the worker's replay path: the observations must be the same, flows, DNS and TLS names and
VLANs included. A filter, line-rate mode's among them, narrows both alike and compiles to what tcpdump
prints; a bad filter and a missing CAP_NET_RAW are refused in words; the ring's drops are reported while
the capture runs; an interface that goes down and up is survived.

Needs root, iproute2, tcpreplay and dumpcap; skipped otherwise."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

from collector.capture.linerate import capture_filter
from collector.capture.messages import read_message
from collector.observation import Observation
from tests.bench.live_rig import tree_cpu
from tests.conftest import ROOT, school_config, veth_namespaces

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or any(shutil.which(t) is None for t in ("ip", "tcpreplay", "dumpcap", "setpriv")),
    reason="needs root, iproute2, tcpreplay, dumpcap and setpriv")

SCHOOL_DAY = ROOT / "fixtures" / "school-day" / "school-day.pcap"
WORKER = [sys.executable, "-m", "collector.capture.worker"]
LINE_RATE = capture_filter("not port 22")
NO_CAPABILITIES = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--"]
"""Root with every capability gone: what a service without CAP_NET_RAW is."""


@pytest.fixture
def veth() -> Iterator[tuple[str, str, str, str]]:
    with veth_namespaces(f"afp{os.getpid() % 10000}", ipv6=False) as names:
        yield names


def in_ns(ns: str) -> list[str]:
    return ["ip", "netns", "exec", ns]


def start_worker(ns: str, interface: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(in_ns(ns) + WORKER + ["--tool", "afpacket", "--interface", interface, *args],
                            stdout=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def wait_for_sockets(ns: str, count: int) -> None:
    """Until `count` packet sockets taking every protocol are open in `ns` (the ring, dumpcap's)."""
    for _ in range(200):
        lines = subprocess.run(in_ns(ns) + ["cat", "/proc/net/packet"], capture_output=True, text=True).stdout
        if sum(1 for line in lines.splitlines()[1:] if line.split()[3] == "0003") >= count:
            time.sleep(0.2)
            return
        time.sleep(0.05)
    raise AssertionError(f"no {count} packet sockets in {ns}")


def replay(ns: str, interface: str, *options: str) -> int:
    """tcpreplay the school day into `interface`: the packets it sent (two are longer than the MTU)."""
    out = subprocess.run(in_ns(ns) + ["tcpreplay", f"--intf1={interface}", *options, str(SCHOOL_DAY)],
                         capture_output=True, text=True, check=True).stdout
    found = re.search(r"Successful packets:\s+(\d+)", out)
    assert found, out
    return int(found.group(1))


def messages(proc: subprocess.Popen[bytes]) -> list[tuple]:
    assert proc.stdout is not None
    out = []
    while (message := read_message(proc.stdout.fileno())) is not None:
        out.append(message)
    proc.wait(30)
    return out


def parse(stream: bytes) -> list[tuple]:
    """The messages of a worker's whole output."""
    with tempfile.TemporaryFile() as file:
        file.write(stream)
        file.seek(0)
        found = []
        while (message := read_message(file.fileno())) is not None:
            found.append(message)
    return found


def end(stream: bytes) -> tuple:
    """The last message of a worker's whole output, which must be its "end"."""
    last = parse(stream)[-1]
    assert last[0] == "end"
    return last


def observations(found: list[tuple]) -> list[Observation]:
    return [Observation(*row) for m in found if m[1] is not None for row in zip(*m[1], strict=True)]


def untimed(found: list[Observation]) -> list[tuple]:
    """Every observation but its times, sorted, with the input's name left out of `source_ref` (its frame
    number kept). Each packet socket reads the clock for itself, so a frame's time in the ring and in
    dumpcap's file differ by a few microseconds: they are compared apart."""
    return sorted((o.source_ref.split("#")[1], *(getattr(o, f) for f in o.__dataclass_fields__
                                                  if f not in ("ts_us", "source_ref", "duration_s"))) for o in found)


def times(found: list[Observation]) -> list[tuple[str, str, int, float | None]]:
    return sorted((o.source_ref.split("#")[1], o.kind, o.ts_us, o.duration_s) for o in found)


@pytest.mark.parametrize("capture_filter", [None, "udp port 53", LINE_RATE])
def test_the_ring_decodes_what_dumpcap_captured(veth, tmp_path, capture_filter):
    monitor_ns, sender_ns, monitor_if, sender_if = veth
    filtered = ["--filter", capture_filter] if capture_filter else []
    ring = start_worker(monitor_ns, monitor_if, *filtered)
    written = tmp_path / "dumpcap.pcap"
    dumpcap = subprocess.Popen(in_ns(monitor_ns) + ["dumpcap", "-q", "-i", monitor_if, "-P", "-w", str(written)]
                               + (["-f", capture_filter] if capture_filter else []), stderr=subprocess.PIPE)
    try:
        wait_for_sockets(monitor_ns, 2)
        sent = replay(sender_ns, sender_if, "--pps=1000")
        time.sleep(1)
    finally:
        ring.send_signal(signal.SIGTERM)
        dumpcap.send_signal(signal.SIGTERM)
        dumpcap.wait(30)
    live = messages(ring)
    assert ring.returncode == 0 and live[-1][0] == "end" and live[-1][6] is None
    from_file = parse(subprocess.run(WORKER + ["--file", str(written)], capture_output=True, cwd=ROOT,
                                     check=True).stdout)

    expected = {None: sent, "udp port 53": 24, LINE_RATE: kept_by_tcpdump(LINE_RATE)}[capture_filter]
    assert live[-1][2] == from_file[-1][2] == expected
    assert live[-1][5] == 0  # nothing dropped
    ours, theirs = observations(live), observations(from_file)
    assert untimed(ours) == untimed(theirs)
    for (_, _, ts, duration), (_, _, their_ts, their_duration) in zip(times(ours), times(theirs), strict=True):
        assert abs(ts - their_ts) < 1000 and abs((duration or 0) - (their_duration or 0)) < 0.001
    kinds = {o.kind for o in ours}
    if capture_filter is None:
        assert {"flow", "dns", "tls"} <= kinds, kinds
        assert {o.vlan for o in ours} == {20, 30, 40, 50}  # every frame's tag put back (tshark)
    elif capture_filter == LINE_RATE:  # the hellos, DNS and the requests: flows are left to Suricata
        assert {"dns", "tls"} <= kinds and expected < sent, (kinds, expected)
    else:
        assert "tls" not in kinds and "dns" in kinds, kinds


def kept_by_tcpdump(text: str) -> int:
    """The frames of the school day's capture a filter keeps, as tcpdump reading the file counts them
    (offline, where `vlan` reads the tag in the frame), but for the two longer than the veth's MTU (1500
    bytes and an 802.1Q-tagged Ethernet header), which tcpreplay cannot send."""
    out = subprocess.run(["tcpdump", "-n", "-r", str(SCHOOL_DAY), f"({text}) and len <= 1518"], capture_output=True,
                         text=True, check=True).stdout
    return len(out.splitlines())


def test_the_ring_reports_its_drops_while_capturing(veth):
    """The worker held still while a ring of two blocks overflows: once it runs again, a tick says how many
    were dropped before the capture ends, and what was decoded and dropped add up to what was sent."""
    monitor_ns, sender_ns, monitor_if, sender_if = veth
    ring = start_worker(monitor_ns, monitor_if, "--buffer-mb", "2", "--tick", "0.2")
    try:
        wait_for_sockets(monitor_ns, 1)
        ring.send_signal(signal.SIGSTOP)
        sent = replay(sender_ns, sender_if, "--topspeed", "--loop=100")
        time.sleep(0.2)  # the kernel hands over the last block (20 ms)
        ring.send_signal(signal.SIGCONT)
        time.sleep(1.5)
    finally:
        ring.send_signal(signal.SIGCONT)
        ring.send_signal(signal.SIGTERM)
    found = messages(ring)
    ticks = [m for m in found if m[0] == "tick"]
    assert ticks and ticks[-1][5] > 0
    assert found[-1][2] + found[-1][5] == sent
    assert found[-1][2] < sent


def test_a_bad_filter_is_refused_in_words():
    worker = subprocess.run(WORKER + ["--tool", "afpacket", "--interface", "lo", "--filter", "port nonsense"],
                            capture_output=True, cwd=ROOT, timeout=60)
    assert worker.returncode == 1
    error = end(worker.stdout)[6]
    assert "capture filter 'port nonsense' is not a valid BPF filter" in error, error


def test_without_cap_net_raw_the_ring_says_what_it_needs():
    worker = subprocess.run(NO_CAPABILITIES + WORKER + ["--tool", "afpacket", "--interface", "lo"],
                            capture_output=True, cwd=ROOT, timeout=60)
    assert worker.returncode == 1
    error = end(worker.stdout)[6]
    assert "needs CAP_NET_RAW" in error and "Operation not permitted" in error, error


def test_an_interface_that_is_not_there_is_named():
    worker = subprocess.run(WORKER + ["--tool", "afpacket", "--interface", "nosuch0"], capture_output=True,
                            cwd=ROOT, timeout=60)
    assert "no network interface 'nosuch0'" in end(worker.stdout)[6]


@pytest.mark.parametrize("text", ["udp port 53 or tcp[13] & 2 != 0", LINE_RATE])
def test_the_filter_compiles_to_the_instructions_tcpdump_prints(text):
    """libpcap through ctypes gives the program tcpdump -ddd prints for the same filter (a peer: tcpdump's own
    compiler, the same library), line-rate mode's long filter too."""
    from collector.capture.afpacket import compile_filter

    program = compile_filter(text)
    printed = subprocess.run(["tcpdump", "-y", "EN10MB", "-ddd", text],
                             capture_output=True, text=True, check=True).stdout.split("\n")
    insns = [tuple(int(x) for x in line.split()) for line in printed[1:] if line.strip()]
    assert int(printed[0]) == len(insns) == len(program) // 8
    assert [(int.from_bytes(program[i:i + 2], sys.byteorder), program[i + 2], program[i + 3],
             int.from_bytes(program[i + 4:i + 8], sys.byteorder)) for i in range(0, len(program), 8)] == insns




def test_check_says_which_capture_path_auto_takes(tmp_path):
    """`auto` takes the ring when the daemon may open it (root here), and dumpcap when it may not."""
    config = school_config(tmp_path / "school", "collector:\n  interface: eth0\n")
    command = [sys.executable, "-m", "ictwatch.cli", "check", "--config", str(config)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    privileged = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT, env=env).stdout
    unprivileged = subprocess.run(NO_CAPABILITIES + command, capture_output=True, text=True, check=True, cwd=ROOT,
                                  env=env).stdout
    assert "capture: the capture worker reads eth0 through the kernel's packet ring (AF_PACKET, CAP_NET_RAW)" \
        in privileged.splitlines()
    assert "capture: dumpcap captures eth0 for the capture worker" in unprivileged.splitlines()


def test_an_interface_going_down_and_up_is_said_and_survived(veth):
    """The ring's socket holds an error while its interface is down: the worker says so once, does not spin
    on it, and captures again once the interface is back."""
    monitor_ns, sender_ns, monitor_if, sender_if = veth
    ring = start_worker(monitor_ns, monitor_if, "--tick", "0.2")
    try:
        wait_for_sockets(monitor_ns, 1)
        subprocess.run(in_ns(monitor_ns) + ["ip", "link", "set", monitor_if, "down"], check=True)
        before = tree_cpu(ring.pid)
        time.sleep(2)
        spent = tree_cpu(ring.pid) - before
        subprocess.run(in_ns(monitor_ns) + ["ip", "link", "set", monitor_if, "up"], check=True)
        time.sleep(1)
        sent = replay(sender_ns, sender_if, "--pps=1000")
        time.sleep(1)
    finally:
        ring.send_signal(signal.SIGTERM)
    found = messages(ring)
    logs = [text for m in found for _, _, text in m[4]]
    assert spent < 0.5, spent  # sleeping, not spinning on the error
    assert any(text == f"capture on {monitor_if}: Network is down" for text in logs), logs
    assert found[-1][2] == sent and found[-1][6] is None
