"""deploy/prometheus/alerts.yml: Prometheus's own promtool checks the rules and runs their unit tests
(alerts.test.yml), and every metric an alert reads is one ictwatch declares; deploy/alertmanager/ is
checked by Alertmanager's amtool and routes danger breaches to the safeguarding lead."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import collector.metrics
import ictwatch.metrics
import rules.metrics
import storage.metrics
from tests.conftest import ROOT

PROMETHEUS = ROOT / "deploy" / "prometheus"


def tool(name: str, package: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run one of Prometheus's or Alertmanager's own checkers (skipped where Debian's package is absent)."""
    exe = shutil.which(name)
    if exe is None:
        pytest.skip(f"{name} is not installed (./dev test installs Debian's {package} package as root)")
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def promtool(*args: str) -> subprocess.CompletedProcess:
    return tool("promtool", "prometheus", PROMETHEUS, *args)


def test_promtool_checks_the_rules():
    proc = promtool("check", "rules", "alerts.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 16 rules found" in proc.stdout


def test_promtool_unit_tests_of_the_alerts_pass():
    proc = promtool("test", "rules", "alerts.test.yml")
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr


def test_alerts_read_only_declared_metrics():
    assert collector.metrics and ictwatch.metrics and rules.metrics and storage.metrics  # declared on import
    declared = {name for names in REGISTRY._collector_to_names.values() for name in names}
    alerts = [r for g in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    used = {name for r in alerts for name in re.findall(r"\bictwatch_\w+", r["expr"])}
    assert used and used <= declared, used - declared
    for r in alerts:  # no alert text can name a person: only labels from closed sets or incident ids
        text = " ".join(r["annotations"].values())
        assert set(re.findall(r"\$labels\.(\w+)", text)) <= {
            "instance", "incident", "rule", "location", "reason", "log"}  # `log`: a file's name


ALERTMANAGER = ROOT / "deploy" / "alertmanager"


def amtool(*args: str) -> subprocess.CompletedProcess:
    return tool("amtool", "prometheus-alertmanager", ALERTMANAGER, *args)


def test_amtool_checks_the_alertmanager_config():
    proc = amtool("check-config", "alertmanager.yml")
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize(("labels", "receiver"), [
    (["team=safeguarding", "severity=critical", "incident=INC-0A1B2C3D4E"], "safeguarding-lead"),
    (["team=network", "alertname=IctwatchSpoolFull"], "network-manager"),
    (["alertname=SomethingElse"], "network-manager"),
])
def test_danger_breaches_go_to_the_safeguarding_lead(labels, receiver):
    proc = amtool("config", "routes", "test", "--config.file=alertmanager.yml", *labels)
    assert proc.stdout.strip() == receiver, proc.stdout + proc.stderr
