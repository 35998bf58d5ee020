"""Category lists at full UT1 size: load time, memory and lookups/s, side by side with squidGuard.

    ./dev bench-categories                             # 5,000,000 domains (BENCH_DOMAINS to change)
    python -m tests.bench.bench_categories --quick     # 50,000: checks it still runs (CI)

The real UT1 set cannot be fetched here, so one of the same shape is generated: about five million
domains, nine in ten of them in `adult`, the rest in gambling, social networks and others, plus a white
list. ictwatch loads it in a child process (so the peak memory printed is the load's own) and looks up
a million hosts, half of them under a listed domain, in batches as the engine does. squidGuard 1.6
(Debian) is the peer: it compiles the same lists into its Berkeley DB files (`squidGuard -C all`), then
answers requests on stdin as Squid's redirector; both times are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

LISTS = {"adult": 0.9, "gambling": 0.03, "social_networks": 0.02, "agressif": 0.02, "dating": 0.02, "shopping": 0.01}
MAPPING = {"pornography": ("adult",), "gambling": ("gambling",), "social_networks": ("social_networks",),
           "violence": ("agressif",), "dating": ("dating",), "shopping": ("shopping",),
           "sexual_education": ("sexual_education",)}
EXPRESSION = r"(^|[-/._])(porn|xxx|nude|camgirls?)s?([-/._]|$)"
"""The adult list's `expressions` (written here, in the style of UT1's): matched against every URL."""
TLDS = ["com", "net", "org", "co.uk", "fr", "de", "ru", "info", "xyz", "io"]


def _names(count: int, prefix: str) -> pl.Series:
    """`count` distinct domain names: a prefix, a number in base 36-ish letters, a TLD."""
    n = pl.int_range(0, count, eager=True)
    tld = pl.Series(TLDS).gather(n % len(TLDS))
    return pl.select((pl.lit(prefix) + n.cast(pl.String) + pl.lit("x") + (n * 7919 % 100_003).cast(pl.String)
                      + pl.lit(".") + tld).alias("d")).get_column("d")


def write_lists(root: Path, total: int) -> None:
    """A UT1 tree of about `total` domains."""
    for name, share in LISTS.items():
        (root / name).mkdir(parents=True)
        _names(int(total * share), name[:3]).to_frame().write_csv(root / name / "domains", include_header=False)
    (root / "adult" / "expressions").write_text(EXPRESSION + "\n")
    (root / "sexual_education").mkdir()
    _names(2000, "adu").to_frame().write_csv(root / "sexual_education" / "domains", include_header=False)
    (root / "sexual_education" / "usage").write_text("white\n")


def hosts(total: int, lookups: int) -> pl.Series:
    """`lookups` hosts: half a subdomain of a listed adult domain, half under names no list holds."""
    listed = _names(int(total * LISTS["adult"]), "adu").sample(lookups // 2, with_replacement=True, seed=3)
    unlisted = _names(lookups - lookups // 2, "zz")
    return pl.concat(["www." + listed, "cdn." + unlisted])


def child(root: Path, total: int, lookups: int) -> None:
    """Runs in the child process: load, look up, print figures as JSON."""
    from rules.categories import CategoryIndex

    start = time.perf_counter()
    idx = CategoryIndex.load(root, MAPPING)
    load_s = time.perf_counter() - start
    peak_load = _peak_mb()
    queries = hosts(total, lookups)
    start = time.perf_counter()
    found = 0
    for at in range(0, len(queries), 65_536):  # the engine's batch size
        found += int((idx.lookup_many(queries[at : at + 65_536]).list.len() > 0).sum())
    lookup_s = time.perf_counter() - start
    print(json.dumps({"entries": len(idx), "load_s": load_s, "peak_mb": peak_load, "lookups": len(queries),
                      "found": found, "lookup_s": lookup_s}))


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def squidguard(root: Path, tmp: Path, total: int, requests: int) -> tuple[float, float] | None:
    """(seconds to compile the lists, requests/s answered) for squidGuard, or None without it."""
    exe = shutil.which("squidGuard")
    if exe is None:
        return None
    (tmp / "sglog").mkdir()
    dests = "\n".join(f"dest {name} {{\n    domainlist {name}/domains\n"
                      + ("    expressionlist adult/expressions\n" if name == "adult" else "") + "}"
                      for name in [*LISTS, "sexual_education"])
    conf = tmp / "squidGuard.conf"
    conf.write_text(f"dbhome {root}\nlogdir {tmp / 'sglog'}\n{dests}\nacl {{\n    default {{\n"
                    f"        pass sexual_education !adult !gambling !social_networks !agressif !dating !shopping all\n"
                    "        redirect http://blocked.test/\n    }\n}\n")
    start = time.perf_counter()
    subprocess.run([exe, "-c", str(conf), "-C", "all"], check=True, capture_output=True, timeout=3600)
    compile_s = time.perf_counter() - start
    lines = "".join(f"http://{h}/ 10.20.10.5/- - GET\n" for h in hosts(total, requests))
    start = time.perf_counter()
    subprocess.run([exe, "-c", str(conf)], input=lines, check=True, capture_output=True, text=True, timeout=3600)
    return compile_s, requests / (time.perf_counter() - start)


def run(total: int, lookups: int) -> dict[str, float]:
    """Generate, measure ictwatch in a child process and squidGuard on the same lists; print both."""
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        root = tmp / "ut1"
        write_lists(root, total)
        size = sum(f.stat().st_size for f in root.rglob("domains"))
        print(f"lists: {total:,} domains in {len(LISTS) + 1} UT1 folders, {size / 1e6:.0f} MB")
        out = subprocess.run([sys.executable, "-m", "tests.bench.bench_categories", "--child", str(root),
                              "--domains", str(total), "--lookups", str(lookups)],
                             check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
        ours = json.loads(out.stdout.splitlines()[-1])
        print(f"ictwatch: {ours['entries']:,} entries loaded in {ours['load_s']:.2f} s, peak memory "
              f"{ours['peak_mb']:.0f} MB; {ours['lookups']:,} hosts looked up ({ours['found']:,} listed) at "
              f"{ours['lookups'] / ours['lookup_s']:,.0f} hosts/s")
        results = {"load_s": ours["load_s"], "peak_mb": ours["peak_mb"],
                   "lookups_per_s": ours["lookups"] / ours["lookup_s"]}
        peer = squidguard(root, tmp, total, min(lookups, 200_000))
        if peer is None:
            print("squidGuard: not installed (./dev test installs it when run as root)")
        else:
            results["squidguard_compile_s"], results["squidguard_requests_per_s"] = peer
            print(f"squidGuard 1.6: compiled the lists in {peer[0]:.2f} s; answered {peer[1]:,.0f} requests/s")
            print(f"ratio ictwatch lookups / squidGuard requests: {results['lookups_per_s'] / peer[1]:.1f}")
    return results


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: `--quick` for a small run; `--child` is the measuring process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50,000 domains, to check it runs")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--domains", type=int, default=int(os.environ.get("BENCH_DOMAINS", "5000000")))
    parser.add_argument("--lookups", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.domains, args.lookups)
        return 0
    if args.quick:
        run(50_000, 20_000)
    else:
        run(args.domains, args.lookups)
    return 0


if __name__ == "__main__":
    sys.exit(main())
