"""deploy/prometheus/alerts.yml: Prometheus's own promtool checks the rules and runs their unit tests
(alerts.test.yml), and every metric an alert reads is one ictwatch declares; deploy/alertmanager/ is
checked by Alertmanager's amtool and routes danger breaches to the safeguarding lead."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client import REGISTRY

import collector.metrics
import ictwatch.metrics
import rules.metrics
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
    assert "SUCCESS: 13 rules found" in proc.stdout


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
        assert set(re.findall(r"\$labels\.(\w+)", text)) <= {"instance", "incident", "rule", "location", "reason"}


ALERTMANAGER = ROOT / "deploy" / "alertmanager"


def amtool(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("amtool")
    if exe is None:
        pytest.skip("amtool is not installed (./dev test installs Debian's prometheus-alertmanager as root)")
    return subprocess.run([exe, *args], cwd=ALERTMANAGER, capture_output=True, text=True, timeout=60)


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
