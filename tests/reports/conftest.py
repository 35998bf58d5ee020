"""Fixtures the report tests share: an empty chDB store, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from storage.store import Store

CHROMIUM = shutil.which("chromium")


def need_chromium() -> None:
    """Skip the test when Chromium or Playwright is missing (`./dev test` installs both, as root)."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (./dev test installs it as root)")
    pytest.importorskip("playwright.sync_api")


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    """An empty store of the current schema, in the embedded engine."""
    s = Store(f"chdb://{tmp_path / 'store'}", "t")
    s.migrate()
    yield s
    s.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for a module's tests."""
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()
