"""Stopping the daemon while it is busy: SIGTERM loses nothing it had read (every observation is stored),
and SIGKILL then a restart loses nothing the store had acknowledged and doubles nothing. The packets come
through the capture FIFO (as deploy/systemd feeds it) from a generated 60,000-packet school mix."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import polars as pl
import pytest

from tests.bench.bench_decode import write_capture
from tests.conftest import ROOT, free_port, school_config, stored_activity

CHUNK = 1 << 20


@pytest.fixture(scope="module")
def mix(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mix") / "mix.pcap"
    write_capture(path, 60_000)
    return path


class Daemon:
    """`ictwatch run` reading a FIFO, with its metrics on a port of its own; `extra` collector lines go into
    the configuration the first Daemon in `tmp` writes (a restart keeps it); `env` adds to its environment."""

    def __init__(self, tmp: Path, extra: str = "", env: dict[str, str] | None = None) -> None:
        self.fifo, self.port = tmp / "capture.fifo", free_port()
        if not self.fifo.exists():
            os.mkfifo(self.fifo)
        self.config = tmp / "school" / "ictwatch.yaml"
        if not self.config.exists():
            school_config(tmp / "school", f"collector:\n  capture_tool: pipe\n  capture_pipe: {self.fifo}\n"
                          + extra)
        text = re.sub(r"\nmetrics:.*", "", self.config.read_text(), flags=re.S)
        self.config.write_text(text + f"\nmetrics:\n  listen: 127.0.0.1:{self.port}\n")
        env = {**os.environ, "ICTWATCH_STORAGE_URL": f"chdb://{tmp / 'store'}", **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "ictwatch.cli", "run", "--config", str(self.config),
                                      "--no-web"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env, cwd=ROOT)

    def stop(self, timeout: float = 120) -> tuple[str, str]:
        """SIGTERM, wait, and check it exited cleanly: (stdout, stderr)."""
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, err
        return out, err

    def metric(self, name: str) -> float:
        """A metric's value now (0 while the endpoint is not up yet)."""
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read().decode()
        except OSError:
            return 0.0
        found = re.search(rf"^{name} (\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    def feed(self, data: bytes, until: threading.Event | None = None) -> int:
        """Write `data` into the FIFO (stopping early if `until` is set or the reader goes); bytes written."""
        written = 0
        try:
            with open(self.fifo, "wb") as out:
                for at in range(0, len(data), CHUNK):
                    if until is not None and until.is_set():
                        break
                    out.write(data[at : at + CHUNK])
                    written += min(CHUNK, len(data) - at)
        except BrokenPipeError:
            pass
        return written


def stored(tmp: Path) -> pl.DataFrame:
    return stored_activity(tmp / "store")


def test_sigterm_while_busy_stores_everything_read(tmp_path, mix):
    daemon = Daemon(tmp_path)
    data = mix.read_bytes()
    half = threading.Event()
    feeder = threading.Thread(target=lambda: daemon.feed(data[: len(data) // 2]) and half.set())
    feeder.start()
    feeder.join(60)
    daemon.proc.send_signal(signal.SIGTERM)  # the capture service would still be writing: the rest is unread
    rest = threading.Thread(target=daemon.feed, args=(data[len(data) // 2 :],), daemon=True)
    rest.start()
    out, err = daemon.proc.communicate(timeout=120)
    assert daemon.proc.returncode == 0, err
    packets, observations, kept = map(int, re.search(
        r"captured (\d+) packets, (\d+) observations, stored (\d+) activities", out).groups())
    assert 0 < packets < 60_025  # stopped part of the way through
    assert kept == observations == stored(tmp_path).height  # nothing read was lost


def test_sigkill_then_restart_loses_nothing_acknowledged_and_doubles_nothing(tmp_path, mix, school_week):
    daemon = Daemon(tmp_path)
    data = mix.read_bytes()
    daemon.feed(data[: len(data) // 2])
    deadline = time.monotonic() + 60
    acknowledged = 0.0
    while time.monotonic() < deadline:  # wait for the first batches to be stored
        time.sleep(1.5)
        acknowledged = daemon.metric("ictwatch_store_rows_total")
        if acknowledged:
            break
    assert acknowledged > 0
    daemon.proc.kill()  # SIGKILL: what was in memory and not yet written is gone; what was stored is not
    daemon.proc.communicate(timeout=60)
    again = Daemon(tmp_path)  # restart on the same store and spool; then October's school week comes through
    again.feed((school_week[0] / "school-week.pcap").read_bytes())
    time.sleep(2)
    out, _ = again.stop()
    rows = stored(tmp_path)
    first = rows.filter(pl.col("ts").dt.month() == 6)  # the generated mix is dated June; the week, October
    assert first.height >= acknowledged  # every row acknowledged before the kill is there
    keys = ["source_ref", "kind", "ts", "host", "dst_port", "bytes_out", "bytes_in", "packets_out", "packets_in"]
    assert first.select(keys).is_duplicated().sum() == 0  # and none twice (the mix has no flow that spans a
    # report interval; the week's DHCP broadcasts do, and give interim records that look alike)
    week = int(re.search(r"stored (\d+) activities", out).group(1))
    assert rows.height - first.height == week > 150  # the week after the restart, all stored


def test_line_rate_mode_names_from_the_filtered_capture_flows_from_suricata(tmp_path):
    """`collector.line_rate`: the capture service hands over only what the filter keeps (here tcpdump
    applies it to the school day), flows come from Suricata's eve.json followed as it is written, and the
    day's breaches are still exactly the hand-written ones that the capture gives."""
    import shutil

    from collector.capture.linerate import CAPTURE_FILTER
    from tests.conftest import SCHOOL_DAY, expected_breaches, stored_breaches

    if not (shutil.which("suricata") and shutil.which("tcpdump")):
        pytest.skip("needs suricata and tcpdump")
    day = SCHOOL_DAY / "school-day.pcap"
    subprocess.run(["tcpdump", "-r", str(day), "-w", str(tmp_path / "kept.pcap"), CAPTURE_FILTER], check=True,
                   capture_output=True)
    (tmp_path / "eve").mkdir()
    eve = tmp_path / "eve" / "eve.json"
    eve.write_text("")
    daemon = Daemon(tmp_path, f"  line_rate: true\n  follow:\n    - {{path: {eve}, format: suricata-eve}}\n")
    subprocess.run(["suricata", "-c", str(ROOT / "tests" / "collector" / "logs" / "suricata-eve.yaml"), "-r", str(day),
                    "--runmode", "single", "-k", "none", "-S", "/dev/null", "-l", str(tmp_path / "eve")],
                   check=True, capture_output=True, timeout=120)
    daemon.feed((tmp_path / "kept.pcap").read_bytes())
    time.sleep(3)
    daemon.stop()
    rows = stored(tmp_path)
    flows = rows.filter(pl.col("kind") == "flow")
    assert flows.height > 0 and set(flows.get_column("source").to_list()) == {"suricata"}
    assert rows.filter(pl.col("kind") == "tls").get_column("source").unique().to_list() == ["pcap"]
    proxy_log = {"2026-06-16 11:15:31", "2026-06-16 11:40:09", "2026-06-16 12:20:44"}  # squid-access.log's three
    from_capture = [b for b in expected_breaches(SCHOOL_DAY) if b["time"] not in proxy_log]
    assert stored_breaches(daemon.config, tmp_path / "store") == from_capture
