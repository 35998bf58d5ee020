"""The `ictwatch` command: check, decode, replay, breaches, report.

Exit status: 0 on success (a replay that skipped bad records included), 2 for a bad config or policy or
an input that cannot be read at all, naming the file (and for config the field and value).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collector import tune_gc
from collector.observation import Observation
from collector.sources import InputError, open_source
from ictwatch import logs
from rules.config import ConfigError

if TYPE_CHECKING:
    import polars as pl

    from ictwatch import settings
    from reports.audit import AuditLog
    from rules.engine import Engine
    from storage.store import Store

# The policy engine, storage and reports (polars, pyarrow, chDB) are imported by the commands that use
# them, so `decode` starts fast and small.

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    logs.setup()
    args = _parser().parse_args(argv)
    tune_gc()
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `ictwatch decode ... | head`: the reader has all it wanted
        sys.stderr.close()
        return 0
    except ConfigError as exc:
        print(f"ictwatch: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InputError as exc:
        print(f"ictwatch: cannot read input: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ictwatch", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    c = sub.add_parser("check", help="validate config, policy, directory, devices and network map")
    c.add_argument("--config", required=True, type=Path)
    c.set_defaults(func=cmd_check)

    d = sub.add_parser("decode", help="print the observations in captures or logs (no config needed)")
    d.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    d.add_argument("--json", action="store_true", help="one JSON object per line")
    d.add_argument("--decoder", choices=("native", "tshark"), default="native",
                   help="decode captures with ictwatch's decoder (default) or with Wireshark's tshark")
    d.add_argument("--log-timezone", default="Europe/London",
                   help="zone of the local times in e2guardian and squidGuard logs (default Europe/London)")
    d.add_argument("--squid-logformat", metavar="SPEC",
                   help="squid.conf logformat SPEC of a Squid log in a custom format")
    d.set_defaults(func=cmd_decode)

    r = sub.add_parser("replay", help="run captures and logs through the policy into the store")
    r.add_argument("--config", required=True, type=Path)
    r.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    r.set_defaults(func=cmd_replay)

    sc = sub.add_parser("schema", help="print the JSON Schema of `decode --json` objects")
    sc.set_defaults(func=cmd_schema)

    live = sub.add_parser("run", help="capture live on an interface through the policy into the store")
    live.add_argument("--config", required=True, type=Path)
    live.add_argument("--interface", help="overrides collector.interface")
    live.add_argument("--no-web", action="store_true", help="do not start the report web page")
    live.set_defaults(func=cmd_run)

    sp = sub.add_parser("spool", help="batches waiting on disk for ClickHouse: status, or flush them now")
    sp.add_argument("action", choices=("status", "flush"))
    sp.add_argument("--config", required=True, type=Path)
    sp.set_defaults(func=cmd_spool)

    dd = sub.add_parser("ddl", help="print the schema's SQL: for one server, or ON CLUSTER for a trust's cluster")
    dd.add_argument("--cluster", metavar="NAME", help="a cluster from ClickHouse's remote_servers")
    dd.add_argument("--database", default="ictwatch")
    dd.set_defaults(func=cmd_ddl)

    b = sub.add_parser("breaches", help="list stored breaches")
    b.add_argument("--config", required=True, type=Path)
    b.add_argument("--user")
    b.add_argument("--from", dest="start", type=dt.date.fromisoformat)
    b.add_argument("--to", dest="end", type=dt.date.fromisoformat)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_breaches)

    cat = sub.add_parser("categories", help="category lists")
    cat_sub = cat.add_subparsers(required=True, metavar="ACTION")
    cu = cat_sub.add_parser("update", help="install a new UT1 set (tar.gz, folder or http(s) URL) atomically")
    cu.add_argument("--config", required=True, type=Path)
    cu.add_argument("--from", dest="source", required=True, metavar="SOURCE")
    cu.set_defaults(func=cmd_categories_update)

    ip = sub.add_parser("check-ipads", help="record school iPads not seen by the policy's time (clause I1)")
    ip.add_argument("--config", required=True, type=Path)
    ip.add_argument("--date", required=True, type=dt.date.fromisoformat)
    ip.set_defaults(func=cmd_check_ipads)

    x = sub.add_parser("explain", help="why the activities from one frame or log line got their verdicts")
    x.add_argument("--config", required=True, type=Path)
    x.add_argument("activity", metavar="SOURCE_REF",
                   help="where it was seen, as stored: file.pcap#FRAME or file.log:LINE")
    x.add_argument("--kind", help="only the activity of this kind (a frame can give a DNS query and its flow)")
    x.set_defaults(func=cmd_explain)

    rep = sub.add_parser("report", help="one person's activity report for a period")
    rep.add_argument("--config", required=True, type=Path)
    rep.add_argument("--user", required=True)
    rep.add_argument("--from", dest="start", required=True, type=dt.date.fromisoformat)
    rep.add_argument("--to", dest="end", required=True, type=dt.date.fromisoformat)
    rep.add_argument("--requested-by", required=True)
    rep.add_argument("--reason", required=True)
    rep.add_argument("--format", choices=("html", "csv", "json", "pdf"), default="html",
                     help="pdf: the HTML printed by headless Chromium")
    rep.add_argument("-o", "--output", type=Path)
    rep.add_argument("--encrypt", action="store_true",
                     help="write an AES-256 ZIP for leaving the school network (clause P6); the passphrase "
                          "comes from ICTWATCH_EXPORT_PASSPHRASE")
    rep.set_defaults(func=cmd_report)

    gr = sub.add_parser("grant", help="headteacher: let one person (the network manager, say) have one report")
    gr.add_argument("--config", required=True, type=Path)
    gr.add_argument("--by", required=True, help="the headteacher's username")
    gr.add_argument("--to", required=True, help="who may request the report")
    gr.add_argument("--subject", required=True, help="whose report")
    gr.add_argument("--reason", required=True)
    gr.set_defaults(func=cmd_grant)

    sv = sub.add_parser("serve", help="the report web page (web.listen; TLS unless on loopback)")
    sv.add_argument("--config", required=True, type=Path)
    sv.set_defaults(func=cmd_serve)

    ac = sub.add_parser("account", help="set a web account's password (read from standard input)")
    ac.add_argument("--config", required=True, type=Path)
    ac.add_argument("--user", required=True, help="a username from the staff directory")
    ac.set_defaults(func=cmd_account)

    au = sub.add_parser("audit", help="the report audit chain: verify it, or show it to the headteacher")
    au.add_argument("action", choices=("verify", "show"))
    au.add_argument("--config", required=True, type=Path)
    au.add_argument("--requested-by", help="for `show`: the headteacher's username")
    au.set_defaults(func=cmd_audit)
    return p


def cmd_check(args: argparse.Namespace) -> int:
    """Validate everything and print the effective configuration and policy."""
    from ictwatch import settings

    loaded = settings.load(args.config)
    print(f"config: {loaded.path}")
    print(f"storage: {loaded.storage_url} (database {loaded.settings.storage.database})")
    print(f"directory: {len(loaded.directory.people)} people; devices: {len(loaded.devices.devices)}; "
          f"locations: {len(loaded.network.locations)}")
    import collector

    print("packet decoder: " + ("compiled (mypyc)" if collector.compiled() else
                                "pure Python, about 7x slower: install gcc and python3.11-dev, then run ./dev "
                                "demo again (deploy/README.md)"))
    from rules.listupdate import installed

    stamp = installed(loaded.lists_path)
    print(f"category lists: {loaded.lists_path} ({len(loaded.categories):,} entries; "
          + (f"installed {stamp['installed']} from {stamp['source']})" if stamp else "not installed by "
             "`ictwatch categories update`)"))
    from rules.uksic import UK_SIC

    for name in loaded.categories.names:
        used = loaded.categories.sources.get(name, ())
        sic = " (UK SIC)" if name in UK_SIC else ""
        print(f"  {name}{sic}: " + (", ".join(used) if used else "no list: nothing is found in this category"))
    print(f"policy version {loaded.policy.version()}:")
    print(json.dumps(loaded.policy.model_dump(mode="json", by_alias=True, exclude_none=True), indent=1))
    from rules.fields import never_filled

    for warning in never_filled(loaded.policy, loaded.path.parent / loaded.settings.policy):
        print(f"ictwatch: warning: {warning}", file=sys.stderr)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the observation JSON Schema."""
    from collector.observation import json_schema

    print(json.dumps(json_schema(), indent=1))
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    """Print observations, as JSON lines or a short human line each."""
    from collector.config import CollectorSettings

    try:
        collector = CollectorSettings(decoder=args.decoder, log_timezone=args.log_timezone,
                                      squid_logformat=args.squid_logformat)
    except ValueError as exc:  # pydantic's ValidationError is one: the option and its value are named in it
        raise ConfigError(f"decode options: {exc}") from None
    sources = [open_source(p, collector) for p in args.inputs]

    lines: list[str] = []  # written a thousand at a time: a write per line cost more than the decoding

    def flush() -> None:
        if lines:
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
            lines.clear()

    def show(obs: Observation) -> None:
        if args.json:
            lines.append(json.dumps(obs.to_json_dict()))
        else:
            where = f"{obs.src_ip}:{obs.src_port or ''} > {obs.dst_ip or ''}:{obs.dst_port or ''}"
            lines.append(f"{obs.ts.isoformat()} {obs.kind:5} {where} {obs.host or ''} {obs.url or ''}".rstrip())
        if len(lines) >= 1000:
            flush()

    for source in sources:
        source.run(show)
        flush()
        _report_skips(source.path, source.skips.summary())
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay inputs into the store and print a summary."""
    from ictwatch import settings
    from ictwatch.pipeline import replay
    from ictwatch.progress import ProgressBar

    loaded = settings.load(args.config)
    engine = loaded.engine()
    store, spool = loaded.open_store(), loaded.open_spool()
    try:
        _migrate_or_spool(store)
        with ProgressBar(sys.stderr) as bar:
            summary = replay(args.inputs, engine, store, bar.follow, collector=loaded.settings.collector,
                             spool=spool)
    finally:
        store.close()
        spool.close()
    v = summary.verdicts
    print(f"replayed {len(summary.inputs)} input(s): {summary.packets} packets, "
          f"{summary.observations} observations")
    print(f"stored {summary.stored} activities: {v['breach']} breaches, {v['blocked']} blocked without a "
          f"breach, {v['allowed']} allowed (policy {engine.version})")
    print(f"the proxy refused {summary.denied} request(s)")
    if summary.skipped:
        parts = ", ".join(f"{k}={n}" for k, n in sorted(summary.skipped.items()))
        print(f"skipped {summary.skipped.total()} bad records: {parts}")
    _say_spooled(summary.spooled, loaded)
    return 0


def _migrate_or_spool(store: Store) -> None:
    """Make sure the schema is there; when ClickHouse cannot be reached, say so and go on (the writer
    keeps batches in the spool until it can)."""
    from storage.store import retryable

    try:
        store.migrate()
    except Exception as exc:
        if not retryable(exc):
            raise
        store.reset()
        print(f"ictwatch: ClickHouse cannot be reached ({type(exc).__name__}); batches go to the spool",
              file=sys.stderr)


def _say_spooled(batches: int, loaded: settings.Loaded) -> None:
    if batches:
        print(f"{batches} batch(es) wait in the spool at {loaded.spool_path}; they are written when ClickHouse "
              f"is back (`ictwatch spool flush --config {loaded.path}`)")


def cmd_run(args: argparse.Namespace) -> int:
    """The daemon: live capture through the policy into the store, with the report web page and the
    metrics and health endpoint beside it, until SIGTERM or SIGINT (then what is pending is stored or
    spooled). SIGHUP reloads the configuration, policy, directory, register and lists between two batches;
    if they fail to load, the ones in force stay and the failure is logged and shown in the metrics."""
    import signal
    import threading
    import time

    from collector.capture.live import CaptureToolError, LiveCaptureSource
    from ictwatch import settings, status
    from ictwatch.pipeline import run_live
    from rules import metrics as rule_metrics

    loaded = settings.load(args.config)
    cfg = loaded.settings.collector
    interface = args.interface or cfg.interface or ("pipe" if cfg.capture_tool == "pipe" else None)
    if not interface:
        raise ConfigError(args.config, "collector.interface", None, "no interface to capture on")
    if cfg.capture_tool == "pipe" and cfg.capture_pipe is None:
        raise ConfigError(args.config, "collector.capture_pipe", None, "capture_tool pipe needs the FIFO's path")
    pipe = str(loaded.path.parent / cfg.capture_pipe) if cfg.capture_pipe else None
    capture_filter = cfg.capture_filter
    if cfg.line_rate:
        from collector.capture.linerate import capture_filter as line_rate_filter

        capture_filter = line_rate_filter(cfg.capture_filter)
    source = LiveCaptureSource(interface, capture_filter, cfg.capture_tool, pipe=pipe)
    hangup = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: source.stop())
    signal.signal(signal.SIGHUP, lambda *_: hangup.set())

    def reload(current: Engine) -> Engine | None:
        if not hangup.is_set():
            return None
        hangup.clear()
        try:
            fresh = settings.load(args.config).engine()
        except (ConfigError, OSError) as exc:
            rule_metrics.RELOAD_SUCCESS.set(0)
            logging.getLogger("ictwatch").error("reload refused, the configuration in force stays: %s", exc)
            return None
        rule_metrics.RELOAD_SUCCESS.set(1)
        rule_metrics.RELOAD_TIME.set(time.time())
        rule_metrics.POLICY_INFO.clear()
        rule_metrics.POLICY_INFO.labels(fresh.version).set(1)
        logging.getLogger("ictwatch").warning("reloaded: policy %s (was %s)", fresh.version, current.version)
        return fresh

    engine = loaded.engine()
    rule_metrics.POLICY_INFO.labels(engine.version).set(1)
    rule_metrics.RELOAD_SUCCESS.set(1)  # the first load took
    rule_metrics.RELOAD_TIME.set(time.time())
    store, spool = loaded.open_store(), loaded.open_spool()
    servers: list[tuple[Any, Any]] = []
    try:
        _migrate_or_spool(store)
        servers.append((status.serve(loaded.settings.metrics.listen), None))
        print(f"metrics and health on http://{loaded.settings.metrics.listen}/", file=sys.stderr, flush=True)
        if not args.no_web:
            servers.append(_web(loaded))
        for server, _ in servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        print(f"capturing on {interface} with {source.tool}", file=sys.stderr, flush=True)
        flows = None
        if cfg.line_rate and cfg.flow_source == "conntrack":
            from collector.logs.conntrack import ConntrackFlows

            flows = ConntrackFlows()
        summary = run_live(source, engine, store, spool=spool, reload=reload, follow=_followed(loaded),
                           capture_flows=not cfg.line_rate, flows=flows)
    except CaptureToolError as exc:
        print(f"ictwatch: {exc}", file=sys.stderr)
        return 1
    finally:
        for server, app in servers:
            server.shutdown()
            server.server_close()
            if app is not None:
                app.close()
        store.close()
        spool.close()
    print(f"captured {summary.packets} packets, {summary.observations} observations, stored {summary.stored} "
          f"activities ({summary.verdicts['breach']} breaches); the capture tool dropped {summary.dropped}")
    _say_spooled(summary.spooled, loaded)
    return 0


def _followed(loaded: settings.Loaded) -> tuple[Any, ...]:
    """The configured logs to follow, each with its checkpoint beside the spool."""
    from collector.logs.follow import LogFollower
    from collector.sources import follow_parser
    from ictwatch.pipeline import Followed

    out = []
    for log in loaded.settings.collector.follow:
        path = loaded.path.parent / log.path
        checkpoint = loaded.spool_path.parent / "checkpoints" / (str(path.resolve()).strip("/").replace("/", "_")
                                                                  + ".json")
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        parse, reason = follow_parser(log.format, path, loaded.settings.collector)
        out.append(Followed(LogFollower(path, checkpoint), parse, reason))
        print(f"following {path} ({log.format})", file=sys.stderr, flush=True)
    return tuple(out)


def cmd_ddl(args: argparse.Namespace) -> int:
    """Print the CREATE statements, for one server or for a cluster (see deploy/clickhouse/)."""
    from storage.schema import TABLES, cluster_ddl, table_ddl

    if not args.database.isidentifier():
        raise ConfigError("--database", "database", args.database, "not a plain identifier")
    if args.cluster is not None and not args.cluster.isidentifier():
        raise ConfigError("--cluster", "cluster", args.cluster, "not a plain identifier")
    statements = (cluster_ddl(args.database, args.cluster) if args.cluster else
                  [f"CREATE DATABASE IF NOT EXISTS {args.database}"]
                  + [table_ddl(t, args.database) for t in TABLES])
    print(";\n\n".join(statements) + ";")
    return 0


def cmd_spool(args: argparse.Namespace) -> int:
    """`spool status`: what waits in the spool; `spool flush`: write it to ClickHouse now."""
    from ictwatch import settings
    from storage.writer import Writer

    loaded = settings.load(args.config)
    spool = loaded.open_spool()
    try:
        if args.action == "flush":
            store = loaded.open_store()
            before = spool.records
            try:
                writer = Writer(store, spool=spool)
                writer.close()  # a writer with nothing new: closing replays the spool once
            finally:
                store.close()
            print(f"flushed {before - spool.records} of {before} batch(es) ({writer.stored} activity rows stored)")
        status = spool.status()
    finally:
        spool.close()
    for key, value in status.items():
        print(f"{key}: {value:,}" if isinstance(value, int) else f"{key}: {value}")
    return 1 if args.action == "flush" and status["records"] else 0


def cmd_explain(args: argparse.Namespace) -> int:
    """Explain the verdict of each activity recorded from one frame or log line."""
    from ictwatch import settings
    from rules.explain import explain

    loaded = settings.load(args.config)
    store = loaded.open_store()
    try:
        store.migrate()
        rows = store.activity_at(args.activity, args.kind)
    finally:
        store.close()
    if rows.height == 0:
        print(f"ictwatch: no activity was recorded from {args.activity}", file=sys.stderr)
        return 1
    engine = loaded.engine()
    names = {p.username: p.name for p in loaded.directory.people}
    print("\n\n".join(explain(engine, rows[i : i + 1], names) for i in range(rows.height)))
    return 0


def cmd_categories_update(args: argparse.Namespace) -> int:
    """Install a new UT1 set as the policy's category lists, atomically; refused sets change nothing."""
    from ictwatch import settings
    from rules.listupdate import update

    loaded = settings.load(args.config)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    target, entries = update(loaded.lists_path, loaded.policy.categories, args.source, now)
    print(f"installed {entries:,} entries from {args.source} in {target}; {loaded.lists_path} now points there")
    return 0


def cmd_check_ipads(args: argparse.Namespace) -> int:
    """Clause I1: record each issued school iPad not seen by the policy's time on a school day."""
    from collector.observation import to_table
    from ictwatch import settings
    from rules.absence import absences, deadline, expected

    loaded = settings.load(args.config)
    window = deadline(loaded.policy, args.date)
    if window is None:
        print(f"{args.date}: no iPad check (not a school day, or the policy has no `ipads` section)")
        return 0
    start, by = window
    ipads = expected(loaded.devices.devices, args.date)
    store = loaded.open_store()
    try:
        store.migrate()
        missing = absences(ipads, store.devices_seen(start, by), by, args.date)
        if missing:
            engine = loaded.engine()
            engine.identity.add(store.leases())
            store.insert_activity(engine.evaluate(to_table(missing)))
    finally:
        store.close()
    local = loaded.policy.ipads.expected_by.strftime("%H:%M") if loaded.policy.ipads else ""
    for obs in missing:
        print(f"{obs.source_ref.rsplit(':', 1)[1]}: not seen on {args.date} by {local}; recorded as an absence")
    print(f"{len(ipads) - len(missing)} of {len(ipads)} school iPad(s) seen by {local} on {args.date}")
    return 0


def _breach_rows(loaded: settings.Loaded, df: pl.DataFrame) -> pl.DataFrame:
    import polars as pl

    tz = loaded.policy.calendar.timezone
    rules = {r.id: r for r in loaded.policy.rules}
    names = {p.username: p.name for p in loaded.directory.people}
    out = df.explode("rule_ids").with_columns(
        time=pl.col("ts").dt.convert_time_zone(tz),
        clause=pl.col("rule_ids").replace_strict({k: ",".join(r.clauses) for k, r in rules.items()},
                                                  default="", return_dtype=pl.String),
        name=pl.col("user").replace_strict(names, default="unknown", return_dtype=pl.String),
    )
    return out.select(
        "time", "user", "name", "device", "device_type", "location", pl.col("rule_ids").alias("rule"),
        "clause", "severity", "host", "source_ref",
    )


def cmd_breaches(args: argparse.Namespace) -> int:
    """List breaches, one line per (activity, rule)."""
    from ictwatch import settings
    from reports import build

    loaded = settings.load(args.config)
    tz = loaded.policy.calendar.timezone
    start = build.local_bounds(args.start, args.start, tz)[0] if args.start else None
    end = build.local_bounds(args.end, args.end, tz)[1] if args.end else None
    store = loaded.open_store()
    try:
        store.migrate()
        rows = _breach_rows(loaded, store.activity(args.user, start, end, breaches_only=True))
    finally:
        store.close()
    if args.json:
        for row in rows.iter_rows(named=True):
            print(json.dumps(row, default=lambda v: v.isoformat()))
        return 0
    print(_table(rows))
    print(f"{rows.height} breach(es)")
    return 0


def _table(rows: pl.DataFrame) -> str:
    header = ["time", "person", "device", "location", "rule", "clause", "host"]
    lines = [[
        r["time"].strftime("%Y-%m-%d %H:%M:%S"), f"{r['name']} ({r['user']})" if r["user"] else "unknown",
        f"{r['device'] or 'unregistered'}", r["location"] or "unknown", r["rule"], r["clause"], r["host"],
    ] for r in rows.iter_rows(named=True)]
    widths = [max(len(x) for x in col) for col in zip(header, *lines, strict=False)]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
                     for line in [header, *lines])


EXIT_REFUSED = 3


def _audit(loaded: settings.Loaded, store: Store) -> AuditLog:
    from reports.audit import AuditLog

    return AuditLog(store, loaded.spool_path.parent / ".ictwatch-audit.lock")


def _role(loaded: settings.Loaded, username: str) -> str:
    person = loaded.directory.by_username().get(username)
    return person.role.value if person else "unknown"


def cmd_report(args: argparse.Namespace) -> int:
    """Decide whether the requester may have the report, record the request, and write the report."""
    from ictwatch import settings
    from reports import access, build, render
    from reports.audit import Entry
    from reports.seal import seal

    loaded = settings.load(args.config)
    passphrase = _export_passphrase() if args.encrypt else ""  # before anything is decided or recorded
    if args.format == "pdf":
        from reports.pdf import chromium

        if chromium() is None:
            raise ConfigError("--format", "format", "pdf", "PDF needs Chromium (Debian package `chromium`)")
    tz = loaded.policy.calendar.timezone
    lo, hi = build.local_bounds(args.start, args.end, tz)
    store = loaded.open_store()
    try:
        store.migrate()
        log = _audit(loaded, store)
        who = args.requested_by
        decision = access.decide(loaded.directory, who, args.user, args.reason, dt.date.today(),
                                 loaded.policy.reports.line_manager_chain, log.open_grants(who, args.user))
        entry = Entry(who, _role(loaded, who), "report", "granted" if decision.granted else "refused",
                      decision.grounds, args.reason, args.user, lo, hi, uses_grant=decision.grant_seq or 0,
                      report_format="zip" if args.encrypt else args.format)
        if not decision.granted:
            seq = log.append(entry)
            print(f"ictwatch: refused: {decision.grounds} (recorded as audit row #{seq})", file=sys.stderr)
            return EXIT_REFUSED
        report = build.build(store, loaded.directory, loaded.policy.school, tz, args.user, args.start, args.end,
                             args.requested_by, args.reason, dt.datetime.now(dt.UTC), decision.grounds,
                             store.audit_tail()[0] + 1, build.explainer(loaded))
        text = {"csv": render.to_csv, "json": render.to_json}.get(args.format, render.to_html)(report)
        if args.format == "csv":
            digest = hashlib.sha256(text.encode()).hexdigest()
        else:
            text, digest = seal(text)
        data = text.encode()
        if args.format == "pdf":
            from reports.pdf import to_pdf

            data = to_pdf(text)
            digest = hashlib.sha256(data).hexdigest()
        if args.encrypt:
            data = _encrypted(data, f"report-{args.user}-{args.start}-{args.end}.{args.format}", passphrase)
            digest = hashlib.sha256(data).hexdigest()
        seq = log.append(dataclasses.replace(entry, report_sha256=digest, policy_versions=report.policy_versions))
    finally:
        store.close()
    if args.output is None:
        sys.stdout.buffer.write(data)
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(data)
    print(f"report for {args.user}: {len(report.breaches)} breaches, {report.total_activities} activities")
    print(f"written to {args.output.resolve()}")
    print(f"sha256 {digest}; audit row #{seq}")
    return 0


def _export_passphrase() -> str:
    import os

    passphrase = os.environ.get("ICTWATCH_EXPORT_PASSPHRASE", "")
    if len(passphrase) < 12:
        raise ConfigError("ICTWATCH_EXPORT_PASSPHRASE", "passphrase", "(withheld)",
                          "set it to a passphrase of at least 12 characters to encrypt an export")
    return passphrase


def _encrypted(data: bytes, name: str, passphrase: str) -> bytes:
    """`data` as the one file of an AES-256 encrypted ZIP (WinZip AES, which 7-Zip opens)."""
    import io

    import pyzipper

    out = io.BytesIO()
    with pyzipper.AESZipFile(out, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as z:
        z.setpassword(passphrase.encode())
        z.setencryption(pyzipper.WZ_AES, nbits=256)
        z.writestr(name, data)
    return out.getvalue()


def cmd_grant(args: argparse.Namespace) -> int:
    """Record the headteacher's one-off grant of one person's report to someone else (refused otherwise)."""
    from ictwatch import settings
    from reports import access
    from reports.audit import Entry

    loaded = settings.load(args.config)
    allowed = access.may_grant(loaded.directory, args.by) and bool(args.reason.strip())
    store = loaded.open_store()
    try:
        store.migrate()
        seq = _audit(loaded, store).append(Entry(
            args.by, _role(loaded, args.by), "grant", "granted" if allowed else "refused",
            "headteacher" if allowed else "only the headteacher gives one-off grants, with a reason",
            args.reason, args.subject, grantee=args.to))
    finally:
        store.close()
    if not allowed:
        print(f"ictwatch: refused: only the headteacher may grant, with a reason (audit row #{seq})", file=sys.stderr)
        return EXIT_REFUSED
    print(f"grant #{seq}: {args.to} may request one report of {args.subject}")
    return 0


def _web(loaded: settings.Loaded) -> tuple[Any, Any]:
    """(server, app) for the report web page as configured; TLS unless it listens on loopback only."""
    import ipaddress

    from reports.web import WebApp, serve

    web = loaded.settings.web
    host, port = web.listen.rsplit(":", 1)
    loopback = host == "localhost" or (host.replace(".", "").isdigit() and ipaddress.ip_address(host).is_loopback)
    tls = None
    if web.tls_cert and web.tls_key:
        tls = (str(loaded.path.parent / web.tls_cert), str(loaded.path.parent / web.tls_key))
    elif not loopback:
        raise ConfigError(loaded.path, "web.tls_cert", None, "needed to serve beyond loopback (personal data)")
    app = WebApp(loaded)
    print(f"report web page on {'https' if tls else 'http'}://{web.listen}/", file=sys.stderr, flush=True)
    return serve(app, host, int(port), tls), app


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the report web page until SIGTERM or SIGINT."""
    import signal
    import threading

    from ictwatch import settings

    server, app = _web(settings.load(args.config))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever()
    finally:
        server.server_close()
        app.close()
    return 0


def cmd_account(args: argparse.Namespace) -> int:
    """Set a web account's password: the user must be on the staff; the password comes from stdin."""
    import getpass

    from ictwatch import settings
    from reports.accounts import Accounts

    loaded = settings.load(args.config)
    if args.user not in loaded.directory.by_username():
        raise ConfigError(args.config, "--user", args.user, "not in the staff directory")
    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    try:
        Accounts(loaded.path.parent / loaded.settings.web.accounts).set(args.user, password)
    except ValueError as exc:
        print(f"ictwatch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"password set for {args.user}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """`audit verify`: check the chain; `audit show`: print it, for the headteacher (recorded too)."""
    from ictwatch import settings
    from reports import access
    from reports.audit import Entry, verify

    loaded = settings.load(args.config)
    store = loaded.open_store()
    try:
        store.migrate()
        if args.action == "verify":
            rows, broken, problem = verify(store)
            if broken is not None:
                print(f"audit chain BROKEN at row #{broken}: {problem} ({rows} rows)")
                return 1
            print(f"audit chain intact: {rows} rows")
            return 0
        who = args.requested_by or ""
        allowed = access.may_read_audit(loaded.directory, who)
        seq = _audit(loaded, store).append(Entry(
            who, _role(loaded, who), "audit_view", "granted" if allowed else "refused",
            "headteacher" if allowed else "only the headteacher reads the audit log"))
        if not allowed:
            print(f"ictwatch: refused: only the headteacher reads the audit log (audit row #{seq})", file=sys.stderr)
            return EXIT_REFUSED
        rows = store.audit()
    finally:
        store.close()
    tz = loaded.policy.calendar.timezone
    for r in rows.with_columns(ts=rows.get_column("ts").dt.convert_time_zone(tz)).iter_rows(named=True):
        print(f"#{r['seq']:<5} {r['ts']:%Y-%m-%d %H:%M:%S}  {r['actor']:<12} {r['action']:<11} {r['decision']:<8} "
              f"{r['subject'] or '-':<12} {r['grounds']}; reason: {r['reason'] or '-'}")
    return 0


def _report_skips(path: Path, summary: str) -> None:
    if summary:
        print(f"ictwatch: {path.name}: {summary}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
