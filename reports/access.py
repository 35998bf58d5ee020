"""Who may see whose report (clause P10: "on request, to Line Managers or Headteacher").

`decide` is the whole rule, in one place, as a table of cases tried in order; every request, granted or
refused, is then written to the audit chain by the caller with the grounds given here.

- No reason, or a requester the directory does not know or who has left: refused.
- Anyone may have their own report (UK GDPR right of access).
- The headteacher may have anyone's.
- A line manager may have the report of someone who reports to them directly; through their reports'
  reports too when the policy sets `reports.line_manager_chain`.
- The network manager sees technical views, not a person's report, unless the headteacher has given a
  one-off grant for that person, which the request then uses up.
- Everyone else (other senior leaders, the safeguarding lead, who works from incidents): refused.

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


def decide(directory: Directory, requester: str, subject: str, reason: str, today: dt.date,
           chain: bool = False, open_grants: Collection[int] = ()) -> Decision:
    """May `requester` have `subject`'s report? `open_grants`: sequence numbers of unused one-off grants
    from the headteacher to this requester for this subject."""
    people = directory.by_username()
    who = people.get(requester)
    if not reason.strip():
        return Decision(False, "no reason given")
    if who is None:
        return Decision(False, "requester not in the staff directory")
    if who.leave is not None and who.leave < today:
        return Decision(False, "requester has left the school")
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
GRANT_REFUSED = "only the headteacher gives one-off grants, with a reason"
AUDIT_REFUSED = "only the headteacher reads the audit log"


def may_grant(directory: Directory, granter: str) -> bool:
    """Only the headteacher gives one-off grants."""
    person = directory.by_username().get(granter)
    return person is not None and person.role == Role.headteacher


def may_read_audit(directory: Directory, requester: str) -> bool:
    """The audit log is the headteacher's to read."""
    return may_grant(directory, requester)
