"""The policy engine's speed with full-size category lists and a week of leases, beside squidGuard.

    ./dev bench-engine                                 # 1,000,000 observations, 5,000,000 listed domains
    ./dev bench-engine --window                        # and a rule over a window that counts every row
    python -m tests.bench.bench_engine --quick         # small: checks it still runs (CI)

The observations are a school proxy log's (the Squid benchmark's generator: hosts from ten sites, CONNECT
and GET, some denials) with client addresses spread over the school's subnets; the identity holds a
week of daily DHCP leases for 2,000 devices (14,000 leases); the policy is the demo school's (all its
rules and waivers, and a recurring waiver for a Year 6 group on Tuesday mornings narrowed to a site, which
the log's Tuesday runs through) with its category map pointed at a generated UT1 tree of five million
domains. Printed:
observations judged per second (identity, categories, calendar windows, every rule, waivers, verdict),
in batches of 65,536 as the pipeline hands them over, each with its record ids (the pipeline makes them
before it judges). With `--window`, the policy has one more rule, over a window: the bytes received per
person and site in each hour, from every proxy line, so every observation is counted and every batch
adds to the totals of the ones before. The peer is squidGuard 1.6, which also decides each request from
category lists and source groups, answering the same requests on stdin.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from collector.logs import squid_batch
from ictwatch import settings
from rules.categories import CategoryIndex
from rules.policy import Rule
from rules.waivers import Waiver
from storage.records import record_ids
from tests.bench.bench_categories import squidguard, write_lists
from tests.bench.bench_squid import write_log

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "fixtures" / "school-day" / "ictwatch.yaml"
BATCH = 65_536


def leases(devices: int, days: int) -> pl.DataFrame:
    """`devices` devices renewing a 24-hour lease every day, on addresses the proxy log uses."""
    start = dt.datetime(2026, 6, 10, 7, tzinfo=dt.UTC)
    rows = [(f"10.20.10.{d % 250 + 2}" if d < 250 else f"10.20.{11 + d // 250}.{d % 250 + 2}",
             f"02:00:00:00:{d >> 8:02x}:{d & 255:02x}", start + dt.timedelta(days=k),
             start + dt.timedelta(days=k + 1), f"leases#{d}.{k}") for d in range(devices) for k in range(days)]
    return pl.DataFrame(rows, schema={"ip": pl.String, "lease_mac": pl.String, "lease_start": pl.Datetime("us", "UTC"),
                                      "lease_end": pl.Datetime("us", "UTC"), "lease_ref": pl.String}, orient="row")


WINDOW_RULE = Rule.model_validate({
    "id": "bench-hourly-volume", "clauses": ["P1"], "severity": "advisory", "message": "a lot received in an hour",
    "when": {"kind": ["proxy"]},
    "total": {"amount": "bytes_down", "over": "1 GB", "per": ["person", "site"], "window": "hour"}})
"""A rule over a window that every observation of the benchmark's log counts toward."""


def run(observations: int, domains: int, window: bool = False) -> dict[str, float]:
    """Build the inputs, time the engine over every batch, then squidGuard on the same requests; `window`
    adds `WINDOW_RULE` to the policy."""
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        lists = tmp / "ut1"
        write_lists(lists, domains)
        log = tmp / "access.log"
        write_log(log, observations)
        frame, bad, _late = squid_batch.parse_chunk(log.read_bytes(), 1, log.name)
        assert not bad
        frame = frame.with_columns(record_ids(frame))
        loaded = settings.load(CONFIG)
        weekly = Waiver.model_validate({
            "id": "w-bench-weekly", "groups": ["year6"], "rules": ["personal-use-restricted-hours"],
            "weekly": {"days": ["tuesday"], "start": "10:00", "end": "12:00", "school_days_only": True},
            "hosts": ["instagram.com"], "granted_by": "dpatel", "reason": "the bench's recurring waiver"})
        policy = loaded.policy.model_copy(update={"waivers": (*loaded.policy.waivers, weekly),
                                                  "rules": (*loaded.policy.rules, *([WINDOW_RULE] if window else []))})
        loaded = dataclasses.replace(loaded, policy=policy)
        # the demo policy's categories, from the generated lists (those the generator writes)
        mapping = {k: v for k, v in loaded.policy.categories.map.items() if all((lists / d).is_dir() for d in v)}
        categories = CategoryIndex.load(lists, mapping, loaded.policy.categories.defaults())
        engine = loaded.engine(categories)
        engine.identity.add(leases(2_000, 7))
        print(f"engine: {len(loaded.policy.rules)} rules, {len(loaded.policy.waivers)} waivers, "
              f"{len(categories):,} listed domains, "
              f"{engine.identity.leases.height:,} leases; {frame.height:,} observations")
        start = time.perf_counter()
        judged = breaches = waived = 0
        for at in range(0, frame.height, BATCH):
            out = engine.evaluate(frame[at : at + BATCH])
            judged += out.height
            breaches += int((out.get_column("verdict") == "breach").sum())
            waived += int((out.get_column("verdict") == "waived").sum())
        rate = judged / (time.perf_counter() - start)
        print(f"ictwatch engine: {rate:,.0f} observations/s ({breaches:,} breaches, {waived:,} waived)")
        results = {"engine_per_s": rate}
        peer = squidguard(lists, tmp, domains, min(observations, 200_000))
        if peer is None:
            print("squidGuard: not installed (./dev test installs it when run as root)")
        else:
            results["squidguard_per_s"] = peer[1]
            print(f"squidGuard 1.6: {peer[1]:,.0f} requests/s (its lists compiled in {peer[0]:.1f} s beforehand)")
            print(f"ratio ictwatch engine / squidGuard: {rate / peer[1]:.1f}")
    return results


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: `--quick` for a small run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 observations and 50,000 domains")
    parser.add_argument("--window", action="store_true", help="add a rule over a window that counts every row")
    args = parser.parse_args(argv)
    if args.quick:
        run(20_000, 50_000, args.window)
    else:
        run(int(os.environ.get("BENCH_OBSERVATIONS", "1000000")), int(os.environ.get("BENCH_DOMAINS", "5000000")),
            args.window)
    return 0


if __name__ == "__main__":
    sys.exit(main())
