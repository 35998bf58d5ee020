"""The README is the project's front page: short, and opening with the two commands that work on a fresh
Debian machine. Detail belongs in docs/."""

from __future__ import annotations

import os
import subprocess

from tests.conftest import ROOT

README = ROOT / "README.md"


def test_readme_is_at_most_250_lines():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines: move the detail to docs/"


def test_readme_opens_with_the_demo_and_test_commands():
    lines = README.read_text().splitlines()
    fence = next(i for i, line in enumerate(lines) if line.startswith("```"))
    assert [line for line in lines[:fence] if line.strip()] == ["# ictwatch"]
    assert lines[fence] == "```sh"
    commands = [line.split("#")[0].split() for line in lines[fence + 1:fence + 3]]
    assert commands == [["./dev", "demo"], ["./dev", "test"]]
    assert lines[fence + 3] == "```"


def test_ci_runs_the_readme_test_command():
    steps = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert steps[-1] == "./dev test"


def test_the_readmes_next_commands_read_what_the_demo_wrote():
    """`./dev demo`, then the commands the README gives next, as written (the demo's configuration, no
    ICTWATCH_STORAGE_URL): `check` says OK in a short summary, `breaches` lists the demo's 8 breaches and
    `explain` takes the first one's source. (The demo rewrites data/demo/, as it does when run by hand.)"""
    env = {k: v for k, v in os.environ.items() if k not in ("ICTWATCH_STORAGE_URL", "ICTWATCH_SPOOL")}
    demo = subprocess.run(["./dev", "demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stderr
    lines = README.read_text().splitlines()
    then = next(i for i, line in enumerate(lines) if line.startswith("Then, with the demo's configuration"))
    fence = lines.index("```sh", then)
    block = lines[fence + 1:lines.index("```", fence + 1)]
    assert all("--config fixtures/school-day/ictwatch.yaml" in line for line in block[1:])
    proc = subprocess.run(["bash", "-ec", "\n".join(block)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    ok = next(i for i, line in enumerate(out) if line.startswith("OK: "))
    assert ok < 10 and out[ok] == "OK: fixtures/school-day/ictwatch.yaml is valid; --show prints the effective policy"
    listed = out[ok + 1:out.index("8 breaches") + 1]
    assert len(listed) == 10  # the header, the 8 breaches of expected-breaches.csv, the count
    assert listed[1].split()[-1] == "school-day.pcap#50"  # what the README's explain line asks about
    assert "personal-use-restricted-hours" in "\n".join(out[ok + len(listed) + 1:])
