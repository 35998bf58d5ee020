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
    """One line of a summary table: the visits of one day, category, device or place."""

    label: str | None
    """None for the visits whose device or place is not known."""
    visits: int
    activities: int
    """The recorded activities (lookups, hellos, requests, flows) those visits are made of."""
    bytes: int = 0
    minutes: int = 0
    """Time online: the minutes of the clock in which one of those visits was under way (see `Visit`)."""
    identified_by: str = ""
    """Devices only: each way the person was known on that device ("; " between them)."""


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
    visit: int | None = None
    """The number of the visit it belongs to; None for the school's own network services (`UserReport.services`)."""
    method: str = ""
    """The HTTP method; for peer-to-peer, what the DHT message was (`get_peers`, ..., `response`) or the
    tracker's action."""
    info_hash: str = ""
    """For peer-to-peer: the BitTorrent info-hash of the torrent sought (40 hex digits)."""


@dataclass(frozen=True, slots=True)
class Visit:
    """A device's activities to one site (lookups, hellos, requests, flows) joined while each starts within
    `rules.visits.VISIT_GAP` of the end of the ones before: what a person would call one visit."""

    number: int
    """1 for the earliest visit of the report, and so on; `ActivityRow.visit` refers to it."""
    site: str
    """The host name visited (DNS question, TLS server name, HTTP host, proxy URL host, or the name the device's
    DNS lookup gave the address), else the server's address."""
    start: dt.datetime
    end: dt.datetime
    """When its last activity ended (a flow's or proxied request's duration included); school time zone."""
    device: str | None
    device_type: str | None
    location: str | None
    activities: int
    bytes: int
    minutes: int
    """The minutes of the clock it was under way in: at least 1."""
    kinds: tuple[str, ...]
    categories: tuple[str, ...]
    verdict: str
    """Its worst activity's: breach, else blocked, else waived, else allowed."""
    rule_ids: tuple[str, ...] = ()
    clauses: tuple[str, ...] = ()
    severity: str = ""
    """The highest severity among the rules its activities broke."""
    evidence: tuple[str, ...] = ()
    """Each activity's kind and source reference (`file.pcap#frame`, `file.log:line`), in time order."""
    urls: tuple[str, ...] = ()
    """The full URLs requested, where the visit shows them (plain HTTP, proxied requests), first seen first."""


@dataclass(frozen=True, slots=True)
class HeatCell:
    """One square of the heatmap: an hour or a day."""

    label: str
    """Its date (and hours), as the tooltip says it."""
    minutes: int | None
    """Time online in it; None for a calendar day outside the period."""


@dataclass(frozen=True, slots=True)
class HeatRow:
    """One row of the heatmap: a day (of hours) or a week (of days)."""

    label: str
    cells: tuple[HeatCell, ...]


@dataclass(frozen=True, slots=True)
class Heatmap:
    """Time online over the period, in the shape that fits its length: one day by hour, up to two weeks as
    days by hour, longer as a calendar of days."""

    shape: str
    """"hours", "days" (a row a day, a column an hour) or "calendar" (a row a week, a column a weekday)."""
    columns: tuple[str, ...]
    rows: tuple[HeatRow, ...]
    peak: int
    """The most minutes in one cell (the darkest colour)."""


@dataclass(frozen=True, slots=True)
class CareDevice:
    """One device in the subject's care (register `use: care`: an iPad bank pupils use): what it did over the
    period, none of which is the subject's own use."""

    device: str
    device_type: str | None
    places: tuple[str, ...]
    """Where it was seen, most visits first."""
    visits: int
    activities: int
    bytes: int
    minutes: int
    breaches: int
    """Its activities that broke a rule (the daily iPad check's absences too): `UserReport.care_breaches`."""


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """The device a device report is about, as the register has it."""

    id: str
    device_type: str | None
    use: str | None
    """own, care or shared; None for a device the register no longer lists."""
    responsible: PersonRef | None
    """The person in whose care it is (`use: care`), else None."""


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
    """The activities that broke a rule (each visit of `visits` with verdict breach holds at least one)."""
    blocked: tuple[ActivityRow, ...]
    activity: tuple[ActivityRow, ...] = field(default=())
    """Every activity of the period, in time order, each naming its visit."""
    waived: tuple[ActivityRow, ...] = field(default=())
    """Activities a rule matched but a waiver (the policy's "specific permission") covered."""
    visits: tuple[Visit, ...] = field(default=())
    services: tuple[CountRow, ...] = field(default=())
    """Activities to the school's own network services (the network map's `services`; DHCP), by service: the
    network's upkeep, counted apart and in no visit."""
    heatmap: Heatmap | None = None
    minutes_online: int = 0
    """Estimated time online: the minutes of the clock in which any visit was under way."""
    in_care: tuple[CareDevice, ...] = ()
    """The devices in the subject's care that were active in the period (none for a device report)."""
    care_breaches: tuple[ActivityRow, ...] = ()
    """Those devices' breaches, each explained: kept apart from the subject's own."""
    device: DeviceRef | None = None
    """Set for a device report: the report is of this device's activity that no login named, and `subject` is
    the person in whose care it is (a placeholder without a name for a shared device)."""
