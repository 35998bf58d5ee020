"""Squid log speed, side by side with GoAccess, on the same generated log in the same run.

    ./dev bench-squid                                # 1,000,000 lines (BENCH_LINES), best of 3 (BENCH_ROUNDS)
    python -m tests.bench.bench_squid --quick        # 20,000 lines: checks it still runs (CI)

Printed, in lines/s: the vectorised parse alone (chunks of the file into Arrow batches), the per-line
reference parser (on a tenth of the file), the full import (`ictwatch replay`: parse, identity,
categories, rules, insert into chDB; start-up included), a floor for any import into chDB (ClickHouse
reading the log with its own Regexp format straight into `activity`, with no identity, categories or
rules; start-up included), and GoAccess 1.7 producing its HTML report from the same file (its Squid
native format); then the import's ratio to GoAccess.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from collector.logs.squid import parse_line
from collector.logs.squid_batch import WORKERS, parsed_chunks
from tests.bench import size_and_rounds

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "fixtures" / "school-day" / "ictwatch.yaml"


def write_log(path: Path, count: int) -> None:
    """A school day's proxy log: staff laptops, a mix of sites, CONNECT tunnels, some denials."""
    rng = random.Random(17)
    hosts = ["www.bbc.co.uk", "www.gov.uk", "outlook.office365.com", "mail.yahoo.com", "www.amazon.co.uk",
             "www.bet365.com", "www.instagram.com", "classroom.google.com", "www.youtube.com", "cdn.example.net"]
    users = ["jcarter", "sokafor", "lnguyen", "dpatel", "tevans", "mshah", "-"]
    lines = []
    for i in range(count):
        host = rng.choice(hosts)
        if rng.random() < 0.45:
            method, url = "CONNECT", f"{host}:443"
        else:
            method, url = "GET", f"http://{host}/{rng.randrange(10_000)}/page.html?x={rng.randrange(1000)}"
        action = "TCP_DENIED/403" if host == "www.bet365.com" else rng.choice(
            ["TCP_MISS/200", "TCP_TUNNEL/200", "TCP_HIT/200", "TCP_REFRESH_HIT/304"])
        lines.append(f"{1781596200 + i * 0.02:.3f} {rng.randrange(1, 60_000):>6} 10.20.10.{rng.randrange(2, 250)} "
                     f"{action} {rng.randrange(200, 500_000)} {method} {url} {rng.choice(users)} "
                     f"HIER_DIRECT/198.51.100.{rng.randrange(1, 250)} {rng.choice(['-', 'text/html', 'image/png'])}")
    path.write_text("\n".join(lines) + "\n")


_CLICKHOUSE_ONLY = r"""
INSERT INTO ictwatch.activity (ts, school, user, kind, source, source_ref, src_ip, dst_ip, dst_port, proto, host,
  url, method, status, content_type, bytes_in, duration_s, proxy_action, denied, verdict)
SELECT toDateTime64(ts, 6, 'UTC'), 'bench', if(user = '-', '', user), 'proxy', 'squid',
  concat('access.log:', toString(rowNumberInAllBlocks() + 1)), client, extract(hier, '/(.*)$'),
  if(method = 'CONNECT', toUInt16OrNull(extract(url, ':(\\d+)$')), 80), 'tcp',
  if(method = 'CONNECT', extract(url, '^([^:]*)'), domain(url)), url, method, status, if(ctype = '-', '', ctype),
  size, elapsed / 1000, action, position(action, 'DENIED') > 0, 'allowed'
FROM file({log}, 'Regexp', 'ts Float64, elapsed Int64, client String, action String, status UInt16, size UInt64,
  method String, url String, user String, hier String, ctype String')
SETTINGS format_regexp = {regexp},
  format_regexp_escaping_rule = 'Raw', format_regexp_skip_unmatched = 1
"""


# Squid's native format, ten fields (the elapsed time padded with spaces), the status after the action's slash
_SQUID_REGEXP = r"^\s*(\S+)\s+(-?\d+)\s+(\S+)\s+([^/\s]*)/(\d+)\s+(\d+)" + r"\s+(\S+)" * 5 + ".*$"


def clickhouse_only(store: str, log: str) -> None:
    """The floor for an import into chDB: ClickHouse itself parses the log into `activity` (proxy columns
    only; no identity, categories or rules), and the rows stored are printed. Run in a process of its
    own: chDB opens one store per process."""
    from storage.schema import sql_string
    from storage.store import Store

    db = Store(f"chdb://{store}")
    db.migrate()
    db._client.command(_CLICKHOUSE_ONLY.format(log=sql_string(log), regexp=sql_string(_SQUID_REGEXP)))
    print(db._client.command("SELECT count() FROM ictwatch.activity"))


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def run(count: int, rounds: int) -> dict[str, float]:
    """Generate the log, time every reader of it `rounds` times in turn (a noisy moment on the machine
    hits them alike), print and return each one's best lines/s."""
    results: dict[str, float] = {}

    def record(name: str, lines: int, start: float) -> None:
        results[name] = max(results.get(name, 0.0), _rate(lines, time.perf_counter() - start))

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        log = tmp / "access.log"
        write_log(log, count)
        print(f"log: {count} lines, {log.stat().st_size / 1e6:.1f} MB")
        sample = log.read_text().splitlines()[: max(count // 10, 1)]
        goaccess = shutil.which("goaccess")
        if not goaccess:
            print("  goaccess: not installed (./dev test installs it when run as root)")
        for n in range(rounds):
            start = time.perf_counter()
            rows = 0
            with log.open("rb") as f:
                for table, _bad, _late in parsed_chunks(f, log.name, lambda reason, n: None):
                    rows += table.height
            record(f"ictwatch vectorised parse ({WORKERS} threads)", count, start)
            assert rows == count

            start = time.perf_counter()
            for number, line in enumerate(sample, 1):
                parse_line(line, f"access.log:{number}")
            record("ictwatch per-line reference parse", len(sample), start)

            env = {**os.environ, "ICTWATCH_STORAGE_URL": f"chdb://{tmp / f'store-{n}'}"}
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ictwatch.cli", "replay", "--config", str(CONFIG), str(log)],
                           check=True, capture_output=True, env=env, cwd=ROOT)
            record("ictwatch replay (full import)", count, start)

            start = time.perf_counter()
            floor = subprocess.run([sys.executable, "-c", "import sys; from tests.bench.bench_squid import "
                                    "clickhouse_only; clickhouse_only(*sys.argv[1:])", str(tmp / f"floor-{n}"),
                                    str(log)], check=True, capture_output=True, text=True, cwd=ROOT)
            record("chDB alone, its own reader (floor)", count, start)
            assert int(floor.stdout) == count, f"ClickHouse's own reader stored {floor.stdout.strip()} rows"

            if goaccess:
                start = time.perf_counter()
                # GoAccess's own Squid native format, spelled out: the predefined name does not set the
                # epoch date and time formats in 1.7.
                subprocess.run([goaccess, str(log), "--log-format=%x.%^ %~%L %h %^/%s %b %m %U",
                                "--date-format=%s", "--time-format=%s", "-o", str(tmp / "report.html"),
                                "--no-progress"], check=True, capture_output=True)
                record("goaccess 1.7 (HTML report)", count, start)
    print(f"best of {rounds} round(s), the readers taking turns:")
    for name, rate in results.items():
        print(f"{name:40} {rate:12,.0f} lines/s")
    if "goaccess 1.7 (HTML report)" in results:
        for name in ("ictwatch replay (full import)", "chDB alone, its own reader (floor)"):
            print(f"ratio {name} / goaccess: {results[name] / results['goaccess 1.7 (HTML report)']:.2f}")
    return results


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: `--quick` for a small run."""
    run(*size_and_rounds(argv, __doc__ or "", "20,000 lines, to check it runs", "BENCH_LINES", 1_000_000, 20_000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
