"""Flows from the kernel's connection tracking: DESTROY events parsed field by field (lines as conntrack
1.4.7 prints them), and the real kernel in a network namespace reporting a UDP exchange whose bytes are
known by hand."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

import pytest

from collector.logs.conntrack import COMMAND, ConntrackFlows, parse_event

UDP = ("[1795917726.288789]\t[DESTROY] ipv4     2 udp      17 src=127.0.0.1 dst=127.0.0.1 sport=36189 dport=9999 "
       "packets=1 bytes=128 [UNREPLIED] src=127.0.0.1 dst=127.0.0.1 sport=9999 dport=36189 packets=0 bytes=0 "
       "id=3874983973 [USERSPACE] portid=3593856095\n")
TCP = ("[1795917800.500000]\t[DESTROY] ipv4     2 tcp      6 src=10.20.10.21 dst=203.0.113.9 sport=50123 "
       "dport=443 packets=12 bytes=1800 src=203.0.113.9 dst=10.20.10.21 sport=443 dport=50123 packets=10 "
       "bytes=9000 [ASSURED] mark=0 delta-time=42 use=1\n")


def test_events_field_by_field():
    udp = parse_event(UDP, "conntrack#1")
    assert (udp.kind, udp.source, udp.proto, udp.src_ip, udp.src_port, udp.dst_ip, udp.dst_port) == (
        "flow", "conntrack", "udp", "127.0.0.1", 36189, "127.0.0.1", 9999)
    assert (udp.packets_out, udp.bytes_out, udp.packets_in, udp.bytes_in, udp.duration_s) == (1, 128, 0, 0, None)
    assert udp.ts_us == 1795917726_288789
    tcp = parse_event(TCP, "conntrack#2")
    assert (tcp.src_ip, tcp.dst_port, tcp.packets_out, tcp.bytes_out, tcp.packets_in, tcp.bytes_in) == (
        "10.20.10.21", 443, 12, 1800, 10, 9000)
    assert (tcp.duration_s, tcp.ts_us) == (42.0, 1795917800_500000 - 42_000_000)  # started 42 s before it ended
    with pytest.raises(ValueError):
        parse_event("[1795917726.288789]\t[NEW] tcp 6 src=1.2.3.4\n", "conntrack#3")


@pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nft", "conntrack")),
                    reason="needs root, iproute2, nftables and conntrack")
def test_the_kernel_reports_a_udp_exchange(tmp_path):
    """In a namespace of its own: a connection-tracking rule (so the kernel tracks), accounting on, one
    UDP datagram of 100 bytes sent (20 IP + 8 UDP + 100 = 128 IP bytes), the entry deleted (as its
    timeout would): the source reports that flow with those counts."""
    ns = f"ct{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        run = ["ip", "netns", "exec", ns]
        subprocess.run([*run, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run([*run, "sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1"], check=True)
        subprocess.run([*run, "nft", "-f", "-"], input="table ip t {\n chain c { type filter hook output "
                       "priority 0; ct state new accept; }\n}\n", text=True, check=True)
        flows, got, stop = ConntrackFlows([*run, *COMMAND]), [], threading.Event()
        reader = threading.Thread(target=flows.run, args=(got.extend, stop))
        reader.start()
        time.sleep(0.5)
        subprocess.run([*run, "python3", "-c", "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
                        ".sendto(b'x' * 100, ('127.0.0.1', 9999))"], check=True)
        subprocess.run([*run, "conntrack", "-D", "-p", "udp"], capture_output=True)
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.2)
        stop.set()
        flows.stop()
        reader.join(10)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    (flow,) = [o for o in got if o.dst_port == 9999]
    assert (flow.proto, flow.packets_out, flow.bytes_out, flow.bytes_in) == ("udp", 1, 128, 0)


@pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nft", "conntrack")),
                    reason="needs root, iproute2, nftables and conntrack")
def test_the_daemon_stores_the_kernels_flows(tmp_path):
    """`ictwatch run` in line-rate mode with `flow_source: conntrack`, in a namespace of its own: the UDP
    exchange ends (its entry deleted, as its timeout would) and is stored as a flow with the kernel's
    counts, while the capture itself (an idle FIFO here) gives no flow of its own."""
    import signal
    import sys

    from tests.conftest import ROOT, school_config, stored_activity

    ns = f"cd{os.getpid() % 100000}"
    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)
    config = school_config(tmp_path / "school", f"collector:\n  capture_tool: pipe\n  capture_pipe: {fifo}\n"
                           "  line_rate: true\n  flow_source: conntrack\n")
    subprocess.run(["ip", "netns", "add", ns], check=True)
    run = ["ip", "netns", "exec", ns]
    try:
        subprocess.run([*run, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run([*run, "sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1"], check=True)
        subprocess.run([*run, "nft", "-f", "-"], input="table ip t {\n chain c { type filter hook output "
                       "priority 0; ct state new accept; }\n}\n", text=True, check=True)
        env = {**os.environ, "ICTWATCH_STORAGE_URL": f"chdb://{tmp_path / 'store'}", "PYTHONPATH": str(ROOT)}
        daemon = subprocess.Popen([*run, sys.executable, "-m", "ictwatch.cli", "run", "--config", str(config),
                                   "--no-web"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                  cwd=ROOT)
        for line in iter(daemon.stderr.readline, ""):
            if "capturing on" in line:
                break
        time.sleep(1)
        subprocess.run([*run, "python3", "-c", "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
                        ".sendto(b'x' * 100, ('127.0.0.1', 9999))"], check=True)
        subprocess.run([*run, "conntrack", "-D", "-p", "udp"], capture_output=True)
        time.sleep(2.5)  # the event, then the next second's batch
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=60)
        assert daemon.returncode == 0, err
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    flows = stored_activity(tmp_path / "store").filter(kind="flow").to_dicts()
    assert [(f["source"], f["dst_port"], f["bytes_out"], f["bytes_in"]) for f in flows] == [
        ("conntrack", 9999, 128, 0)]
