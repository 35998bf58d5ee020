"""End to end, with the real programs: `ictwatch run` reads the school day as live packets (a FIFO, as the
capture service feeds it), a real Prometheus (Debian's) scrapes it with the shipped alert rules, a real
Alertmanager routes with the shipped routing tree (its receivers pointed at a local webhook), and the
danger breach of the day (Tom Evans's visit to an adult site, P8) reaches the receiver as an alert for
the safeguarding lead, named by its incident id and not by the person."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
import yaml

from rules.incidents import incident_id
from storage.store import Store
from tests.conftest import ROOT, SCHOOL_DAY, free_port, school_config

pytestmark = pytest.mark.skipif(
    not (shutil.which("prometheus") and shutil.which("prometheus-alertmanager")),
    reason="needs Debian's prometheus and prometheus-alertmanager (./dev test installs them)")


class Receiver(http.server.BaseHTTPRequestHandler):
    """Alertmanager's webhook: keeps every notification."""

    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def danger_alerts() -> list[tuple[dict, dict]]:
    """(notification, alert) for each danger-breach alert the receiver has had."""
    return [(n, a) for n in Receiver.received for a in n["alerts"]
            if a["labels"].get("alertname") == "IctwatchDangerBreach"]


def start(cmd: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kwargs)


def test_a_danger_breach_reaches_the_safeguarding_lead_as_an_incident(tmp_path):
    metrics_port, prom_port, am_port, hook_port = free_port(), free_port(), free_port(), free_port()
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", hook_port), Receiver)
    threading.Thread(target=hook.serve_forever, daemon=True).start()

    shipped = yaml.safe_load((ROOT / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
    shipped.pop("global")
    for receiver in shipped["receivers"]:  # the shipped routes, delivered to the local receiver
        receiver.pop("email_configs")
        receiver["webhook_configs"] = [{"url": f"http://127.0.0.1:{hook_port}/{receiver['name']}"}]
    (tmp_path / "am.yml").write_text(yaml.safe_dump(shipped))
    (tmp_path / "prom.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / "deploy" / "prometheus" / "alerts.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "scrape_configs": [{"job_name": "ictwatch", "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}],
    }))
    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)
    config = school_config(tmp_path / "school", f"collector:\n  capture_tool: pipe\n  capture_pipe: {fifo}\n"
                           f"metrics:\n  listen: 127.0.0.1:{metrics_port}\n")
    env = {**os.environ, "ICTWATCH_STORAGE_URL": f"chdb://{tmp_path / 'store'}"}
    procs = [
        start(["prometheus-alertmanager", f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'am'}",
               f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="]),
        start(["prometheus", f"--config.file={tmp_path / 'prom.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
               f"--web.listen-address=127.0.0.1:{prom_port}"]),
        start([sys.executable, "-m", "ictwatch.cli", "run", "--config", str(config), "--no-web"], env=env, cwd=ROOT),
    ]
    try:
        with open(fifo, "wb") as capture:  # the capture service: the day's packets, as they come off the wire
            capture.write((SCHOOL_DAY / "school-day.pcap").read_bytes())
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not danger_alerts():
            time.sleep(0.5)
    finally:
        for proc in procs:
            proc.terminate()
        errors = [proc.communicate(timeout=60)[1] for proc in procs]
        hook.shutdown()
    danger = danger_alerts()
    assert danger, f"no danger alert arrived; ictwatch said: {errors[2][-2000:]}"
    notification, alert = danger[0]
    assert notification["receiver"] == "safeguarding-lead"
    assert alert["labels"]["rule"] == "blocked-content" and alert["labels"]["location"] == "School office"
    assert alert["labels"]["incident"].startswith("INC-") and alert["labels"]["team"] == "safeguarding"
    text = json.dumps(notification)
    assert "tevans" not in text and "Tom Evans" not in text and "hot-videos" not in text  # no person, no site
    store = Store(f"chdb://{tmp_path / 'store'}")
    try:  # the day's one danger breach (14:05:12 BST, an adult site from the office): its incident's id
        (row,) = store.activity(None, None, None, breaches_only=True).filter(severity="danger").to_dicts()
    finally:
        store.close()
    expected = incident_id(row["ts"], row["source_ref"], "blocked-content")
    assert {a["labels"]["incident"] for _, a in danger} == {expected}
