"""Inputs as a gateway's disk can hold them, through the real `ictwatch replay` and `decode` (issue 19, points
11-13): a capture with impossible times, a log that a crash filled with NUL bytes, a log whose first lines are
not records. Each is read as far as it can be, what cannot be read is skipped and counted, the summary's counts
are what the store holds, and memory does not follow the length of a line."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from tests.conftest import ROOT, run_cli, school_config, stored_activity

T0 = 1_781_596_202  # 2026-06-16 07:50:02 UTC, the school day's first Squid line
SQUID_LINE = ("1781596202.120    412 10.20.10.21 TCP_MISS/200 48211 GET http://www.bbc.co.uk/news/education "
              "jcarter HIER_DIRECT/151.101.0.81 text/html")


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    return school_config(tmp_path_factory.mktemp("hostile") / "school")


def _block(block_type: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", block_type, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _dns_pair(i: int) -> tuple[bytes, bytes]:
    """A DNS query from a staff laptop and its answer: one `dns` observation, and one UDP flow."""
    name = f"host{i}.example.org"
    query = (Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.20.10.21", dst="10.20.0.53")
             / UDP(sport=40000 + i, dport=53) / DNS(id=i, rd=1, qd=DNSQR(qname=name)))
    answer = (Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / IP(src="10.20.0.53", dst="10.20.10.21")
              / UDP(sport=53, dport=40000 + i) / DNS(id=i, qr=1, qd=DNSQR(qname=name),
                                                     an=DNSRR(rrname=name, rdata="192.0.2.1")))
    return bytes(query), bytes(answer)


def _epb(interface: int, ticks: int, frame: bytes) -> bytes:
    return _block(6, struct.pack("<IIIII", interface, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame)) + frame)


def _pcapng_with_impossible_times() -> bytes:
    """Six DNS exchanges, two frames each, on four interfaces: two exchanges in June 2026 (one stamped in
    nanoseconds) and four whose frames fall outside 1970-2099 (what the store keeps)."""
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    micro = _block(1, struct.pack("<HHI", 1, 0, 65535))  # 0: microseconds, no offset
    ahead = _block(1, struct.pack("<HHI", 1, 0, 65535) + _option(14, struct.pack("<q", 2**62)) + _option(0, b""))
    behind = _block(1, struct.pack("<HHI", 1, 0, 65535) + _option(14, struct.pack("<q", -(80 * 365 * 86400)))
                    + _option(9, b"\x00") + _option(0, b""))  # 2: seconds, 80 years back from 1970: 1890
    nano = _block(1, struct.pack("<HHI", 1, 0, 65535) + _option(9, b"\x09") + _option(0, b""))  # 3: nanoseconds
    out = shb + micro + ahead + behind + nano
    exchanges = [
        (0, T0 * 10**6),  # good
        (0, 2**64 - 1 - 1000),  # its answer at 2^64-1 microseconds: year 586,524
        (1, T0 * 10**6),  # if_tsoffset of 2^62 seconds
        (2, 0),  # 1890
        (0, 253_402_300_800 * 10**6),  # 10000-01-01
        (3, (T0 + 5) * 10**9),  # good
    ]
    later = {0: 1000, 1: 1000, 2: 1, 3: 1_000_000}  # a millisecond (a second at interface 2's resolution)
    for i, (interface, ticks) in enumerate(exchanges, 1):
        query, answer = _dns_pair(i)
        out += _epb(interface, ticks, query) + _epb(interface, ticks + later[interface], answer)
    return out


def test_impossible_capture_times_are_skipped_and_counted_and_what_follows_is_stored(config, tmp_path):
    """Point 11. The two June exchanges give a `dns` and a `flow` activity each (4); of the Squid log after the
    capture, the good line gives one `proxy` activity, and the lines dated 5138 and 10^400 seconds after 1970 are
    skipped like the eight frames out of range."""
    capture = tmp_path / "gateway.pcapng"
    capture.write_bytes(_pcapng_with_impossible_times())
    log = tmp_path / "access.log"
    log.write_text(f"{SQUID_LINE}\n{SQUID_LINE.replace('1781596202.120', '99999999999.000', 1)}\n"
                   f"{SQUID_LINE.replace('1781596202.120', '9' * 400, 1)}\n")
    store = tmp_path / "store"
    proc = run_cli("replay", "--config", config, capture, log, store=store)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "stored 5 activities" in proc.stdout
    assert "skipped 10 bad records: time_out_of_range=10" in proc.stdout
    stored = stored_activity(store)
    assert sorted(stored.get_column("kind").to_list()) == ["dns", "dns", "flow", "flow", "proxy"]
    assert sorted(stored.filter(kind="dns").get_column("host").to_list()) == ["host1.example.org", "host6.example.org"]

    decoded = run_cli("decode", capture)
    assert decoded.returncode == 0, decoded.stderr
    assert "Traceback" not in decoded.stderr
    assert "2026-06-16T07:50:02+00:00 dns" in decoded.stdout and "host6.example.org" in decoded.stdout
    assert len(decoded.stdout.splitlines()) == 4
    assert "8 skipped: time_out_of_range=8" in decoded.stderr


def _max_rss_mb(*args: str | Path, store: Path | None = None) -> tuple[int, subprocess.CompletedProcess]:
    """The real `ictwatch` in a child of a fresh interpreter, which reads the child's peak resident memory."""
    probe = ("import resource, subprocess, sys\n"
             "p = subprocess.run([sys.executable, '-m', 'ictwatch.cli', *sys.argv[1:]], capture_output=True,\n"
             "                   text=True)\n"
             "sys.stderr.write(p.stderr); sys.stdout.write(p.stdout)\n"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, p.returncode)\n")
    env = dict(os.environ) | ({"ICTWATCH_STORAGE_URL": f"chdb://{store}"} if store else {})
    proc = subprocess.run([sys.executable, "-c", probe, *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env=env)
    *out, last = proc.stdout.splitlines()
    rss, status = (int(n) for n in last.split())
    return rss, subprocess.CompletedProcess(proc.args, status, "\n".join(out), proc.stderr)


NUL_MB = 200


@pytest.fixture(scope="module")
def nul_log(tmp_path_factory) -> Path:
    """A gzipped Squid log as an unclean shutdown can leave it: a line, then 200 MB of NUL bytes (no newline among
    them), then a line written after the restart. Written a megabyte at a time; 200 KB on disk."""
    path = tmp_path_factory.mktemp("nul") / "access.log.gz"
    zeros = bytes(1 << 20)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(SQUID_LINE.encode() + b"\n")
        for _ in range(NUL_MB):
            f.write(zeros)
        f.write(b"\n" + SQUID_LINE.replace("1781596202.120", "1781596262.120", 1).encode() + b"\n")
    return path


@pytest.fixture(scope="module")
def small_log(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("small") / "access.log"
    path.write_text(f"{SQUID_LINE}\n")
    return path


@pytest.mark.parametrize("command", ["replay", "decode"])
def test_a_log_full_of_nul_bytes_takes_no_more_memory_than_a_line(config, nul_log, small_log, tmp_path, command):
    """Point 12. The 200 MB run of NULs is one line over the 64 KiB limit: skipped and counted, the lines either
    side read, and the command's peak memory within 64 MB of the same command on the one-line log."""
    def run(log: Path, store: Path) -> tuple[int, subprocess.CompletedProcess]:
        if command == "decode":
            return _max_rss_mb("decode", log)
        return _max_rss_mb("replay", "--config", config, log, store=store)

    base, _ = run(small_log, tmp_path / "base")
    rss, proc = run(nul_log, tmp_path / "store")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert rss < base + 64, f"{command}: {rss} MB for the NUL log, {base} MB for one line"
    if command == "replay":
        assert "stored 2 activities" in proc.stdout
        assert "skipped 1 bad record: line_too_long=1" in proc.stdout
    else:
        assert len(proc.stdout.splitlines()) == 2
        assert "1 skipped: line_too_long=1" in proc.stderr


def test_a_log_is_judged_by_its_lines_not_by_its_first(config, tmp_path):
    """Point 13. A syslog banner, a line of binary (invalid UTF-8 among it) and a Squid line with a 5 KB URL come
    before two ordinary Squid lines: the log is still Squid's, its three Squid lines are stored and the banner
    and the binary line are skipped as bad Squid lines."""
    log = tmp_path / "access.log"
    long_url = "http://www.bbc.co.uk/search?q=" + "a" * 5000
    log.write_bytes(b"Jun 16 07:50:01 gateway squid[812]: Starting Squid Cache version 6.10\n"
                    + bytes(b for b in range(256) if b != 10) * 4 + b"\n"
                    + SQUID_LINE.replace("http://www.bbc.co.uk/news/education", long_url).encode() + b"\n"
                    + SQUID_LINE.encode() + b"\n"
                    + SQUID_LINE.replace("1781596202.120", "1781596262.120", 1).encode() + b"\n")
    store = tmp_path / "store"
    proc = run_cli("replay", "--config", config, log, store=store)
    assert proc.returncode == 0, proc.stderr
    assert "stored 3 activities" in proc.stdout
    assert "skipped 2 bad records: bad_squid_line=2" in proc.stdout
    urls = stored_activity(store).get_column("url").to_list()
    assert sorted(urls) == sorted([long_url, "http://www.bbc.co.uk/news/education", "http://www.bbc.co.uk/news/education"])
    decoded = run_cli("decode", log)
    assert decoded.returncode == 0 and len(decoded.stdout.splitlines()) == 3


def test_numbers_too_big_or_below_zero_skip_their_line_not_the_log(tmp_path):
    """Found by trying it as an attacker: a request size of 10^20 or -5, or a status of 99999, in a proxy or
    filter log line failed the whole batch (a traceback, nothing of the log stored; a followed log's reader
    stopped for good). Each such line is now refused and counted like any bad line; the lines around it are
    stored."""
    config = school_config(tmp_path / "school", "collector:\n  squid_logformat: \"%ts.%03tu %6tr %>a %Ss/%03>Hs "
                                                "%<st %rm %ru %[un %Sh/%<a %mt %>st\"\n")
    later = SQUID_LINE.replace("1781596202.120", "1781596262.120", 1)
    proxy = tmp_path / "access.log"
    proxy.write_text("\n".join([
        SQUID_LINE + " 612",
        SQUID_LINE + " 99999999999999999999",  # %>st past 2^64
        SQUID_LINE.replace(" 48211 ", " -4120 ") + " 612",  # %<st below zero
        SQUID_LINE.replace("TCP_MISS/200", "TCP_MISS/99999") + " 612",  # a status past 65535
        later + " 700"]) + "\n")
    filters = tmp_path / "dansguardian.log"  # DansGuardian 2.8's access log (tests/collector/logs/test_filterlogs.py)
    line = "2026.6.16 9:05:0{} rbaker 10.20.10.50 http://lessons.test/plan  GET {}"
    filters.write_text(f"{line.format(1, 4753)}\n{line.format(2, 10**20)}\n{line.format(3, 1200)}\n")
    eve = tmp_path / "eve.json"  # Suricata's EVE: a port past 65535 on a query no answer follows
    query = ('{{"timestamp":"2026-06-16T08:00:0{}.000000+0000","flow_id":{},"event_type":"dns","src_ip":"10.20.10.21",'
             '"src_port":{},"dest_ip":"10.20.0.53","dest_port":53,"proto":"UDP","dns":{{"type":"query","id":1,'
             '"rrname":"a.example","rrtype":"A"}}}}')
    eve.write_text(query.format(0, 1, 999999999) + "\n" + query.format(1, 2, 40000) + "\n")
    # the line whose request size cannot be is still Squid's native line (its first ten fields): it is kept as
    # that, without a request size; the two whose own fields cannot be are skipped
    for log, sent, reason in ((proxy, [612, None, 700], "skipped 2 bad records: bad_squid_line=2"),
                              (filters, [None, None], "skipped 1 bad record: bad_filter_line=1"),
                              (eve, [None], "skipped 1 bad record: bad_eve_record=1")):
        store = tmp_path / f"store-{log.stem}"
        proc = run_cli("replay", "--config", config, log, store=store)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert reason in proc.stdout
        rows = stored_activity(store)
        assert sorted(map(str, rows["bytes_out"])) == sorted(map(str, sent)), rows
        assert (rows["bytes_in"].max() or 0) < 10**6 and (rows["src_port"].max() or 0) < 65536, rows
