"""deploy/prometheus/alerts.yml: Prometheus's own promtool checks the rules and runs their unit tests
(alerts.test.yml), and every metric an alert reads is one ictwatch declares."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client import REGISTRY

import ictwatch.metrics
import storage.metrics
from tests.conftest import ROOT

PROMETHEUS = ROOT / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.skip("promtool is not installed (./dev test installs Debian's prometheus package as root)")
    return subprocess.run([exe, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)


def test_promtool_checks_the_rules():
    proc = promtool("check", "rules", "alerts.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 6 rules found" in proc.stdout


def test_promtool_unit_tests_of_the_alerts_pass():
    proc = promtool("test", "rules", "alerts.test.yml")
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr


def test_alerts_read_only_declared_metrics():
    assert ictwatch.metrics and storage.metrics  # importing them declares their metrics in REGISTRY
    declared = {name for names in REGISTRY._collector_to_names.values() for name in names}
    rules = [r for g in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    used = {name for r in rules for name in re.findall(r"\bictwatch_\w+", r["expr"])}
    assert used and used <= declared, used - declared
