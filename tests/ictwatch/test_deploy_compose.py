"""deploy/compose.yaml and the Grafana dashboard, as far as a machine without a container runtime can
check them: the compose file's shape and that every file it mounts or builds from exists; Prometheus's
configuration checked by promtool; every dashboard query parsed by promtool (as a recording rule) and
reading only metrics ictwatch declares; no panel grouped by anything that could name a person."""

from __future__ import annotations

import json
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

DEPLOY = ROOT / "deploy"


def test_compose_mounts_and_builds_from_files_that_exist():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert set(compose["services"]) == {"clickhouse", "ictwatch", "prometheus", "alertmanager", "grafana"}
    build = compose["services"]["ictwatch"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists() or source == "./ictwatch", (name, source)  # ./ictwatch: the school's


def test_the_image_compiles_the_decoder_in_a_build_stage_and_ships_no_compiler():
    stages = re.split(r"^FROM ", (DEPLOY / "Dockerfile").read_text(), flags=re.M)[1:]
    assert len(stages) == 2
    build, image = stages
    assert "gcc" in build and "build-accel.sh" in build
    assert "sys.exit(not collector.compiled())" in build  # a decoder that fell back to pure Python fails the build
    assert "gcc" not in image and "COPY --from=build /opt/ictwatch /opt/ictwatch" in image
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv/", "*.so", "build/"} <= set(ignored)  # a working tree's own build never reaches the image


def test_promtool_checks_the_prometheus_config():
    exe = shutil.which("promtool")
    if exe is None:
        pytest.skip("promtool is not installed")
    proc = subprocess.run([exe, "check", "config", "prometheus.yml"], cwd=DEPLOY / "prometheus", capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_dashboard_query_parses_and_reads_declared_metrics(tmp_path):
    assert collector.metrics and ictwatch.metrics and rules.metrics and storage.metrics  # declared on import
    dashboard = json.loads((DEPLOY / "grafana" / "ictwatch.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 12
    declared = {name for names in REGISTRY._collector_to_names.values() for name in names}
    used = {m for e in exprs for m in re.findall(r"\bictwatch_\w+", e)}
    assert used <= declared, used - declared
    grouped = {g.strip() for e in exprs for group in re.findall(r"by \(([^)]*)\)", e) for g in group.split(",")}
    assert grouped <= {"rule", "location", "severity", "verdict", "kind", "reason", "le"}
    exe = shutil.which("promtool")
    if exe is None:
        pytest.skip("promtool is not installed")
    rules_file = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:q{i}", "expr": e.replace("$__rate_interval", "5m")} for i, e in enumerate(exprs)]}]}
    (tmp_path / "queries.yml").write_text(yaml.safe_dump(rules_file))
    proc = subprocess.run([exe, "check", "rules", str(tmp_path / "queries.yml")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and f"SUCCESS: {len(exprs)} rules found" in proc.stdout, proc.stdout + proc.stderr
