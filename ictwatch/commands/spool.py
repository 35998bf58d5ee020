"""`ictwatch spool` and `ictwatch ddl`: the disk spool, and the schema as SQL for a ClickHouse server."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ictwatch.errors import UsageError
from reports.words import plural

if TYPE_CHECKING:
    from storage.spool import Spool

_daemons: list[Spool] = []
"""In the daemon, its spool (`in_daemon`): the one its writer appends to and drains."""
FLUSH_WAIT_S = 30.0
"""How long `spool flush` inside the daemon waits for the daemon's writer to empty its spool."""


def in_daemon(spool: Spool) -> None:
    """Make `spool` what `ictwatch spool` reports and flushes when it runs inside the daemon: a second
    Spool on the same folder would take the record the writer is appending for a torn one."""
    _daemons[:] = [spool]


def register(sub: argparse._SubParsersAction) -> None:
    """Add `spool` and `ddl`."""
    sp = sub.add_parser("spool", help="batches waiting on disk for ClickHouse: status, or flush them now")
    sp.add_argument("action", choices=("status", "flush"))
    sp.add_argument("--config", required=True, type=Path)
    sp.set_defaults(func=cmd_spool, via_daemon=True)

    dd = sub.add_parser("ddl", help="print the schema's SQL: for one server, or ON CLUSTER for a trust's cluster")
    dd.add_argument("--cluster", metavar="NAME", help="a cluster from ClickHouse's remote_servers")
    dd.add_argument("--database", default="ictwatch")
    dd.set_defaults(func=cmd_ddl)


def cmd_spool(args: argparse.Namespace) -> int:
    """`spool status`: what waits in the spool; `spool flush`: write it to ClickHouse now."""
    from ictwatch import settings
    from storage.writer import Writer

    if _daemons:
        return _in_the_daemon(args.action, _daemons[0])
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
            print(f"flushed {before - spool.records} of {plural(before, 'batch')} "
                  f"({plural(writer.stored, 'activity row')} stored)")
        status = spool.status()
    finally:
        spool.close()
    for key, value in status.items():
        print(f"{key}: {value:,}" if isinstance(value, int) else f"{key}: {value}")
    return 1 if args.action == "flush" and status["records"] else 0


def _in_the_daemon(action: str, spool: Spool) -> int:
    """`spool status` of the daemon's own spool; `spool flush`: its writer drains the spool by itself (every
    few seconds while the store answers), so wait for that."""
    before = spool.records
    if action == "flush":
        deadline = time.monotonic() + FLUSH_WAIT_S
        while spool.records and time.monotonic() < deadline:
            time.sleep(0.5)
        print(f"flushed {max(before - spool.records, 0)} of {plural(before, 'batch')} (by the daemon's writer)")
    status = _status(spool)
    for key, value in status.items():
        print(f"{key}: {value:,}" if isinstance(value, int) else f"{key}: {value}")
    return 1 if action == "flush" and status["records"] else 0


def _status(spool: Spool, tries: int = 3) -> dict[str, object]:
    """The daemon's spool status; read again when its writer removed a segment while it was being read."""
    try:
        return spool.status()
    except FileNotFoundError:
        if tries <= 1:
            raise
        return _status(spool, tries - 1)


def cmd_ddl(args: argparse.Namespace) -> int:
    """Print the CREATE statements, for one server or for a cluster (see deploy/clickhouse/)."""
    from storage.schema import TABLES, cluster_ddl, table_ddl

    if not args.database.isidentifier():
        raise UsageError(f"--database: {args.database!r}: not a plain identifier")
    if args.cluster is not None and not args.cluster.isidentifier():
        raise UsageError(f"--cluster: {args.cluster!r}: not a plain identifier")
    statements = (cluster_ddl(args.database, args.cluster) if args.cluster else
                  [f"CREATE DATABASE IF NOT EXISTS {args.database}"]
                  + [table_ddl(t, args.database) for t in TABLES])
    print(";\n\n".join(statements) + ";")
    return 0
