"""Decoder speed, side by side with tshark, on the same generated capture in the same run.

    ./dev bench                     # ~300k packets (BENCH_PACKETS to change)
    python -m tests.bench.bench_decode --quick    # a few thousand: checks it still runs (CI)

The capture is a mix a school gateway sees: DNS lookups, TLS sessions (ClientHello, then bulk data),
plain HTTP requests with responses, and bulk transfer segments. Sessions are cloned from scapy-built
templates with fresh addresses, ports and times patched into the bytes, so generating 300k packets takes
seconds. Figures printed: packets/s for the in-process decoder, for `ictwatch decode --json` as a command
(JSON output included), and for `tshark -T fields` extracting the equivalent fields.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from collector.sources import CaptureSource
from fixtures.make_school_day import client_hello

TSHARK_FIELDS = ["frame.number", "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport",
                 "dns.qry.name", "dns.a", "tls.handshake.extensions_server_name", "http.host", "http.request.uri",
                 "http.user_agent", "http.response.code"]


def _session(client: str, server: str, sport: int) -> list[bytes]:
    """One lookup and one TCP conversation, as raw Ethernet frames (addresses patched per clone)."""
    eth_out, eth_in = Ether(src="3c:22:fb:00:00:01", dst="00:00:5e:00:01:01"), Ether(src="00:00:5e:00:01:01")
    frames = [
        eth_out / IP(src=client, dst="10.20.0.2") / UDP(sport=sport, dport=53) / DNS(id=1, qd=DNSQR(qname="a.example")),
        eth_in / IP(src="10.20.0.2", dst=client) / UDP(sport=53, dport=sport) / DNS(
            id=1, qr=1, qd=DNSQR(qname="a.example"), an=DNSRR(rrname="a.example", rdata=server)),
    ]
    up, down = IP(src=client, dst=server), IP(src=server, dst=client)
    port = 443 if sport % 3 else 80
    frames += [eth_out / up / TCP(sport=sport, dport=port, flags="S"),
               eth_in / down / TCP(sport=port, dport=sport, flags="SA"),
               eth_out / up / TCP(sport=sport, dport=port, flags="A")]
    if port == 443:
        frames.append(eth_out / up / TCP(sport=sport, dport=port, flags="PA") / client_hello("www.a.example"))
    else:
        frames.append(eth_out / up / TCP(sport=sport, dport=port, flags="PA") / (
            b"GET /index.html HTTP/1.1\r\nHost: www.a.example\r\nUser-Agent: bench/1\r\n\r\n"))
        frames.append(eth_in / down / TCP(sport=port, dport=sport, flags="PA") / (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n" + bytes(200)))
    for _ in range(12):
        frames.append(eth_in / down / TCP(sport=port, dport=sport, flags="A") / bytes(1400))
        frames.append(eth_out / up / TCP(sport=sport, dport=port, flags="A"))
    frames += [eth_out / up / TCP(sport=sport, dport=port, flags="FA"),
               eth_in / down / TCP(sport=port, dport=sport, flags="FA"),
               eth_out / up / TCP(sport=sport, dport=port, flags="A")]
    return [bytes(f) for f in frames]


def _patch(frame: bytes, old: tuple[bytes, bytes], new: tuple[bytes, bytes], sport: int, new_sport: int) -> bytes:
    """Replace the client/server addresses and the client port (checksums are left as they were)."""
    b = bytearray(frame)
    for a, n in zip(old, new, strict=True):
        for off in (26, 30):  # IPv4 source and destination behind a 14-byte Ethernet header
            if b[off : off + 4] == a:
                b[off : off + 4] = n
    for off in (34, 36):
        if struct.unpack_from("!H", b, off)[0] == sport:
            struct.pack_into("!H", b, off, new_sport)
    return bytes(b)


def write_capture(path: Path, packets: int) -> int:
    """Write a pcap of about `packets` packets; returns the exact count."""
    templates = [_session("10.20.10.5", "192.0.2.10", 40000 + i) for i in range(3)]
    old = (bytes([10, 20, 10, 5]), bytes([192, 0, 2, 10]))
    written = 0
    ts = 1_781_596_200.0
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        n = 0
        while written < packets:
            template = templates[n % 3]
            client = bytes([10, 20, 10 + (n >> 16) % 2, (n >> 8) % 250 + 2])
            server = bytes([198, 51, 100, n % 250 + 1])
            new_sport = 1024 + n % 60000
            for frame in template:
                data = _patch(frame, old, (client, server), 40000 + n % 3, new_sport)
                sec = int(ts)
                f.write(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(data), len(data)) + data)
                ts += 0.0001
                written += 1
            n += 1
    return written


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def run(packets: int) -> dict[str, float]:
    """Generate, then time every decoder on the same file; returns packets/s per decoder."""
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench-mix.pcap"
        count = write_capture(path, packets)
        size = path.stat().st_size
        print(f"capture: {count} packets, {size / 1e6:.1f} MB ({path.name})")

        source = CaptureSource(path)
        observations = 0

        def emit(_obs: object) -> None:
            nonlocal observations
            observations += 1

        start = time.perf_counter()
        source.run(emit)
        elapsed = time.perf_counter() - start
        results["ictwatch decoder (in process)"] = count / elapsed
        print(f"  in-process decoder: {observations} observations, {source.skips.total} skipped")
        cli = [sys.executable, "-m", "ictwatch.cli", "decode", "--json", str(path)]
        results["ictwatch decode --json"] = count / _timed(cli)
        tshark = shutil.which("tshark")
        if tshark:
            cmd = [tshark, "-n", "-r", str(path), "-T", "fields"] + [a for f in TSHARK_FIELDS for a in ("-e", f)]
            results["tshark -T fields"] = count / _timed(cmd)
        else:
            print("  tshark: not installed (./dev test installs it when run as root)")
    for name, rate in results.items():
        print(f"{name:32} {rate:12,.0f} packets/s")
    return results


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: `--quick` for a small run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few thousand packets, to check it runs")
    args = parser.parse_args(argv)
    packets = 3000 if args.quick else int(os.environ.get("BENCH_PACKETS", "300000"))
    run(packets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
