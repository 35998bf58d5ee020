"""deploy/systemd as far as this machine can check it without booting the units: systemd's own
`systemd-analyze verify` finds nothing wrong (the install path of ictwatch replaced by an executable that
exists here), `systemd-analyze security` grades the daemon's exposure at most 2.0 and the capture's at
most 4.5 (of 10), the daemon holds no capability and cannot gain one, and only the capture holds the two
capture needs."""

from __future__ import annotations

import configparser
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

SYSTEMD = ROOT / "deploy" / "systemd"
NAMES = ("ictwatch.service", "ictwatch-capture.service", "ictwatch-lists.service", "ictwatch-lists.timer")


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(SYSTEMD / name)
    return parser


def test_only_the_capture_holds_capabilities():
    daemon, capture = unit("ictwatch.service")["Service"], unit("ictwatch-capture.service")["Service"]
    assert daemon["NoNewPrivileges"] == "yes" and daemon["CapabilityBoundingSet"] == ""
    assert daemon["AmbientCapabilities"] == "" and daemon["ProtectSystem"] == "strict"
    assert daemon["User"] == "ictwatch" and "capture_tool" not in daemon["ExecStart"]
    assert capture["AmbientCapabilities"] == capture["CapabilityBoundingSet"] == "CAP_NET_RAW CAP_NET_ADMIN"
    assert capture["User"] == "ictwatch-capture" and capture["NoNewPrivileges"] == "yes"
    assert "/run/ictwatch/capture.fifo" in capture["ExecStart"]
    assert "p /run/ictwatch/capture.fifo 0640 ictwatch-capture ictwatch" in (SYSTEMD / "ictwatch.tmpfiles").read_text()


@pytest.fixture
def units(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    for name in NAMES:
        text = (SYSTEMD / name).read_text().replace("/opt/ictwatch/.venv/bin/ictwatch", "/usr/bin/true")
        if shutil.which("dumpcap") is None:
            text = text.replace("/usr/bin/dumpcap", "/usr/bin/true")
        (tmp_path / name).write_text(text)
    return tmp_path


def test_systemd_verifies_the_units(units):
    proc = subprocess.run(["systemd-analyze", "verify", *(str(units / n) for n in NAMES)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


@pytest.mark.parametrize(("name", "most"), [("ictwatch.service", 20), ("ictwatch-capture.service", 45)])
def test_systemd_security_exposure(units, name, most):
    proc = subprocess.run(["systemd-analyze", "security", "--offline=yes", f"--threshold={most}", str(units / name)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-400:]
