"""The daemon's metrics and health endpoint: `/metrics` for Prometheus, `/health` for a person or a
load balancer, on `metrics.listen` (loopback by default; it carries no personal data either way).

`/health` reads the daemon's own metrics, so it can never disagree with them: capture running, batches
waiting in the spool, the last reload, the category lists' age. It answers 200 when every part is well
and 503 with the parts that are not.
"""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from ictwatch.settings import split_listen
from reports.web import Handler, Limits, Server
from reports.words import plural

STALE_LISTS_S = 14 * 86400


def _value(name: str) -> float | None:
    return REGISTRY.get_sample_value(name)


def health() -> tuple[bool, dict[str, Any]]:
    """(all well, each part's state)."""
    capture = _value("ictwatch_capture_running")
    spooled = _value("ictwatch_spool_records") or 0
    reload_ok = _value("ictwatch_last_reload_success")
    lists_age = _value("ictwatch_category_lists_age_seconds")
    parts = {
        "capture": "running" if capture == 1 else "stopped",
        "store": "writing" if not spooled else f"unreachable: {plural(int(spooled), 'batch')} in the spool",
        "configuration": "loaded" if reload_ok in (None, 1) else "last reload failed; the previous one is in force",
        "category_lists": ("stale" if lists_age is not None and lists_age > STALE_LISTS_S else "current"),
    }
    well = parts["capture"] == "running" and not spooled and reload_ok in (None, 1) and parts[
        "category_lists"] == "current"
    return well, parts


LIMITS = Limits(request_timeout_s=10.0, max_connections=8)
"""A scraper or two and a person: the report page's bounds on requests, with fewer connections."""


class _Handler(Handler):
    """The report page's bounded request reading and error answers, with these two routes."""

    limits = LIMITS

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Scrapes every few seconds would drown the log: nothing is logged."""

    def do_POST(self) -> None:  # noqa: N802 - the base class's name
        """Nothing here takes a body."""
        self.send_error(405, "only GET")

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        """`/metrics` or `/health`."""
        if self.path == "/metrics":
            body, kind, status = generate_latest(REGISTRY), CONTENT_TYPE_LATEST, 200
        elif self.path == "/health":
            well, parts = health()
            body = json.dumps({"status": "ok" if well else "degraded", "parts": parts}).encode()
            kind, status = "application/json", 200 if well else 503
        else:
            body, kind, status = b"not found\n", "text/plain", 404
        self._send(status, body, kind)


def serve(listen: str) -> Server:
    """The endpoint on host:port, bounded as `LIMITS` says; call `serve_forever` on it (a thread)."""
    return Server(split_listen(listen), _Handler, None, LIMITS)
