"""Where a configuration puts its store, its spool and the daemon's command socket, from the root file's values.

`ictwatch.settings` works them out from validated settings. A command that may run inside the daemon first
asks `daemon_socket(path)`, which reads those few values of the root file without validating (or importing)
the rest of the configuration, so that the caller's end of the socket starts in milliseconds. A root file it
cannot read that way gives None: the command then runs here, and loading the configuration says what is
wrong with it.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_URL = "chdb://data/ictwatch"
"""The store when the root file names none: embedded, in data/ictwatch beside the root file."""


def resolve_url(url: str, base: Path) -> str:
    """`chdb://relative/path` is relative to the config file; returned as `chdb:///absolute/path`."""
    if not url.startswith("chdb://"):
        return url
    rest = url.removeprefix("chdb://")
    if rest.startswith("/"):
        return "chdb://" + str(Path(rest).resolve())
    return "chdb://" + str((base / rest).resolve())


def store_and_spool(url: str, spool: str | Path | None, base: Path) -> tuple[str, Path]:
    """The storage URL and the spool's folder from the root file's `storage.url` and `storage.spool` (`base`:
    its folder), the environment's overrides (ICTWATCH_STORAGE_URL, ICTWATCH_SPOOL) applied."""
    url = resolve_url(os.environ.get("ICTWATCH_STORAGE_URL") or url, base)
    spool = os.environ.get("ICTWATCH_SPOOL") or spool
    if spool is not None:
        return url, base / spool
    if url.startswith("chdb://"):
        return url, Path(url.removeprefix("chdb://") + "-spool")
    return url, base / "spool"


def socket_path(root: Path, socket: str | Path | None, spool: Path) -> Path:
    """The command socket: `control.socket` relative to the root file, else `ictwatch.sock` beside the spool."""
    return root.parent / socket if socket is not None else spool.parent / "ictwatch.sock"


def daemon_socket(root: Path) -> Path | None:
    """The command socket the configuration `root` names, read from the root file alone; None when that file
    cannot be read, or those values are not of their kind (the command, run here, says why)."""
    import yaml  # only the parser: the models and the rest of the configuration are not needed

    try:
        data = yaml.load(root.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeError, yaml.YAMLError):
        return None
    storage = data.get("storage", {}) if isinstance(data, dict) else None
    control = data.get("control", {}) if isinstance(data, dict) else None
    if not isinstance(storage, dict) or not isinstance(control, dict):
        return None
    url, spool, socket = storage.get("url", DEFAULT_URL), storage.get("spool"), control.get("socket")
    if not isinstance(url, str) or not all(isinstance(v, str | None) for v in (spool, socket)):
        return None
    return socket_path(root, socket, store_and_spool(url, spool, root.parent)[1])
