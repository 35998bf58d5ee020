"""The `ictwatch` command line: one module per command in `ictwatch.commands`, and the one place where
failures become exit statuses.

Exit status: 0 on success (a replay that skipped bad records included); 2 for a bad config or policy, an
input that cannot be read at all, or an option that cannot be used (a date that is not one, an empty
period, a report of a username nobody has), naming the file or option (and for config the field and
value); 3 for a refused request (recorded in the audit chain first); 1 when the store cannot be opened or
reached (one line naming it).

A command marked `via_daemon` (it needs the store) runs inside `ictwatch run` when a daemon answers on
the configured socket (ictwatch/control.py); `in_daemon` is the daemon's end of that.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from collector import tune_gc
from ictwatch import logs
from ictwatch.commands import MODULES
from ictwatch.errors import EXIT_REFUSED, EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    logs.setup()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    tune_gc()
    sys.meta_path.insert(0, _WITHOUT_PANDAS)
    try:
        return _guarded(lambda: _here_or_in_daemon(args, argv))
    finally:
        sys.meta_path.remove(_WITHOUT_PANDAS)  # a caller in this process (a test) may use it after


class _WithoutPandas:
    """An import finder that refuses pandas. Nothing of ictwatch's uses pandas, but chDB depends on it, so it is
    installed, and pyarrow imports it the first time it turns Python values into Arrow (`pa.array`,
    `Table.from_pylist`), only to ask whether they are pandas objects: 0.2 s and 30 MB for a command. Refused,
    pyarrow and polars take it as absent. (Not `sys.modules["pandas"] = None`: pyarrow's compiled import
    takes that None for the module.)"""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        """Refuse pandas and its submodules; leave every other module to the other finders."""
        if name.partition(".")[0] == "pandas":
            raise ModuleNotFoundError("ictwatch does not use pandas", name=name)


_WITHOUT_PANDAS = _WithoutPandas()


def in_daemon(argv: list[str], config: Path) -> int:
    """Run a caller's command inside the daemon, whose configuration is `config` (the caller's `--config` is
    not used): the same parser, the same command function, the same exit statuses; only commands marked
    `via_daemon`."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse has said what is wrong (or printed the help)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not getattr(args, "via_daemon", False):
        print(f"ictwatch: `{argv[0]}` does not run inside the daemon", file=sys.stderr)
        return EXIT_USAGE
    args.config = config
    return _guarded(lambda: int(args.func(args) or 0))


def _here_or_in_daemon(args: argparse.Namespace, argv: list[str]) -> int:
    if getattr(args, "via_daemon", False):
        from ictwatch import control, places

        socket = places.daemon_socket(args.config)
        status = control.forward(socket, argv) if socket is not None else None
        if status is not None:
            return status
    return int(args.func(args) or 0)


def _guarded(command: Callable[[], int]) -> int:
    """Run `command`, turning the failures a user can act on into one line and an exit status."""
    try:
        return command()
    except BrokenPipeError:  # `ictwatch decode ... | head`: the reader has all it wanted
        sys.stderr.close()
        return 0
    except Exception as exc:
        said = _said(exc)
        if said is None:
            raise
        prefix, status = said
        print(f"ictwatch: {prefix}{exc}", file=sys.stderr)
        return status


def _said(exc: Exception) -> tuple[str, int] | None:
    """How `exc` is told and the exit status it ends with, if it is a failure a user can act on. Each kind is
    looked up among the modules already imported: one that is not cannot have raised (and importing it here
    would cost `--help` the modules a command does not use)."""
    for (module, name), said in _FAILURES.items():
        kind = getattr(sys.modules.get(module), name, None)
        if kind is not None and isinstance(exc, kind):
            return said
    return None


_FAILURES: dict[tuple[str, str], tuple[str, int]] = {
    ("rules.config", "ConfigError"): ("config error: ", EXIT_USAGE),
    ("collector.sources", "InputError"): ("cannot read input: ", EXIT_USAGE),
    ("ictwatch.errors", "UsageError"): ("", EXIT_USAGE),
    ("ictwatch.errors", "Refused"): ("", EXIT_REFUSED),
    ("storage.errors", "StoreUnavailable"): ("", 1),
    ("ictwatch.control", "DaemonUnusable"): ("", 1),
}
"""What a command's failure is called on stderr, and the exit status it ends with: (module, class name) →
(prefix, status)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ictwatch", description="Network traffic and usage monitoring for a "
                                "school's Staff use of ICT policy.")
    p.set_defaults(in_daemon=in_daemon)  # how `ictwatch run` runs its callers' commands (no import cycle)
    sub = p.add_subparsers(required=True, metavar="COMMAND")
    for module in MODULES:
        module.register(sub)
    return p


if __name__ == "__main__":
    sys.exit(main())
