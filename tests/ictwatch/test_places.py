"""The daemon's socket found from the root file alone is the one the whole configuration names."""

from __future__ import annotations

import pytest

from ictwatch import places, settings
from tests.conftest import school_config


@pytest.mark.parametrize(("extra", "env"), [
    ("", {}),
    ("control:\n  socket: run/ictwatch.sock\n", {}),
    ("", {"ICTWATCH_SPOOL": "elsewhere/spool"}),
    ("", {"ICTWATCH_STORAGE_URL": "http://127.0.0.1:8123"}),
])
def test_the_socket_from_the_root_file_is_the_configurations(tmp_path, monkeypatch, extra, env):
    config = school_config(tmp_path / "school", extra)
    monkeypatch.delenv("ICTWATCH_STORAGE_URL", raising=False)
    monkeypatch.delenv("ICTWATCH_SPOOL", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert places.daemon_socket(config) == settings.load(config).socket_path


@pytest.mark.parametrize("text", ["storage: [1, 2]\n", "control:\n  socket: 7\n", "key: [unclosed\n", None])
def test_a_root_file_read_no_further_gives_no_socket(tmp_path, text):
    """The command then runs here, and loading the configuration says what is wrong."""
    config = tmp_path / "ictwatch.yaml"
    if text is not None:
        config.write_text(text)
    assert places.daemon_socket(config) is None
