"""CI runs the decoder benchmark in quick mode: it must still run and print a figure per decoder."""

from __future__ import annotations

import re
import shutil

import pytest

from tests.bench import bench_decode


def test_benchmark_quick_mode_prints_every_decoder(capsys):
    assert bench_decode.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "capture: 30" in out and "peak memory" in out
    assert "0 skipped" in out
    rates = {line[:36].strip(): float(line[36:].split()[0].replace(",", "")) for line in out.splitlines()
             if line.endswith("packets/s")}
    expected = {"ictwatch decoder (in process)", "ictwatch decode --json"}
    if shutil.which("tcpdump"):
        expected.add("ictwatch line-rate (of all packets)")
        assert "line-rate filter (collector/capture/linerate.py, applied by tcpdump): keeps" in out
    if shutil.which("tshark"):
        expected.add("tshark -T fields")
        assert "ratio ictwatch in process / tshark -T fields" in out
    if shutil.which("suricata"):
        expected |= {"suricata 7 single thread (wall)", "suricata 7 single thread (engine)"}
        assert "ratio ictwatch in process / suricata 7 single thread (engine)" in out
    assert set(rates) == expected
    assert all(rate > 0 for rate in rates.values())


def test_squid_benchmark_quick_mode(capsys):
    from tests.bench import bench_squid

    assert bench_squid.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "log: 20000 lines" in out
    rates = [line for line in out.splitlines() if line.endswith("lines/s")]
    expected = 5 if shutil.which("goaccess") else 4  # with the chDB floor
    assert len(rates) == expected and all(float(r.split()[-2].replace(",", "")) > 0 for r in rates)


def test_category_benchmark_quick_mode(capsys):
    from tests.bench import bench_categories

    assert bench_categories.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "lists: 50,000 domains" in out and "ictwatch: 50,000 entries loaded" in out
    assert "hosts/s" in out and ("squidGuard 1.6: compiled" in out) == bool(shutil.which("squidGuard"))


def test_engine_benchmark_quick_mode(capsys):
    from tests.bench import bench_engine

    assert bench_engine.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "waivers, 50,000 listed domains, 14,000 leases; 20,000 observations" in out
    assert "ictwatch engine:" in out and ("squidGuard 1.6:" in out) == bool(shutil.which("squidGuard"))


def test_store_benchmark_quick_mode(capsys):
    from tests.bench import bench_store

    assert bench_store.main(["--quick"]) == 0
    out = capsys.readouterr().out
    rates = [line for line in out.splitlines() if " rows/s  (" in line]
    assert len(rates) == 3 and "report query: one person, 30 days, 200,000 rows" in out
    assert "bytes per row" in out and "30-day HTML report, end to end" in out
    assert ("SARG 2.4: the same person's report" in out) == bool(shutil.which("sarg"))


def test_startup_benchmark_quick_mode(capsys):
    """Each command, the caller of the daemon and the floors get a time and a memory figure; Suricata's run of
    the same capture too, where it is installed."""
    from tests.bench import bench_startup

    assert bench_startup.main(["--quick"]) == 0
    out = capsys.readouterr().out
    rows = {line[:54].strip(): line[54:].split() for line in out.splitlines() if line.endswith(" MB")}
    expected = {"ictwatch breaches (a day)", "ictwatch report (one person, a day, HTML)",
                "ictwatch replay (49.7 KB capture, fresh store)", "ictwatch --help",
                "ictwatch breaches, through the daemon (the caller)", "python -c pass (the interpreter)",
                "chDB: import, SELECT 1 (python -c)", "chDB: import, open a store, SELECT 1"}
    if shutil.which("suricata"):
        expected.add("suricata 7 -r (same capture, one thread, EVE)")
        assert "ratio ictwatch replay / suricata -r, wall:" in out
    if shutil.which("clickhouse"):
        expected.add("clickhouse local: SELECT 1")
    assert set(rows) == expected
    assert all(float(cells[0]) > 0 and float(cells[2]) > 0 for cells in rows.values())
    assert "goal (each of the three ≤ 0.5 s, ≤ 100 MB anonymous):" in out


def test_soak_quick_mode(capsys):
    """Twenty seconds of live capture on a veth pair (root only): every packet sent is captured, the
    daemon's memory stays flat."""
    import os

    from tests.bench import soak

    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("dumpcap"):
        pytest.skip("the soak needs root, iproute2 and dumpcap")
    assert soak.main(["--quick"]) == 0
    out = capsys.readouterr().out
    sent, got = (int(n.replace(",", "")) for n in re.search(r"sent ([\d,]+), captured ([\d,]+)", out).groups())
    assert sent == 20_000 and got == sent  # IPv6 is off on the veth ends: they send nothing of their own
    assert float(re.search(r"varied ([\d.]+)%", out).group(1)) < 10


def test_live_benchmark_quick_mode(capsys):
    """The capture workers alone, then two low rates of live capture on a veth pair, ictwatch (both capture
    paths) and Suricata each (root only): it runs and prints a table per program and the summaries."""
    import os

    from tests.bench import bench_live

    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "taskset", "tcpreplay", "dumpcap", "suricata")):
        pytest.skip("the live benchmark needs root, iproute2, tcpreplay, dumpcap and Suricata")
    assert bench_live.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "ictwatch-afpacket:\n" in out and "ictwatch-dumpcap:\n" in out and "suricata:\n" in out
    assert "highest lossless rate: ictwatch-afpacket" in out and "highest lossless rate: ictwatch-dumpcap" in out
    rows = [line.split() for line in out.splitlines() if re.match(r"\s+[25],000 ", line)]
    assert len(rows) == 6 and all(int(row[2].replace(",", "")) > 0 for row in rows)  # each sent packets
    alone = [line.split() for line in out.splitlines() if re.match(r"\s+worker-(afpacket|dumpcap) ", line)]
    assert len(alone) == 2 and all(int(row[3].replace(",", "")) > 0 for row in alone)  # each decoded packets


def test_replay_benchmark_quick_mode(capsys):
    """The whole `ictwatch replay` beside Suricata's whole run: the replay judged and stored every record of
    the mix, and each program has its time and memory, with the ratio when Suricata is there."""
    from tests.bench import bench_replay

    assert bench_replay.main(["--quick"]) == 0
    out = capsys.readouterr().out
    judged, stored = re.search(r"judged ([\d,]+) activities: [\d,]+ breaches; stored ([\d,]+) activities", out).groups()
    assert int(judged.replace(",", "")) > 0 and judged == stored
    runs = {line[:38].strip(): line for line in out.splitlines() if line.endswith("MB file-backed")}
    expected = {"ictwatch replay (whole run)"} | ({"suricata 7 single thread (whole run)"} if shutil.which("suricata")
                                                 else set())
    assert set(runs) == expected
    for line in runs.values():
        rate, anon = re.search(r"([\d,]+) packets/s\s+peak\s+(\d+) MB anonymous", line).groups()
        assert int(rate.replace(",", "")) > 0 and int(anon) > 0
    assert ("ratio suricata wall / ictwatch replay wall:" in out) == bool(shutil.which("suricata"))
