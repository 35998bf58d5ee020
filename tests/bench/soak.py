"""Soak: `ictwatch run` capturing live on a veth pair for ten minutes of steady generated traffic.

    ./dev soak                                   # 10 minutes at 5,000 packets/s (needs root and iproute2)
    python -m tests.bench.soak --quick           # 20 seconds at 1,000 packets/s: checks it still runs

Two network namespaces joined by a veth pair (IPv6 off, so that the ends send nothing of their own): in
one, the daemon (dumpcap capture, the demo school's policy, the embedded store, metrics on its loopback);
in the other, a sender that replays the frames of the generated school mix (the decoder benchmark's)
through a raw packet socket at a steady rate. Every
30 seconds (5 in quick mode) it prints packets sent and captured, the difference (drops anywhere between
the socket and the decoder), the resident memory of the daemon and its dumpcap (tests/bench/memory.py:
anonymous, and file-backed beside it), and their CPU time per 10,000 packets; at the end, whether the
anonymous memory stayed flat over the second half (it must: every table is bounded).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from tests.bench.bench_decode import write_capture
from tests.bench.live_rig import decoded, in_namespace, start_daemon, stop_daemon, tree_cpu
from tests.bench.memory import tree_memory
from tests.conftest import ROOT, veth_namespaces

SENDER = textwrap.dedent('''
    import socket, sys, time
    from collector.packet.pcap import read_packets
    iface, capture, rate, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    with open(capture, "rb") as f:
        frames = [bytes(p[3]) for p in read_packets(f)]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    start, sent, step = time.monotonic(), 0, max(1, rate // 100)
    while time.monotonic() - start < seconds:
        for _ in range(step):
            s.send(frames[sent % len(frames)])
            sent += 1
        ahead = sent / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
        if sent % (rate * 5) < step:
            print(sent, flush=True)
    print(sent, flush=True)
''')

def run(seconds: float, rate: int, every: float) -> dict[str, float]:
    """The soak; returns its figures."""
    with tempfile.TemporaryDirectory() as tmpdir, veth_namespaces(f"soak{os.getpid() % 10000}", ipv6=False) as (
            daemon_ns, sender_ns, daemon_end, sender_end):
        tmp = Path(tmpdir)
        write_capture(tmp / "mix.pcap", 20_000)
        daemon = start_daemon(daemon_ns, daemon_end, tmp)
        time.sleep(2)
        sender = subprocess.Popen(in_namespace(sender_ns) + [sys.executable, "-c", SENDER, sender_end,
                                                             str(tmp / "mix.pcap"), str(rate), str(seconds)],
                                  stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                  cwd=ROOT)
        print(f"soak: {seconds:.0f} s at {rate:,} packets/s; the daemon is pid {daemon.pid}")
        print(f"{'time':>6} {'sent':>10} {'captured':>10} {'missing':>8} {'anon MB':>8} {'file MB':>8} "
              f"{'CPU s/10k pkts':>15}")
        start, samples, sent = time.monotonic(), [], 0
        cpu0 = tree_cpu(daemon.pid)
        while sender.poll() is None:
            time.sleep(every)
            got = decoded(daemon_ns)
            sent = max(sent, rate * int(time.monotonic() - start))  # the sender paces itself to the clock
            memory, cpu = tree_memory(daemon.pid), tree_cpu(daemon.pid)
            per = (cpu - cpu0) / got * 10_000 if got else 0.0
            samples.append((time.monotonic() - start, memory.anon_mb))
            print(f"{time.monotonic() - start:>6.0f} {min(sent, rate * seconds):>10,.0f} {got:>10,} "
                  f"{max(0, min(sent, rate * seconds) - got):>8,.0f} {memory.anon_mb:>8.1f} {memory.file_mb:>8.1f} "
                  f"{per:>15.3f}")
        total_sent = int(sender.stdout.read().split()[-1]) if sender.stdout else 0
        time.sleep(2)
        got = decoded(daemon_ns)
        cpu, memory = tree_cpu(daemon.pid), tree_memory(daemon.pid)
        stop_daemon(daemon)
    half = [anon for t, anon in samples if t >= seconds / 2] or [memory.anon_mb]
    growth = (max(half) - min(half)) / min(half) * 100
    peak = max(anon for _, anon in samples) if samples else memory.anon_mb
    print(f"sent {total_sent:,}, captured {got:,} ({total_sent - got:,} missing), peak anonymous memory {peak:.1f} MB "
          f"(daemon and dumpcap); anonymous memory over the second half varied {growth:.1f}%; "
          f"CPU {(cpu - cpu0) / max(got, 1) * 10_000:.3f} s per 10k packets")
    return {"sent": total_sent, "captured": got, "anon_growth_pct": growth}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 s at 1,000 packets/s: checks that it runs")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=int, default=5000)
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("dumpcap") is None:
        print("soak: needs root, iproute2 and dumpcap")
        return 0
    if args.quick:
        run(20, 1000, 5)
    else:
        run(args.minutes * 60, args.rate, 30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
