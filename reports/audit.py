"""The report audit chain: every request for a person's report, granted or refused, every one-off grant
and every reading of the audit itself, as rows of `report_audit`.

Append-only and tamper-evident against anyone who can write to the store but is not the service: each row
carries `prev_hash`, the `row_hash` of the row before it, and its own `row_hash`, an HMAC-SHA256 of its
fields (canonical JSON) and `prev_hash` under a key only the service can read (`audit.key`, 64 hex digits,
mode 0600, made when the chain is first used). Changing, reordering or rewriting a row breaks the chain
from that row on. Rows cut off the end, or the whole table emptied, would leave a shorter chain that still
holds together, so the chain's head is also kept outside the table: after each row is stored, its number,
MAC and time are added to an append-only file (`audit.head`, fsynced), and `verify` finds every row that
file names. The table's retention (a TTL) removes the oldest rows in time: rows gone from the start are
accepted when the head file shows them past it, never otherwise. `verify` names the first row where the
chain breaks.

A store chained before the key existed (plain SHA-256, which anyone can recompute) is keyed once: the head
file begins with an anchor line, `anchor SEQ HASH`, naming the last unkeyed row, and an `audit_keyed` row
after it records the keying. Rows up to the anchor are checked by SHA-256, every later one by the key.

Appends from several processes on one machine are serialised with a lock file, so two rows never take the
same sequence number; a use case that must read the chain and then append on what it read (a report
request spending a one-off grant) holds that lock throughout (`AuditLog.held`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from rules.config import ConfigError
from storage.schema import REPORT_AUDIT

if TYPE_CHECKING:  # `check` reads the chain's key without opening the store
    from storage.store import Store

_FIELDS = [c.name for c in REPORT_AUDIT if c.name not in ("row_hash",)]
KEYED = "audit_keyed"
"""The action of the row that records an unkeyed chain being keyed."""


def _canonical(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def _text(row: dict[str, object]) -> bytes:
    return json.dumps({k: _canonical(row.get(k)) for k in _FIELDS}, sort_keys=True, ensure_ascii=False).encode()


def row_hash(row: dict[str, object]) -> str:
    """Plain SHA-256 over a row's fields (all but `row_hash`, `prev_hash` included), as canonical JSON: how
    rows were chained before the key, and still are up to the anchor."""
    return hashlib.sha256(_text(row)).hexdigest()


def row_mac(key: bytes, row: dict[str, object]) -> str:
    """HMAC-SHA256 under `key` over the same canonical JSON: how every row after the anchor is chained."""
    return hmac.new(key, _text(row), hashlib.sha256).hexdigest()


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


@dataclass(frozen=True, slots=True)
class ChainFiles:
    """The files the chain keeps beside the store: its lock, its key and its head; and the config file that
    names them, for messages."""

    lock: Path
    key: Path
    head: Path
    config: Path


class Recorded(NamedTuple):
    """One row as the head file records it: its number, its MAC (its hash, for an unkeyed row) and when it
    was written, to the second (None on a line written before times were recorded)."""

    seq: int
    mac: str
    ts: dt.datetime | None


class Head(NamedTuple):
    """What the head file says: the anchor (the last unkeyed row and its hash; 0 and "" for a chain keyed
    from its first row) and each row recorded (every keyed row; the unkeyed ones too when the chain was keyed
    with them present)."""

    anchor: int
    anchor_hash: str
    rows: list[Recorded]


class Verdict(NamedTuple):
    """What `verify` found: rows checked, the first broken row number (None if none) and what is wrong
    there; with no row broken, a problem means the chain could not be vouched for at all."""

    rows: int
    broken: int | None
    problem: str
    removed: int = 0
    """Rows #1 to this one are gone from the table, as the retention of `retention` allows."""
    retention: str = ""

    def summary(self) -> str:
        """One line: intact (and which rows retention removed), BROKEN at a row, or UNVERIFIED, with the
        number of rows."""
        if self.broken is not None:
            return f"audit chain BROKEN at row #{self.broken}: {self.problem} ({self.rows} rows)"
        if self.problem:
            return f"audit chain UNVERIFIED: {self.problem} ({self.rows} rows)"
        gone = "" if not self.removed else (
            f" ({'row #1' if self.removed == 1 else f'rows #1–#{self.removed}'} removed by the policy's "
            f"{self.retention} retention)")
        return f"audit chain intact: {self.rows} rows{gone}"


def _stamp(ts: dt.datetime) -> str:
    """A row's time on its head-file line: UTC, to the second, as `toDateTime` (and so the TTL) sees it."""
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unstamp(text: str) -> dt.datetime:
    """The time `_stamp` wrote; `ValueError` for anything else."""
    if len(text) != 20 or text[10] != "T" or not text.endswith("Z"):
        raise ValueError(text)
    return dt.datetime.fromisoformat(text)


def _line(row: dict) -> str:
    return f"{row['seq']} {row['row_hash']} {_stamp(row['ts'])}\n"


def _spell(days: int) -> str:
    """A retention as the verdict says it: "6-year" for 2190 days, else "60-day"."""
    return f"{days // 365}-year" if days % 365 == 0 else f"{days}-day"


def _write_new(path: Path, text: str) -> None:
    """Create `path` (it must not exist) with `text`, mode 0600, on disk before returning."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def key_problem(path: Path) -> str | None:
    """Why the service could not sign the chain with the key at `path` (missing, unreadable, not a key),
    or None when it can."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc}): the service's user must be able to read it"
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    return None if len(key) == 32 else "not an audit key (64 hex digits)"


def _read_head(path: Path) -> Head | None:
    """The head file, or None when there is none; `ValueError` naming the line that is not one."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return None
    rows: list[Recorded] = []
    anchor: tuple[int, str] | None = None
    for number, line in enumerate(lines, 1):
        parts = line.split(" ")
        if number == 1 and len(parts) in (2, 3) and parts[0] == "anchor" and parts[1].isdigit():
            anchor = (int(parts[1]), parts[2] if len(parts) == 3 else "")
        elif number > 1 and len(parts) in (2, 3) and parts[0].isdigit() and int(parts[0]) > 0:
            try:
                ts = _unstamp(parts[2]) if len(parts) == 3 else None
            except ValueError:
                raise ValueError(f"line {number}'s time is not one") from None
            rows.append(Recorded(int(parts[0]), parts[1], ts))
        else:
            raise ValueError(f"line {number} is not " + ("its anchor line" if number == 1
                                                         else "a row number, MAC and time"))
    if anchor is None:
        raise ValueError("it is empty: it has lost its anchor line")
    return Head(anchor[0], anchor[1], rows)


class AuditLog:
    """The chain in `store`, written under a lock file (`flock`: it holds between processes on this machine,
    and between two AuditLogs of one process, each of which opens the file for itself), signed with the key
    and followed by the head file of `files`."""

    def __init__(self, store: Store, files: ChainFiles) -> None:
        self._store = store
        self.files = files

    def _refuse(self, problem: str) -> ConfigError:
        return ConfigError(self.files.config, "audit.key", str(self.files.key), problem)

    def _key(self) -> bytes:
        """The key, made first if the chain has never had one (called with the lock held). The anchor goes
        into the head file before the key is made, so a stop between the two is put right next time; a key
        lost after it signed a row is refused, never replaced (a new one would not verify those rows)."""
        problem = key_problem(self.files.key)
        if problem == "missing":
            try:
                head = _read_head(self.files.head)
            except ValueError:
                head = Head(-1, "", [])
            seq, last = self._store.audit_tail()
            if head is not None and (any(r.seq > head.anchor for r in head.rows)
                                     or (head.anchor, head.anchor_hash) != (seq, last)):
                raise self._refuse(f"missing, but the head file {self.files.head} says rows were signed with it: "
                                   "restore it from the backup")
            if head is None:  # the unkeyed rows' times too, so that verify knows them once retention removes them
                _write_new(self.files.head, f"anchor {seq} {last}".rstrip() + "\n"
                           + "".join(_line(r) for r in self._store.audit().to_dicts()))
            _write_new(self.files.key, secrets.token_hex(32) + "\n")
            if seq:
                Chain(self._store, self.files, _load(self.files.key)).append(Entry(
                    "ictwatch", "service", KEYED, "granted",
                    f"the chain is signed with a key from this row on; rows #1 to #{seq} are checked by SHA-256 "
                    "alone"))
            problem = key_problem(self.files.key)
        if problem is not None:
            raise self._refuse(problem)
        return _load(self.files.key)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.files.lock.parent.mkdir(parents=True, exist_ok=True)
        with open(self.files.lock, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def prepare(self) -> None:
        """Make sure the chain can be signed: its key made if it has none (at start-up, so the daemon says
        at once, as a `ConfigError`, when the key is missing after use or unreadable)."""
        with self._locked():
            self._key()

    @contextlib.contextmanager
    def held(self) -> Iterator[Chain]:
        """The chain, held for one use case: until the block ends nothing else appends, so what is read from
        it (the open grants, the next row number) stays true while the use case acts on it."""
        with self._locked():
            yield Chain(self._store, self.files, self._key())

    def append(self, entry: Entry, now: dt.datetime | None = None) -> int:
        """Add `entry` at the end of the chain on its own; returns its sequence number."""
        with self.held() as chain:
            return chain.append(entry, now)

    def verify(self) -> Verdict:
        """Check every row against the one before, its hash (up to the anchor) or its MAC (after it), and
        every row the head file records against the table. `ConfigError` when the key cannot be read."""
        rows = self._store.audit().to_dicts()
        problem = key_problem(self.files.key)
        try:
            head = _read_head(self.files.head)
        except ValueError as exc:
            return Verdict(len(rows), 1, f"the head file {self.files.head} is damaged: {exc}")
        if problem == "missing":
            if head is not None:
                return Verdict(len(rows), None, f"the key {self.files.key} is missing, though the head file says "
                                                "rows were signed with it: restore it from the backup")
            return _walk(rows, None, len(rows)) or Verdict(len(rows), None, "" if not rows else (
                f"not keyed yet: with no key ({self.files.key}) only SHA-256, which anyone can recompute, vouches "
                "for the rows; the service keys the chain when it starts or next appends a row"))
        if problem is not None:
            raise self._refuse(problem)
        if head is None:
            return Verdict(len(rows), 1, f"the head file {self.files.head} is missing, though the key is there")
        days = self._store.retention.audit_days
        return _check(rows, head, _load(self.files.key), self._store.expired_before("report_audit"), days)


def _load(key: Path) -> bytes:
    return bytes.fromhex(key.read_text().strip())


def _check(rows: list[dict], head: Head, key: bytes, expired: dt.datetime | None, days: int) -> Verdict:
    """The verdict on `rows` (the table, in order) against the head file. Rows cut from the start are
    accepted when the head file shows them past the retention (written at or before `expired`, None when
    rows are kept for ever); the first row left must then follow the MAC recorded for the row before it."""
    recorded = {r.seq: r for r in head.rows}
    if head.anchor and head.anchor not in recorded:  # a chain keyed before unkeyed rows' times were recorded
        recorded[head.anchor] = Recorded(head.anchor, head.anchor_hash, None)
    first = rows[0]["seq"] if rows else max(recorded, default=0) + 1
    removed = _unexpired(recorded, first - 1, expired, days)
    if removed is not None:
        return Verdict(len(rows), removed[0], removed[1])
    broken = _walk(rows, key, head.anchor, first, recorded[first - 1].mac if first > 1 else "")
    if broken is not None:
        return broken
    last = first + len(rows) - 1
    if first <= head.anchor and (last < head.anchor or rows[head.anchor - first]["row_hash"] != head.anchor_hash):
        return Verdict(len(rows), min(head.anchor, last + 1),
                       "differs from the anchor the head file recorded when the chain was keyed")
    newest = max(recorded, default=0)
    if newest > last:
        gone = f"row #{newest} is" if newest == last + 1 else f"rows #{last + 1} to #{newest} are"
        return Verdict(len(rows), last + 1, f"{gone} missing (the head file records row #{newest})")
    for seq, mac, _ in head.rows:
        if seq >= first and rows[seq - first]["row_hash"] != mac:
            return Verdict(len(rows), seq, "differs from the MAC the head file recorded for it")
    return Verdict(len(rows), None, "", first - 1, _spell(days) if first > 1 else "")


def _unexpired(recorded: dict[int, Recorded], cut: int, expired: dt.datetime | None,
               days: int) -> tuple[int, str] | None:
    """(the first of rows #1 to #`cut`, all gone from the table, that the retention did not remove, why) or
    None when it removed them all. A row counts as removed by retention when the head file records it, or a
    later one of them, as written at or before `expired`: rows are written in time order, so the rows before
    one past retention are past it too."""
    decided: Recorded | None = None
    kept: tuple[int, Recorded | None] | None = None
    for seq in range(cut, 0, -1):
        if seq in recorded and recorded[seq].ts is not None:
            decided = recorded[seq]
        if decided is None or expired is None or decided.ts is None or decided.ts > expired:
            kept = (seq, decided)
    if kept is None:
        return None
    seq, why = kept
    gone, them = (f"row #{seq} is", "it") if seq == cut else (f"rows #{seq} to #{cut} are", "them")
    if why is None:
        return seq, f"{gone} missing (the head file records no time for {them}, so retention cannot be shown " \
                    f"to have removed {them})"
    if expired is None:
        return seq, f"{gone} missing (the policy keeps audit rows for ever)"
    return seq, f"{gone} missing (the head file records row #{why.seq} as written within the policy's " \
                f"{_spell(days)} retention)"


def _walk(rows: list[dict], key: bytes | None, anchor: int, first: int = 1, prev: str = "") -> Verdict | None:
    """The first row that does not follow the one before (the first, numbered `first`, follows `prev`) or
    whose hash (up to row `anchor`) or MAC (after, under `key`; None: no key yet) is wrong; None when every
    row holds."""
    for expected, row in enumerate(rows, first):
        if row["seq"] != expected:
            return Verdict(len(rows), expected, f"row {expected} is missing (found {row['seq']} in its place)")
        if row["prev_hash"] != prev:
            return Verdict(len(rows), expected, "does not follow the row before it (prev_hash differs)")
        if expected <= anchor or key is None:
            if row_hash(row) != row["row_hash"]:
                return Verdict(len(rows), expected,
                               "its contents do not match its hash (changed after it was written)")
        elif not hmac.compare_digest(row_mac(key, row), row["row_hash"]):
            return Verdict(len(rows), expected, "not signed with the audit key: changed after it was written, "
                                                "or written by someone without the key")
        prev = row["row_hash"]
    return None


def _last_recorded(path: Path) -> tuple[int, str] | None:
    """(number, MAC) of the last row the head file records (its anchor when it records none), or None when
    there is no head file yet; read from the file's end, as the file only grows."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            tail = f.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return None
    parts = tail[-1].split(" ") if tail else []
    if len(parts) >= 2 and parts[0].isdigit():
        return int(parts[0]), parts[1]
    if len(parts) >= 2 and parts[0] == "anchor" and parts[1].isdigit():
        return int(parts[1]), parts[2] if len(parts) == 3 else ""
    return None


class Chain:
    """The audit chain while its lock is held (`AuditLog.held`)."""

    def __init__(self, store: Store, files: ChainFiles, key: bytes) -> None:
        self._store = store
        self._head = files.head
        self._key = key
        self._seq, self._prev = store.audit_tail()
        recorded = _last_recorded(files.head)
        if recorded is not None and recorded[0] > self._seq:  # the table's newest rows gone (retention removes
            self._seq, self._prev = recorded                   # every row when none is asked for in its time)

    @property
    def next_seq(self) -> int:
        """The sequence number the next row appended will take."""
        return self._seq + 1

    def append(self, entry: Entry, now: dt.datetime | None = None) -> int:
        """Add `entry` at the end of the chain, then its number, MAC and time to the head file; returns its
        sequence number."""
        ts = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        row: dict[str, object] = {"seq": self.next_seq, "ts": ts, **dataclasses.asdict(entry), "prev_hash": self._prev}
        row["policy_versions"] = list(entry.policy_versions)
        row["row_hash"] = row_mac(self._key, row)
        self._store.insert_audit(row)
        fd = os.open(self._head, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, _line(row).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self._seq, self._prev = self.next_seq, str(row["row_hash"])
        return self._seq

    def open_grants(self, grantee: str, subject: str, period: tuple[dt.datetime, dt.datetime],
                    since: dt.datetime) -> list[int]:
        """Sequence numbers of the one-off grants to `grantee` for `subject`, given at or after `since`, whose
        period covers `period` (start and exclusive end), not yet used by a report."""
        rows = self._store.audit().to_dicts()
        granted = {r["seq"] for r in rows if r["action"] == "grant" and r["decision"] == "granted"
                   and r["grantee"] == grantee and r["subject"] == subject and r["ts"] >= since
                   and r["period_start"] is not None and r["period_start"] <= period[0]
                   and r["period_end"] is not None and period[1] <= r["period_end"]}
        used = {r["uses_grant"] for r in rows if r["action"] == "report" and r["decision"] == "granted"}
        return sorted(granted - used)


def handed_out(store: Store, digest: str) -> list[dict]:
    """The granted audit rows (a report, or a download of one) that recorded a file with fingerprint
    `digest`, oldest first."""
    return [r for r in store.audit().to_dicts()
            if r["report_sha256"] == digest and r["decision"] == "granted"]
