"""A report's own SHA-256, written inside it: the report states a fingerprint anyone can check.

A file cannot contain the hash of its own final bytes, so the fingerprint is taken with the fingerprint's
place holding 64 zeros: to check a report, put the zeros back in that place (the first `sha256:` value in
the file, which the templates put before any recorded traffic) and hash the result. `check` does that;
`fingerprint` gives what the audit chain records for any file handed out (`ictwatch audit check`).
"""

from __future__ import annotations

import hashlib
import re

PLACEHOLDER = "0" * 64
_MARK = re.compile(r"sha256:([0-9a-f]{64})")


def seal(text: str) -> tuple[str, str]:
    """(the text with its fingerprint filled in, the fingerprint). The text must hold `sha256:` + zeros."""
    if f"sha256:{PLACEHOLDER}" not in text:
        raise ValueError("the report has no place for its fingerprint")
    digest = hashlib.sha256(text.encode()).hexdigest()
    return text.replace(f"sha256:{PLACEHOLDER}", f"sha256:{digest}", 1), digest


def check(text: str) -> str | None:
    """The fingerprint a report states, if it matches its contents; None when it does not (or has none)."""
    found = _MARK.search(text)
    if found is None:
        return None
    blank = text[: found.start(1)] + PLACEHOLDER + text[found.end(1):]
    return found.group(1) if hashlib.sha256(blank.encode()).hexdigest() == found.group(1) else None


def fingerprint(data: bytes) -> str | None:
    """What the audit chain records for a file that was handed out: for an HTML or JSON report, the
    fingerprint it states, when that matches its contents (None when it does not: the file was changed);
    for any other file (CSV, PDF, an encrypted ZIP), the SHA-256 of its bytes."""
    head = data[:64].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"{")):
        return check(data.decode("utf-8", "replace"))
    return hashlib.sha256(data).hexdigest()
