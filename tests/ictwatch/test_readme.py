"""The README is the project's front page: short, and opening with the two commands that work on a fresh
Debian machine. Detail belongs in docs/."""

from __future__ import annotations

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
