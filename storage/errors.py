"""The storage failure a command reports in one line, importable without loading the database driver."""


class StoreUnavailable(Exception):
    """The store could not be opened (an embedded one) or reached (a server): one line naming it and why."""
