"""The allocator settings of `collector.ALLOCATORS` reach the libraries of a real `ictwatch` process: they
are read when each library loads, so they must be in the environment before any of them is imported."""

from __future__ import annotations

import os
import subprocess
import sys

import collector
from tests.conftest import ROOT

PROBE = """
import os, sys
import ictwatch.cli
import pyarrow
print(pyarrow.default_memory_pool().backend_name)
for name in sys.argv[1:]:
    print(os.environ[name])
"""


def _probe(env: dict[str, str]) -> list[str]:
    return subprocess.run([sys.executable, "-c", PROBE, *collector.ALLOCATORS], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True).stdout.splitlines()


def test_every_command_runs_with_the_small_gateway_allocators():
    out = _probe({name: value for name, value in os.environ.items() if name not in collector.ALLOCATORS})
    assert out[0] == "jemalloc"  # pyarrow's own default is mimalloc
    for value, ours in zip(out[1:], collector.ALLOCATORS.values(), strict=True):
        assert value.endswith(ours)  # polars puts its own defaults first; the last of a name wins


def test_a_setting_of_the_callers_own_is_kept():
    assert _probe({**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "system"})[0] == "system"
