"""The failures a command reports without a traceback, and their exit statuses.

A bad config, policy or input file raises `rules.config.ConfigError` or `collector.sources.InputError`
(exit 2); the command line's own mistakes raise `UsageError` (exit 2); a request the policy refuses raises
`Refused` (exit 3), after the refusal is recorded.
"""

EXIT_USAGE = 2
EXIT_REFUSED = 3


class UsageError(Exception):
    """An option or argument that cannot be used, named with its value and what is wrong with it."""


class Refused(Exception):
    """A request that was refused (and recorded as such); the message says why and where it is recorded."""
