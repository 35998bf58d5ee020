"""Swapping in new category lists without a moment where the daemon could read half of them.

The policy's `categories.lists` names a folder. `update` unpacks a new UT1 set (a `.tar.gz` as UT1
publishes it, with or without its top `blacklists/` folder, or a folder), beside it in a folder of its
own, loads it with the policy's category map (a set that lacks a mapped list is refused, and the old one
stays), writes where it came from and when into `.ictwatch-lists.json`, and then points `lists` at it
by renaming a symbolic link over the old one, which is atomic. The first update turns a plain `lists`
folder into such a link (the old folder is kept beside it). Older sets are left for the network manager
to remove.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from rules.categories import CategoryIndex
from rules.config import ConfigError
from rules.policy import Categories

STAMP = ".ictwatch-lists.json"


def update(lists: Path, categories: Categories, source: str, now: dt.datetime) -> tuple[Path, int]:
    """Install the UT1 set at `source` (a path or an http(s) URL) as `lists`; returns the new folder and
    the number of entries it holds. `ConfigError` (and the old lists kept) when it cannot be used."""
    target = lists.parent / f"{lists.name}-{now:%Y%m%dT%H%M%S}"
    if target.exists():
        raise ConfigError(lists, "categories.lists", target.name, "an update with this time exists")
    work = Path(tempfile.mkdtemp(prefix=f".{lists.name}-", dir=lists.parent))
    try:
        root = _unpack(source, work)
        try:
            index = CategoryIndex.load(root, categories.map, categories.defaults())
        except ConfigError as exc:
            raise ConfigError(source, exc.field, exc.value,
                              f"new lists refused, old ones kept: {exc.problem}") from None
        (root / STAMP).write_text(json.dumps({"source": source, "installed": now.isoformat(), "entries": len(index)}))
        root.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if lists.exists() and not lists.is_symlink():  # first update: keep the folder that was there
        lists.rename(lists.parent / f"{lists.name}-before-{now:%Y%m%dT%H%M%S}")
    link = lists.parent / f".{lists.name}.link"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target.name)
    os.replace(link, lists)  # atomic: a reader sees the old set or the new one
    return target, len(index)


def installed(lists: Path) -> dict | None:
    """What `update` recorded about the lists in use, or None for lists it did not install."""
    stamp = lists / STAMP
    return json.loads(stamp.read_text()) if stamp.is_file() else None


def installed_at(lists: Path) -> float | None:
    """When the category lists at `lists` were installed (a Unix time): the time `update` recorded, else the
    newest change to a `domains` file; None when there are none."""
    stamp = installed(lists)
    if stamp is not None:
        return dt.datetime.fromisoformat(stamp["installed"]).timestamp()
    times = [p.stat().st_mtime for p in lists.glob("*/domains")]
    return max(times) if times else None


def _unpack(source: str, work: Path) -> Path:
    """The UT1 root (the folder holding one folder per category) of `source`, unpacked under `work`."""
    if source.startswith(("http://", "https://")):
        archive = work / "download.tar.gz"
        with urllib.request.urlopen(source, timeout=300) as response, archive.open("wb") as out:  # noqa: S310
            shutil.copyfileobj(response, out)
        source_path = archive
    else:
        source_path = Path(source)
    out = work / "set"
    if source_path.is_dir():
        shutil.copytree(source_path, out)
    elif source_path.is_file():
        try:
            with tarfile.open(source_path) as tar:
                tar.extractall(out, filter="data")  # no absolute paths, links out or devices
        except tarfile.TarError as exc:
            raise ConfigError(source, "source", source_path.name, f"not a readable tar archive ({exc})") from None
    else:
        raise ConfigError(source, "source", source, "no such file or folder")
    inner = out / "blacklists"
    return inner if inner.is_dir() else out
