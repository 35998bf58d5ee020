"""Who may see whose report (clause P10: "on request, to Line Managers or Headteacher").

`decide` is the whole rule, in one place, as a table of cases tried in order; every request, granted or
refused, is then written to the audit chain by the caller with the grounds given here.

- No reason, or a requester the directory does not know or who is outside their employment dates (has
  left, or has not started yet): refused.
- Anyone may have their own report (UK GDPR right of access).
- The headteacher may have anyone's.
- A line manager may have the report of someone who reports to them directly; through their reports'
  reports too when the policy sets `reports.line_manager_chain`.
- The network manager sees technical views, not a person's report, unless the headteacher has given a
  one-off grant for that person and a period covering the one asked for, within the policy's
  `reports.grant_days` (7 by default); the request then uses it up.
- Everyone else (other senior leaders, the safeguarding lead, who works from incidents): refused.

A device report (one device's activity that no login named: an iPad bank in a teacher's care, the hall's
AV PC) is `decide_device`'s: the headteacher and the safeguarding lead, with a reason, while on the staff;
nobody else. It holds no one's own use, so it needs no relation to a person.

A request these rules grant is then held to the subject's dates, when the directory has them: no one has
the report of someone who has not started yet, nor of days before anyone started; a leaver's report covers
the days they were employed, except for the headteacher (and a one-off grant she gives), who may follow up
a leaver's device seen after they left (clause A1). A period running outside those days is refused, not
cut short. The same dates decide who may log in to the web page, give a grant (the headteacher, on the
staff today) and read the audit.

A request this rule grants is still refused, as `NO_SUCH_PERSON`, when its subject is in neither the staff
directory nor the stored activity (a mistyped username): reports/requests.py asks the store, under the
audit lock. Someone the directory no longer lists, or never did (a leaver, a proxy login), but whose
activity is stored, is a subject like any other. Only a requester who may have that report learns which
it is: anyone else is refused on the grounds above first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass

from rules.config import Directory, Person, Role


@dataclass(frozen=True, slots=True)
class Decision:
    """A request's outcome and why, in words that go into the audit row and the refusal message."""

    granted: bool
    grounds: str
    grant_seq: int | None = None
    """The audit sequence number of the one-off grant this request uses, if any."""


def _managers(person: Person, people: dict[str, Person]) -> list[str]:
    """`person`'s line manager, theirs, and so on up (stopping at a loop in a bad export)."""
    chain: list[str] = []
    current = person.line_manager
    while current and current not in chain and current in people:
        chain.append(current)
        current = people[current].line_manager
    return chain


def employed(person: Person, day: dt.date) -> bool:
    """Whether `day` is within `person`'s employment dates (either end may be unknown: no limit there)."""
    return (person.start is None or person.start <= day) and (person.leave is None or day <= person.leave)


def _not_employed(person: Person, today: dt.date) -> Decision | None:
    """The refusal for a requester outside their dates today, or None."""
    if person.leave is not None and person.leave < today:
        return Decision(False, "requester has left the school")
    if person.start is not None and today < person.start:
        return Decision(False, "requester has not started at the school yet")
    return None


def may_log_in(directory: Directory, username: str, today: dt.date) -> bool:
    """Only someone on the staff today has a web session."""
    person = directory.by_username().get(username)
    return person is not None and employed(person, today)


def decide(directory: Directory, requester: str, subject: str, reason: str, today: dt.date,
           chain: bool = False, open_grants: Collection[int] = (),
           period: tuple[dt.date, dt.date] | None = None) -> Decision:
    """May `requester` have `subject`'s report for `period` (first and last day)? `open_grants`: sequence
    numbers of unused one-off grants from the headteacher to this requester for this subject, covering
    the period and not expired."""
    people = directory.by_username()
    who = people.get(requester)
    if not reason.strip():
        return Decision(False, "no reason given")
    if who is None:
        return Decision(False, "requester not in the staff directory")
    decision = _not_employed(who, today) or _relation(people, who, subject, chain, open_grants)
    target = people.get(subject)
    if not decision.granted or target is None:
        return decision
    if target.start is not None and today < target.start:
        return Decision(False, "the subject has not started at the school yet")
    if period is not None:
        before = target.start is not None and period[0] < target.start
        after = target.leave is not None and target.leave < period[1]
        if before or (after and who.role != Role.headteacher and decision.grant_seq is None):
            return Decision(False, "the period runs outside the subject's employment dates")
    return decision


def _relation(people: dict[str, Person], who: Person, subject: str, chain: bool,
              open_grants: Collection[int]) -> Decision:
    """The decision by who the requester is to the subject (the table above)."""
    requester = who.username
    if requester == subject:
        return Decision(True, "own data (right of access)")
    if who.role == Role.headteacher:
        return Decision(True, "headteacher")
    target = people.get(subject)
    if target is not None:
        managers = _managers(target, people)
        if managers[:1] == [requester]:
            return Decision(True, "line manager")
        if requester in managers:
            return (Decision(True, "line manager, through the reporting chain") if chain else
                    Decision(False, "manages the subject only indirectly (the policy allows direct reports)"))
    if open_grants:
        seq = min(open_grants)
        return Decision(True, f"one-off grant #{seq} from the headteacher", grant_seq=seq)
    if who.role == Role.network_manager:
        return Decision(False, "network manager: technical views only, without a one-off grant")
    if who.role == Role.safeguarding_lead:
        return Decision(False, "safeguarding lead: works from incidents, not personal reports")
    return Decision(False, "not the subject's line manager or the headteacher")


NO_SUCH_PERSON = "no such person in the directory, and no activity stored under that username"
NO_SUCH_DEVICE = "no such device in the register, and no activity stored under that id"
DEVICE_REPORT_ROLES = (Role.headteacher, Role.safeguarding_lead)
"""Who may have a device report: a device's activity that no login named (an iPad bank pupils use, the hall's
AV PC) is the school's to look into, through the headteacher and the safeguarding lead."""


def decide_device(directory: Directory, requester: str, reason: str, today: dt.date) -> Decision:
    """May `requester` have a device report (one device's activity that no login named)? The headteacher and
    the safeguarding lead, on the staff today, with a reason; nobody else, whose device it is included (their
    line manager has their own report, which shows the devices in their care)."""
    who = directory.by_username().get(requester)
    if not reason.strip():
        return Decision(False, "no reason given")
    if who is None:
        return Decision(False, "requester not in the staff directory")
    refused = _not_employed(who, today)
    if refused is not None:
        return refused
    if who.role in DEVICE_REPORT_ROLES:
        return Decision(True, who.role.value.replace("_", " "))
    return Decision(False, "device reports are for the headteacher and the safeguarding lead")
GRANT_REFUSED = "only the headteacher gives one-off grants, with a reason"
AUDIT_REFUSED = "only the headteacher reads the audit log"


def _headteacher(directory: Directory, username: str, today: dt.date) -> bool:
    person = directory.by_username().get(username)
    return person is not None and person.role == Role.headteacher and employed(person, today)


def decide_grant(directory: Directory, granter: str, grantee: str, subject: str, reason: str,
                 period: tuple[dt.date, dt.date], today: dt.date) -> Decision:
    """May `granter` give `grantee` a one-off grant of `subject`'s report for `period`? Only the headteacher
    on the staff today, with a reason, to someone on the staff, for a period she could have that report
    for herself (the subject's dates, above)."""
    if not reason.strip() or not _headteacher(directory, granter, today):
        return Decision(False, GRANT_REFUSED)
    if not may_log_in(directory, grantee, today):
        return Decision(False, "the grantee is not on the staff today")
    return decide(directory, granter, subject, reason, today, period=period)


def may_read_audit(directory: Directory, requester: str, today: dt.date) -> bool:
    """The audit log is the headteacher's to read, while on the staff."""
    return _headteacher(directory, requester, today)
