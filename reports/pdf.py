"""PDF by printing the HTML report with headless Chromium (Debian's `chromium`), where it is installed.

The page is written to a private temporary folder and printed from a `file://` address with networking
off: the report makes no requests anyway (inline CSS and SVG), and this way it could not.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path


class PdfError(Exception):
    """Chromium is missing or failed to print."""


def chromium() -> str | None:
    """The Chromium executable, if one is installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


TIMEOUT_S = 120
"""How long Chromium may take to print a report."""


def to_pdf(html: str) -> bytes:
    """The PDF of an HTML page, printed by headless Chromium."""
    exe = chromium()
    if exe is None:
        raise PdfError("PDF needs Chromium (Debian package `chromium`); use --format html instead")
    with tempfile.TemporaryDirectory(prefix="ictwatch-pdf-") as tmp:
        page, out = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        page.write_text(html, encoding="utf-8")
        proc = subprocess.run(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
             "--disable-background-networking", "--proxy-server=127.0.0.1:9", f"--user-data-dir={tmp}/profile",
             f"--print-to-pdf={out}", page.as_uri()],
            capture_output=True, timeout=TIMEOUT_S)
        if proc.returncode != 0 or not out.is_file():
            raise PdfError(f"Chromium could not print the report (exit {proc.returncode})")
        return out.read_bytes()
