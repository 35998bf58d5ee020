"""`ictwatch decode` and `ictwatch schema`: observations without a config, store or policy."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ictwatch.commands.common import report_skips
from ictwatch.errors import UsageError

if TYPE_CHECKING:
    from collector.config import CollectorSettings
    from collector.observation import Observation


def register(sub: argparse._SubParsersAction) -> None:
    """Add `decode` and `schema`."""
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

    sc = sub.add_parser("schema", help="print the JSON Schema of `decode --json` objects")
    sc.set_defaults(func=cmd_schema)


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the observation JSON Schema."""
    from collector.observation import json_schema

    print(json.dumps(json_schema(), indent=1))
    return 0


def _settings(args: argparse.Namespace) -> CollectorSettings:
    """The collector settings the options give; a bad option is a `UsageError` naming it and its value."""
    from pydantic import ValidationError

    from collector.config import CollectorSettings

    try:
        return CollectorSettings(decoder=args.decoder, log_timezone=args.log_timezone,
                                 squid_logformat=args.squid_logformat)
    except ValidationError as exc:
        first = exc.errors()[0]
        option = {"log_timezone": "--log-timezone", "squid_logformat": "--squid-logformat"}.get(
            str(first["loc"][0]) if first["loc"] else "", "decode option")
        raise UsageError(f"{option}: {first['input']!r}: {first['msg']}") from None


def cmd_decode(args: argparse.Namespace) -> int:
    """Print observations, as JSON lines or a short human line each."""
    from collector.endpoints import endpoint
    from collector.sources import open_source
    from reports.words import for_terminal

    collector = _settings(args)
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
            where = f"{endpoint(obs.src_ip, obs.src_port)} > {endpoint(obs.dst_ip, obs.dst_port)}"
            lines.append(for_terminal(f"{obs.ts.isoformat()} {obs.kind:5} {where} {obs.host or ''} {obs.url or ''}"
                                      .rstrip()))
        if len(lines) >= 1000:
            flush()

    for source in sources:
        source.run(show)
        flush()
        report_skips(source.path, source.skips.summary())
    return 0
