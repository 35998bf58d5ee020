"""Shared fixtures: paths to the bundled school day and to the peer traces beside the project."""

from __future__ import annotations

import contextlib
import csv
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCHOOL_DAY = ROOT / "fixtures" / "school-day"
SHARED = ROOT.parent / "shared"
ZEEK = SHARED / "peer-traces" / "zeek"
SQUID_PEER = SHARED / "peer-traces" / "squid"
UT1 = SHARED / "ut1-sample" / "blacklists"

# Every daemon a test starts runs clause I1's daily check on its own clock: on a school day of the demo
# calendar after 09:31 it would record that day's iPad absences in the test's store at once. Its clock
# starts on a Saturday instead, unless a test sets another (tests/ictwatch/test_daemon_commands.py).
os.environ.setdefault("ICTWATCH_TEST_CLOCK", "2026-06-20T12:00:00+01:00")


def need(path: Path) -> Path:
    """Skip the test with a reason when a folder beside the project (../shared) is absent."""
    if not path.exists():
        pytest.skip(f"{path} is absent (peer data lives in ../shared, not in the repository)")
    return path


@pytest.fixture
def zeek() -> Path:
    return need(ZEEK)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HtmlPage(http.server.BaseHTTPRequestHandler):
    """A web server's page for tests that put a real proxy in front of one: 200, a line of HTML."""

    def do_GET(self) -> None:  # noqa: N802 - the standard library's name
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<p>lesson plan</p>")

    def log_message(self, *args: object) -> None:
        pass


def stored_activity(store: Path) -> pl.DataFrame:
    """Every activity in the embedded store at `store`, oldest first."""
    from storage.store import Store

    db = Store(f"chdb://{store}")
    try:
        return db.activity(None, None, None)
    finally:
        db.close()


def school_config(dest: Path, extra_yaml: str = "") -> Path:
    """A copy of the school day's configuration (no captures or logs) in `dest`, with `extra_yaml` appended
    to its ictwatch.yaml; returns that file."""
    shutil.copytree(SCHOOL_DAY, dest, ignore=shutil.ignore_patterns("*.pcap", "*.log"))
    config = dest / "ictwatch.yaml"
    config.write_text(config.read_text() + extra_yaml)
    return config


def run_cli(*args: str | Path, store: Path | None = None, check: bool = False,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real `ictwatch` command in a subprocess (its own chDB engine), capturing output; `env` adds
    to (or overrides) the environment."""
    env = dict(os.environ) | (env or {})
    if store is not None:
        env["ICTWATCH_STORAGE_URL"] = f"chdb://{store}"
    proc = subprocess.run(
        [sys.executable, "-m", "ictwatch.cli", *map(str, args)], capture_output=True, text=True, env=env,
        cwd=ROOT, timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"ictwatch {args} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def policy_refused(path: Path, text: str) -> str:
    """The one-line error a policy file of `text`, written at `path`, is refused with (it must be refused)."""
    from rules.config import ConfigError, load_model
    from rules.policy import Policy

    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_model(path, Policy)
    return str(err.value)


SCHOOL_WEEK_CONFIG = ROOT / "fixtures" / "school-week" / "ictwatch.yaml"


@pytest.fixture(scope="session")
def school_week(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """The school week (fixtures/make_school_week.py) written, replayed and given the daily iPad check of each
    day, once for the whole run: (the folder with its capture, proxy log and what the replay printed
    (`replay.txt`), the store, what each day's check printed). Several modules read it; none may change what
    it stored (a report adds its audit row only)."""
    from fixtures import make_school_week

    out = tmp_path_factory.mktemp("week")
    make_school_week.main(out)
    store = out / "store"
    replayed = run_cli("replay", "--config", SCHOOL_WEEK_CONFIG, out / "school-week.pcap", out / "squid-access.log",
                       store=store, check=True)
    (out / "replay.txt").write_text(replayed.stdout)
    checks = [run_cli("check-ipads", "--config", SCHOOL_WEEK_CONFIG, "--date", f"2026-10-{day}", store=store,
                      check=True).stdout for day in range(26, 31)]
    return out, store, checks


def expected_breaches(folder: Path) -> list[dict]:
    """The hand-written `expected-breaches.csv` of a fixture folder (its `#` lines are notes). `responsible` (whose
    care a device was in) is empty where the row, or the file, does not give it."""
    lines = [ln for ln in (folder / "expected-breaches.csv").read_text().splitlines() if not ln.startswith("#")]
    return [{**row, "responsible": row.get("responsible") or ""} for row in csv.DictReader(lines)]


def stored_breaches(config: Path, store: Path) -> list[dict]:
    """`ictwatch breaches --json` over a store, in the columns of `expected-breaches.csv` (local time). The
    JSON says null for an unknown person, device, place or host; the CSV leaves that cell empty."""
    proc = run_cli("breaches", "--config", config, "--json", store=store, check=True)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    cells = ("user", "device", "location", "rule", "clause", "host", "responsible")
    return [{"time": r["time"][:19].replace("T", " "), **{c: r[c] or "" for c in cells}} for r in rows]


@contextlib.contextmanager
def veth_namespaces(tag: str, addresses: tuple[str, str] | None = None,
                    ipv6: bool = True) -> Iterator[tuple[str, str, str, str]]:
    """Two network namespaces joined by a veth pair (with `addresses`/24 on the ends, if given), removed
    afterwards: yields (namespace A, namespace B, A's end, B's end). Without `ipv6` the ends send nothing
    of their own (no neighbour discovery). Needs root and iproute2."""
    def sh(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True)

    a, b = f"{tag}a", f"{tag}b"
    sh("ip", "netns", "add", a)
    sh("ip", "netns", "add", b)
    try:
        sh("ip", "link", "add", f"{tag}va", "type", "veth", "peer", "name", f"{tag}vb")
        for i, (ns, dev) in enumerate(((a, f"{tag}va"), (b, f"{tag}vb"))):
            sh("ip", "link", "set", dev, "netns", ns)
            if not ipv6:
                sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1")
            if addresses:
                sh("ip", "-n", ns, "addr", "add", f"{addresses[i]}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield a, b, f"{tag}va", f"{tag}vb"
    finally:
        subprocess.run(["ip", "netns", "del", a], capture_output=True)
        subprocess.run(["ip", "netns", "del", b], capture_output=True)
