"""CI runs the decoder benchmark in quick mode: it must still run and print a figure per decoder."""

from __future__ import annotations

import shutil

from tests.bench import bench_decode


def test_benchmark_quick_mode_prints_every_decoder(capsys):
    assert bench_decode.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "capture: 3000 packets" in out
    assert "0 skipped" in out
    rates = {line[:32].strip(): float(line[32:].split()[0].replace(",", "")) for line in out.splitlines()
             if line.endswith("packets/s")}
    expected = {"ictwatch decoder (in process)", "ictwatch decode --json"}
    if shutil.which("tshark"):
        expected.add("tshark -T fields")
    assert set(rates) == expected
    assert all(rate > 0 for rate in rates.values())
