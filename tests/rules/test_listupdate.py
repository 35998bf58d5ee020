"""`ictwatch categories update`: a new UT1 set, fetched over real HTTP, replaces the lists atomically and
is used at the next load; a set missing a mapped list, or an archive that is not one, changes nothing."""

from __future__ import annotations

import functools
import http.server
import io
import os
import tarfile
import threading
import time

import pytest
from prometheus_client import REGISTRY

from ictwatch import settings
from tests.conftest import SCHOOL_DAY, run_cli, school_config
from tests.rules.test_categories import lookup


def ut1_archive(path, drop: str | None = None, extra: str = "") -> None:
    """The demo's lists as UT1 publishes them (a tar.gz with a top `blacklists/` folder)."""
    with tarfile.open(path, "w:gz") as tar:
        for folder in sorted((SCHOOL_DAY / "categories").iterdir()):
            if folder.is_dir() and folder.name != drop:
                for f in sorted(folder.iterdir()):
                    data = f.read_bytes() + (extra.encode() if (folder.name, f.name) == ("gambling", "domains")
                                             else b"")
                    info = tarfile.TarInfo(f"blacklists/{folder.name}/{f.name}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[method-assign]
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


DAY = 86_400


def list_age() -> float:
    """The list-age gauge as a scrape of this process's registry reads it."""
    value = REGISTRY.get_sample_value("ictwatch_category_lists_age_seconds")
    assert value is not None
    return value


def test_update_from_a_url_swaps_the_lists(tmp_path, served):
    root, url = served
    ut1_archive(root / "blacklists.tar.gz", extra="newcasino.example\n")
    config = school_config(tmp_path / "school")
    lists = config.parent / "categories"
    for domains in lists.glob("*/domains"):  # lists put in place by hand ten days ago
        os.utime(domains, (time.time() - 10 * DAY, time.time() - 10 * DAY))
    assert lookup(settings.load(config).categories, "www.newcasino.example") == []
    assert 10 * DAY <= list_age() < 10 * DAY + 60
    out = run_cli("categories", "update", "--config", config, "--from", f"{url}/blacklists.tar.gz", check=True).stdout
    assert "installed" in out and lists.is_symlink()
    assert lookup(settings.load(config).categories, "www.newcasino.example") == ["gambling"]
    assert 0 <= list_age() < 60  # installed just now
    assert any(p.name.startswith("categories-before-") for p in config.parent.iterdir())  # the old set is kept
    check = run_cli("check", "--config", config, check=True).stdout
    assert f"from {url}/blacklists.tar.gz" in check


@pytest.mark.parametrize("bad", ["missing-list", "not-an-archive"])
def test_a_bad_set_changes_nothing(tmp_path, bad):
    config = school_config(tmp_path / "school")
    source = tmp_path / "new.tar.gz"
    if bad == "missing-list":
        ut1_archive(source, drop="dating")
    else:
        source.write_bytes(b"this is not a tar archive")
    before = sorted(p.name for p in config.parent.iterdir())
    proc = run_cli("categories", "update", "--config", config, "--from", source)
    assert proc.returncode == 2
    assert ("dating" in proc.stderr and "old ones kept" in proc.stderr) if bad == "missing-list" else (
        "not a readable tar archive" in proc.stderr)
    assert sorted(p.name for p in config.parent.iterdir()) == before
    assert not (config.parent / "categories").is_symlink()
