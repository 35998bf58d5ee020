"""The formats a report is handed out in, one entry each in `FORMATS`: how it is written, what it is sent as,
and how its fingerprint is taken. The command line's `--format`, the web page's downloads and the audit
record all read the table, so a new format is a new entry here (and its renderer).

A fingerprint is what the audit row records and anyone can check against the file handed out: for a
sealed text, the SHA-256 the text states about itself (reports/seal.py); for anything else (CSV, a printed
PDF, an encrypted ZIP), the SHA-256 of the bytes.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass

from reports import pdf, render
from reports.model import UserReport
from reports.seal import seal


def _always() -> str:
    return ""


def _chromium() -> str:
    return "" if pdf.chromium() else "PDF needs Chromium (Debian package `chromium`)"


@dataclass(frozen=True, slots=True)
class Format:
    """One way of handing a report out."""

    render: Callable[[UserReport, int, str], str]
    """The report as text: (report, page of the activity log, link to the other pages + a number)."""
    content_type: str
    sealed: bool
    """The text states its own fingerprint (it holds the `sha256:` place for it)."""
    printed: Callable[[str], bytes] | None = None
    """Turns the (sealed) text into the bytes handed out; None: the text in UTF-8."""
    missing: Callable[[], str] = _always
    """What this machine lacks to make the format ("" when nothing): checked before a request is decided."""
    on_web: bool = True
    """Offered for download on the web page."""
    inline: bool = False
    """The web page shows it in the browser (a download only when asked for), rather than saving it."""


FORMATS: dict[str, Format] = {
    "html": Format(render.to_html, "text/html; charset=utf-8", sealed=True, inline=True),
    "csv": Format(lambda report, _page, _link: render.to_csv(report), "text/csv; charset=utf-8", sealed=False),
    "json": Format(lambda report, _page, _link: render.to_json(report), "application/json", sealed=True),
    "pdf": Format(render.to_html, "application/pdf", sealed=True, printed=pdf.to_pdf, missing=_chromium,
                  on_web=False),
}
"""Every format, in the order `--format` lists them; "html" is the default."""


def write(report: UserReport, name: str, page: int = 1, page_link: str = "") -> tuple[bytes, str]:
    """(the bytes handed out, their fingerprint) for `report` in format `name`; HTML shows page `page` of the
    activity log, linking the others through `page_link` when given."""
    fmt = FORMATS[name]
    text = fmt.render(report, page, page_link)
    stated = ""
    if fmt.sealed:
        text, stated = seal(text)
    if fmt.printed is None:
        data = text.encode()
        return data, stated or sha256(data)
    data = fmt.printed(text)
    return data, sha256(data)


def sha256(data: bytes) -> str:
    """The hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def encrypted(data: bytes, name: str, passphrase: str) -> bytes:
    """`data` as the one file `name` of an AES-256 encrypted ZIP (WinZip AES, which 7-Zip opens): a report in
    any format, wrapped for leaving the school network (clause P6). The contents are encrypted, not `name`:
    anyone holding the file reads it, so it must name nobody ("report.html")."""
    import pyzipper

    out = io.BytesIO()
    with pyzipper.AESZipFile(out, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as z:
        z.setpassword(passphrase.encode())
        z.setencryption(pyzipper.WZ_AES, nbits=256)
        z.writestr(name, data)
    return out.getvalue()
