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

from tests.conftest import run_cli, school_config

COMPILED = ["packets", "pcap", "wire", "tcp", "dns", "tls", "frag", "apps", "handler", "tls_handler", "mail",
            "http", "p2p", "quic", "dhcp", "logins", "observation", "skips"]


def _can_compile() -> bool:
    return shutil.which("gcc") is not None and Path(sysconfig.get_paths()["include"], "Python.h").exists()


def test_build_script_compiles_the_modules_it_names():
    script = Path(__file__).resolve().parents[2] / "scripts" / "build-accel.sh"
    line = next(x for x in script.read_text().splitlines() if x.startswith("modules=("))
    assert line == f"modules=({' '.join(COMPILED)})"


@pytest.mark.skipif(os.environ.get("ICTWATCH_PURE_PYTHON") == "1", reason="pure Python asked for")
@pytest.mark.skipif(not _can_compile(), reason="no C compiler or Python headers: pure Python is expected")
@pytest.mark.parametrize("name", COMPILED)
def test_collector_module_is_compiled(name):
    module = __import__(f"collector.{name}", fromlist=["_"])
    assert module.__file__ is not None and module.__file__.endswith(".so"), (
        f"collector.{name} runs as pure Python: see build/mypyc.log")


@pytest.mark.skipif(os.environ.get("ICTWATCH_PURE_PYTHON") == "1", reason="pure Python asked for")
@pytest.mark.skipif(not _can_compile(), reason="no C compiler or Python headers: pure Python is expected")
def test_check_tells_the_network_manager_the_decoder_is_compiled(tmp_path):
    out = run_cli("check", "--config", school_config(tmp_path / "school"), check=True).stdout
    assert "packet decoder: compiled (mypyc)" in out.splitlines()
