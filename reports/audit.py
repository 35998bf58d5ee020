"""The report audit chain: every request for a person's report, granted or refused, every one-off grant
and every reading of the audit itself, as rows of `report_audit`.

Append-only and tamper-evident: each row carries `prev_hash`, the `row_hash` of the row before it, and its
own `row_hash`, the SHA-256 of its fields (canonical JSON) and `prev_hash`. Changing, removing or
reordering any stored row breaks the chain from that row on, and `verify` names the first row where it
breaks. Appends from several processes on one machine are serialised with a lock file, so two rows never
take the same sequence number; a use case that must read the chain and then append on what it read (a
report request spending a one-off grant) holds that lock throughout (`AuditLog.held`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from storage.schema import REPORT_AUDIT
from storage.store import Store

_FIELDS = [c.name for c in REPORT_AUDIT if c.name not in ("row_hash",)]


def _canonical(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def row_hash(row: dict[str, object]) -> str:
    """SHA-256 over a row's fields (all but `row_hash`, `prev_hash` included), as canonical JSON."""
    text = json.dumps({k: _canonical(row.get(k)) for k in _FIELDS}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Entry:
    """What one audit row says, before the chain fields are added."""

    actor: str
    actor_role: str
    action: str
    decision: str
    grounds: str
    reason: str = ""
    subject: str = ""
    period_start: dt.datetime | None = None
    period_end: dt.datetime | None = None
    grantee: str = ""
    uses_grant: int = 0
    report_sha256: str = ""
    report_format: str = ""
    policy_versions: tuple[str, ...] = ()


class AuditLog:
    """The chain in `store`, written under a lock file (`flock`: it holds between processes on this machine,
    and between two AuditLogs of one process, each of which opens the file for itself)."""

    def __init__(self, store: Store, lock: Path) -> None:
        self._store = store
        self._lock = lock

    @contextlib.contextmanager
    def held(self) -> Iterator[Chain]:
        """The chain, held for one use case: until the block ends nothing else appends, so what is read from
        it (the open grants, the next row number) stays true while the use case acts on it."""
        self._lock.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield Chain(self._store)
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def append(self, entry: Entry, now: dt.datetime | None = None) -> int:
        """Add `entry` at the end of the chain on its own; returns its sequence number."""
        with self.held() as chain:
            return chain.append(entry, now)


class Chain:
    """The audit chain while its lock is held (`AuditLog.held`)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._seq, self._prev = store.audit_tail()

    @property
    def next_seq(self) -> int:
        """The sequence number the next row appended will take."""
        return self._seq + 1

    def append(self, entry: Entry, now: dt.datetime | None = None) -> int:
        """Add `entry` at the end of the chain; returns its sequence number."""
        ts = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        row: dict[str, object] = {"seq": self.next_seq, "ts": ts, **dataclasses.asdict(entry), "prev_hash": self._prev}
        row["policy_versions"] = list(entry.policy_versions)
        row["row_hash"] = row_hash(row)
        self._store.insert_audit(row)
        self._seq, self._prev = self.next_seq, str(row["row_hash"])
        return self._seq

    def open_grants(self, grantee: str, subject: str) -> list[int]:
        """Sequence numbers of the one-off grants to `grantee` for `subject` not yet used by a report."""
        rows = self._store.audit().to_dicts()
        granted = {r["seq"] for r in rows if r["action"] == "grant" and r["decision"] == "granted"
                   and r["grantee"] == grantee and r["subject"] == subject}
        used = {r["uses_grant"] for r in rows if r["action"] == "report" and r["decision"] == "granted"}
        return sorted(granted - used)


def verify(store: Store) -> tuple[int, int | None, str]:
    """(rows checked, first broken sequence number or None, what is wrong there)."""
    prev, expected = "", 1
    rows = store.audit().to_dicts()
    for row in rows:
        if row["seq"] != expected:
            return len(rows), expected, f"row {expected} is missing (found {row['seq']} in its place)"
        if row["prev_hash"] != prev:
            return len(rows), row["seq"], "does not follow the row before it (prev_hash differs)"
        if row_hash(row) != row["row_hash"]:
            return len(rows), row["seq"], "its contents do not match its hash (changed after it was written)"
        prev, expected = row["row_hash"], expected + 1
    return len(rows), None, ""


def handed_out(store: Store, digest: str) -> list[dict]:
    """The granted audit rows (a report, or a download of one) that recorded a file with fingerprint
    `digest`, oldest first."""
    return [r for r in store.audit().to_dicts()
            if r["report_sha256"] == digest and r["decision"] == "granted"]
