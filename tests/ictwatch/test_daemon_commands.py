"""The documented commands while `ictwatch run` holds the embedded store (the deploy guide's setup): each
runs inside the daemon over its command socket and says what it says without a daemon; the daemon runs
clause I1's daily check itself; the socket is the service user's alone; and a store that cannot be
reached is one line and exit 1, whatever the command.

The daemon is the real one (a process, chDB in a temporary folder, the capture an idle FIFO); its clock
for the daily check is set by `ICTWATCH_TEST_CLOCK` so that the test does not wait for 09:31."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import (
    SCHOOL_DAY,
    expected_breaches,
    free_port,
    run_cli,
    run_cli_imports,
    school_config,
    stored_activity,
)
from tests.ictwatch.test_daemon_faults import Daemon

DAY = ("--from", "2026-06-16", "--to", "2026-06-16")
REPORT = ("--user", "jcarter", *DAY, "--requested-by", "dpatel", "--reason", "a parent's complaint")
GRANT = ("--by", "hmorgan", "--for", "gwilliams", "--subject", "sokafor", "--from", "2026-06-15", "--to", "2026-06-19")


def held(tmp: Path, clock: str, socket: Path | None = None,
         before: Callable[[Path], object] = lambda _: None) -> tuple[Daemon, Path, object]:
    """The school day replayed into `tmp/store`, what `before` says with the store to itself, then the
    daemon started on it with its clock at `clock`; returns once its health endpoint answers."""
    fifo = tmp / "capture.fifo"
    control = f"control:\n  socket: {socket}\n" if socket else ""
    config = school_config(tmp / "school", f"{control}collector:\n  capture_tool: pipe\n  capture_pipe: {fifo}\n")
    run_cli("replay", "--config", config, SCHOOL_DAY / "school-day.pcap", SCHOOL_DAY / "squid-access.log",
            store=tmp / "store", check=True)
    said = before(config)
    daemon = Daemon(tmp, env={"ICTWATCH_TEST_CLOCK": clock})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{daemon.port}/health", timeout=2)
            return daemon, config, said
        except OSError:
            assert daemon.proc.poll() is None, daemon.proc.communicate()
            time.sleep(0.3)
    raise AssertionError("the daemon did not start")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """A daemon on the replayed school day, its clock on a Saturday (no iPad check due), its socket in a
    folder others may enter (so that what refuses them is the socket's own mode and the daemon); and what
    `explain` and `report` said before it started, with the store to themselves."""
    tmp = tmp_path_factory.mktemp("held")
    folder = Path(tempfile.mkdtemp(prefix="ictw-"))
    folder.chmod(0o755)

    def alone(config: Path) -> dict[str, subprocess.CompletedProcess]:
        return {"explain": command(config, "explain", "school-day.pcap#50"),
                "report": command(config, "report", *REPORT, "-o", tmp / "alone.html")}

    running, config, before = held(tmp, "2026-06-20T12:00:00+01:00", folder / "ictwatch.sock", alone)
    yield running, config, folder / "ictwatch.sock", before
    running.stop()
    shutil.rmtree(folder, ignore_errors=True)


def command(config: Path, *args: str | Path) -> subprocess.CompletedProcess:
    """A command as the network manager runs it, in a second process, with the daemon's storage setting."""
    return run_cli(*args[:1], "--config", config, *args[1:], store=config.parent.parent / "store")


def test_breaches_while_the_daemon_runs_are_the_hand_written_ones(daemon):
    _, config, _, _ = daemon
    proc = command(config, "breaches", "--json", *DAY)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    got = [(r["time"][11:19], r["user"] or "", r["rule"], r["host"] or "") for r in rows]
    assert got == [(r["time"][11:], r["user"], r["rule"], r["host"]) for r in expected_breaches(SCHOOL_DAY)]


def test_the_caller_of_the_daemon_opens_neither_the_engine_nor_polars(daemon):
    """A command the daemon runs only forwards its arguments: the caller reads the socket's place from the root
    file and imports none of the engine, polars, pyarrow or the configuration's models."""
    _, config, _, _ = daemon
    proc, imported = run_cli_imports("breaches", "--config", config, *DAY, store=config.parent.parent / "store")
    assert proc.returncode == 0, proc.stderr
    assert "breach" in proc.stdout
    assert not imported & {"chdb", "clickhouse_connect", "polars", "pyarrow", "numpy", "pandas", "pydantic"}


def test_explain_while_the_daemon_runs_says_what_it_says_alone(daemon):
    _, config, _, before = daemon
    proc = command(config, "explain", "school-day.pcap#50")
    assert proc.returncode == 0, proc.stderr
    assert "www.instagram.com" in proc.stdout and "personal-use-restricted-hours" in proc.stdout
    assert proc.stdout == before["explain"].stdout


def test_output_closed_early_is_not_blamed_on_the_daemon(daemon):
    """`ictwatch explain … | head -1` (found trying the daemon as the network manager): the reader closing the
    output said "the daemon … stopped answering" though the daemon was fine. The command now stops quietly, as
    a command writing into a closed pipe does (status 141, SIGPIPE's), and the daemon goes on answering."""
    _, config, _, before = daemon
    env = dict(os.environ) | {"ICTWATCH_STORAGE_URL": f"chdb://{config.parent.parent / 'store'}"}
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line, as `head -1` is after its line
    proc = subprocess.Popen([sys.executable, "-m", "ictwatch.cli", "explain", "--config", str(config),
                             "school-day.pcap#50"], stdout=write, stderr=subprocess.PIPE, env=env)
    os.close(write)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err.decode()) == (141, "")
    assert command(config, "explain", "school-day.pcap#50").stdout == before["explain"].stdout


def test_report_while_the_daemon_runs_is_written_by_the_caller(daemon, tmp_path):
    """jcarter's one breach of the day (bet365 at 11:15), asked for by his line manager; the file is
    written where the caller said, by the caller, readable by the caller alone."""
    _, config, _, before = daemon
    out = tmp_path / "reports" / "jcarter.html"
    proc = command(config, "report", *REPORT, "-o", out)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("report for jcarter: 1 breach, ") and first == before["report"].stdout.splitlines()[0]
    assert f"written to {out}" in proc.stdout
    assert out.read_bytes().lower().startswith(b"<!doctype html>") and b"www.bet365.com" in out.read_bytes()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_grant_audit_verify_and_show_while_the_daemon_runs(daemon):
    _, config, _, _ = daemon
    proc = command(config, "grant", *GRANT, "--reason", "the safeguarding lead is away")
    assert proc.returncode == 0, proc.stderr
    seq = int(re.fullmatch(r"grant #(\d+): gwilliams may request one report of sokafor for 2026-06-15 to "
                           r"2026-06-19, within 7 days\n", proc.stdout).group(1))
    refused = command(config, "grant", "--by", "jcarter", *GRANT[2:], "--reason", "x")
    assert refused.returncode == 3 and "refused: only the headteacher gives one-off grants" in refused.stderr
    verify = command(config, "audit", "verify")
    assert verify.returncode == 0 and re.fullmatch(r"audit chain intact: (\d+) rows\n", verify.stdout), verify.stderr
    assert int(verify.stdout.split()[3]) >= seq + 1
    show = command(config, "audit", "show", "--requested-by", "hmorgan")
    assert show.returncode == 0, show.stderr
    assert re.search(rf"^#{seq} .* hmorgan +grant +granted +sokafor ", show.stdout, re.M)


def test_check_ipads_while_the_daemon_runs(daemon):
    """17 June 2026, a Wednesday of the summer term, has no traffic at all: neither issued iPad was seen
    (the third was reported lost on 1 June)."""
    _, config, _, _ = daemon
    proc = command(config, "check-ipads", "--date", "2026-06-17")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["IPAD-BANK-5C: not seen on 2026-06-17 by 09:30; recorded as an absence",
                                        "IPAD-BANK-6A: not seen on 2026-06-17 by 09:30; recorded as an absence",
                                        "0 of 2 school iPads seen by 09:30 on 2026-06-17"]


def test_spool_status_and_flush_while_the_daemon_runs(daemon):
    """The daemon's own spool, empty: its writer has stored everything."""
    _, config, _, _ = daemon
    proc = command(config, "spool", "status")
    assert proc.returncode == 0, proc.stderr
    assert "records: 0" in proc.stdout.splitlines()
    proc = command(config, "spool", "flush")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "flushed 0 of 0 batches (by the daemon's writer)"


def talk(socket_path: Path, *frames: bytes) -> bytes:
    """Send raw bytes to the command socket; everything the daemon answers until it closes."""
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(30)
        conn.connect(str(socket_path))
        for frame in frames:
            conn.sendall(frame)
        return b"".join(iter(lambda: conn.recv(65536), b""))


def frame(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack(">I", len(payload)) + payload


@pytest.mark.parametrize(("sent", "said"), [
    (b"Q\x7f\xff\xff\xff", b"not a request this daemon understands"),  # 2 GiB announced
    (frame(b"Q", b"\xff{not json"), b"not a request this daemon understands"),
    (frame(b"Q", b"[" * 60_000), b"not a request this daemon understands"),  # nested past the parser's depth
    (frame(b"Q", json.dumps({"argv": ["breaches"], "tty": [True, True]}).encode()), b"not a request"),
    (frame(b"Q", json.dumps({"argv": ["run", "--config", "/etc/passwd"], "tty": [False, False], "env": {},
                             "cwd": "/"}).encode()), b"`run` does not run inside the daemon"),
    (frame(b"Q", json.dumps({"argv": ["account", "--config", "x", "--user", "hmorgan"], "tty": [False, False],
                             "env": {}, "cwd": "/"}).encode()), b"`account` does not run inside the daemon"),
])
def test_what_the_socket_is_sent_is_treated_as_hostile(daemon, sent, said):
    """Oversized, malformed or unexpected requests, and commands that are not the daemon's to run, are
    refused with one line and a non-zero status; the daemon goes on serving."""
    _, config, socket_path, _ = daemon
    answer = talk(socket_path, sent)
    assert said in answer and answer[-6:] in (frame(b"X", b"1"), frame(b"X", b"2")), answer
    assert command(config, "audit", "verify").returncode == 0


def test_the_socket_is_the_service_users_alone(daemon):
    """Mode 0600 (the `ictwatch` group holds the capture's user too, who must not ask for reports): another
    user cannot connect."""
    _, _, socket, _ = daemon
    assert stat.S_IMODE(socket.stat().st_mode) & 0o077 == 0
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as another user")
    assert "PermissionError" in as_nobody(socket)


def test_the_daemon_refuses_another_user_even_through_a_loosened_socket_mode(daemon):
    """The fault a real install could have (someone widens the socket's mode): the daemon itself checks
    the caller's uid (SO_PEERCRED) and refuses anyone but its own user and root, before reading a byte."""
    _, _, socket, _ = daemon
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as another user")
    socket.chmod(0o666)
    try:
        said = as_nobody(socket)
    finally:
        socket.chmod(0o600)
    assert "refused: uid 65534 is neither the service's user nor root" in said


def as_nobody(socket: Path) -> str:
    """What the daemon says to `nobody` connecting to `socket` (a system Python, the standard library)."""
    script = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
              "try:\n s.connect(sys.argv[1]); s.settimeout(10)\n"
              " data=b''.join(iter(lambda: s.recv(4096), b''))\n print(data.decode(errors='replace'))\n"
              "except OSError as e:\n print(type(e).__name__)\n")
    proc = subprocess.run(["/usr/bin/python3", "-I", "-c", script, str(socket)], capture_output=True, text=True,
                          user=65534, group=65534, timeout=30, cwd="/")
    return proc.stdout + proc.stderr


def test_a_daemon_started_after_the_check_does_not_judge_a_morning_it_did_not_watch(tmp_path):
    """Started at 10:15 on the school day (after the 09:31 check), the daemon saw nothing of that morning:
    it records no absence, and says what to run if the capture did watch it."""
    running, _config, _ = held(tmp_path, "2026-06-16T10:15:00+01:00")
    time.sleep(3)
    _, err = running.stop()
    assert "iPad check for 2026-06-16 not run: the daemon started after its time" in err
    assert "ictwatch check-ipads --date 2026-06-16" in err
    assert stored_activity(tmp_path / "store").filter(kind="absence").height == 0


def test_the_daemon_runs_the_daily_ipad_check_itself(tmp_path):
    """The daemon's clock starts at 09:30:57 on the school day: a minute after the policy's 09:30 the check
    runs, with no timer and no second process. IPAD-BANK-5C was on the network at 09:15; IPAD-BANK-6A never
    was: one absence, at 09:30 (08:30 UTC), judged a breach of I1 of the device, in its owner's care."""
    running, config, _ = held(tmp_path, "2026-06-16T09:30:57+01:00")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        proc = command(config, "breaches", "--json", *DAY)
        if "ipad-not-seen" in proc.stdout:
            break
        time.sleep(1)
    _, err = running.stop()
    assert "iPad check for 2026-06-16: 1 of 2 school iPads seen by 09:30; 1 absence recorded" in err
    rows = stored_activity(tmp_path / "store").filter(kind="absence").to_dicts()
    assert [(r["device"], r["user"], r["responsible"], r["rule_ids"], r["ts"].isoformat()) for r in rows] == [
        ("IPAD-BANK-6A", "", "sokafor", ["ipad-not-seen"], "2026-06-16T08:30:00+00:00")]


UNREACHABLE = [
    ("check-ipads", "--date", "2026-06-16"),
    ("report", *REPORT, "-o", "-"),
    ("grant", *GRANT, "--reason", "cover"),
    ("audit", "verify"),
    ("audit", "show", "--requested-by", "hmorgan"),
    ("breaches",),
    ("explain", "school-day.pcap#50"),
]


@pytest.mark.parametrize("args", UNREACHABLE, ids=lambda a: " ".join(a[:2]))
def test_an_unreachable_server_is_one_line_naming_it(tmp_path, args):
    """A ClickHouse server URL nobody listens on: one line naming the server (not its password), exit 1."""
    config = school_config(tmp_path / "school")
    port = free_port()
    proc = run_cli(*args[:1], "--config", config, *args[1:],
                   env={"ICTWATCH_STORAGE_URL": f"http://ictwatch:s3cret@127.0.0.1:{port}"})
    assert proc.returncode == 1, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and f"127.0.0.1:{port}" in proc.stderr, proc.stderr
    assert "s3cret" not in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("args", [UNREACHABLE[2], UNREACHABLE[5]], ids=lambda a: a[0])
def test_an_embedded_store_held_without_a_daemon_is_one_line_naming_it(tmp_path, args):
    """Another process (not a daemon: no socket) holds the chDB folder: one line naming it, exit 1."""
    config = school_config(tmp_path / "school")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys,time; from storage.store import Store; s=Store('chdb://' + sys.argv[1]); "
         "s.migrate(); print('held', flush=True); time.sleep(60)", str(tmp_path / "store")],
        stdout=subprocess.PIPE, text=True, cwd=SCHOOL_DAY.parents[1])
    try:
        assert holder.stdout.readline() == "held\n"
        proc = run_cli(*args[:1], "--config", config, *args[1:], store=tmp_path / "store")
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 1, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and str(tmp_path / "store") in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_replay_while_the_daemon_runs(daemon, tmp_path):
    """Two proxy lines of the day, two days later: the daemon reads the file (the caller's relative path,
    from the caller's working directory) and stores both."""
    _, config, _, _ = daemon
    lines = SCHOOL_DAY.joinpath("squid-access.log").read_text().splitlines(keepends=True)[:2]
    (tmp_path / "later.log").write_text("".join(f"{float(ln.split(' ', 1)[0]) + 2 * 86400:.3f} {ln.split(' ', 1)[1]}"
                                                for ln in lines))
    proc = subprocess.run([sys.executable, "-m", "ictwatch.cli", "replay", "--config", str(config), "later.log"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "ICTWATCH_STORAGE_URL": f"chdb://{config.parent.parent / 'store'}",
                               "PYTHONPATH": str(SCHOOL_DAY.parents[1])})
    assert proc.returncode == 0, proc.stderr
    assert "stored 2 activities" in proc.stdout
