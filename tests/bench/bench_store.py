"""Storage speed: the writer's sustained insert rate into chDB, beside the client's other insert paths,
and a one-person 30-day report query over ten million activity rows.

    ./dev bench-store                              # 2,000,000 rows through the writer; 10,000,000 in the table
    python -m tests.bench.bench_store --quick      # small: checks it still runs (CI)

Inserts: engine-shaped activity batches of 65,536 rows (every column of `activity`, values like a
school's: a few hundred people, a thousand hosts, breaches in one row of fifty) go through `Writer`
(Arrow insert with a deduplication token, on its thread, as the daemon does). The same rows are then
inserted, in one process and one run, by clickhouse-connect's row-list insert (on a sample, it is slow)
and its column-oriented insert: the paths a writer could have taken.

The report query: ten million rows made inside ClickHouse (`INSERT ... SELECT` from `numbers()`), 500
people over a year, then `Store.activity(user, start, end)` for one person and 30 days, as a report asks
(the median of seven runs after one warm-up), and the table's bytes per row on disk. Then the whole
report for that person and month (query, summaries, heatmap, HTML, seal), and SARG 2.4 (Debian) making
the same person's report from those 30 days written out as a Squid log.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from storage.schema import ACTIVITY, Column
from storage.store import Store, to_activity_arrow
from storage.writer import Writer

BATCH = 65_536
USERS = 500


def frames(rows: int, seed: int = 7) -> list[pl.DataFrame]:
    """`rows` activity rows as engine-shaped frames of BATCH rows (distinct, so none is deduplicated)."""
    rng = np.random.default_rng(seed)
    start = int(dt.datetime(2026, 9, 7, 8, tzinfo=dt.UTC).timestamp() * 1_000_000)
    hosts = [f"www.site{i}.example" for i in range(1000)]
    out = []
    for at in range(0, rows, BATCH):
        n = min(BATCH, rows - at)
        user = rng.integers(0, USERS, n)
        breach = rng.random(n) < 0.02
        df = pl.DataFrame({
            "ts": pl.Series(start + (at + np.arange(n)) * 50_000, dtype=pl.Int64).cast(pl.Datetime("us", "UTC")),
            "school": ["The Valley School"] * n,
            "user": [f"user{u:03d}" for u in user],
            "role": ["teacher"] * n,
            "device": [f"LT-{u:03d}" for u in user],
            "kind": rng.choice(["dns", "tls", "flow", "http", "proxy"], n),
            "source": ["pcap"] * n,
            "source_ref": [f"gw.pcap#{at + i}" for i in range(n)],
            "src_ip": [f"10.20.{10 + u // 250}.{u % 250 + 2}" for u in user],
            "src_port": pl.Series(rng.integers(32768, 61000, n), dtype=pl.UInt16),
            "dst_ip": [f"198.51.100.{h % 250}" for h in rng.integers(0, 1000, n)],
            "dst_port": pl.Series(rng.choice([53, 443, 80], n), dtype=pl.UInt16),
            "host": [hosts[h] for h in rng.integers(0, 1000, n)],
            "bytes_out": pl.Series(rng.integers(100, 50_000, n), dtype=pl.UInt64),
            "bytes_in": pl.Series(rng.integers(100, 2_000_000, n), dtype=pl.UInt64),
            "verdict": np.where(breach, "breach", "allowed"),
            "rule_ids": [["personal-use-restricted-hours"] if b else [] for b in breach],
            "clauses": [["P18"] if b else [] for b in breach],
            "severity": np.where(breach, "caution", ""),
            "rule_clauses": [[["P18"]] if b else [] for b in breach],
            "rule_severities": [["caution"] if b else [] for b in breach],
            "policy_version": ["9056378b9dd335bf"] * n,
        })
        out.append(df.with_columns(**{c.name: _empty(c) for c in ACTIVITY if c.name not in df.columns
                                      and c.name not in _MADE_ON_INSERT}))
    return out


_MADE_ON_INSERT = ("record_id", "judged_at")
"""Columns the writer's insert layout makes for a batch without them (storage/store.py `to_activity_arrow`)."""


def _empty(column: Column) -> pl.Expr:
    """A column the generator does not fill, as the engine leaves it: '' / false / [] / null."""
    if column.ch_type.startswith("Nullable"):
        return pl.lit(None, dtype=pl.from_arrow(pa.array([], column.arrow)).dtype)  # type: ignore[union-attr]
    if column.ch_type == "Bool":
        return pl.lit(False)
    if column.ch_type.startswith("Array"):
        return pl.lit([], dtype=pl.from_arrow(pa.array([], column.arrow)).dtype)  # type: ignore[union-attr]
    return pl.lit("")


def writer_rate(store: Store, batches: list[pl.DataFrame]) -> float:
    """Rows/s through the writer (conversion, token, Arrow insert on its thread), start to last ack."""
    start = time.perf_counter()
    writer = Writer(store)
    for df in batches:
        writer.put(df)
    writer.close()
    return writer.stored / (time.perf_counter() - start)


def client_rates(store: Store, sample: pl.DataFrame) -> dict[str, float]:
    """Rows/s of clickhouse-connect's row-list and column-oriented inserts of the same rows."""
    table = to_activity_arrow(sample)
    names = table.column_names
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    rows = [list(r) for r in zip(*columns, strict=True)]
    out = {}
    for label, data, oriented in (("row lists", rows, False), ("column-oriented", columns, True)):
        start = time.perf_counter()
        store._client.insert(f"{store.database}.activity", data, column_names=names, column_oriented=oriented)
        out[label] = len(rows) / (time.perf_counter() - start)
    return out


def report_query(store: Store, rows: int) -> tuple[float, int, float]:
    """(median ms for one person's 30 days, rows that query returned, bytes per row on disk) after
    filling the table with `rows` generated rows."""
    db = store.database
    store._client.command(f"TRUNCATE TABLE {db}.activity")
    year = 365 * 86400
    store._client.command(
        f"INSERT INTO {db}.activity (ts, school, user, role, device, kind, source, source_ref, src_ip, dst_ip, "
        "dst_port, host, bytes_out, bytes_in, verdict, rule_ids, clauses, severity, rule_clauses, rule_severities, "
        "policy_version, record_id, judged_at) "
        f"SELECT toDateTime64('2025-11-01 00:00:00', 6, 'UTC') + toIntervalMicrosecond(number * "
        f"intDiv({year} * 1000000, {rows})), 'The Valley School', concat('user', leftPad(toString(cityHash64(number) "
        f"% {USERS}), 3, '0')), 'teacher', concat('LT-', toString(cityHash64(number) % {USERS})), "
        "['dns','tls','flow','http','proxy'][number % 5 + 1], 'pcap', concat('gw.pcap#', toString(number)), "
        "concat('10.20.10.', toString(cityHash64(number) % 250)), concat('198.51.100.', toString(number % 250)), "
        "[53, 443, 80][number % 3 + 1], concat('www.site', toString(cityHash64(number, 1) % 1000), '.example'), "
        "cityHash64(number, 2) % 50000, cityHash64(number, 3) % 2000000, "
        "if(number % 50 = 0, 'breach', 'allowed'), if(number % 50 = 0, ['personal-use-restricted-hours'], []), "
        "if(number % 50 = 0, ['P18'], []), if(number % 50 = 0, 'caution', ''), if(number % 50 = 0, [['P18']], []), "
        "if(number % 50 = 0, ['caution'], []), '9056378b9dd335bf', cityHash64(number, 4), now64(6) "
        f"FROM numbers({rows})", settings={"max_insert_threads": 2})
    store._client.command(f"OPTIMIZE TABLE {db}.activity FINAL")
    disk = store._client.query(f"SELECT sum(bytes_on_disk), sum(rows) FROM system.parts WHERE database = '{db}' "
                               "AND table = 'activity' AND active").result_rows[0]
    start_day = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    end_day = start_day + dt.timedelta(days=30)
    store.activity("user042", start_day, end_day)  # warm-up
    times, found = [], 0
    for _ in range(7):
        t0 = time.perf_counter()
        found = store.activity("user042", start_day, end_day).height
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), found, disk[0] / max(disk[1], 1)


def report_render(store: Store) -> tuple[float, int, int]:
    """(median ms, rows, breaches) of one person's 30-day HTML report end to end: query, summaries, each
    breach explained, render, seal."""
    from ictwatch import settings
    from reports import build, render
    from reports.seal import seal

    loaded = settings.load(Path(__file__).resolve().parents[2] / "fixtures" / "school-day" / "ictwatch.yaml")
    # each breach explained, as the command and the web page do
    explainer = build.explainer(loaded.engine(), store)
    times, rows = [], 0
    for _ in range(4):
        t0 = time.perf_counter()
        report = build.build(store, loaded.directory, "The Valley School", "Europe/London", "user042",
                             dt.date(2026, 3, 1), dt.date(2026, 3, 30), "hmorgan", "benchmark",
                             dt.datetime.now(dt.UTC), "headteacher", 1, explainer)
        seal(render.to_html(report))
        times.append((time.perf_counter() - t0) * 1000)
        rows = report.total_activities
    return statistics.median(times[1:]), rows, len(report.breaches)


def sarg_report(store: Store, tmp: Path) -> tuple[float, int] | None:
    """(seconds, log lines) for SARG 2.4 making user042's report from the same 30 days as a Squid log (every
    user's lines: the log a proxy would have written), or None without SARG."""
    exe = shutil.which("sarg")
    if exe is None:
        return None
    db = store.database
    df = pl.from_arrow(store._client.query_arrow(
        f"SELECT ts, user, src_ip, dst_ip, host, bytes_in FROM {db}.activity WHERE ts >= '2026-03-01 00:00:00' "
        "AND ts < '2026-03-31 00:00:00' ORDER BY ts"))
    assert isinstance(df, pl.DataFrame)
    lines = df.select(pl.format("{} {} {} TCP_MISS/200 {} GET http://{}/ {} HIER_DIRECT/{} text/html",
                                (pl.col("ts").dt.epoch("ms") / 1000).round(3), pl.lit(120), "src_ip", "bytes_in",
                                "host", "user", "dst_ip"))
    log = tmp / "access.log"
    lines.write_csv(log, include_header=False, quote_style="never")
    out, work = tmp / "sarg", tmp / "sargtmp"
    out.mkdir()
    work.mkdir()
    conf = tmp / "sarg.conf"  # Debian's own sarg.conf names an option its sarg refuses (resolve_ip)
    conf.write_text(f"output_dir {out}\ntemporary_dir {work}\ndate_format e\noverwrite_report yes\n")
    start = time.perf_counter()
    subprocess.run([exe, "-f", str(conf), "-l", str(log), "-o", str(out), "-u", "user042", "-d",
                    "01/03/2026-30/03/2026", "-w", str(work)], check=True, capture_output=True, timeout=3600)
    return time.perf_counter() - start, df.height


def run(insert_rows: int, table_rows: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"chdb://{Path(tmp) / 'store'}", "bench")
        store.migrate()
        try:
            batches = frames(insert_rows)
            rate = writer_rate(store, batches)
            print(f"{'ictwatch writer (Arrow, own thread)':<40}{rate:>12,.0f} rows/s  ({insert_rows:,} rows)")
            for label, other in client_rates(store, batches[0][:20_000]).items():
                print(f"{'clickhouse-connect ' + label:<40}{other:>12,.0f} rows/s  (20,000 rows)")
            ms, found, per_row = report_query(store, table_rows)
            print(f"report query: one person, 30 days, {table_rows:,} rows in the table: {ms:.0f} ms median "
                  f"({found:,} rows returned)")
            print(f"activity on disk: {per_row:.1f} bytes per row")
            render_ms, rows, breaches = report_render(store)
            print(f"report: one person's 30-day HTML report, end to end: {render_ms:.0f} ms median ({rows:,} rows, "
                  f"{breaches} breaches explained)")
            peer = sarg_report(store, Path(tmp))
            if peer is None:
                print("SARG: not installed (./dev test installs it when run as root)")
            else:
                print(f"SARG 2.4: the same person's report from the same 30 days as a Squid log ({peer[1]:,} lines): "
                      f"{peer[0] * 1000:.0f} ms")
        finally:
            store.close()
    return {"writer_rows_per_s": rate, "report_ms": ms, "bytes_per_row": per_row, "render_ms": render_ms}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that it runs")
    args = parser.parse_args(argv)
    run(100_000, 200_000) if args.quick else run(2_000_000, 10_000_000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
