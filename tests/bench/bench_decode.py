"""Decoder speed, side by side with tshark and Suricata, on the same generated capture in the same run.

    ./dev bench                     # ~300k packets (BENCH_PACKETS to change), best of 3 rounds (BENCH_ROUNDS)
    python -m tests.bench.bench_decode --quick    # a few thousand: checks it still runs (CI)
    ./dev bench --big 2              # peak memory of `ictwatch decode` on a 2 GB capture

The capture is a mix a school gateway sees, mostly TCP data across thousands of flows: DNS lookups,
HTTPS (ClientHello, then bulk data), plain HTTP, SMTP submission with STARTTLS, QUIC, DHCP. Sessions
have real sequence numbers (so Suricata's stream engine follows them) and are cloned from scapy-built
templates with fresh addresses, ports and times patched into the bytes, so 300k packets take seconds to
write. Printed: packets/s for the in-process decoder, for `ictwatch decode --json` as a command (JSON out
and start-up included), for `tshark -T fields` (equivalent fields), and for Suricata 7 in single-thread
mode with EVE flow/dns/tls/http output and no rules (wall time, and its own engine time); the ratios;
and the peak memory of the ictwatch command and of Suricata. With tcpdump installed, the mix is also
passed through line-rate mode's capture filter and decoded again (packets/s of the whole traffic). Each
figure is the best of the rounds, in which the decoders take turns. The current figures:
docs/performance.md.
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

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from collector import compiled, tune_gc
from collector.sources import CaptureSource
from fixtures.make_school_day import client_hello, tcp_conversation

TSHARK_FIELDS = ["frame.number", "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport",
                 "dns.qry.name", "dns.a", "tls.handshake.extensions_server_name", "http.host", "http.request.uri",
                 "http.user_agent", "http.response.code"]


_ETH_OUT = Ether(src="3c:22:fb:00:00:01", dst="00:00:5e:00:01:01")
_ETH_IN = Ether(src="00:00:5e:00:01:01", dst="3c:22:fb:00:00:01")
CLIENT, SERVER, RESOLVER = "10.20.10.5", "192.0.2.10", "10.20.0.2"


def _dns(sport: int, name: str) -> list[bytes]:
    q = DNS(id=sport, rd=1, qd=DNSQR(qname=name))
    r = DNS(id=sport, qr=1, rd=1, ra=1, qd=DNSQR(qname=name), an=DNSRR(rrname=name, rdata=SERVER))
    return [bytes(_ETH_OUT / IP(src=CLIENT, dst=RESOLVER) / UDP(sport=sport, dport=53) / q),
            bytes(_ETH_IN / IP(src=RESOLVER, dst=CLIENT) / UDP(sport=53, dport=sport) / r)]


def _tcp(sport: int, dport: int, turns: list[tuple[bool, bytes]]) -> list[bytes]:
    """A whole TCP conversation (the fixtures' builder), bulk from the server acknowledged every other segment."""
    isn = (1_000_000 + sport * 7, 3_000_000 + sport * 13)
    return [bytes((_ETH_OUT if out else _ETH_IN) / packet)
            for out, packet in tcp_conversation(CLIENT, SERVER, sport, dport, turns, isn, delayed_ack=True)]


def _bulk(n: int) -> list[tuple[bool, bytes]]:
    return [(False, bytes(1400))] * n


def _sessions() -> list[list[bytes]]:
    """One template per kind of conversation; each is cloned with new addresses, ports and times."""
    hello = client_hello("www.a.example")
    https = _dns(40001, "www.a.example") + _tcp(40001, 443, [(True, hello), (False, b"\x16\x03\x03" + bytes(1200)),
                                                             *_bulk(20), (True, b"\x17\x03\x03" + bytes(300))])
    http_req = b"GET /index.html HTTP/1.1\r\nHost: www.a.example\r\nUser-Agent: bench/1\r\n\r\n"
    http = _dns(40002, "www.a.example") + _tcp(40002, 80, [
        (True, http_req), (False, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n" + bytes(1300)),
        *_bulk(16)])
    smtp = _dns(40003, "smtp.a.example") + _tcp(40003, 587, [
        (False, b"220 mx ESMTP\r\n"), (True, b"EHLO pc\r\n"), (False, b"250-mx\r\n250 STARTTLS\r\n"),
        (True, b"STARTTLS\r\n"), (False, b"220 go ahead\r\n"), (True, client_hello("smtp.a.example")),
        (False, b"\x16\x03\x03" + bytes(1300)), (True, b"\x17\x03\x03" + bytes(1300))])
    quic_initial = _quic_initial()
    quic = _dns(40004, "www.a.example") + [
        bytes(_ETH_OUT / IP(src=CLIENT, dst=SERVER) / UDP(sport=40004, dport=443) / quic_initial)] + [
        bytes((_ETH_IN if i % 3 else _ETH_OUT) / (IP(src=SERVER, dst=CLIENT) / UDP(sport=443, dport=40004)
              if i % 3 else IP(src=CLIENT, dst=SERVER) / UDP(sport=40004, dport=443)) / (b"\x40" + bytes(1100)))
        for i in range(12)]
    dhcp = [bytes(_ETH_OUT / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67) / BOOTP(
        op=1, xid=1, chaddr=bytes.fromhex("3c22fb000001") + bytes(10)) / DHCP(options=[("message-type", t), "end"]))
        for t in ("discover", "request")]
    return [https, https, https, http, smtp, quic, dhcp]


_QUIC = 5  # the QUIC conversation's place in `_sessions()`; its third frame is the client's Initial


def _quic_initial() -> bytes:
    """A real QUIC v1 client Initial (aioquic), or random bytes of the right size without it."""
    try:
        from aioquic.quic.configuration import QuicConfiguration
        from aioquic.quic.connection import QuicConnection
    except ImportError:
        return b"\xc0" + bytes(1199)
    conn = QuicConnection(configuration=QuicConfiguration(is_client=True, server_name="www.a.example",
                                                          alpn_protocols=["h3"]))
    conn.connect((SERVER, 443), now=0.0)
    return conn.datagrams_to_send(now=0.0)[0][0]


def _patch(frame: bytes, client: bytes, server: bytes, port_shift: int) -> bytes:
    """Give a cloned frame its session's client and server addresses and client port."""
    b = bytearray(frame)
    for off in (26, 30):  # IPv4 source and destination behind a 14-byte Ethernet header
        if b[off : off + 4] == _CLIENT_RAW:
            b[off : off + 4] = client
        elif b[off : off + 4] == _SERVER_RAW:
            b[off : off + 4] = server
    for off in (34, 36):
        port = struct.unpack_from("!H", b, off)[0]
        if 40000 <= port < 40010:
            struct.pack_into("!H", b, off, 1024 + (port - 40000 + port_shift) % 64000)
    return bytes(b)


_CLIENT_RAW, _SERVER_RAW = bytes([10, 20, 10, 5]), bytes([192, 0, 2, 10])


QUIC_CONNECTIONS = 256
"""Distinct QUIC Initials the clones take in turn: more than the decoder keeps ciphers for (64), so
that every QUIC session costs its key derivation, as connections with random IDs do."""


def write_capture(path: Path, packets: int) -> int:
    """Write a pcap of about `packets` packets: thousands of concurrent clients and servers."""
    templates = _sessions()
    quic_frame = templates[_QUIC][2]
    initials = [_quic_initial() for _ in range(min(QUIC_CONNECTIONS, packets // 170 + 1))]
    written, n = 0, 0
    ts = 1_781_596_200.0
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        while written < packets:
            template = templates[n % len(templates)]
            client = bytes([10, 20, 10 + (n >> 14) % 2, (n >> 6) % 250 + 2])
            server = bytes([198, 51, 100 + (n >> 8) % 3, n % 250 + 1])
            for frame in template:
                if frame is quic_frame:  # this clone's own connection
                    frame = frame[:42] + initials[(n // len(templates)) % len(initials)]
                data = _patch(frame, client, server, n * 10)
                sec = int(ts)
                f.write(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(data), len(data)) + data)
                ts += 0.0001
                written += 1
            n += 1
    return written


def _timed(cmd: list[str], keep_output: bool = False) -> tuple[float, int, str]:
    """(wall seconds, peak resident memory in MB, stderr (and stdout if kept)) of a command.

    The peak is the child's own VmHWM, sampled until it exits: `getrusage`'s maxrss would not do, as
    Linux carries the parent's high-water mark into a child across fork and exec."""
    start = time.perf_counter()
    if keep_output:  # a short log (Suricata's): read after the exit, it fits in the pipe
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        reader = proc.stdout
    else:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        reader = proc.stderr
    peak_kb = 0
    status_file = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status_file.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    stderr = reader.read() if reader else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {stderr[-500:]}")
    return elapsed, peak_kb // 1024, stderr


def _suricata(path: Path, logdir: Path) -> tuple[float, float, int] | None:
    """(wall seconds, Suricata's own engine seconds, peak MB) for single-threaded Suricata with EVE
    flow/dns/tls/http output and no rules; None when Suricata is not installed."""
    exe = shutil.which("suricata")
    if exe is None:
        return None
    logdir.mkdir()
    cmd = [exe, "-c", str(Path(__file__).with_name("suricata.yaml")), "-r", str(path), "--runmode", "single",
           "-k", "none", "-S", "/dev/null", "-l", str(logdir), "-v"]
    wall, peak, err = _timed(cmd, keep_output=True)
    engine = next((float(line.rsplit(" ", 1)[1].rstrip("s")) for line in err.splitlines() if "time elapsed" in line),
                  wall)
    return wall, engine, peak


def run(packets: int, rounds: int) -> dict[str, float]:
    """Generate, then time every decoder on the same file, `rounds` times in turn (so that a noisy moment
    on the machine hits all of them alike); returns each decoder's best packets/s."""
    results: dict[str, float] = {}

    def record(name: str, rate: float) -> None:
        results[name] = max(rate, results.get(name, 0.0))

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        path = tmp / "bench-mix.pcap"
        count = write_capture(path, packets)
        print(f"capture: {count} packets, {path.stat().st_size / 1e6:.1f} MB (DNS, HTTPS, HTTP, SMTP+STARTTLS, "
              "QUIC, DHCP; mostly TCP data)")
        print(f"  ictwatch collector: {'compiled with mypyc' if compiled() else 'pure Python'}")
        tune_gc()  # as the ictwatch command does
        tshark, have_suricata = shutil.which("tshark"), shutil.which("suricata") is not None
        if not tshark:
            print("  tshark: not installed (./dev test installs it when run as root)")
        if not have_suricata:
            print("  suricata: not installed (./dev test installs it from backports when run as root)")
        filtered = None
        if shutil.which("tcpdump"):  # line-rate mode: the capture keeps only names and policy signals
            from collector.capture.linerate import CAPTURE_FILTER

            filtered = tmp / "line-rate.pcap"
            subprocess.run(["tcpdump", "-r", str(path), "-w", str(filtered), CAPTURE_FILTER], check=True,
                           capture_output=True)
            probe = CaptureSource(filtered)
            probe.run(lambda obs: None)
            print(f"  line-rate filter (collector/capture/linerate.py, applied by tcpdump): keeps "
                  f"{probe.packets} packets ({probe.packets / count:.1%}) and "
                  f"{filtered.stat().st_size / path.stat().st_size:.1%} of the bytes")
        kinds: dict[str, int] = {}

        def emit(obs: object) -> None:
            kind = getattr(obs, "kind", "")
            kinds[kind] = kinds.get(kind, 0) + 1

        for n in range(rounds):
            source = CaptureSource(path)
            start = time.perf_counter()
            source.run(emit)
            record("ictwatch decoder (in process)", count / (time.perf_counter() - start))
            if filtered is not None:  # the same traffic through line-rate mode, per packet of the whole
                start = time.perf_counter()
                CaptureSource(filtered).run(lambda obs: None)
                record("ictwatch line-rate (of all packets)", count / (time.perf_counter() - start))
            wall, peak, _ = _timed([sys.executable, "-m", "ictwatch.cli", "decode", "--json", str(path)])
            record("ictwatch decode --json", count / wall)
            if n == 0:  # the counts of the first round
                print(f"  ictwatch: {sum(kinds.values())} observations {dict(sorted(kinds.items()))}, "
                      f"{source.skips.total} skipped; decode --json peak memory {peak} MB")
            if tshark:
                cmd = [tshark, "-n", "-r", str(path), "-T", "fields"] + [a for f in TSHARK_FIELDS for a in ("-e", f)]
                record("tshark -T fields", count / _timed(cmd)[0])
            suricata = _suricata(path, tmp / f"suricata-eve-{n}")
            if suricata:
                wall, engine, peak = suricata
                record("suricata 7 single thread (wall)", count / wall)
                record("suricata 7 single thread (engine)", count / engine)
                if n == 0:
                    print(f"  suricata: peak memory {peak} MB")
    print(f"best of {rounds} round(s), the decoders taking turns:")
    for name, rate in results.items():
        print(f"{name:36} {rate:12,.0f} packets/s")
    ours = results["ictwatch decoder (in process)"]
    for peer in ("tshark -T fields", "suricata 7 single thread (engine)"):
        if peer in results:
            print(f"ratio ictwatch in process / {peer}: {ours / results[peer]:.2f}")
    return results


def memory(gigabytes: float) -> int:
    """Peak memory (MB) of `ictwatch decode --json` on a capture of the given size."""
    with tempfile.TemporaryDirectory() as tmpdir:
        path = Path(tmpdir) / "big.pcap"
        count = write_capture(path, int(gigabytes * 1e9 / 857))  # the mix averages 857 bytes a record
        print(f"capture: {count} packets, {path.stat().st_size / 1e9:.2f} GB")
        wall, peak, _ = _timed([sys.executable, "-m", "ictwatch.cli", "decode", "--json", str(path)])
        print(f"ictwatch decode --json: {count / wall:,.0f} packets/s, peak memory {peak} MB")
        return peak


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: `--quick` for a small run, `--big GB` for the memory check."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few thousand packets, to check it runs")
    parser.add_argument("--big", type=float, metavar="GB", help="peak memory on a capture of GB gigabytes")
    args = parser.parse_args(argv)
    if args.big:
        memory(args.big)
        return 0
    packets = 3000 if args.quick else int(os.environ.get("BENCH_PACKETS", "300000"))
    run(packets, 1 if args.quick else int(os.environ.get("BENCH_ROUNDS", "3")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
