"""The compiled collector is the one in use wherever it can be built.

`scripts/build-accel.sh` falls back to pure Python when mypyc fails, so that a gateway without a
compiler still runs; the fallback is silent apart from a line on stderr. A failure on a machine that
has the compiler (a setuptools too old for pyproject.toml did this once) would leave the decoder about
7x slower with every test still passing, so this test fails instead.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path

import pytest

import collector
from tests.conftest import ROOT, run_cli, school_config

COMPILED = [".".join(p.relative_to(ROOT).with_suffix("").parts) for p in collector.compiled_sources()]


def _can_compile() -> bool:
    return shutil.which("gcc") is not None and Path(sysconfig.get_paths()["include"], "Python.h").exists()


def test_the_compiled_modules_are_the_packet_folder_and_what_it_imports_from_the_collector():
    """Checked by hand against the imports of collector/packet/: the file-type rule, the observation type and
    the skip counter."""
    packet = sorted(p.stem for p in (ROOT / "collector" / "packet").glob("*.py") if p.stem != "__init__")
    assert len(packet) == 15
    assert [f"collector.packet.{m}" for m in packet] + [
        "collector.filetypes", "collector.observation", "collector.skips"] == COMPILED


@pytest.mark.skipif(os.environ.get("ICTWATCH_PURE_PYTHON") == "1", reason="pure Python asked for")
@pytest.mark.skipif(not _can_compile(), reason="no C compiler or Python headers: pure Python is expected")
@pytest.mark.parametrize("name", COMPILED)
def test_collector_module_is_compiled(name):
    module = __import__(name, fromlist=["_"])
    assert module.__file__ is not None and module.__file__.endswith(".so"), (
        f"{name} runs as pure Python: see build/mypyc.log")


@pytest.mark.skipif(os.environ.get("ICTWATCH_PURE_PYTHON") == "1", reason="pure Python asked for")
@pytest.mark.skipif(not _can_compile(), reason="no C compiler or Python headers: pure Python is expected")
def test_check_tells_the_network_manager_the_decoder_is_compiled(tmp_path):
    out = run_cli("check", "--config", school_config(tmp_path / "school"), check=True).stdout
    assert "packet decoder: compiled (mypyc)" in out.splitlines()
