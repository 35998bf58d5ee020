"""The typed per-person report handed to templates and writers (no SQL, no frames in templates).

What is not known (a person the directory lacks, an unregistered device, a place no subnet names) is None
here and null in the JSON; only the HTML puts it in words ("unknown", "unregistered"), and the CSV leaves
the cell empty.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PersonRef:
    """A person as the report names them; name, role and line manager are None when the directory has no
    entry (a known person without a line manager has "")."""

    username: str
    name: str | None
    role: str | None = ""
    line_manager: str | None = ""


@dataclass(frozen=True, slots=True)
class CountRow:
    """One line of a summary table."""

    label: str | None
    """None for the activity whose device or place is not known."""
    activities: int
    bytes: int = 0
    minutes: int = 0
    """Active minutes: the minutes of the period with at least one such activity (an estimate of time online)."""


@dataclass(frozen=True, slots=True)
class ActivityRow:
    """One activity as a report lists it (times in the school's zone)."""

    time: dt.datetime
    kind: str
    device: str | None
    device_type: str | None
    location: str | None
    host: str | None
    """The name the device asked for (DNS, TLS, HTTP, the proxy); None when none was seen."""
    server: str | None
    """The address of the server the device talked to (the resolver, for a lookup); None when not known."""
    url: str
    categories: tuple[str, ...]
    verdict: str
    rule_ids: tuple[str, ...] = ()
    clauses: tuple[str, ...] = ()
    severity: str = ""
    reasons: tuple[str, ...] = ()
    source_ref: str = ""
    denied: bool = False
    identified_by: str = ""
    """How the person was known (login, registered MAC, DHCP lease, address) and how sure that is."""
    user_agent: str = ""
    waiver_ids: tuple[str, ...] = ()
    explanation: str = ""
    """For a breach or a waived activity: each rule that matched, the values that made it, the waivers."""


@dataclass(frozen=True, slots=True)
class UserReport:
    """Everything one person's activity report shows for one period."""

    school: str
    sha256: str
    """`sha256:` and the report's fingerprint (64 zeros until it is sealed: reports/seal.py)."""
    subject: PersonRef
    start: dt.date
    end: dt.date
    timezone: str
    requested_by: PersonRef
    reason: str
    grounds: str
    """Why the requester may see it (headteacher, line manager, own data, a one-off grant)."""
    audit_seq: int
    """The audit row that records this request."""
    generated_at: dt.datetime
    policy_versions: tuple[str, ...]
    total_activities: int
    bytes_out: int
    bytes_in: int
    by_category: tuple[CountRow, ...]
    by_day: tuple[CountRow, ...]
    devices: tuple[CountRow, ...]
    locations: tuple[CountRow, ...]
    breaches: tuple[ActivityRow, ...]
    blocked: tuple[ActivityRow, ...]
    activity: tuple[ActivityRow, ...] = field(default=())
    waived: tuple[ActivityRow, ...] = field(default=())
    """Activities a rule matched but a waiver (the policy's "specific permission") covered."""
    heatmap: tuple[tuple[int, ...], ...] = field(default=())
    """Activities by weekday (Monday first) and local hour: 7 rows of 24 counts."""
    active_minutes: int = 0
