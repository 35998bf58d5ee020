"""`ictwatch run` following the proxy log while it is written: lines appear, the log is rotated
(rename-and-create, as logrotate does), the daemon is killed with SIGKILL and restarted; every good line
is stored exactly once, and the bad one is skipped. Beside it, a log in the logformat with request sizes
is followed too, and the start-up warns once that the native one has none. The capture is an idle FIFO:
this is about the logs."""

from __future__ import annotations

import os
import time

import polars as pl

from collector.logs.squid_logformat import RECOMMENDED
from storage.store import Store
from tests.conftest import SCHOOL_DAY, stored_activity
from tests.ictwatch.test_daemon_faults import Daemon

LINES = SCHOOL_DAY.joinpath("squid-access.log").read_text().splitlines(keepends=True)  # 8 good, line 7 bad


def later(line: str, seconds: int) -> str:
    """The same request `seconds` later (another line, not a repeat of this one)."""
    ts, rest = line.split(" ", 1)
    return f"{float(ts) + seconds:.3f} {rest}"


def wait_for(daemon: Daemon, rows: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and daemon.metric("ictwatch_store_rows_total") < rows:
        time.sleep(0.3)
    assert daemon.metric("ictwatch_store_rows_total") >= rows


def test_follow_rotate_kill_restart_keeps_every_line_once(tmp_path):
    log, uploads = tmp_path / "access.log", tmp_path / "uploads.log"
    log.write_text("")
    uploads.write_text(LINES[0].rstrip("\n") + " 52430112\n")  # the native fields, then the request size
    daemon = Daemon(tmp_path, f"  squid_logformat: '{RECOMMENDED}'\n  follow:\n"
                    f"    - {{path: {log}, format: squid}}\n    - {{path: {uploads}, format: squid-logformat}}\n")
    with log.open("a") as out:
        out.writelines(LINES)
    wait_for(daemon, 9)
    assert daemon.metric('ictwatch_observations_total{kind="proxy",source="squid"}') == 9  # a followed log counts
    os.rename(log, tmp_path / "access.log.1")  # logrotate's rename-and-create
    log.write_text("".join(later(line, 1000) for line in LINES[:2]))
    wait_for(daemon, 11)
    daemon.proc.kill()
    daemon.proc.communicate(timeout=60)
    with log.open("a") as out:
        out.write(later(LINES[2], 2000))  # written while the daemon was down
    again = Daemon(tmp_path)
    wait_for(again, 1)
    _, err = again.stop()
    native = next(n for n, line in enumerate(again.config.read_text().splitlines(), 1) if "format: squid}" in line)
    assert [line for line in err.splitlines() if "request size" in line] == [  # once, for the native log only
        f"ictwatch: {again.config}:{native}: collector.follow[0]: Squid's native format logs no request sizes, so no "
        "upload through the proxy is seen (bytes_out_min never holds for it): log with the logformat in "
        "docs/log-formats.md and follow that log as squid-logformat"]
    rows = stored_activity(tmp_path / "store").filter(pl.col("source") == "squid")
    sent = rows.filter(pl.col("source_ref").str.starts_with("uploads.log"))
    assert sent.select("bytes_out", "bytes_in").rows() == [(52_430_112, 48_211)]
    rows = rows.filter(pl.col("source_ref").str.starts_with("access.log"))
    assert rows.height == 11 and rows.select("source_ref", "ts").n_unique() == 11  # 8 + 2 + 1, none twice
    assert rows.get_column("user").value_counts().sort("user").rows() == [
        ("dpatel", 2), ("jcarter", 5), ("mshah", 2), ("sokafor", 1), ("tevans", 1)]
    refs = set(rows.get_column("source_ref").to_list())
    assert {"access.log@1:136", "access.log@1:245", "access.log@1:356"} <= refs  # after the rotation: generation 1


def test_a_followed_lease_file_gives_identity_once_per_lease(tmp_path):
    """dnsmasq rewrites its lease file at every change; the daemon follows it and stores each lease once,
    in the lease history too (identity as it was)."""
    leases = tmp_path / "dnsmasq.leases"
    lines = ["1781600000 3c:22:fb:30:00:01 10.20.1.31 sokafor-phone *\n",
             "1781600100 3c:22:fb:30:00:02 10.20.1.32 lnguyen-phone *\n",
             "1781603600 f0:99:bf:10:00:01 10.20.10.150 iPad *\n"]
    leases.write_text("".join(lines[:2]))
    daemon = Daemon(tmp_path, f"  follow:\n    - {{path: {leases}, format: dnsmasq-leases}}\n")
    wait_for(daemon, 2)
    leases.write_text("".join(lines))  # rewritten whole, one lease more
    wait_for(daemon, 3)
    daemon.stop()
    store = Store(f"chdb://{tmp_path / 'store'}")
    try:
        rows = store.activity(None, None, None).filter(pl.col("kind") == "dhcp")
        history = store.leases()
    finally:
        store.close()
    assert sorted(rows.get_column("dst_ip").to_list()) == ["10.20.1.31", "10.20.1.32", "10.20.10.150"]  # the leased
    assert sorted(history.get_column("ip").to_list()) == ["10.20.1.31", "10.20.1.32", "10.20.10.150"]
    # the phones are their owners' own use; the class iPad is nobody's own, in James Carter's care
    assert sorted(rows.select("user", "responsible").rows()) == [("", "jcarter"), ("lnguyen", ""), ("sokafor", "")]
