"""The use cases every front end shares (the `ictwatch` commands and the web page), each written once:
requesting a person's report, downloading one again, reading the audit log, giving a one-off grant.
Front ends parse what they are given and show what comes back; deciding and recording happen here.

A report request holds the audit chain (`AuditLog.held`) from its first read to its last write: the open
one-off grants are read, the request is decided (reports/access.py; one it grants for a subject in neither
the directory nor the store is refused as `NO_SUCH_PERSON`), and when granted the report is built
under the number its audit row will take, written and fingerprinted in its format (reports/formats.py),
and its row appended with that fingerprint and the grant it spends. A refusal is appended at once. Nothing
else appends meanwhile, so two requests cannot spend one grant, and the row number a report states is its
own. The price is that other audit writes wait while a report is built: seconds for a month of activity,
longer for a PDF, a few times a day.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import zoneinfo
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl

from reports import access, build, formats
from reports.audit import AuditLog, Entry
from reports.model import UserReport
from rules.config import Device, Directory
from rules.policy import Policy
from storage.store import Store


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class Ask:
    """One request for a person's report, as a front end took it in."""

    requester: str
    subject: str
    first: dt.date
    last: dt.date
    """The period: local days `first` to `last`, both included."""
    reason: str
    format: str = "html"
    """A key of `reports.formats.FORMATS`."""
    passphrase: str = ""
    """When given, the report leaves as an AES-256 ZIP with this passphrase (recorded as format `zip`)."""
    of_device: bool = False
    """`subject` is a device's register id: a device report (its activity that no login named)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a request: the audit row recording it and its grounds; for a granted one, the report
    and the bytes handed out with their fingerprint."""

    seq: int
    grounds: str
    report: UserReport | None = None
    data: bytes = b""
    sha256: str = ""

    @property
    def no_such_person(self) -> bool:
        """Refused because the subject is in neither the directory nor the store: a mistaken request rather
        than one the requester may not make (front ends answer it as a usage error)."""
        return self.grounds in (access.NO_SUCH_PERSON, access.NO_SUCH_DEVICE)


@dataclass(frozen=True, slots=True)
class Desk:
    """What the use cases need: the store and its audit chain, the staff directory, the policy (school,
    calendar, reporting chain), how a breach is explained, the clock, and the network services."""

    store: Store
    audit: AuditLog
    directory: Directory
    policy: Policy
    explainer: Callable[[pl.DataFrame], list[str]] | None = None
    now: Callable[[], dt.datetime] = _utc_now
    services: Mapping[str, str] = field(default_factory=dict)
    """The school's network service addresses → their names (`NetworkMap.service_names()`), counted apart."""
    devices: Sequence[Device] = ()
    """The device register: whose care a device is in, and whose device a report must not name."""
    store_lock: threading.Lock = field(default_factory=threading.Lock)
    """Taken around every use of `store`, whose one connection threads (the web page's) must not share at
    once; always before the audit chain's lock, never inside it."""

    def role(self, username: str) -> str:
        """The directory role of `username`, or "unknown"."""
        person = self.directory.by_username().get(username)
        return person.role.value if person else "unknown"

    def today(self) -> dt.date:
        """The school's local date now: the day the directory's start and leave dates are compared with."""
        return self.now().astimezone(zoneinfo.ZoneInfo(self.policy.calendar.timezone)).date()

    def request(self, ask: Ask) -> Outcome:
        """Decide, record and (when granted) build and write one report request, atomically with respect to
        every other writer of the audit chain."""
        tz = self.policy.calendar.timezone
        lo, hi = build.local_bounds(ask.first, ask.last, tz)
        since = self.now() - dt.timedelta(days=self.policy.reports.grant_days)
        with self.store_lock, self.audit.held() as chain:
            decision = self._decide(ask, chain.open_grants(ask.requester, ask.subject, (lo, hi), since)
                                    if not ask.of_device else ())
            entry = Entry(ask.requester, self.role(ask.requester), "device_report" if ask.of_device else "report",
                          "granted" if decision.granted else "refused", decision.grounds, ask.reason, ask.subject, lo,
                          hi, uses_grant=decision.grant_seq or 0, report_format="zip" if ask.passphrase else ask.format)
            if not decision.granted:
                return Outcome(chain.append(entry, self.now()), decision.grounds)
            report = build.build(self.store, self.directory, self.policy.school, tz, ask.subject, ask.first, ask.last,
                                 ask.requester, ask.reason, self.now(), decision.grounds, chain.next_seq,
                                 self.explainer, self.services, self.devices,
                                 ask.subject if ask.of_device else None)
            data, digest = formats.write(report, ask.format)
            if ask.passphrase:
                data = formats.encrypted(data, f"report.{ask.format}", ask.passphrase)
                digest = formats.sha256(data)
            seq = chain.append(dataclasses.replace(entry, report_sha256=digest,
                                                   policy_versions=report.policy_versions), self.now())
        return Outcome(seq, decision.grounds, report, data, digest)

    def _decide(self, ask: Ask, open_grants: Collection[int]) -> access.Decision:
        """The decision on `ask` (the open grants it could use given), a subject that is nobody's refused as
        such once the request would be granted (a typo: no report, no grant spent)."""
        if ask.of_device:
            decision = access.decide_device(self.directory, ask.requester, ask.reason, self.today())
            known = any(d.id == ask.subject for d in self.devices)
            if decision.granted and not known and not self.store.device_seen(ask.subject):
                return access.Decision(False, access.NO_SUCH_DEVICE)
            return decision
        decision = access.decide(self.directory, ask.requester, ask.subject, ask.reason, self.today(),
                                 self.policy.reports.line_manager_chain, open_grants, (ask.first, ask.last))
        if decision.granted and ask.subject not in self.directory.by_username() and not self.store.seen(ask.subject):
            return access.Decision(False, access.NO_SUCH_PERSON)
        return decision

    def download(self, who: str, report: UserReport, fmt: str, page: int = 1, page_link: str = "") -> bytes:
        """`report` (granted to `who` before) written again in format `fmt`, recorded as a download."""
        data, digest = formats.write(report, fmt, page, page_link)
        with self.store_lock:
            action = "device_report_download" if report.device else "report_download"
            self.audit.append(Entry(who, self.role(who), action, "granted", f"report of audit row #{report.audit_seq}",
                                    report.reason, report.subject.username, report_format=fmt,
                                    report_sha256=digest), self.now())
        return data

    def read_audit(self, who: str) -> tuple[int, pl.DataFrame | None]:
        """(the audit row recording this look, the whole chain) for the headteacher; for anyone else the
        refusal is recorded and the chain is None."""
        allowed = access.may_read_audit(self.directory, who, self.today())
        with self.store_lock:
            seq = self.audit.append(Entry(who, self.role(who), "audit_view", "granted" if allowed else "refused",
                                          "headteacher" if allowed else access.AUDIT_REFUSED), self.now())
            return seq, self.store.audit() if allowed else None

    def grant(self, by: str, grantee: str, subject: str, reason: str, first: dt.date,
              last: dt.date) -> tuple[access.Decision, int]:
        """(the decision, its audit row) on a one-off grant of `subject`'s report for local days `first` to
        `last` to `grantee`, usable for `policy.reports.grant_days` (reports/access.py decides); a refusal
        is recorded too."""
        decision = access.decide_grant(self.directory, by, grantee, subject, reason, (first, last), self.today())
        lo, hi = build.local_bounds(first, last, self.policy.calendar.timezone)
        with self.store_lock:
            seq = self.audit.append(Entry(by, self.role(by), "grant", "granted" if decision.granted else "refused",
                                          decision.grounds, reason, subject, lo, hi, grantee=grantee), self.now())
        return decision, seq
