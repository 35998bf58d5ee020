"""One module per command (or small group of commands) of `ictwatch`.

Each module has `register(sub)`, which adds its parser(s) to the `ictwatch` command line with
`set_defaults(func=...)`. A command returns its exit status or raises: `UsageError` and `ConfigError` (exit
2), `Refused` (exit 3); `ictwatch.cli.main` maps them. Modules import what they use inside the command, so
`ictwatch decode` starts without loading the policy engine, storage or reports.
"""

from ictwatch.commands import (
    accounts,
    audit,
    breaches,
    categories,
    check,
    decode,
    explain,
    ipads,
    replay,
    report,
    run,
    spool,
    web,
)

MODULES = (check, decode, replay, run, spool, breaches, categories, ipads, explain, report, web, accounts, audit)
"""In the order `ictwatch --help` lists their commands."""
