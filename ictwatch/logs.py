"""Logging for the command and the daemon: plain `ictwatch: message` lines for a person at a terminal, or
one JSON object a line (`ICTWATCH_LOG_FORMAT=json`, as the systemd unit sets) for the journal and a log
shipper: time, level, logger and message.

What is logged is the program's own words: where a bad record was (`file:line`, `capture#frame`) and
why, never the record's content; no person, address or host at info level or below (the tests read the
logs of real runs for names). Warnings about bad input are sampled where they arise (collector/skips.py).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os


class JsonFormatter(logging.Formatter):
    """One JSON object a line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as `{"ts", "level", "logger", "msg"}` (and the exception's type, if any)."""
        out = {"ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
               "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        if record.exc_info and record.exc_info[0] is not None:
            out["error"] = record.exc_info[0].__name__
        return json.dumps(out, ensure_ascii=False)


def setup() -> None:
    """Log warnings and above to stderr, as text or JSON; drop the database driver's own chatter (its
    retries are reported once by the writer, without the store's address)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if os.environ.get("ICTWATCH_LOG_FORMAT") == "json"
                         else logging.Formatter("ictwatch: %(message)s"))
    handler.addFilter(lambda record: not record.name.startswith(("urllib3", "clickhouse_connect")))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
